//! Matting: what a soft mask needs before it is composited over a new background. The colour of
//! a partly transparent pixel is a blend of foreground and old background; estimating the
//! foreground's own colour there keeps the old background out of the new one. Plain Rust, no
//! GStreamer types.

pub mod blur_fusion;
mod box_filter;
pub mod closed_form;
pub mod guided_filter;
pub mod multilevel;
mod nested_dissection;
mod relaxed_region;
mod supernodal;

pub use blur_fusion::BlurFusionEstimator;
pub use multilevel::{MultilevelEstimator, MultilevelParams};

use crate::imageops::ImageRef;

/// Data for the tests: pseudo-random (the same for the same seed), and pixels padded to a size.
#[cfg(test)]
pub(crate) mod test_data {
    /// `len` pseudo-random bytes.
    pub fn noise_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    /// Pixels of `bpp` bytes (3 or more) with the colours of `colours` (3 bytes a pixel), the
    /// bytes after the colour all [`FILLER`]: what a pass must neither read as colour nor write.
    pub fn pixels_of(colours: &[u8], bpp: usize) -> Vec<u8> {
        colours
            .chunks(3)
            .flat_map(|c| {
                c.iter()
                    .copied()
                    .chain(std::iter::repeat_n(FILLER, bpp - 3))
            })
            .collect()
    }

    /// See [`pixels_of`].
    pub const FILLER: u8 = 77;

    /// `len` pseudo-random floats in 0..1.
    pub fn noise_floats(len: usize, seed: u64) -> Vec<f32> {
        noise_bytes(len * 2, seed)
            .chunks_exact(2)
            .map(|pair| f32::from(u16::from_le_bytes([pair[0], pair[1]])) / 65535.0)
            .collect()
    }
}

/// Checks an estimator's arguments (one alpha byte per pixel, `out` holding the packed frame)
/// and says whether any pixel is partly transparent: without one there is nothing to estimate.
fn has_partial_alpha(image: &ImageRef<'_>, alpha: &[u8], out: &[u8]) -> bool {
    let (width, height) = (image.width, image.height);
    assert_eq!(alpha.len(), width * height, "one alpha byte per pixel");
    assert!(
        out.len() >= width * height * image.layout.bytes_per_pixel,
        "out holds the frame"
    );
    alpha.iter().any(|&a| a != 0 && a != 255)
}

/// How the foreground colour of partly transparent pixels is estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForegroundMethod {
    /// Germer et al.'s multi-level method, as pymatting's `estimate_foreground_ml`.
    Multilevel,
    /// Forte and Pitié's blur-fusion: two windowed means and a correction, one pass over the
    /// frame; for live video.
    BlurFusion,
}

impl ForegroundMethod {
    pub fn name(self) -> &'static str {
        match self {
            ForegroundMethod::Multilevel => "multilevel",
            ForegroundMethod::BlurFusion => "blur-fusion",
        }
    }
}

/// Gives frames whose partly transparent pixels carry the estimated foreground colour, keeping
/// its buffers from frame to frame.
#[derive(Debug, Default)]
pub struct ForegroundEstimator {
    multilevel: MultilevelEstimator,
    blur_fusion: BlurFusionEstimator,
    frame: Vec<u8>,
}

impl ForegroundEstimator {
    /// A packed copy of `image` in which every pixel whose `alpha` (one byte a pixel) is neither
    /// 0 nor 255 has the estimated foreground colour; the others keep theirs, as does a fourth
    /// byte.
    pub fn estimate<'a>(
        &'a mut self,
        image: &ImageRef<'_>,
        alpha: &[u8],
        method: ForegroundMethod,
    ) -> ImageRef<'a> {
        image.copy_packed_into(&mut self.frame);
        match method {
            ForegroundMethod::Multilevel => self.multilevel.estimate(image, alpha, &mut self.frame),
            ForegroundMethod::BlurFusion => {
                self.blur_fusion.estimate(image, alpha, &mut self.frame)
            }
        }
        ImageRef::packed(&self.frame, image.width, image.height, image.layout)
    }
}
