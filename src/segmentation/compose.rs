//! Turning a frame and its mask into what each output mode shows: the mask alone, the foreground
//! over a colour, or over another picture (a blurred copy of the frame, or an image).

use rayon::prelude::*;

use crate::imageops::{BoxBlur, Edges, ImageRef, PixelLayout};

use super::attach_alpha;

/// `src`'s pixels as packed 4-byte pixels in its own channel order (the fourth byte 255).
fn pack4_into(src: &ImageRef<'_>, out: &mut Vec<u8>) {
    let bpp = src.layout.bytes_per_pixel;
    out.clear();
    out.resize(src.width * src.height * 4, 255);
    out.par_chunks_mut(src.width * 4)
        .enumerate()
        .for_each(|(y, row)| {
            for (o, p) in row.chunks_exact_mut(4).zip(src.row(y).chunks_exact(bpp)) {
                o[..3].copy_from_slice(&p[..3]);
            }
        });
}

/// The blurred copy of frames that blur mode puts behind the foreground, with its two
/// frame-sized buffers kept from frame to frame (at 1080p each is 8 MB).
#[derive(Debug, Default)]
pub struct BlurredBackground {
    pixels: Vec<u8>,
    scratch: Vec<u8>,
}

impl BlurredBackground {
    /// Packs `src` to 4-byte pixels and blurs it; the result stays valid until the next call.
    pub fn blur(&mut self, src: &ImageRef<'_>, radius: usize) -> &[u8] {
        pack4_into(src, &mut self.pixels);
        blur_with_scratch(
            &mut self.pixels,
            &mut self.scratch,
            src.width,
            src.height,
            radius,
        );
        &self.pixels
    }
}

/// Two box passes each way (edge pixels repeated, alpha kept), ping-ponging between `pixels`
/// and `scratch`.
fn blur_with_scratch(
    pixels: &mut [u8],
    scratch: &mut Vec<u8>,
    width: usize,
    height: usize,
    radius: usize,
) {
    let blur = BoxBlur {
        channels: 4,
        blurred: 3,
        radius,
        passes: 2,
        edges: Edges::Repeat,
    };
    blur.apply(pixels, scratch, width, height);
}

/// Foreground over `background` (packed 4-byte pixels, same channel order as `src`), alpha 255.
pub fn composite_over(
    src: &ImageRef<'_>,
    mask: &[u8],
    background: Background<'_>,
    dst: &mut [u8],
    dst_stride: usize,
) {
    let (width, bpp) = (src.width, src.layout.bytes_per_pixel);
    dst.par_chunks_mut(dst_stride)
        .take(src.height)
        .enumerate()
        .for_each(|(y, row)| {
            let src_row = src.row(y);
            let mask_row = &mask[y * width..][..width];
            for x in 0..width {
                let a = u32::from(mask_row[x]);
                let behind = match background {
                    Background::Colour(colour) => colour,
                    Background::Image(image) => {
                        let p = &image[(y * width + x) * 4..][..3];
                        [p[0], p[1], p[2]]
                    }
                };
                let front = &src_row[x * bpp..][..3];
                let out = &mut row[x * 4..x * 4 + 4];
                for c in 0..3 {
                    out[c] = ((u32::from(front[c]) * a + u32::from(behind[c]) * (255 - a) + 127)
                        / 255) as u8;
                }
                out[3] = 255;
            }
        });
}

/// What shows through where the mask is transparent.
#[derive(Debug, Clone, Copy)]
pub enum Background<'a> {
    /// Three bytes in the frame's channel order.
    Colour([u8; 3]),
    /// Packed 4-byte pixels of the frame's size and channel order.
    Image(&'a [u8]),
}

/// The mask as a one-byte-per-pixel frame.
pub fn write_mask(mask: &[u8], width: usize, height: usize, dst: &mut [u8], dst_stride: usize) {
    for (y, row) in dst.chunks_mut(dst_stride).take(height).enumerate() {
        row[..width].copy_from_slice(&mask[y * width..][..width]);
    }
}

/// What an output frame shows, one variant per output mode.
#[derive(Debug, Clone, Copy)]
pub enum Output<'a> {
    /// The mask alone, one byte per pixel.
    Mask,
    /// The frame's colour with the mask as alpha, four bytes per pixel; with
    /// `clear_transparent`, colour 0 where the alpha is 0.
    Alpha { clear_transparent: bool },
    /// The foreground over a colour given in the frame's channel order, alpha 255.
    OverColour([u8; 3]),
    /// The foreground over a copy of the frame blurred with this radius, alpha 255.
    OverBlur(usize),
    /// The foreground over a picture: packed 4-byte pixels of the frame's size and channel
    /// order, alpha 255.
    OverImage(&'a [u8]),
}

/// Writes output frames, keeping blur mode's buffers from frame to frame.
#[derive(Debug, Default)]
pub struct Compositor {
    blurred: BlurredBackground,
}

impl Compositor {
    /// Writes what `output` shows of `src` and its `mask` into `dst` (rows `dst_stride` apart).
    pub fn write(
        &mut self,
        src: &ImageRef<'_>,
        mask: &[u8],
        output: Output<'_>,
        dst: &mut [u8],
        dst_stride: usize,
    ) {
        match output {
            Output::Mask => write_mask(mask, src.width, src.height, dst, dst_stride),
            Output::Alpha { clear_transparent } => {
                attach_alpha(src, mask, dst, dst_stride);
                if clear_transparent {
                    clear_transparent_colour(dst, src.width, src.height, dst_stride);
                }
            }
            Output::OverColour(colour) => {
                composite_over(src, mask, Background::Colour(colour), dst, dst_stride)
            }
            Output::OverBlur(radius) => {
                let blurred = self.blurred.blur(src, radius);
                composite_over(src, mask, Background::Image(blurred), dst, dst_stride)
            }
            Output::OverImage(picture) => {
                composite_over(src, mask, Background::Image(picture), dst, dst_stride)
            }
        }
    }
}

/// Sets the colour of every pixel whose alpha is 0 to 0 in a 4-byte-per-pixel frame (alpha last):
/// what nobody sees then compresses to almost nothing (a PNG cutout shrinks to about the size of
/// rembg's), while visible pixels keep their straight colour.
pub fn clear_transparent_colour(dst: &mut [u8], width: usize, height: usize, dst_stride: usize) {
    dst.par_chunks_mut(dst_stride).take(height).for_each(|row| {
        for pixel in row[..width * 4].chunks_exact_mut(4) {
            if pixel[3] == 0 {
                pixel[..3].fill(0);
            }
        }
    });
}

/// An `0xAARRGGBB` colour (as GStreamer's colour properties are) in the channel order of
/// `layout`; alpha is dropped.
pub fn colour_in_layout(argb: u32, layout: PixelLayout) -> [u8; 3] {
    let [_, r, g, b] = argb.to_be_bytes();
    let mut colour = [0u8; 3];
    colour[layout.red] = r;
    colour[layout.green] = g;
    colour[layout.blue] = b;
    colour
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imageops::PixelLayout;

    #[test]
    fn composite_mixes_by_alpha() {
        let src = [200u8, 100, 0, 0, 0, 0];
        let image = ImageRef::packed(&src, 2, 1, PixelLayout::RGB);
        let mut dst = vec![0u8; 8];
        composite_over(
            &image,
            &[255, 0],
            Background::Colour([10, 20, 30]),
            &mut dst,
            8,
        );
        assert_eq!(dst, vec![200, 100, 0, 255, 10, 20, 30, 255]);
        composite_over(
            &image,
            &[128, 128],
            Background::Colour([0, 0, 0]),
            &mut dst,
            8,
        );
        assert_eq!(&dst[..4], &[100, 50, 0, 255]);
    }

    #[test]
    fn blur_keeps_flat_colour_and_spreads_a_dot() {
        let (w, h) = (9, 7);
        let mut flat = [50u8, 60, 70, 255].repeat(w * h);
        blur_with_scratch(&mut flat, &mut Vec::new(), w, h, 2);
        assert!(flat.chunks(4).all(|p| p == [50, 60, 70, 255]));
        let mut dot = vec![0u8; w * h * 4];
        dot[(3 * w + 4) * 4] = 255;
        blur_with_scratch(&mut dot, &mut Vec::new(), w, h, 1);
        assert!(dot[(3 * w + 4) * 4] < 255 && dot[(3 * w + 5) * 4] > 0);
    }

    #[test]
    fn colours_follow_the_frame_channel_order() {
        assert_eq!(
            colour_in_layout(0xff10_2030, PixelLayout::RGB),
            [0x10, 0x20, 0x30]
        );
        assert_eq!(
            colour_in_layout(0x0010_2030, PixelLayout::BGRX),
            [0x30, 0x20, 0x10]
        );
    }

    #[test]
    fn the_compositor_writes_each_output() {
        let src = [200u8, 100, 0, 10, 20, 30];
        let image = ImageRef::packed(&src, 2, 1, PixelLayout::RGB);
        let mask = [255u8, 0];
        let mut compositor = Compositor::default();
        let mut dst = vec![0u8; 8];
        compositor.write(
            &image,
            &mask,
            Output::Alpha {
                clear_transparent: false,
            },
            &mut dst,
            8,
        );
        assert_eq!(dst, [200, 100, 0, 255, 10, 20, 30, 0]);
        compositor.write(&image, &mask, Output::OverColour([1, 2, 3]), &mut dst, 8);
        assert_eq!(dst, [200, 100, 0, 255, 1, 2, 3, 255]);
        let picture = [9u8, 8, 7, 255, 6, 5, 4, 255];
        compositor.write(&image, &mask, Output::OverImage(&picture), &mut dst, 8);
        assert_eq!(dst, [200, 100, 0, 255, 6, 5, 4, 255]);
        let mut grey = vec![0u8; 4];
        compositor.write(&image, &mask, Output::Mask, &mut grey, 4);
        assert_eq!(&grey[..2], &mask);
        // Radius 0 blurs nothing: the background is the frame itself.
        compositor.write(&image, &mask, Output::OverBlur(0), &mut dst, 8);
        assert_eq!(dst, [200, 100, 0, 255, 10, 20, 30, 255]);
    }

    #[test]
    fn clearing_transparent_colour_touches_only_alpha_zero() {
        let src = [10u8, 20, 30, 40, 50, 60, 70, 80, 90];
        let image = ImageRef::packed(&src, 3, 1, PixelLayout::RGB);
        let mut dst = vec![0u8; 16];
        Compositor::default().write(
            &image,
            &[0, 1, 255],
            Output::Alpha {
                clear_transparent: true,
            },
            &mut dst,
            16,
        );
        assert_eq!(&dst[..12], &[0, 0, 0, 0, 40, 50, 60, 1, 70, 80, 90, 255]);
        assert_eq!(&dst[12..], &[0; 4], "row padding untouched");
    }
}
