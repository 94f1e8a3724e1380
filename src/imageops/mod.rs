//! Image resizing and pixel layout helpers shared by the elements' processing code.

mod boxblur;
mod cubic;
mod resample;

pub use boxblur::{BoxBlur, Edges};

pub use cubic::resize_cubic;

pub use resample::Filter;

/// Where the colour channels sit inside one packed pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelLayout {
    pub bytes_per_pixel: usize,
    pub red: usize,
    pub green: usize,
    pub blue: usize,
}

impl PixelLayout {
    pub const RGB: Self = Self::new(3, 0, 1, 2);
    pub const BGR: Self = Self::new(3, 2, 1, 0);
    pub const RGBX: Self = Self::new(4, 0, 1, 2);
    pub const BGRX: Self = Self::new(4, 2, 1, 0);

    pub const fn new(bytes_per_pixel: usize, red: usize, green: usize, blue: usize) -> Self {
        Self {
            bytes_per_pixel,
            red,
            green,
            blue,
        }
    }
}

/// A borrowed packed 8-bit image whose rows may be padded (`stride >= width * bytes_per_pixel`).
#[derive(Debug, Clone, Copy)]
pub struct ImageRef<'a> {
    pub data: &'a [u8],
    pub width: usize,
    pub height: usize,
    pub stride: usize,
    pub layout: PixelLayout,
}

impl<'a> ImageRef<'a> {
    /// A tightly packed image (no row padding).
    pub fn packed(data: &'a [u8], width: usize, height: usize, layout: PixelLayout) -> Self {
        Self {
            data,
            width,
            height,
            stride: width * layout.bytes_per_pixel,
            layout,
        }
    }

    pub fn row(&self, y: usize) -> &'a [u8] {
        let start = y * self.stride;
        &self.data[start..start + self.width * self.layout.bytes_per_pixel]
    }

    /// Copies the pixels into `out` without row padding (reusing its allocation).
    pub fn copy_packed_into(&self, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(self.width * self.height * self.layout.bytes_per_pixel);
        for y in 0..self.height {
            out.extend_from_slice(self.row(y));
        }
    }

    /// The bytes the image needs: every row's stride but the last row's padding.
    fn required_len(&self) -> usize {
        match self.height {
            0 => 0,
            h => (h - 1) * self.stride + self.width * self.layout.bytes_per_pixel,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot resize a {src_width}x{src_height} image with {bytes_per_pixel} bytes per pixel to {dst_width}x{dst_height}: {reason}"
)]
pub struct ResizeError {
    src_width: usize,
    src_height: usize,
    dst_width: usize,
    dst_height: usize,
    bytes_per_pixel: usize,
    reason: String,
}

/// A resizer that keeps its scratch buffer between frames. It computes exactly what PIL's
/// `Image.resize` computes (see the `resample` module).
#[derive(Debug, Default)]
pub struct Resizer {
    scratch: resample::Scratch,
}

impl Resizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Resizes `src` into `dst`, a packed buffer of `dst_width x dst_height` pixels of the same
    /// layout. Every channel is resized independently: a fourth channel is not treated as alpha.
    pub fn resize(
        &mut self,
        src: &ImageRef<'_>,
        dst: &mut [u8],
        dst_width: usize,
        dst_height: usize,
        filter: Filter,
    ) -> Result<(), ResizeError> {
        let bpp = src.layout.bytes_per_pixel;
        let error = |reason: &str| ResizeError {
            src_width: src.width,
            src_height: src.height,
            dst_width,
            dst_height,
            bytes_per_pixel: bpp,
            reason: reason.to_string(),
        };
        if ![1, 3, 4].contains(&bpp) {
            return Err(error("unsupported pixel size"));
        }
        if src.width == 0 || src.height == 0 || dst_width == 0 || dst_height == 0 {
            return Err(error("empty image"));
        }
        if src.stride < src.width * bpp || src.data.len() < src.required_len() {
            return Err(error("source buffer smaller than its size and stride"));
        }
        if dst.len() < dst_width * dst_height * bpp {
            return Err(error("destination buffer too small"));
        }
        if src.width == dst_width && src.height == dst_height {
            // Every filter maps a pixel onto itself at scale 1: copy the rows.
            let row = dst_width * bpp;
            for (y, out) in dst.chunks_exact_mut(row).take(dst_height).enumerate() {
                out.copy_from_slice(&src.row(y)[..row]);
            }
            return Ok(());
        }
        resample::resize(
            src.data,
            src.width,
            src.height,
            src.stride,
            bpp,
            dst,
            dst_width,
            dst_height,
            filter,
            &mut self.scratch,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_rows_resize_like_packed_rows() {
        let (width, height) = (7, 5);
        let packed: Vec<u8> = (0..width * height * 3)
            .map(|i| (i * 37 % 251) as u8)
            .collect();
        let stride = width * 3 + 3;
        let mut padded = vec![0xAA; stride * height];
        for y in 0..height {
            padded[y * stride..y * stride + width * 3]
                .copy_from_slice(&packed[y * width * 3..(y + 1) * width * 3]);
        }
        let mut resizer = Resizer::new();
        let mut from_packed = vec![0; 4 * 3 * 3];
        let mut from_padded = vec![0; 4 * 3 * 3];
        resizer
            .resize(
                &ImageRef::packed(&packed, width, height, PixelLayout::RGB),
                &mut from_packed,
                4,
                3,
                Filter::Lanczos3,
            )
            .unwrap();
        let padded_ref = ImageRef {
            data: &padded,
            width,
            height,
            stride,
            layout: PixelLayout::RGB,
        };
        resizer
            .resize(&padded_ref, &mut from_padded, 4, 3, Filter::Lanczos3)
            .unwrap();
        assert_eq!(from_packed, from_padded);
    }

    #[test]
    fn fourth_channel_is_not_alpha() {
        // A zero "x" byte must not darken the colour, as premultiplied resizing would.
        let src: Vec<u8> = [200u8, 100, 50, 0].repeat(16);
        let mut dst = vec![0; 2 * 2 * 4];
        Resizer::new()
            .resize(
                &ImageRef::packed(&src, 4, 4, PixelLayout::RGBX),
                &mut dst,
                2,
                2,
                Filter::Lanczos3,
            )
            .unwrap();
        assert_eq!(&dst[..3], &[200, 100, 50]);
    }

    #[test]
    fn empty_image_is_an_error_not_a_panic() {
        let mut dst = vec![0; 4];
        let err = Resizer::new()
            .resize(
                &ImageRef::packed(&[], 0, 0, PixelLayout::RGB),
                &mut dst,
                1,
                1,
                Filter::Lanczos3,
            )
            .unwrap_err();
        assert!(err.to_string().contains("empty image"), "{err}");
    }
}
