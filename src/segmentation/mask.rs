//! Operations on 8-bit masks after the model: rembg's post-processing, temporal smoothing,
//! thresholding and feathering. Masks are packed, one byte per pixel.

use crate::imageops::{BoxBlur, Edges, ImageRef};
use rayon::prelude::*;

/// Grey-level erosion or dilation with skimage's `disk(1)` (the 3x3 cross); edges repeat, as
/// scipy's 'reflect' mode does for a radius of one.
fn cross_filter(mask: &[u8], width: usize, height: usize, pick: fn(u8, u8) -> u8) -> Vec<u8> {
    let mut out = vec![0u8; mask.len()];
    out.par_chunks_mut(width).enumerate().for_each(|(y, row)| {
        let up = &mask[y.saturating_sub(1) * width..][..width];
        let here = &mask[y * width..][..width];
        let down = &mask[(y + 1).min(height - 1) * width..][..width];
        for x in 0..width {
            let left = here[x.saturating_sub(1)];
            let right = here[(x + 1).min(width - 1)];
            row[x] = pick(pick(pick(here[x], up[x]), pick(down[x], left)), right);
        }
    });
    out
}

/// scipy's `gaussian_filter` (mode 'reflect', truncate 4) along one axis, in float64.
fn gaussian_axis(
    values: &[f64],
    width: usize,
    height: usize,
    sigma: f64,
    along_rows: bool,
) -> Vec<f64> {
    let radius = (4.0 * sigma + 0.5) as isize;
    let mut weights: Vec<f64> = (-radius..=radius)
        .map(|i| (-0.5 * (i * i) as f64 / (sigma * sigma)).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    weights.iter_mut().for_each(|w| *w /= total);
    let reflect = |i: isize, n: isize| -> usize {
        let mut i = i;
        // 'reflect' repeats the edge sample: (d c b a | a b c d | d c b a).
        loop {
            if i < 0 {
                i = -i - 1;
            } else if i >= n {
                i = 2 * n - i - 1;
            } else {
                return i as usize;
            }
        }
    };
    let mut out = vec![0f64; values.len()];
    out.par_chunks_mut(width).enumerate().for_each(|(y, row)| {
        for (x, value) in row.iter_mut().enumerate() {
            *value = weights
                .iter()
                .enumerate()
                .map(|(k, w)| {
                    let offset = k as isize - radius;
                    let index = if along_rows {
                        y * width + reflect(x as isize + offset, width as isize)
                    } else {
                        reflect(y as isize + offset, height as isize) * width + x
                    };
                    values[index] * w
                })
                .sum();
        }
    });
    out
}

/// rembg's `post_process`: opening with `disk(1)`, Gaussian blur with sigma 2, then 0 below 127
/// and 255 from 127 up.
pub fn rembg_post_process(mask: &mut [u8], width: usize, height: usize) {
    if width == 0 || height == 0 {
        return;
    }
    let eroded = cross_filter(mask, width, height, u8::min);
    let opened = cross_filter(&eroded, width, height, u8::max);
    let values: Vec<f64> = opened.iter().map(|&v| f64::from(v)).collect();
    // scipy filters axis 0 (down the columns) first, then axis 1.
    let blurred = gaussian_axis(&values, width, height, 2.0, false);
    let blurred = gaussian_axis(&blurred, width, height, 2.0, true);
    for (m, v) in mask.iter_mut().zip(blurred) {
        *m = if v < 127.0 { 0 } else { 255 };
    }
}

/// Blends the new mask into the previous one: `previous * amount + new * (1 - amount)`.
pub fn smooth_temporally(mask: &mut [u8], previous: &[u8], amount: f64) {
    let amount = amount.clamp(0.0, 1.0);
    for (m, &p) in mask.iter_mut().zip(previous) {
        *m = (f64::from(p) * amount + f64::from(*m) * (1.0 - amount)).round() as u8;
    }
}

/// 255 from `level` up, 0 below; level 0 keeps the soft mask.
pub fn threshold(mask: &mut [u8], level: u8) {
    if level > 0 {
        for m in mask.iter_mut() {
            *m = if *m >= level { 255 } else { 0 };
        }
    }
}

/// Softens edges so they ramp over about `reach` pixels each side: two passes of a box blur of
/// half that radius each way (a triangle filter, smoother than one box).
pub fn feather(mask: &mut [u8], width: usize, height: usize, reach: usize) {
    let blur = BoxBlur {
        channels: 1,
        blurred: 1,
        radius: reach.div_ceil(2),
        passes: 2,
        // The window shrinks at the frame's edge rather than repeating the edge pixel.
        edges: Edges::Shrink,
    };
    blur.apply(mask, &mut Vec::new(), width, height);
}

/// The model's last mask at frame size, reused between model runs (`mask-interval`, or while
/// the model thread works on a newer frame).
#[derive(Debug, Default)]
pub struct ModelMask {
    pixels: Vec<u8>,
    /// The frame size it was made for; `None` when there is none to reuse.
    size: Option<(usize, usize)>,
    /// The foreground colour the model gave with it (packed RGB), for models that give one;
    /// empty otherwise.
    foreground: Vec<u8>,
}

impl ModelMask {
    /// Whether there is a mask for a frame of this size.
    pub fn fits(&self, width: usize, height: usize) -> bool {
        self.size == Some((width, height))
    }

    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// The model's foreground colour for this mask (packed RGB, the frame's size), if it gave
    /// one.
    pub fn foreground(&self) -> Option<&[u8]> {
        (!self.foreground.is_empty()).then_some(&self.foreground[..])
    }

    /// The buffer of the foreground colour kept with the mask just made (packed RGB, empty
    /// for none), for the segmenter to swap its own into.
    pub fn foreground_buffer(&mut self) -> &mut Vec<u8> {
        &mut self.foreground
    }

    /// No frame may reuse the mask any more (a flush, new caps).
    pub fn forget(&mut self) {
        self.size = None;
    }

    /// Lets `make` write a new mask for a `width` x `height` frame into the kept buffer; on
    /// failure there is no mask to reuse.
    pub fn remake<E>(
        &mut self,
        width: usize,
        height: usize,
        make: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.size = None;
        self.foreground.clear();
        self.pixels.resize(width * height, 0);
        make(&mut self.pixels)?;
        self.size = Some((width, height));
        Ok(())
    }

    /// Takes a mask made elsewhere (the model thread); returns the old buffer for reuse.
    pub fn replace(&mut self, pixels: Vec<u8>, width: usize, height: usize) -> Vec<u8> {
        debug_assert_eq!(pixels.len(), width * height);
        self.size = Some((width, height));
        self.foreground.clear();
        std::mem::replace(&mut self.pixels, pixels)
    }
}

/// What happens to the model's mask before it is shown; all changeable while playing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskControls {
    /// rembg's `post_process_mask`.
    pub post_process: bool,
    /// 0 keeps the soft mask.
    pub threshold: u8,
    /// Edge softening, in pixels.
    pub feather: usize,
    /// Weight of the previous frame's mask, 0..1.
    pub temporal_smoothing: f64,
}

impl Default for MaskControls {
    fn default() -> Self {
        Self {
            post_process: false,
            threshold: 0,
            feather: 0,
            temporal_smoothing: 0.0,
        }
    }
}

/// The mask steps after the model, in order: post-processing, temporal smoothing (which keeps
/// the previous frame's result), threshold, feathering. Buffers are kept from frame to frame.
#[derive(Debug, Default)]
pub struct MaskChain {
    mask: Vec<u8>,
    /// The last smoothed mask, for `temporal_smoothing`.
    previous: Option<Vec<u8>>,
}

impl MaskChain {
    /// The next frame is not blended with the ones before it (a discontinuity).
    pub fn restart_smoothing(&mut self) {
        self.previous = None;
    }

    /// Runs the steps on `model_mask` (a `width` x `height` mask); the result lasts until the
    /// next call.
    pub fn apply(
        &mut self,
        model_mask: &[u8],
        width: usize,
        height: usize,
        controls: &MaskControls,
    ) -> &[u8] {
        self.mask.clear();
        self.mask.extend_from_slice(model_mask);
        if controls.post_process {
            rembg_post_process(&mut self.mask, width, height);
        }
        if controls.temporal_smoothing > 0.0 {
            if let Some(previous) = self
                .previous
                .as_ref()
                .filter(|p| p.len() == self.mask.len())
            {
                smooth_temporally(&mut self.mask, previous, controls.temporal_smoothing);
            }
            // The buffer is reused from frame to frame rather than allocated anew.
            let previous = self.previous.get_or_insert_with(Vec::new);
            previous.clear();
            previous.extend_from_slice(&self.mask);
        } else {
            self.previous = None;
        }
        threshold(&mut self.mask, controls.threshold);
        feather(&mut self.mask, width, height, controls.feather);
        &self.mask
    }

    /// The last result of [`MaskChain::apply`].
    pub fn result(&self) -> &[u8] {
        &self.mask
    }

    /// Multiplies the last result by `frame`'s own alpha (the fourth byte of each pixel), as
    /// rembg's cutout does for RGBA input: what is transparent in the input stays transparent.
    pub fn multiply_by_alpha(&mut self, frame: &ImageRef<'_>) -> &[u8] {
        if frame.layout.bytes_per_pixel == 4 {
            for (y, mask_row) in self
                .mask
                .chunks_mut(frame.width)
                .enumerate()
                .take(frame.height)
            {
                for (m, pixel) in mask_row.iter_mut().zip(frame.row(y).chunks_exact(4)) {
                    *m = ((u32::from(*m) * u32::from(pixel[3]) + 127) / 255) as u8;
                }
            }
        }
        &self.mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_removes_single_pixel_specks() {
        let (w, h) = (9, 9);
        let mut mask = vec![0u8; w * h];
        mask[4 * w + 4] = 255;
        rembg_post_process(&mut mask, w, h);
        assert!(mask.iter().all(|&v| v == 0));
    }

    #[test]
    fn post_process_keeps_a_solid_block_binary() {
        let (w, h) = (40, 30);
        let mut mask: Vec<u8> = (0..w * h)
            .map(|i| if (10..30).contains(&(i % w)) { 200 } else { 10 })
            .collect();
        rembg_post_process(&mut mask, w, h);
        assert!(mask.iter().all(|&v| v == 0 || v == 255));
        assert_eq!(mask[15 * w + 20], 255);
        assert_eq!(mask[15 * w + 2], 0);
    }

    #[test]
    fn threshold_zero_keeps_soft_values() {
        let mut mask = vec![0, 100, 127, 128, 255];
        threshold(&mut mask, 0);
        assert_eq!(mask, vec![0, 100, 127, 128, 255]);
        threshold(&mut mask, 128);
        assert_eq!(mask, vec![0, 0, 0, 255, 255]);
    }

    #[test]
    fn feather_softens_a_hard_edge_and_keeps_flat_areas() {
        let (w, h) = (40, 10);
        let mut mask: Vec<u8> = (0..w * h)
            .map(|i| if i % w < 20 { 0 } else { 255 })
            .collect();
        feather(&mut mask, w, h, 3);
        let row = &mask[5 * w..6 * w];
        assert_eq!(row[0], 0);
        assert_eq!(row[39], 255);
        assert!(
            row[18] > 0 && row[18] < 128 && row[21] > 128 && row[21] < 255,
            "{row:?}"
        );
    }

    #[test]
    fn smoothing_blends_with_the_previous_mask() {
        let mut mask = vec![0, 200];
        smooth_temporally(&mut mask, &[100, 0], 0.5);
        assert_eq!(mask, vec![50, 100]);
    }

    #[test]
    fn the_chain_smooths_against_the_previous_frame_until_restarted() {
        let controls = MaskControls {
            temporal_smoothing: 0.5,
            ..Default::default()
        };
        let mut chain = MaskChain::default();
        assert_eq!(chain.apply(&[200, 0], 2, 1, &controls), &[200, 0]);
        assert_eq!(chain.apply(&[0, 100], 2, 1, &controls), &[100, 50]);
        chain.restart_smoothing();
        assert_eq!(chain.apply(&[0, 100], 2, 1, &controls), &[0, 100]);
        // Smoothing off: nothing is remembered.
        assert_eq!(
            chain.apply(&[40, 40], 2, 1, &MaskControls::default()),
            &[40, 40]
        );
        assert_eq!(chain.apply(&[0, 0], 2, 1, &controls), &[0, 0]);
    }

    #[test]
    fn the_chain_thresholds_after_smoothing_and_leaves_the_model_mask_alone() {
        let controls = MaskControls {
            temporal_smoothing: 0.5,
            threshold: 100,
            ..Default::default()
        };
        let mut chain = MaskChain::default();
        let model_mask = [250u8, 10];
        assert_eq!(chain.apply(&model_mask, 2, 1, &controls), &[255, 0]);
        // Blended first (250*0.5 + 0*0.5 = 125), then thresholded.
        assert_eq!(chain.apply(&[0, 150], 2, 1, &controls), &[255, 0]);
        assert_eq!(model_mask, [250, 10]);
    }

    #[test]
    fn a_model_mask_fits_only_the_size_it_was_made_for() {
        let mut kept = ModelMask::default();
        assert!(!kept.fits(2, 2));
        kept.remake(2, 2, |pixels| {
            pixels.fill(7);
            Ok::<(), ()>(())
        })
        .unwrap();
        assert!(kept.fits(2, 2) && !kept.fits(4, 1));
        assert_eq!(kept.pixels(), &[7; 4]);
        assert!(kept.remake(2, 2, |_| Err(())).is_err());
        assert!(!kept.fits(2, 2), "a failed run leaves nothing to reuse");
        let old = kept.replace(vec![9; 4], 2, 2);
        assert_eq!(old.len(), 4);
        assert!(kept.fits(2, 2));
        kept.forget();
        assert!(!kept.fits(2, 2));
    }

    #[test]
    fn the_input_alpha_multiplies_the_mask() {
        use crate::imageops::PixelLayout;
        let mut chain = MaskChain::default();
        chain.apply(&[255, 255, 128, 0], 4, 1, &MaskControls::default());
        let rgba = [9, 9, 9, 255, 9, 9, 9, 0, 9, 9, 9, 128, 9, 9, 9, 255];
        let frame = ImageRef::packed(&rgba, 4, 1, PixelLayout::RGBX);
        assert_eq!(chain.multiply_by_alpha(&frame), &[255, 0, 64, 0]);
    }
}
