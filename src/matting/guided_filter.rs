//! Edge refinement for live video: the fast guided filter (He and Sun, "Fast guided filter",
//! 2015) of the model's mask with the frame's colour as the guide. In each window the refined
//! mask is a linear function of the colour, `q = a . I + b`, fitted to the mask by least
//! squares with `epsilon` keeping flat windows flat; the coefficients, averaged over the windows
//! that cover a pixel, follow the frame's edges, so an upscaled, blurry mask edge is pulled
//! onto the edge in the picture.
//!
//! As in the fast version the fit is made on a copy reduced by area averaging to about
//! [`WORKING_SIDE`] pixels on its longer side, and the coefficients are interpolated back
//! bilinearly: one pass over the frame at full resolution.

use rayon::prelude::*;

use super::box_filter::{Widened, area_means, box_mean, has_avx2, rounded_byte};
use crate::imageops::ImageRef;

/// Longer side of the reduced copy the fit is made on.
pub const WORKING_SIDE: usize = 400;

/// The guided filter's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuidedFilterParams {
    /// Window radius in pixels of the full-resolution frame.
    pub radius: usize,
    /// Regularisation of the fit, in squared colour units of 0..1: larger keeps more of the
    /// mask where the colour varies little.
    pub epsilon: f64,
}

/// Refines masks by the guided filter, keeping its buffers from frame to frame.
#[derive(Debug, Default)]
pub struct GuidedFilter {
    /// The reduced frame: colour (lanes 0-2) and mask (3).
    means: Vec<[f64; 4]>,
    /// Per reduced pixel: the colour (lanes 0-2), the mask (3), the mask times the colour
    /// (4-6), the colour's products r*r, r*g, r*b, g*g, g*b, b*b (7-12); then their means.
    /// In f64: the fit subtracts products of means from means of products.
    moments: Vec<[f64; 13]>,
    moments_scratch: Vec<[f64; 13]>,
    /// Per reduced pixel: a (lanes 0-2) and b (3, in bytes), then their means.
    coefficients: Vec<[f32; 4]>,
    coefficients_scratch: Vec<[f32; 4]>,
    /// The coefficients' means at full width, a plane per lane.
    widened: Widened,
}

impl GuidedFilter {
    /// Replaces `mask` (one byte a pixel) by its guided filter with `image` as the guide.
    pub fn refine(&mut self, image: &ImageRef<'_>, mask: &mut [u8], params: &GuidedFilterParams) {
        let (width, height) = (image.width, image.height);
        assert_eq!(mask.len(), width * height, "one mask byte per pixel");
        if width == 0 || height == 0 {
            return;
        }
        let factor = width.max(height).div_ceil(WORKING_SIDE).max(1);
        let (reduced_width, reduced_height) = (width.div_ceil(factor), height.div_ceil(factor));
        let radius = ((params.radius as f32 / factor as f32).round() as usize).max(1);
        self.reduce(image, mask, factor);
        box_mean(
            &mut self.moments,
            &mut self.moments_scratch,
            reduced_width,
            reduced_height,
            radius,
        );
        let epsilon = params.epsilon;
        self.coefficients.clear();
        self.coefficients
            .par_extend(self.moments.par_iter().map(|m| fit(m, epsilon)));
        box_mean(
            &mut self.coefficients,
            &mut self.coefficients_scratch,
            reduced_width,
            reduced_height,
            radius,
        );

        self.widened.widen(
            &self.coefficients,
            reduced_width,
            width,
            factor,
            [0, 1, 2, 3],
        );
        let widened = &self.widened;
        let avx2 = has_avx2();
        mask.par_chunks_mut(width)
            .enumerate()
            .for_each(|(y, mask_row)| {
                let (rows, weight) = widened.rows(y);
                let bpp = image.layout.bytes_per_pixel;
                apply_fit_row(image.row(y), bpp, rows, weight, mask_row, avx2);
            });
    }

    /// The reduced frame's colour and mask, and the products the fit needs.
    fn reduce(&mut self, image: &ImageRef<'_>, mask: &[u8], factor: usize) {
        area_means(image, mask, factor, &mut self.means);
        self.moments.clear();
        self.moments
            .par_extend(self.means.par_iter().map(|&[r, g, b, p]| {
                [
                    r,
                    g,
                    b,
                    p,
                    p * r,
                    p * g,
                    p * b,
                    r * r,
                    r * g,
                    r * b,
                    g * g,
                    g * b,
                    b * b,
                ]
            }));
    }
}

/// One row of the refined mask, `q = a . I + b` per pixel: the coefficients blended between
/// two widened rows (`a` in the first three planes, `b` in bytes in the fourth) by `weight`,
/// the colours those of `pixels` (`bpp` bytes a pixel, colour first). Compiled for the common
/// pixel sizes and, where the CPU has it, for AVX2: the same floats every way (no operation is
/// fused or reordered).
fn apply_fit_row(
    pixels: &[u8],
    bpp: usize,
    rows: (&[f32], &[f32]),
    weight: f32,
    mask_row: &mut [u8],
    avx2: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: the caller found AVX2.
        unsafe {
            match bpp {
                3 => return apply_fit_avx2::<3>(pixels, rows, weight, mask_row),
                4 => return apply_fit_avx2::<4>(pixels, rows, weight, mask_row),
                _ => {}
            }
        }
    }
    let _ = avx2;
    match bpp {
        3 => apply_fit::<3>(pixels, rows, weight, mask_row),
        4 => apply_fit::<4>(pixels, rows, weight, mask_row),
        _ => apply_fit::<0>(pixels, rows, weight, mask_row),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn apply_fit_avx2<const BPP: usize>(
    pixels: &[u8],
    rows: (&[f32], &[f32]),
    weight: f32,
    mask_row: &mut [u8],
) {
    apply_fit::<BPP>(pixels, rows, weight, mask_row)
}

/// [`apply_fit_row`] with `BPP` bytes a pixel (0: the row's own, `pixels.len() / width`).
#[inline(always)]
fn apply_fit<const BPP: usize>(
    pixels: &[u8],
    (top, bottom): (&[f32], &[f32]),
    weight: f32,
    mask_row: &mut [u8],
) {
    let width = mask_row.len();
    let bpp = if BPP == 0 {
        pixels.len() / width.max(1)
    } else {
        BPP
    };
    fn plane(rows: &[f32], plane: usize, width: usize) -> &[f32] {
        &rows[plane * width..][..width]
    }
    let [t0, t1, t2, t3] = [0, 1, 2, 3].map(|p| plane(top, p, width));
    let [b0, b1, b2, b3] = [0, 1, 2, 3].map(|p| plane(bottom, p, width));
    let pixels = &pixels[..width * bpp];
    for x in 0..width {
        let blend = |t: &[f32], b: &[f32]| t[x] + (b[x] - t[x]) * weight;
        let c = [blend(t0, b0), blend(t1, b1), blend(t2, b2), blend(t3, b3)];
        mask_row[x] = refined(&pixels[x * bpp..x * bpp + 3], c);
    }
}

/// `q = a . I + b` with I and q in bytes (b was scaled to bytes by the fit), rounded.
#[inline(always)]
fn refined(pixel: &[u8], c: [f32; 4]) -> u8 {
    let q =
        c[0] * f32::from(pixel[0]) + c[1] * f32::from(pixel[1]) + c[2] * f32::from(pixel[2]) + c[3];
    rounded_byte(q)
}

/// The window's least-squares fit `p = a . I + b` from its means: `a = (Sigma + epsilon U)^-1
/// cov(I, p)`, `b = mean(p) - a . mean(I)`, in f64: on a flat window the covariances are
/// differences of nearly equal numbers and the determinant is tiny.
fn fit(moments: &[f64; 13], epsilon: f64) -> [f32; 4] {
    let m = moments;
    let mean = [m[0], m[1], m[2]];
    let mean_p = m[3];
    let covariance = [
        m[4] - mean[0] * mean_p,
        m[5] - mean[1] * mean_p,
        m[6] - mean[2] * mean_p,
    ];
    let s00 = m[7] - mean[0] * mean[0] + epsilon;
    let s01 = m[8] - mean[0] * mean[1];
    let s02 = m[9] - mean[0] * mean[2];
    let s11 = m[10] - mean[1] * mean[1] + epsilon;
    let s12 = m[11] - mean[1] * mean[2];
    let s22 = m[12] - mean[2] * mean[2] + epsilon;
    // The inverse by cofactors of the symmetric matrix.
    let c00 = s11 * s22 - s12 * s12;
    let c01 = s02 * s12 - s01 * s22;
    let c02 = s01 * s12 - s02 * s11;
    let c11 = s00 * s22 - s02 * s02;
    let c12 = s01 * s02 - s00 * s12;
    let c22 = s00 * s11 - s01 * s01;
    let determinant = s00 * c00 + s01 * c01 + s02 * c02;
    if !(determinant.is_finite() && determinant > 0.0) {
        return [0.0, 0.0, 0.0, (mean_p * 255.0) as f32];
    }
    let a = [
        (c00 * covariance[0] + c01 * covariance[1] + c02 * covariance[2]) / determinant,
        (c01 * covariance[0] + c11 * covariance[1] + c12 * covariance[2]) / determinant,
        (c02 * covariance[0] + c12 * covariance[1] + c22 * covariance[2]) / determinant,
    ];
    let b = mean_p - a[0] * mean[0] - a[1] * mean[1] - a[2] * mean[2];
    // b in bytes, as the guide's colour comes at full resolution.
    [a[0] as f32, a[1] as f32, a[2] as f32, (b * 255.0) as f32]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imageops::PixelLayout;
    use crate::matting::test_data;

    #[test]
    fn every_build_of_the_row_pass_gives_the_bytes_of_the_formula() {
        let width = 301;
        // Coefficients that send q below 0 and above 255, and a NaN (taken as 0).
        let planes = |seed| -> Vec<f32> {
            let mut values: Vec<f32> = test_data::noise_floats(4 * width, seed)
                .iter()
                .map(|v| v * 4.0 - 2.0)
                .collect();
            for b in &mut values[3 * width..] {
                *b *= 200.0;
            }
            values[5] = f32::NAN;
            values
        };
        let (top, bottom) = (planes(1), planes(2));
        let weight = 0.37;
        let colours: Vec<u8> = test_data::noise_floats(3 * width, 3)
            .iter()
            .map(|v| (v * 255.0) as u8)
            .collect();
        let expected: Vec<u8> = (0..width)
            .map(|x| {
                let c = [0, 1, 2, 3].map(|p| {
                    let (t, b) = (top[p * width + x], bottom[p * width + x]);
                    t + (b - t) * weight
                });
                let pixel = &colours[3 * x..][..3];
                let q = c[0] * f32::from(pixel[0])
                    + c[1] * f32::from(pixel[1])
                    + c[2] * f32::from(pixel[2])
                    + c[3];
                if q.is_nan() {
                    0
                } else {
                    (q.clamp(0.0, 255.0) + 0.5) as u8
                }
            })
            .collect();
        assert!(expected.contains(&0) && expected.contains(&255));
        for bpp in [3, 4, 5] {
            let pixels = test_data::pixels_of(&colours, bpp);
            for avx2 in [false, has_avx2()] {
                let mut mask = vec![0; width];
                apply_fit_row(&pixels, bpp, (&top, &bottom), weight, &mut mask, avx2);
                assert_eq!(mask, expected, "{bpp} bytes a pixel, AVX2 {avx2}");
            }
        }
    }

    fn params() -> GuidedFilterParams {
        GuidedFilterParams {
            radius: 4,
            epsilon: 1e-5,
        }
    }

    #[test]
    fn a_blurry_mask_edge_snaps_to_the_frames_edge() {
        // Two flat colours meeting at x = 30; the mask's edge is a ramp 10 pixels wide around
        // x = 31 (a model's upscaled edge). The refined mask keeps its local mean (the filter
        // preserves it) but steps at the colour edge.
        let (width, height) = (64, 24);
        let mut image = Vec::new();
        let mut mask = Vec::new();
        for _ in 0..height {
            for x in 0..width {
                image.extend(if x < 30 {
                    [200u8, 60, 40]
                } else {
                    [30, 90, 210]
                });
                let ramp = (x as f32 - 26.0) / 10.0;
                mask.push((255.0 * (1.0 - ramp.clamp(0.0, 1.0))) as u8);
            }
        }
        // The steepest step along a row, and where it is.
        let steepest = |mask: &[u8]| {
            let row = &mask[12 * width..13 * width];
            (1..width)
                .map(|x| (row[x - 1].abs_diff(row[x]), x))
                .max()
                .unwrap()
        };
        let (before, _) = steepest(&mask);
        GuidedFilter::default().refine(
            &ImageRef::packed(&image, width, height, PixelLayout::RGB),
            &mut mask,
            &GuidedFilterParams {
                radius: 8,
                epsilon: 1e-5,
            },
        );
        let (after, at) = steepest(&mask);
        assert_eq!(
            at,
            30,
            "the step is at the colour edge: {:?}",
            &mask[12 * width..13 * width]
        );
        assert!(after >= 4 * before, "a step of {before} became {after}");
    }

    #[test]
    fn flat_frames_and_uniform_masks_stay_as_they_are() {
        for (fill, colour) in [
            (0u8, [10u8, 10, 10]),
            (255, [250, 250, 250]),
            (128, [90, 20, 200]),
        ] {
            let (width, height) = (40, 30);
            let image: Vec<u8> = (0..width * height).flat_map(|_| colour).collect();
            let mut mask = vec![fill; width * height];
            GuidedFilter::default().refine(
                &ImageRef::packed(&image, width, height, PixelLayout::RGB),
                &mut mask,
                &params(),
            );
            assert!(
                mask.iter().all(|&m| m.abs_diff(fill) <= 1),
                "{fill}: {mask:?}"
            );
        }
    }

    #[test]
    fn tiny_and_large_frames_are_handled() {
        for (width, height) in [(1, 1), (2, 1), (1, 9), (1001, 3), (3, 1001), (1920, 1080)] {
            let image: Vec<u8> = (0..width * height * 4)
                .map(|i| (i * 13 % 256) as u8)
                .collect();
            let mut mask: Vec<u8> = (0..width * height).map(|i| (i * 7 % 256) as u8).collect();
            GuidedFilter::default().refine(
                &ImageRef::packed(&image, width, height, PixelLayout::RGBX),
                &mut mask,
                &params(),
            );
        }
    }
}
