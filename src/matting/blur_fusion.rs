//! Fast foreground colour estimation: blur-fusion (Forte and Pitié, "Approximate fast foreground
//! colour estimation", ICIP 2021, their estimator 2). The foreground near a pixel is the
//! alpha-weighted mean colour around it, the background the (1 - alpha)-weighted one, and the
//! pixel's colour is corrected by what that pair leaves unexplained:
//! `F = F^ + alpha (I - alpha F^ - (1 - alpha) B^)`, first with a wide window on the image,
//! then with a narrow one on that first estimate.
//!
//! The windows' sums are taken on a copy of the frame reduced by area averaging to about
//! [`WORKING_SIDE`] pixels on its longer side (the wide window spans a tenth of a 1080p frame,
//! so nothing of it is lost), and the correction is applied at full resolution with the means
//! interpolated bilinearly: its cost is one pass over the frame.

use rayon::prelude::*;

use super::box_filter::{area_means, box_mean, taps};
use super::has_partial_alpha;
use crate::imageops::ImageRef;

/// Longer side of the reduced copy the windows are summed on.
pub const WORKING_SIDE: usize = 480;
/// The paper's window sides at full resolution: 90 pixels, then 6.
const WIDE_WINDOW: f32 = 90.0;
const NARROW_WINDOW: f32 = 6.0;
/// Keeps a mean of no foreground (or no background) finite, as the paper's code does.
const EPSILON: f32 = 1e-5;

/// Channels summed per pixel of the reduced copy: alpha, colour x alpha, colour x (1 - alpha).
type Sums = [f32; 8];

/// Estimates foreground colours by blur-fusion, keeping its buffers from frame to frame.
#[derive(Debug, Default)]
pub struct BlurFusionEstimator {
    area_means: Vec<[f64; 4]>,
    /// The reduced frame: alpha, colour (lanes 1-3).
    reduced: Vec<[f32; 4]>,
    sums: Vec<Sums>,
    scratch: Vec<Sums>,
    /// Per reduced pixel, the second pass's foreground (lanes 0-2) and background (4-6) means.
    means: Vec<[f32; 8]>,
    /// Per full-resolution column, its two reduced columns and the second's weight.
    column_taps: Vec<(usize, usize, f32)>,
}

impl BlurFusionEstimator {
    /// Writes the estimated foreground colour into the colour bytes (the first three) of the
    /// pixels of `out` (packed, `image`'s layout) whose alpha is neither 0 nor 255.
    pub fn estimate(&mut self, image: &ImageRef<'_>, alpha: &[u8], out: &mut [u8]) {
        if !has_partial_alpha(image, alpha, out) {
            return;
        }
        let (width, height) = (image.width, image.height);
        let bpp = image.layout.bytes_per_pixel;
        let factor = width.max(height).div_ceil(WORKING_SIDE).max(1);
        let (reduced_width, reduced_height) = (width.div_ceil(factor), height.div_ceil(factor));
        self.reduce(image, alpha, factor);
        let radius = |window: f32| ((window / 2.0 / factor as f32).round() as usize).max(1);

        // First pass on the image itself: F = B = I.
        self.sums.clear();
        self.sums.extend(self.reduced.iter().map(|&[a, r, g, b]| {
            let colour = [r, g, b];
            let mut sums = [0.0; 8];
            sums[0] = a;
            for c in 0..3 {
                sums[1 + c] = colour[c] * a;
                sums[4 + c] = colour[c] * (1.0 - a);
            }
            sums
        }));
        box_mean(
            &mut self.sums,
            &mut self.scratch,
            reduced_width,
            reduced_height,
            radius(WIDE_WINDOW),
        );
        // Second pass: the first pass's foreground and its background means.
        for (sums, &[a, r, g, b]) in self.sums.iter_mut().zip(&self.reduced) {
            let (foreground, background) = means_of(sums);
            let corrected = correct(a, [r, g, b], foreground, background);
            for c in 0..3 {
                sums[1 + c] = corrected[c] * a;
                sums[4 + c] = background[c] * (1.0 - a);
            }
            sums[0] = a;
        }
        box_mean(
            &mut self.sums,
            &mut self.scratch,
            reduced_width,
            reduced_height,
            radius(NARROW_WINDOW),
        );
        self.means.clear();
        self.means.extend(self.sums.iter().map(|sums| {
            let (f, b) = means_of(sums);
            [f[0], f[1], f[2], 0.0, b[0], b[1], b[2], 0.0]
        }));

        // Bilinear means at full resolution: the vertical step once per row (on the reduced
        // width), the horizontal one per pixel of the band, with its taps computed once.
        let means = &self.means;
        let scale = 1.0 / factor as f32;
        self.column_taps.clear();
        self.column_taps
            .extend((0..width).map(|x| taps(x, scale, reduced_width)));
        let column_taps = &self.column_taps;
        out.par_chunks_mut(width * bpp)
            .zip(alpha.par_chunks(width))
            .enumerate()
            .for_each_init(
                || vec![[0f32; 8]; reduced_width],
                |row_means, (y, (out_row, alpha_row))| {
                    let (y0, y1, wy) = taps(y, scale, reduced_height);
                    let (top, bottom) = (
                        &means[y0 * reduced_width..][..reduced_width],
                        &means[y1 * reduced_width..][..reduced_width],
                    );
                    for ((mean, t), b) in row_means.iter_mut().zip(top).zip(bottom) {
                        *mean = std::array::from_fn(|lane| t[lane] + (b[lane] - t[lane]) * wy);
                    }
                    let source = image.row(y);
                    for (x, &a) in alpha_row.iter().enumerate() {
                        if a == 0 || a == 255 {
                            continue;
                        }
                        let (x0, x1, wx) = column_taps[x];
                        let (left, right) = (&row_means[x0], &row_means[x1]);
                        let mean: [f32; 8] = std::array::from_fn(|lane| {
                            left[lane] + (right[lane] - left[lane]) * wx
                        });
                        let pixel = &source[x * bpp..][..3];
                        let colour = [0, 1, 2].map(|c| f32::from(pixel[c]) / 255.0);
                        let estimate = correct(
                            f32::from(a) / 255.0,
                            colour,
                            [mean[0], mean[1], mean[2]],
                            [mean[4], mean[5], mean[6]],
                        );
                        for (byte, value) in out_row[x * bpp..][..3].iter_mut().zip(estimate) {
                            *byte = (value * 255.0 + 0.5) as u8;
                        }
                    }
                },
            );
    }

    /// The reduced frame: alpha, then colour (lanes 1-3).
    fn reduce(&mut self, image: &ImageRef<'_>, alpha: &[u8], factor: usize) {
        area_means(image, alpha, factor, &mut self.area_means);
        self.reduced.clear();
        self.reduced.extend(
            self.area_means
                .iter()
                .map(|&[r, g, b, a]| [a as f32, r as f32, g as f32, b as f32]),
        );
    }
}

/// The foreground and background means of a window's sums.
fn means_of(sums: &Sums) -> ([f32; 3], [f32; 3]) {
    let alpha = sums[0];
    let foreground = [1, 2, 3].map(|lane| sums[lane] / (alpha + EPSILON));
    let background = [4, 5, 6].map(|lane| sums[lane] / ((1.0 - alpha) + EPSILON));
    (foreground, background)
}

/// `F^ + alpha (I - alpha F^ - (1 - alpha) B^)`, clamped to 0..1.
fn correct(alpha: f32, colour: [f32; 3], foreground: [f32; 3], background: [f32; 3]) -> [f32; 3] {
    std::array::from_fn(|c| {
        let unexplained = colour[c] - alpha * foreground[c] - (1.0 - alpha) * background[c];
        (foreground[c] + alpha * unexplained).clamp(0.0, 1.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imageops::PixelLayout;

    #[test]
    fn a_blend_of_two_flat_colours_gives_back_the_foreground_colour() {
        let (width, height) = (64, 40);
        let alpha_at = |x: usize| match x {
            0..28 => 255u8,
            28..36 => (255 - (x - 27) * 28) as u8,
            _ => 0,
        };
        let (front, back) = ([220.0f32, 30.0, 20.0], [10.0f32, 40.0, 230.0]);
        let (mut image, mut alpha) = (Vec::new(), Vec::new());
        for _ in 0..height {
            for x in 0..width {
                let a = f32::from(alpha_at(x)) / 255.0;
                alpha.push(alpha_at(x));
                image.extend((0..3).map(|c| (a * front[c] + (1.0 - a) * back[c]).round() as u8));
            }
        }
        let mut out = image.clone();
        BlurFusionEstimator::default().estimate(
            &ImageRef::packed(&image, width, height, PixelLayout::RGB),
            &alpha,
            &mut out,
        );
        for (i, &a) in alpha.iter().enumerate() {
            let pixel = &out[i * 3..][..3];
            if a != 0 && a != 255 {
                for c in 0..3 {
                    assert!(
                        (f32::from(pixel[c]) - front[c]).abs() <= 12.0,
                        "alpha {a}: {pixel:?} is not the foreground {front:?}"
                    );
                }
            } else {
                assert_eq!(pixel, &image[i * 3..][..3]);
            }
        }
    }

    #[test]
    fn frames_larger_than_the_working_size_and_tiny_ones_are_handled() {
        for (width, height) in [(1, 1), (2, 1), (1, 9), (1001, 3), (3, 1001)] {
            let image: Vec<u8> = (0..width * height * 4)
                .map(|i| (i * 13 % 256) as u8)
                .collect();
            let alpha: Vec<u8> = (0..width * height).map(|i| (i * 7 % 256) as u8).collect();
            let mut out = image.clone();
            BlurFusionEstimator::default().estimate(
                &ImageRef::packed(&image, width, height, PixelLayout::RGBX),
                &alpha,
                &mut out,
            );
            // The fourth byte is never touched.
            assert!(
                out.chunks(4)
                    .zip(image.chunks(4))
                    .all(|(o, i)| o[3] == i[3])
            );
        }
    }
}
