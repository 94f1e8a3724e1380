//! Frames sent as pictures and masks received from a service that does its own pre- and
//! post-processing (a SageMaker container running rembg, say): the frame encoded as PNG or JPEG,
//! and the answer read as a mask whatever form it comes in: a PNG or JPEG picture (its alpha
//! channel if it has one, else its first), or raw float32 (0..1) or uint8 values of the frame's
//! size, told apart by the answer's content type and size.

use super::{Tensor, TensorView};

/// How a frame is encoded for the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageEncoding {
    Png,
    /// JPEG at this quality (1-100): smaller and faster to encode, slightly lossy.
    Jpeg(u8),
}

impl ImageEncoding {
    pub fn content_type(self) -> &'static str {
        match self {
            ImageEncoding::Png => "image/png",
            ImageEncoding::Jpeg(_) => "image/jpeg",
        }
    }
}

/// The largest side of a mask picture accepted from a service, whatever the frame.
pub const MAX_MASK_SIDE: usize = 16384;

/// The largest mask accepted for a `width` x `height` frame: twice the frame's size a side (a
/// service answers at the frame's size or its model's; a larger mask only costs memory), checked
/// before anything is allocated from a picture's header.
fn mask_limits(width: usize, height: usize) -> (usize, usize) {
    let limit = |side: usize| side.saturating_mul(2).clamp(64, MAX_MASK_SIDE);
    (limit(width), limit(height))
}

/// Encodes an `[1,H,W,3]` frame of 0..255 values (what the whole-frame profile prepares).
pub fn encode_frame(view: &TensorView<'_>, encoding: ImageEncoding) -> Result<Vec<u8>, String> {
    let &[1, height, width, 3] = view.shape else {
        return Err(format!(
            "an image payload is made from a [1,H,W,3] frame, not {:?}",
            view.shape
        ));
    };
    if view.data.len() != width * height * 3 {
        return Err(format!(
            "frame of {width}x{height} has {} values",
            view.data.len()
        ));
    }
    let pixels: Vec<u8> = view
        .data
        .iter()
        .map(|v| v.round().clamp(0.0, 255.0) as u8)
        .collect();
    let too_large = || format!("a {width}x{height} frame is too large to encode");
    let mut out = Vec::new();
    match encoding {
        ImageEncoding::Png => {
            let mut encoder = png::Encoder::new(
                &mut out,
                u32::try_from(width).map_err(|_| too_large())?,
                u32::try_from(height).map_err(|_| too_large())?,
            );
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            // Speed over size: the picture crosses a network once and is thrown away.
            encoder.set_compression(png::Compression::Fast);
            let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
            writer
                .write_image_data(&pixels)
                .map_err(|e| e.to_string())?;
            writer.finish().map_err(|e| e.to_string())?;
        }
        ImageEncoding::Jpeg(quality) => {
            let encoder = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
            encoder
                .encode(
                    &pixels,
                    u16::try_from(width).map_err(|_| too_large())?,
                    u16::try_from(height).map_err(|_| too_large())?,
                    jpeg_encoder::ColorType::Rgb,
                )
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(out)
}

/// The mask in a service's answer as a `[1,H,W,1]` tensor of 0..1 values: a picture (by content
/// type, or by its signature when the type says nothing) of any size, or raw values of the
/// frame's `width` x `height`: one byte each (uint8) or four (float32, little-endian).
pub fn decode_mask(
    body: &[u8],
    content_type: Option<&str>,
    width: usize,
    height: usize,
) -> Result<Tensor, String> {
    let kind = content_type
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let is_png = kind == "image/png" || body.starts_with(b"\x89PNG\r\n\x1a\n");
    let is_jpeg = kind == "image/jpeg" || (!is_png && body.starts_with(&[0xFF, 0xD8, 0xFF]));
    let limits = mask_limits(width, height);
    if is_png {
        return decode_png_mask(body, limits);
    }
    if is_jpeg {
        return decode_jpeg_mask(body, limits);
    }
    let pixels = width * height;
    let data: Vec<f32> = if body.len() == pixels {
        body.iter().map(|&v| f32::from(v) / 255.0).collect()
    } else if Some(body.len()) == pixels.checked_mul(4) {
        body.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    } else {
        return Err(format!(
            "the answer ({}, {} bytes) is neither a PNG or JPEG mask nor {width}x{height} raw \
             values ({pixels} bytes of uint8 or {} of float32)",
            content_type.unwrap_or("no content type"),
            body.len(),
            pixels.saturating_mul(4)
        ));
    };
    Ok(Tensor {
        shape: vec![1, height, width, 1],
        data,
    })
}

fn decode_png_mask(body: &[u8], limits: (usize, usize)) -> Result<Tensor, String> {
    let mut decoder = png::Decoder::new_with_limits(
        std::io::Cursor::new(body),
        png::Limits {
            // Four 8-bit channels at the largest size accepted.
            bytes: limits.0 * limits.1 * 4,
        },
    );
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .map_err(|e| format!("the answer is not a readable PNG: {e}"))?;
    let (width, height) = reader.info().size();
    check_mask_size(width as usize, height as usize, limits)?;
    let (color, _) = reader.output_color_type();
    let channels = color.samples();
    let mut pixels = vec![0; reader.output_buffer_size().ok_or("PNG too large")?];
    let frame = reader
        .next_frame(&mut pixels)
        .map_err(|e| format!("the answer's PNG is damaged: {e}"))?;
    // A cutout's mask is its alpha; a greyscale mask is its grey.
    let channel = match color {
        png::ColorType::GrayscaleAlpha | png::ColorType::Rgba => channels - 1,
        _ => 0,
    };
    let data = pixels[..frame.buffer_size()]
        .chunks_exact(channels)
        .map(|p| f32::from(p[channel]) / 255.0)
        .collect();
    Ok(Tensor {
        shape: vec![1, height as usize, width as usize, 1],
        data,
    })
}

fn decode_jpeg_mask(body: &[u8], limits: (usize, usize)) -> Result<Tensor, String> {
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::Luma)
        .set_max_width(limits.0)
        .set_max_height(limits.1);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(body, options);
    let grey = decoder
        .decode()
        .map_err(|e| format!("the answer is not a readable JPEG: {e}"))?;
    let (width, height) = decoder.dimensions().ok_or("JPEG without dimensions")?;
    if grey.len() != width * height {
        return Err(format!(
            "the answer's JPEG of {width}x{height} gave {} values",
            grey.len()
        ));
    }
    Ok(Tensor {
        shape: vec![1, height, width, 1],
        data: grey.iter().map(|&v| f32::from(v) / 255.0).collect(),
    })
}

fn check_mask_size(width: usize, height: usize, limits: (usize, usize)) -> Result<(), String> {
    if width == 0 || height == 0 || width > limits.0 || height > limits.1 {
        return Err(format!(
            "the answer's mask is {width}x{height}; at most {}x{} is accepted for this frame",
            limits.0, limits.1
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(width: usize, height: usize) -> Vec<f32> {
        (0..width * height * 3)
            .map(|i| (i * 7 % 256) as f32)
            .collect()
    }

    fn grey_png(values: &[u8], width: u32, height: u32, color: png::ColorType) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(color);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(values).unwrap();
        writer.finish().unwrap();
        out
    }

    #[test]
    fn a_png_frame_decodes_to_the_same_pixels() {
        let data = frame(5, 3);
        let png = encode_frame(
            &TensorView {
                shape: &[1, 3, 5, 3],
                data: &data,
            },
            ImageEncoding::Png,
        )
        .unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut pixels).unwrap();
        assert_eq!(pixels, data.iter().map(|&v| v as u8).collect::<Vec<_>>());
    }

    #[test]
    fn a_jpeg_frame_is_a_jpeg_of_the_frames_size() {
        let data = frame(16, 8);
        let jpeg = encode_frame(
            &TensorView {
                shape: &[1, 8, 16, 3],
                data: &data,
            },
            ImageEncoding::Jpeg(90),
        )
        .unwrap();
        let mut decoder = zune_jpeg::JpegDecoder::new(&jpeg);
        decoder.decode().unwrap();
        assert_eq!(decoder.dimensions(), Some((16, 8)));
    }

    #[test]
    fn masks_come_as_grey_or_alpha_pictures_or_raw_values() {
        let grey = grey_png(&[0, 255, 51, 102], 2, 2, png::ColorType::Grayscale);
        let mask = decode_mask(&grey, Some("image/png"), 99, 99).unwrap();
        assert_eq!(mask.shape, [1, 2, 2, 1]);
        assert_eq!(mask.data, [0.0, 1.0, 0.2, 0.4]);

        // A cutout: the alpha is the mask, whatever the colour.
        let rgba = grey_png(&[9, 9, 9, 255, 9, 9, 9, 0], 2, 1, png::ColorType::Rgba);
        let mask = decode_mask(&rgba, None, 2, 1).unwrap();
        assert_eq!(mask.data, [1.0, 0.0]);

        let raw8 = decode_mask(&[0, 255, 255], Some("application/octet-stream"), 3, 1).unwrap();
        assert_eq!(raw8.data, [0.0, 1.0, 1.0]);
        let floats: Vec<u8> = [0.25f32, 0.5]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let raw32 = decode_mask(&floats, Some("application/octet-stream"), 2, 1).unwrap();
        assert_eq!(raw32.shape, [1, 1, 2, 1]);
        assert_eq!(raw32.data, [0.25, 0.5]);
    }

    #[test]
    fn answers_that_are_no_mask_are_refused_saying_what_came() {
        let err = decode_mask(b"{\"error\": \"x\"}", Some("application/json"), 4, 4).unwrap_err();
        assert!(
            err.contains("application/json") && err.contains("16 bytes"),
            "{err}"
        );
        let err = decode_mask(b"\x89PNG\r\n\x1a\nbroken", Some("image/png"), 4, 4).unwrap_err();
        assert!(err.contains("PNG"), "{err}");
        let err = decode_mask(&[0xFF, 0xD8, 0xFF, 0], Some("image/jpeg"), 4, 4).unwrap_err();
        assert!(err.contains("JPEG"), "{err}");
    }

    #[test]
    fn an_oversized_mask_picture_is_refused_before_decoding() {
        // A PNG header claiming 100000 x 100000 pixels, with no data behind it.
        let mut header = grey_png(&[0], 1, 1, png::ColorType::Grayscale);
        header[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        header[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let err = decode_mask(&header, Some("image/png"), 4, 4).unwrap_err();
        assert!(err.contains("PNG") || err.contains("at most"), "{err}");
    }
}
