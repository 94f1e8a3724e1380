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

use super::box_filter::{Widened, area_means, box_mean, has_avx2, rounded_byte};
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
    /// The means at full width: per reduced row, [`PLANES`] planes (the foreground's colour,
    /// then the background's).
    widened: Widened,
}

/// Planes of a widened row of means: foreground red, green, blue, background red, green, blue.
const PLANES: usize = 6;

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

        // Bilinear means at full resolution: along the rows once per frame, into planes of
        // the foreground's and the background's colour, then per row a blend of two of those.
        self.widened.widen(
            &self.means,
            reduced_width,
            width,
            factor,
            [0, 1, 2, 4, 5, 6],
        );
        let widened = &self.widened;
        let avx2 = has_avx2();
        out.par_chunks_mut(width * bpp)
            .zip(alpha.par_chunks(width))
            .enumerate()
            .for_each(|(y, (out_row, alpha_row))| {
                let (rows, weight) = widened.rows(y);
                correct_row(image.row(y), bpp, alpha_row, rows, weight, out_row, avx2);
            });
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

/// One row's estimate: where the row's alpha is partial (from its first such pixel to its
/// last), the colour of `source` (`bpp` bytes a pixel, colour first) corrected by the means
/// blended between two widened rows by `weight`, written to `out_row`'s colour bytes; the other
/// pixels keep theirs. Compiled for the common pixel sizes and, where the CPU has it, for AVX2:
/// the same floats every way (no operation is fused or reordered).
fn correct_row(
    source: &[u8],
    bpp: usize,
    alpha_row: &[u8],
    rows: (&[f32], &[f32]),
    weight: f32,
    out_row: &mut [u8],
    avx2: bool,
) {
    let partial = |&a: &u8| a != 0 && a != 255;
    let Some(first) = alpha_row.iter().position(partial) else {
        return;
    };
    let end = alpha_row
        .iter()
        .rposition(partial)
        .map_or(first, |last| last + 1);
    let span = Span {
        first,
        end,
        width: alpha_row.len(),
    };
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: the caller found AVX2.
        unsafe {
            match bpp {
                3 => return correct_span_avx2::<3>(source, alpha_row, rows, weight, out_row, span),
                4 => return correct_span_avx2::<4>(source, alpha_row, rows, weight, out_row, span),
                _ => {}
            }
        }
    }
    let _ = avx2;
    match bpp {
        3 => correct_span::<3>(source, alpha_row, rows, weight, out_row, span),
        4 => correct_span::<4>(source, alpha_row, rows, weight, out_row, span),
        _ => correct_span::<0>(source, alpha_row, rows, weight, out_row, span),
    }
}

/// The pixels `first..end` of a row `width` pixels long.
#[derive(Clone, Copy)]
struct Span {
    first: usize,
    end: usize,
    width: usize,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn correct_span_avx2<const BPP: usize>(
    source: &[u8],
    alpha_row: &[u8],
    rows: (&[f32], &[f32]),
    weight: f32,
    out_row: &mut [u8],
    span: Span,
) {
    correct_span::<BPP>(source, alpha_row, rows, weight, out_row, span)
}

/// [`correct_row`] over `span`, `BPP` bytes a pixel (0: the row's own, `source.len() / width`).
#[inline(always)]
fn correct_span<const BPP: usize>(
    source: &[u8],
    alpha_row: &[u8],
    (top, bottom): (&[f32], &[f32]),
    weight: f32,
    out_row: &mut [u8],
    Span { first, end, width }: Span,
) {
    let bpp = if BPP == 0 {
        source.len() / width.max(1)
    } else {
        BPP
    };
    let length = end - first;
    fn planes(rows: &[f32], width: usize, first: usize, length: usize) -> [&[f32]; PLANES] {
        std::array::from_fn(|p| &rows[p * width + first..][..length])
    }
    let top = planes(top, width, first, length);
    let bottom = planes(bottom, width, first, length);
    let alpha_row = &alpha_row[first..end];
    let source = &source[first * bpp..end * bpp];
    let out_row = &mut out_row[first * bpp..end * bpp];
    // First every pixel of the span into a plane per channel, several pixels to a vector
    // instruction; then those of partial alpha into the row.
    let mut estimates = [[0u8; SPAN_PIECE]; 3];
    for piece in (0..length).step_by(SPAN_PIECE) {
        let pixels = piece..(piece + SPAN_PIECE).min(length);
        for (i, x) in pixels.clone().enumerate() {
            let mean: [f32; PLANES] =
                std::array::from_fn(|p| top[p][x] + (bottom[p][x] - top[p][x]) * weight);
            let pixel = &source[x * bpp..][..3];
            let colour = [0, 1, 2].map(|c| f32::from(pixel[c]) / 255.0);
            let estimate = correct(
                f32::from(alpha_row[x]) / 255.0,
                colour,
                [mean[0], mean[1], mean[2]],
                [mean[3], mean[4], mean[5]],
            );
            for (plane, value) in estimates.iter_mut().zip(estimate) {
                plane[i] = rounded_byte(value * 255.0);
            }
        }
        for (i, x) in pixels.enumerate() {
            if alpha_row[x] != 0 && alpha_row[x] != 255 {
                let pixel = &mut out_row[x * bpp..][..3];
                pixel.copy_from_slice(&[estimates[0][i], estimates[1][i], estimates[2][i]]);
            }
        }
    }
}

/// Pixels of a span estimated before they are written back.
const SPAN_PIECE: usize = 256;

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
    use crate::matting::test_data;

    #[test]
    fn every_build_of_the_row_pass_corrects_partial_pixels_alone_as_the_formula_does() {
        // Longer than a piece of the span; partial alpha from well inside the row to near its
        // end, with opaque and transparent pixels among it.
        let width = 2 * SPAN_PIECE + 45;
        let mut alpha = test_data::noise_bytes(width, 1);
        alpha[..37].fill(0);
        alpha[width - 5..].fill(255);
        for x in (40..width).step_by(9) {
            alpha[x] = if x % 2 == 0 { 0 } else { 255 };
        }
        let planes = |seed| -> Vec<f32> { test_data::noise_floats(PLANES * width, seed) };
        let (top, bottom) = (planes(2), planes(3));
        let weight = 0.61;
        let colours = test_data::noise_bytes(3 * width, 4);
        let expected: Vec<[u8; 3]> = (0..width)
            .map(|x| {
                let colour: [u8; 3] = colours[3 * x..][..3].try_into().unwrap();
                let a = alpha[x];
                if a == 0 || a == 255 {
                    return colour;
                }
                let mean: [f32; PLANES] = std::array::from_fn(|p| {
                    let (t, b) = (top[p * width + x], bottom[p * width + x]);
                    t + (b - t) * weight
                });
                correct(
                    f32::from(a) / 255.0,
                    colour.map(|c| f32::from(c) / 255.0),
                    [mean[0], mean[1], mean[2]],
                    [mean[3], mean[4], mean[5]],
                )
                .map(|v| (v * 255.0 + 0.5) as u8)
            })
            .collect();
        for bpp in [3, 4, 5] {
            let pixels = test_data::pixels_of(&colours, bpp);
            for avx2 in [false, has_avx2()] {
                let mut out = pixels.clone();
                correct_row(
                    &pixels,
                    bpp,
                    &alpha,
                    (&top, &bottom),
                    weight,
                    &mut out,
                    avx2,
                );
                for (x, (pixel, expected)) in out.chunks(bpp).zip(&expected).enumerate() {
                    assert_eq!(&pixel[..3], expected, "pixel {x}, {bpp} bytes, AVX2 {avx2}");
                    assert!(
                        pixel[3..].iter().all(|&b| b == test_data::FILLER),
                        "only colour is written"
                    );
                }
            }
        }
        // A row with no partial alpha is left as it is.
        let mut out = colours.clone();
        correct_row(
            &colours,
            3,
            &vec![255; width],
            (&top, &bottom),
            weight,
            &mut out,
            has_avx2(),
        );
        assert_eq!(out, colours);
    }

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
