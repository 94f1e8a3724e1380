//! Windowed means on a reduced copy of a frame, shared by the matting steps that work at low
//! resolution (blur-fusion, the guided filter): the reduction itself, box means with windows
//! that shrink at the frame's edges, and the bilinear taps that bring a reduced plane back to
//! full resolution.

use rayon::prelude::*;

use crate::imageops::ImageRef;

/// Area-averages the colour (the first three bytes of each pixel) and `mask` (one byte a
/// pixel) of `image` over `factor` x `factor` blocks, smaller at the right and bottom edges:
/// `[c0, c1, c2, mask]` in 0..1 per block, `image.width.div_ceil(factor)` blocks a row.
pub fn area_means(image: &ImageRef<'_>, mask: &[u8], factor: usize, out: &mut Vec<[f64; 4]>) {
    let (width, height, bpp) = (image.width, image.height, image.layout.bytes_per_pixel);
    let (reduced_width, reduced_height) = (width.div_ceil(factor), height.div_ceil(factor));
    // Every value is written below: kept values need no zeroing.
    out.resize(reduced_width * reduced_height, [0.0; 4]);
    out.par_chunks_mut(reduced_width).enumerate().for_each_init(
        || (vec![0u32; width * bpp], vec![0u32; width]),
        |(colour_sums, mask_sums), (ry, reduced_row)| {
            // The block's rows summed per column first (whole rows at once, several bytes to a
            // vector instruction), then the columns per block.
            colour_sums.fill(0);
            mask_sums.fill(0);
            let rows = ry * factor..((ry + 1) * factor).min(height);
            let row_count = rows.len();
            for y in rows {
                for (sum, &value) in colour_sums.iter_mut().zip(image.row(y)) {
                    *sum += u32::from(value);
                }
                for (sum, &value) in mask_sums.iter_mut().zip(&mask[y * width..][..width]) {
                    *sum += u32::from(value);
                }
            }
            let blocks = colour_sums
                .chunks(factor * bpp)
                .zip(mask_sums.chunks(factor));
            for (cell, (colours, masks)) in reduced_row.iter_mut().zip(blocks) {
                let mut sum = [0u32; 4];
                for pixel in colours.chunks_exact(bpp) {
                    sum[0] += pixel[0];
                    sum[1] += pixel[1];
                    sum[2] += pixel[2];
                }
                sum[3] = masks.iter().sum();
                let count = (row_count * masks.len()) as f64 * 255.0;
                *cell = sum.map(|s| f64::from(s) / count);
            }
        },
    );
}

/// The two reduced pixels around full-resolution pixel `i` and the weight of the second.
pub fn taps(i: usize, scale: f32, size: usize) -> (usize, usize, f32) {
    let position = ((i as f32 + 0.5) * scale - 0.5).max(0.0);
    let first = (position as usize).min(size - 1);
    let second = (first + 1).min(size - 1);
    (first, second, position - first as f32)
}

/// A reduced plane brought back to full resolution, bilinearly: interpolated along its rows to
/// full width once per frame, the lanes asked for each into a plane of its own, so that each
/// full-resolution row is a blend of two such rows over consecutive pixels (several to a vector
/// instruction). Keeps its buffers from frame to frame.
#[derive(Debug, Default)]
pub struct Widened {
    /// Per full-resolution column, its two reduced columns and the second's weight.
    column_taps: Vec<(usize, usize, f32)>,
    /// Per reduced row, a plane per lane, each `width` values.
    planes: Vec<f32>,
    width: usize,
    lanes: usize,
    scale: f32,
    reduced_height: usize,
}

impl Widened {
    /// Widens `reduced` (`N` lanes a pixel, `reduced_width` pixels a row, a frame `width`
    /// pixels wide reduced by `factor`): lane `lanes[l]` of row `r`, column `x` is kept at
    /// plane `l`.
    pub fn widen<const N: usize, const L: usize>(
        &mut self,
        reduced: &[[f32; N]],
        reduced_width: usize,
        width: usize,
        factor: usize,
        lanes: [usize; L],
    ) {
        let reduced_height = reduced.len() / reduced_width.max(1);
        self.scale = 1.0 / factor as f32;
        self.width = width;
        self.lanes = L;
        self.reduced_height = reduced_height;
        self.column_taps.clear();
        self.column_taps
            .extend((0..width).map(|x| taps(x, self.scale, reduced_width)));
        let column_taps = &self.column_taps;
        // Every value is written below: kept values need no zeroing.
        self.planes.resize(reduced_height * L * width, 0.0);
        self.planes
            .par_chunks_mut(L * width)
            .zip(reduced.par_chunks(reduced_width))
            .for_each(|(planes, row)| {
                for (x, &(x0, x1, weight)) in column_taps.iter().enumerate() {
                    let (left, right) = (&row[x0], &row[x1]);
                    for (plane, &lane) in lanes.iter().enumerate() {
                        planes[plane * width + x] =
                            left[lane] + (right[lane] - left[lane]) * weight;
                    }
                }
            });
    }

    /// The two widened rows full-resolution row `y` lies between (their planes one after the
    /// other) and the weight of the second.
    pub fn rows(&self, y: usize) -> ((&[f32], &[f32]), f32) {
        let (y0, y1, weight) = taps(y, self.scale, self.reduced_height);
        let length = self.lanes * self.width;
        (
            (
                &self.planes[y0 * length..][..length],
                &self.planes[y1 * length..][..length],
            ),
            weight,
        )
    }
}

/// `value` rounded to the nearest byte, below 0 (or not a number) 0, above 255 255.
#[inline(always)]
// max and min, not clamp: clamp keeps a NaN, and this way the value to convert is always
// 0.5..=255.5, so that a vector of them converts in one instruction.
#[allow(clippy::manual_clamp)]
pub fn rounded_byte(value: f32) -> u8 {
    let rounded = value.max(0.0).min(255.0) + 0.5;
    // SAFETY: `rounded` is finite and within 0.5..=255.5.
    unsafe { rounded.to_int_unchecked::<i32>() as u8 }
}

/// Whether the CPU runs 256-bit vectors (AVX2): the full-resolution passes are compiled for it
/// besides the baseline.
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// What a box mean sums: f32, or f64 where sums of products must not cancel.
pub trait Sample:
    Copy
    + Default
    + Send
    + Sync
    + From<f32>
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::Div<Output = Self>
{
    fn from_count(count: usize) -> Self;
}

impl Sample for f32 {
    fn from_count(count: usize) -> Self {
        count as f32
    }
}

impl Sample for f64 {
    fn from_count(count: usize) -> Self {
        count as f64
    }
}

/// Replaces every value by the mean over the window of `radius` around it (the window shrinks
/// at the edges), rows then columns.
pub fn box_mean<T: Sample, const N: usize>(
    values: &mut [[T; N]],
    scratch: &mut Vec<[T; N]>,
    width: usize,
    height: usize,
    radius: usize,
) {
    // Every value is written below: kept values need no zeroing.
    scratch.resize(values.len(), [T::default(); N]);
    scratch
        .par_chunks_mut(width)
        .zip(values.par_chunks(width))
        .for_each(|(out, row)| running_mean(row, out, radius));
    // Columns: a running sum of whole rows, in bands of rows that each start their own sum,
    // so that the bands run in parallel.
    let band_rows = height
        .div_ceil(rayon::current_num_threads().max(1) * 2)
        .max(1);
    let scratch = &scratch[..];
    values
        .par_chunks_mut(width * band_rows)
        .enumerate()
        .for_each(|(band, out)| {
            let first = band * band_rows;
            let row = |y: usize| &scratch[y * width..][..width];
            let mut sum = vec![[T::default(); N]; width];
            // The window of the band's first row less its last row, plus the row the first
            // step takes away.
            let start = if first > radius {
                first - radius - 1
            } else {
                0
            };
            for y in start..(first + radius).min(height) {
                add_row(&mut sum, row(y));
            }
            for (offset, out_row) in out.chunks_mut(width).enumerate() {
                let y = first + offset;
                if y + radius < height {
                    add_row(&mut sum, row(y + radius));
                }
                if y > radius {
                    subtract_row(&mut sum, row(y - radius - 1));
                }
                let count =
                    T::from_count((y + radius).min(height - 1) + 1 - y.saturating_sub(radius));
                for (v, s) in out_row.iter_mut().zip(&sum) {
                    *v = s.map(|s| s / count);
                }
            }
        });
}

fn add_row<T: Sample, const N: usize>(sum: &mut [[T; N]], row: &[[T; N]]) {
    for (s, v) in sum.iter_mut().zip(row) {
        for lane in 0..N {
            s[lane] += v[lane];
        }
    }
}

fn subtract_row<T: Sample, const N: usize>(sum: &mut [[T; N]], row: &[[T; N]]) {
    for (s, v) in sum.iter_mut().zip(row) {
        for lane in 0..N {
            s[lane] -= v[lane];
        }
    }
}

/// One row's running mean over a shrinking window.
fn running_mean<T: Sample, const N: usize>(row: &[[T; N]], out: &mut [[T; N]], radius: usize) {
    let length = row.len();
    let mut sum = [T::default(); N];
    for v in &row[..radius.min(length)] {
        for lane in 0..N {
            sum[lane] += v[lane];
        }
    }
    for i in 0..length {
        if i + radius < length {
            for lane in 0..N {
                sum[lane] += row[i + radius][lane];
            }
        }
        if i > radius {
            for lane in 0..N {
                sum[lane] -= row[i - radius - 1][lane];
            }
        }
        let count = T::from_count((i + radius).min(length - 1) + 1 - i.saturating_sub(radius));
        out[i] = sum.map(|s| s / count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_box_mean_is_the_mean_over_the_shrunk_window() {
        let (width, height) = (7, 5);
        let mut values: Vec<[f32; 8]> = (0..width * height).map(|i| [i as f32; 8]).collect();
        let original = values.clone();
        box_mean(&mut values, &mut Vec::new(), width, height, 2);
        for y in 0..height {
            for x in 0..width {
                let (mut total, mut count) = (0.0, 0.0);
                for yy in y.saturating_sub(2)..=(y + 2).min(height - 1) {
                    for xx in x.saturating_sub(2)..=(x + 2).min(width - 1) {
                        total += original[yy * width + xx][0];
                        count += 1.0;
                    }
                }
                let got = values[y * width + x][3];
                assert!((got - total / count).abs() < 1e-4, "({x}, {y}): {got}");
            }
        }
    }
}
