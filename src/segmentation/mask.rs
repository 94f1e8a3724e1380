//! Operations on 8-bit masks after the model: rembg's post-processing, temporal smoothing,
//! thresholding and feathering. Masks are packed, one byte per pixel.

use crate::imageops::{BoxBlur, Edges};
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
}
