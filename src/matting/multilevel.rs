//! Foreground colour estimation by the multi-level method of Germer et al. (2020), computing what
//! pymatting's `estimate_foreground_ml` computes (rembg's `decontaminate` and the last step of its
//! alpha matting): a pyramid of nearest-neighbour resizes from 1x1 up to the frame, on each level
//! a few Gauss-Seidel sweeps of the per-pixel 2x2 system that ties the pixel's colour to
//! `alpha F + (1 - alpha) B` and both F and B to their four neighbours, weighted by how much the
//! alpha changes between them.
//!
//! The sweeps run in pymatting's order (rows top to bottom, left to right, updating in place), so
//! the result is pymatting's up to float rounding. A level's sweeps run as a wavefront, one
//! thread a sweep: sweep k takes row y once sweep k - 1 has finished row y + 1, which is every
//! value it would have read sequentially. Big levels are relaxed only near the pixels of partial
//! alpha (see [`super::relaxed_region`]), which changes nothing a float can hold.
//!
//! On CPUs with AVX2 and FMA a sweep computes what depends on alpha and the frame alone (each
//! pixel's weights and 2x2 inverse) for a whole span eight pixels at a time, then walks the span
//! with the foreground's and the background's colour in a vector each, two rows side by side
//! (see `fused`): the same operations in the same order on every float, so the same result.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::has_partial_alpha;
use super::relaxed_region::{MARGIN, TILE, TileMask};
use crate::imageops::ImageRef;

/// pymatting's parameters, with its defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MultilevelParams {
    /// How strongly F and B follow their neighbours where the alpha is flat.
    pub regularization: f32,
    /// Sweeps on levels of at most `small_size` pixels each way...
    pub small_iterations: usize,
    /// ...and on the larger ones.
    pub big_iterations: usize,
    pub small_size: usize,
    /// How strongly F and B follow their neighbours across a change of alpha.
    pub gradient_weight: f32,
}

impl Default for MultilevelParams {
    fn default() -> Self {
        Self {
            regularization: 1e-5,
            small_iterations: 10,
            big_iterations: 2,
            small_size: 32,
            gradient_weight: 1.0,
        }
    }
}

/// One pixel's estimate: the foreground colour in lanes 0-2, the background's in 4-6.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[repr(C, align(32))]
struct Estimate([f32; 8]);

impl Estimate {
    fn splat(foreground: [f32; 3], background: [f32; 3]) -> Self {
        let [f0, f1, f2] = foreground;
        let [b0, b1, b2] = background;
        Self([f0, f1, f2, 0.0, b0, b1, b2, 0.0])
    }
}

/// Byte value to the 0..1 float pymatting receives (`x / 255.0` as float32).
fn unit_table() -> [f32; 256] {
    std::array::from_fn(|i| i as f32 / 255.0)
}

/// The levels of pymatting's pyramid for a `width` x `height` frame: sizes
/// `round(width^(i/n)) x round(height^(i/n))` for `i` in `0..=n`, `n = ceil(log2(max side))`.
pub fn pyramid(width: usize, height: usize) -> Vec<(usize, usize)> {
    let largest = width.max(height);
    if largest <= 1 {
        // pymatting divides by n = 0 here; a single pixel is its own only level.
        return vec![(width, height)];
    }
    let levels = (largest as f64).log2().ceil() as usize;
    (0..=levels)
        .map(|i| {
            let power = i as f64 / levels as f64;
            let side = |n: usize| ((n as f64).powf(power).round_ties_even() as usize).max(1);
            (side(width), side(height))
        })
        .collect()
}

/// Nearest-neighbour source index of each of `to` positions taken from `from`, as pymatting's
/// `_resize_nearest` picks them.
fn nearest(from: usize, to: usize, map: &mut Vec<usize>) {
    map.clear();
    map.extend((0..to).map(|i| (i * from / to).min(from - 1)));
}

/// Estimates foreground colours, keeping its buffers from frame to frame.
#[derive(Debug, Default)]
pub struct MultilevelEstimator {
    pub params: MultilevelParams,
    levels: Vec<Level>,
    /// Relax every pixel of every level, as pymatting does (see [`Self::relax_whole_levels`]).
    whole_levels: bool,
}

/// One level of the pyramid: its size, its alpha, where its pixels come from, and the region
/// relaxed on it (see [`super::relaxed_region`]).
#[derive(Debug, Default)]
struct Level {
    width: usize,
    height: usize,
    /// The frame's alpha resized to the level; empty on the frame's own level.
    alpha: Vec<u8>,
    /// Frame column and row of each of the level's.
    columns: Vec<usize>,
    rows: Vec<usize>,
    /// The coarser level's column and row each of the level's is upsampled from.
    from_columns: Vec<usize>,
    from_rows: Vec<usize>,
    /// Where the sweeps relax the estimate...
    relaxed: TileMask,
    /// ...and where it is upsampled from the coarser level: the relaxed tiles and a tile
    /// around them, which the sweeps read.
    filled: TileMask,
    /// The estimate, valid in the filled region (kept from frame to frame: only the filled
    /// region is written, so a buffer is sized once).
    estimates: Vec<Estimate>,
}

/// A level's alpha: its own (`Level::alpha`), or the frame's on the frame's own level, where the
/// level keeps none. (A function of the field, not of the level: the sweeps borrow the level's
/// estimates mutably meanwhile.)
fn level_alpha<'a>(own: &'a [u8], frame_alpha: &'a [u8]) -> &'a [u8] {
    if own.is_empty() { frame_alpha } else { own }
}

/// A level's inputs: the frame's colour and alpha at the level's size, through index maps.
struct LevelInputs<'a> {
    image: &'a ImageRef<'a>,
    alpha: &'a [u8],
    width: usize,
    height: usize,
    /// Frame column and row of each of the level's.
    columns: &'a [usize],
    rows: &'a [usize],
    relaxed: &'a TileMask,
    units: &'a [f32; 256],
    params: MultilevelParams,
}

impl LevelInputs<'_> {
    fn alpha_row(&self, y: usize) -> &[u8] {
        &self.alpha[y * self.width..][..self.width]
    }
}

impl MultilevelEstimator {
    /// Estimates the foreground colour of `image` under `alpha` (one byte a pixel, `width` x
    /// `height`) and writes it, rounded to bytes, into the colour bytes (the first three) of the
    /// pixels of `out` (packed, `image`'s layout) whose alpha is neither 0 nor 255; `out`'s other
    /// pixels are left as they are.
    pub fn estimate(&mut self, image: &ImageRef<'_>, alpha: &[u8], out: &mut [u8]) {
        if !has_partial_alpha(image, alpha, out) {
            return;
        }
        let (width, height) = (image.width, image.height);
        let bpp = image.layout.bytes_per_pixel;
        let units = unit_table();
        let (foreground_mean, background_mean) = mean_colours(image, alpha, &units);
        self.plan_levels(alpha, width, height);
        let seed = [Estimate::splat(foreground_mean, background_mean)];
        for l in 0..self.levels.len() {
            let (coarser, rest) = self.levels.split_at_mut(l);
            let level = &mut rest[0];
            match coarser.last() {
                Some(coarser) => upsample(&coarser.estimates, coarser.width, level),
                None => upsample(&seed, 1, level),
            }
            let inputs = LevelInputs {
                image,
                alpha: level_alpha(&level.alpha, alpha),
                width: level.width,
                height: level.height,
                columns: &level.columns,
                rows: &level.rows,
                relaxed: &level.relaxed,
                units: &units,
                params: self.params,
            };
            let small = is_small(&self.params, level.width, level.height);
            let sweeps = if small {
                self.params.small_iterations
            } else {
                self.params.big_iterations
            };
            run_sweeps(&mut level.estimates, &inputs, sweeps, !small);
        }
        let finest = self.levels.last().expect("a level");
        write_foreground(&finest.estimates, alpha, width, bpp, out);
    }

    /// Relax every pixel of every level (pymatting's work) instead of those near partial alpha:
    /// the same result to float rounding, slower; for measuring what the regions save.
    pub fn relax_whole_levels(&mut self, whole: bool) {
        self.whole_levels = whole;
    }

    /// Sizes, alphas and index maps of the pyramid's levels, and their regions, from the finest
    /// level down: a level is relaxed within [`MARGIN`] of its partial alpha and of the pixels
    /// the finer level's filled region is upsampled from. Small levels are relaxed whole.
    fn plan_levels(&mut self, alpha: &[u8], width: usize, height: usize) {
        let sizes = pyramid(width, height);
        self.levels.resize_with(sizes.len(), Level::default);
        let mut needed = TileMask::default();
        for l in (0..sizes.len()).rev() {
            let (finer, rest) = self.levels.split_at_mut(l + 1);
            let (level, finer) = (&mut finer[l], rest.first());
            let (level_width, level_height) = sizes[l];
            let (from_width, from_height) = if l == 0 { (1, 1) } else { sizes[l - 1] };
            level.width = level_width;
            level.height = level_height;
            nearest(width, level_width, &mut level.columns);
            nearest(height, level_height, &mut level.rows);
            nearest(from_width, level_width, &mut level.from_columns);
            nearest(from_height, level_height, &mut level.from_rows);
            level.alpha.clear();
            if (level_width, level_height) != (width, height) {
                for &y in &level.rows {
                    let row = &alpha[y * width..][..width];
                    level.alpha.extend(level.columns.iter().map(|&x| row[x]));
                }
            }
            let small = is_small(&self.params, level_width, level_height) || self.whole_levels;
            level.relaxed.reset(level_width, level_height);
            level.filled.reset(level_width, level_height);
            if small {
                level.relaxed.fill();
                level.filled.fill();
                continue;
            }
            needed.reset(level_width, level_height);
            needed.mark_partial(level_alpha(&level.alpha, alpha));
            if let Some(finer) = finer {
                for y in (0..finer.height).step_by(TILE) {
                    let last_row = (y + TILE).min(finer.height) - 1;
                    let rows = (finer.from_rows[y], finer.from_rows[last_row]);
                    for span in finer.filled.spans(y) {
                        let columns = (
                            finer.from_columns[span.start],
                            finer.from_columns[span.end - 1],
                        );
                        needed.mark_pixels(columns, rows);
                    }
                }
            }
            needed.dilate(MARGIN.div_ceil(TILE), &mut level.relaxed);
            level.relaxed.dilate(1, &mut level.filled);
        }
    }
}

/// Whether a level is small: relaxed with more sweeps, and whole.
fn is_small(params: &MultilevelParams, width: usize, height: usize) -> bool {
    width <= params.small_size && height <= params.small_size
}

/// Mean colour where alpha > 0.9 and where alpha < 0.1: the 1x1 level's F and B. Counted as
/// how often each byte value occurs per side and channel (rows on all cores), then summed as
/// the floats pymatting sums.
fn mean_colours(image: &ImageRef<'_>, alpha: &[u8], units: &[f32; 256]) -> ([f32; 3], [f32; 3]) {
    use rayon::prelude::*;
    const NEITHER: u8 = 2;
    let side_of: [u8; 256] = std::array::from_fn(|a| {
        let a = f64::from(units[a]);
        if a > 0.9 {
            0
        } else if a < 0.1 {
            1
        } else {
            NEITHER
        }
    });
    let bpp = image.layout.bytes_per_pixel;
    type Histograms = Box<[[[u32; 256]; 3]; 2]>;
    let empty = || -> Histograms { Box::new([[[0; 256]; 3]; 2]) };
    let histograms = (0..image.height)
        .into_par_iter()
        .fold(empty, |mut histograms, y| {
            let alpha_row = &alpha[y * image.width..][..image.width];
            for (pixel, &a) in image.row(y).chunks_exact(bpp).zip(alpha_row) {
                let side = side_of[a as usize];
                if side != NEITHER {
                    let histograms = &mut histograms[side as usize];
                    for c in 0..3 {
                        histograms[c][pixel[c] as usize] += 1;
                    }
                }
            }
            histograms
        })
        .reduce(empty, |mut total, part| {
            for (total, part) in total.iter_mut().flatten().zip(part.iter().flatten()) {
                total.iter_mut().zip(part).for_each(|(t, p)| *t += p);
            }
            total
        });
    let mean = |side: usize| {
        let count: f64 = histograms[side][0].iter().map(|&n| f64::from(n)).sum();
        histograms[side].map(|histogram| {
            let sum: f64 = (0..256)
                .map(|v| f64::from(histogram[v]) * f64::from(units[v]))
                .sum();
            (sum / (count + 1e-5)) as f32
        })
    };
    (mean(0), mean(1))
}

/// The level's estimates in its filled region: `from` (the coarser level's, `from_width`
/// across) resized by nearest neighbour. The rest is left as it was: nothing reads it.
fn upsample(from: &[Estimate], from_width: usize, level: &mut Level) {
    use rayon::prelude::*;
    let Level {
        width,
        height,
        from_rows,
        from_columns,
        filled,
        estimates,
        ..
    } = level;
    estimates.resize(*width * *height, Estimate::default());
    // Rows on all cores: on a big level this is a copy of tens of megabytes, which one core
    // took a sixth of the estimate's time over.
    estimates
        .par_chunks_exact_mut(*width)
        .with_min_len(UPSAMPLE_ROWS)
        .enumerate()
        .for_each(|(y, row)| {
            let source = &from[from_rows[y] * from_width..][..from_width];
            for span in filled.spans(y) {
                for (estimate, &x) in row[span.clone()].iter_mut().zip(&from_columns[span]) {
                    *estimate = source[x];
                }
            }
        });
}

/// Rows per piece of work of [`upsample`].
const UPSAMPLE_ROWS: usize = 32;

/// Rounds the final level's foreground into the pixels of partial alpha.
fn write_foreground(
    estimates: &[Estimate],
    alpha: &[u8],
    width: usize,
    bpp: usize,
    out: &mut [u8],
) {
    use rayon::prelude::*;
    out.par_chunks_mut(width * bpp)
        .zip(estimates.par_chunks(width))
        .zip(alpha.par_chunks(width))
        .for_each(|((out_row, estimate_row), alpha_row)| {
            for ((pixel, estimate), &a) in out_row
                .chunks_exact_mut(bpp)
                .zip(estimate_row)
                .zip(alpha_row)
            {
                if a != 0 && a != 255 {
                    for (byte, value) in pixel.iter_mut().zip(&estimate.0[..3]) {
                        *byte = (value * 255.0 + 0.5) as u8;
                    }
                }
            }
        });
}

/// `sweeps` Gauss-Seidel sweeps over the level, as a wavefront over threads when `parallel`.
fn run_sweeps(estimates: &mut [Estimate], inputs: &LevelInputs<'_>, sweeps: usize, parallel: bool) {
    if sweeps == 0 {
        return;
    }
    if !parallel || sweeps == 1 || inputs.height < 4 || rayon::current_num_threads() < 2 {
        for _ in 0..sweeps {
            let grid = Grid::new(estimates, inputs.width, inputs.height);
            let mut scratch = SweepScratch::default();
            let mut y = 0;
            while y < inputs.height {
                // SAFETY: one thread, rows in order.
                y = unsafe { grid.sweep_rows(y, inputs, &mut scratch) };
            }
        }
        return;
    }
    let grid = Grid::new(estimates, inputs.width, inputs.height);
    let done: Vec<AtomicUsize> = (0..sweeps).map(|_| AtomicUsize::new(0)).collect();
    let sweep = |k: usize| {
        let mut scratch = SweepScratch::default();
        let mut y = 0;
        while y < inputs.height {
            if k > 0 {
                // The rows this step writes and the one below them, which it reads.
                let needed = (y + ROWS_AT_ONCE + 1).min(inputs.height);
                wait_until(&done[k - 1], needed);
            }
            // SAFETY: sweep k writes rows y.. only after sweep k - 1 finished the row below
            // them (waited for above, with Acquire), and sweep k - 1 never reads a row above its
            // current ones' predecessor again; so no row is written by one sweep while another
            // reads or writes it.
            y = unsafe { grid.sweep_rows(y, inputs, &mut scratch) };
            done[k].store(y, Ordering::Release);
        }
    };
    // rayon::join runs its first closure here and may lend the second to another thread; each
    // sweep waits only for the ones before it, which already run or have finished, so a pool of
    // any size finishes.
    fn chain(sweep: &(impl Fn(usize) + Sync), first: usize, end: usize) {
        if first + 1 == end {
            sweep(first);
        } else {
            rayon::join(|| sweep(first), || chain(sweep, first + 1, end));
        }
    }
    chain(&sweep, 0, sweeps);
}

/// Rows a sweep relaxes side by side: two, so that one row's chain of dependent operations
/// (each pixel waits for its left neighbour) runs beside the other's.
const ROWS_AT_ONCE: usize = 2;

fn wait_until(progress: &AtomicUsize, rows: usize) {
    let mut spins = 0u32;
    while progress.load(Ordering::Acquire) < rows {
        spins += 1;
        if spins < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// A level's estimates shared by the sweeps of a wavefront, each writing the rows the others
/// are not reading.
struct Grid {
    pixels: *mut Estimate,
    width: usize,
    height: usize,
}

// SAFETY: the wavefront's waits keep the sweeps' rows apart (see `run_sweeps`).
unsafe impl Sync for Grid {}

impl Grid {
    fn new(estimates: &mut [Estimate], width: usize, height: usize) -> Self {
        assert_eq!(estimates.len(), width * height);
        Self {
            pixels: estimates.as_mut_ptr(),
            width,
            height,
        }
    }

    /// One sweep over row `y`, or rows `y` and `y + 1` side by side where both exist and share
    /// their tiles; returns the next row to sweep.
    ///
    /// # Safety
    /// No other thread may write rows `y - 1..=y + 2` or read rows `y..=y + 1` meanwhile.
    unsafe fn sweep_rows(
        &self,
        y: usize,
        inputs: &LevelInputs<'_>,
        scratch: &mut SweepScratch,
    ) -> usize {
        let row_at = |r: usize| unsafe { self.pixels.add(r * self.width) };
        // SAFETY: rows in bounds; the caller keeps other threads off them.
        let row = |r: usize| unsafe { std::slice::from_raw_parts_mut(row_at(r), self.width) };
        let shared_row =
            |r: usize| unsafe { std::slice::from_raw_parts(row_at(r), self.width) as &[_] };
        let up = (y > 0).then(|| shared_row(y - 1));
        let paired = y + 1 < self.height && y / TILE == (y + 1) / TILE;
        if !paired {
            let down = (y + 1 < self.height).then(|| shared_row(y + 1));
            let this = row(y);
            let this_inputs = RowInputs::new(inputs, y);
            for span in inputs.relaxed.spans(y) {
                sweep_span(this, up, down, &this_inputs, span, scratch);
            }
            return y + 1;
        }
        let down = (y + 2 < self.height).then(|| shared_row(y + 2));
        let (first, second) = (row(y), row(y + 1));
        let first_inputs = RowInputs::new(inputs, y);
        let second_inputs = RowInputs::new(inputs, y + 1);
        // Both rows lie in the same row of tiles: the same spans.
        for span in inputs.relaxed.spans(y) {
            sweep_span_pair(
                [first, &mut *second],
                up,
                down,
                [&first_inputs, &second_inputs],
                span,
                scratch,
            );
        }
        y + 2
    }
}

/// What a row's pixels are relaxed with: the level's alpha around the row and the frame's
/// colours under it.
struct RowInputs<'a> {
    alpha: &'a [u8],
    alpha_up: &'a [u8],
    alpha_down: &'a [u8],
    image_row: &'a [u8],
    bytes_per_pixel: usize,
    columns: &'a [usize],
    units: &'a [f32; 256],
    regularization: f32,
    gradient_weight: f32,
}

impl<'a> RowInputs<'a> {
    fn new(inputs: &'a LevelInputs<'a>, y: usize) -> Self {
        Self {
            alpha: inputs.alpha_row(y),
            alpha_up: inputs.alpha_row(y.saturating_sub(1)),
            alpha_down: inputs.alpha_row((y + 1).min(inputs.height - 1)),
            image_row: inputs.image.row(inputs.rows[y]),
            bytes_per_pixel: inputs.image.layout.bytes_per_pixel,
            columns: inputs.columns,
            units: inputs.units,
            regularization: inputs.params.regularization,
            gradient_weight: inputs.params.gradient_weight,
        }
    }
}

/// What one sweep keeps from span to span.
#[derive(Debug, Default)]
struct SweepScratch {
    /// The terms of the span's pixels in each of the two rows swept at once.
    #[cfg(target_arch = "x86_64")]
    terms: [fused::SpanTerms; 2],
}

/// The pixel's four neighbours, read before it is relaxed: `left` is this sweep's value, the
/// others what they hold when the pixel's turn comes in pymatting's order.
struct Neighbours {
    left: Estimate,
    right: Estimate,
    up: Estimate,
    down: Estimate,
}

/// Relaxes the pixels of one row's `span` in order, as pymatting's inner loop does. `up` holds
/// this sweep's values, `down` the previous sweep's; a missing row is the edge, where the pixel
/// is its own neighbour.
fn sweep_span(
    row: &mut [Estimate],
    up: Option<&[Estimate]>,
    down: Option<&[Estimate]>,
    inputs: &RowInputs<'_>,
    span: Range<usize>,
    scratch: &mut SweepScratch,
) {
    #[cfg(target_arch = "x86_64")]
    if fused::available() {
        // SAFETY: the CPU has AVX2 and FMA.
        unsafe { fused::sweep_span(row, up, down, inputs, span, &mut scratch.terms[0]) };
        return;
    }
    sweep_span_with::<Separate>(row, up, down, inputs, span)
}

/// [`sweep_span`] over two rows at once (`rows[1]` below `rows[0]`, `up` above the first,
/// `down` below the second): each pixel gets the values, and the operations, it gets row after
/// row.
fn sweep_span_pair(
    rows: [&mut [Estimate]; 2],
    up: Option<&[Estimate]>,
    down: Option<&[Estimate]>,
    inputs: [&RowInputs<'_>; 2],
    span: Range<usize>,
    scratch: &mut SweepScratch,
) {
    #[cfg(target_arch = "x86_64")]
    if fused::available() {
        // SAFETY: the CPU has AVX2 and FMA.
        unsafe { fused::sweep_span_pair(rows, up, down, inputs, span, &mut scratch.terms) };
        return;
    }
    let [first, second] = rows;
    sweep_span_with::<Separate>(first, up, Some(second), inputs[0], span.clone());
    sweep_span_with::<Separate>(second, Some(first), down, inputs[1], span);
}

/// The row's pixels in order, lane by lane.
fn sweep_span_with<M: MulAdd>(
    row: &mut [Estimate],
    up: Option<&[Estimate]>,
    down: Option<&[Estimate]>,
    inputs: &RowInputs<'_>,
    span: Range<usize>,
) {
    let width = row.len();
    // Left of the span lies a pixel outside the relaxed region: its upsampled value (or the
    // pixel itself at the frame's edge).
    let mut left = row[span.start.saturating_sub(1)];
    for x in span {
        let me = row[x];
        let neighbours = Neighbours {
            left,
            right: if x + 1 < width { row[x + 1] } else { me },
            up: up.map_or(me, |r| r[x]),
            down: down.map_or(me, |r| r[x]),
        };
        left = relaxed_lane_by_lane::<M>(inputs, x, neighbours);
        row[x] = left;
    }
}

/// `a * b + c`, fused where the CPU can.
trait MulAdd {
    fn mul_add(a: f32, b: f32, c: f32) -> f32;
}

struct Separate;
impl MulAdd for Separate {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

#[cfg(test)]
struct Fused;
#[cfg(test)]
impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

/// The pixel's 2x2 system: its alpha and one minus it, the weights of its left, right, upper
/// and lower neighbours, and the system's inverse `(b00, b01, b11)`.
struct PixelSystem {
    alpha: f32,
    beta: f32,
    weights: [f32; 4],
    inverse: [f32; 3],
}

#[inline(always)]
fn pixel_system(inputs: &RowInputs<'_>, x: usize) -> PixelSystem {
    let RowInputs {
        alpha,
        alpha_up,
        alpha_down,
        units,
        regularization,
        gradient_weight,
        ..
    } = *inputs;
    let width = alpha.len();
    let weight = |a0: f32, a: u8| regularization + gradient_weight * (a0 - units[a as usize]).abs();
    let a0 = units[alpha[x] as usize];
    let a1 = 1.0 - a0;
    let weight_left = weight(a0, alpha[x.saturating_sub(1)]);
    let weight_right = weight(a0, alpha[(x + 1).min(width - 1)]);
    let weight_up = weight(a0, alpha_up[x]);
    let weight_down = weight(a0, alpha_down[x]);

    // pymatting adds the four weights to the diagonal one by one.
    let spread = ((weight_left + weight_right) + weight_up) + weight_down;
    let a00 = f64::from(a0 * a0 + spread);
    let a01 = f64::from(a0) * f64::from(a1);
    let a11 = f64::from(a1) * f64::from(a1) + f64::from(spread);
    let inverse = 1.0 / (a00 * a11 - a01 * a01);
    PixelSystem {
        alpha: a0,
        beta: a1,
        weights: [weight_left, weight_right, weight_up, weight_down],
        inverse: [
            (inverse * a11) as f32,
            (-inverse * a01) as f32,
            (inverse * a00) as f32,
        ],
    }
}

/// The pixel's colour from the frame, 0..1.
#[inline(always)]
fn pixel_colour(inputs: &RowInputs<'_>, x: usize) -> [f32; 3] {
    let pixel = &inputs.image_row[inputs.columns[x] * inputs.bytes_per_pixel..][..3];
    [0, 1, 2].map(|c| inputs.units[pixel[c] as usize])
}

/// Pixel `x`'s new estimate: the solution of its 2x2 system, as pymatting computes it.
#[inline(always)]
fn relaxed_lane_by_lane<M: MulAdd>(
    inputs: &RowInputs<'_>,
    x: usize,
    neighbours: Neighbours,
) -> Estimate {
    let Neighbours {
        left,
        right,
        up,
        down,
    } = neighbours;
    let PixelSystem {
        alpha: a0,
        beta: a1,
        weights: [weight_left, weight_right, weight_up, weight_down],
        inverse: [b00, b01, b11],
    } = pixel_system(inputs, x);
    let colour = pixel_colour(inputs, x);
    // b = (a0 I, a1 I) + the weighted neighbours but the left one, which this sweep has just
    // written: the chain from one pixel to the next goes through it alone.
    let mut rest = [0f32; 8];
    for c in 0..3 {
        rest[c] = a0 * colour[c];
        rest[4 + c] = a1 * colour[c];
    }
    for (lane, sum) in rest.iter_mut().enumerate() {
        let partial = M::mul_add(weight_right, right.0[lane], *sum);
        let partial = M::mul_add(weight_up, up.0[lane], partial);
        *sum = M::mul_add(weight_down, down.0[lane], partial);
    }
    let mut out = [0f32; 8];
    for c in 0..4 {
        let (front, back) = (c, 4 + c);
        let b0 = M::mul_add(weight_left, left.0[front], rest[front]);
        let b1 = M::mul_add(weight_left, left.0[back], rest[back]);
        let f = M::mul_add(b00, b0, b01 * b1);
        let b = M::mul_add(b01, b0, b11 * b1);
        out[front] = clamp_unit(f);
        out[back] = clamp_unit(b);
    }
    Estimate(out)
}

/// The sweeps with AVX2 and fused multiply-adds, computing what [`relaxed_lane_by_lane`] with
/// fused multiply-adds computes, float for float (the same operations on every lane).
///
/// A pixel's 2x2 system (its weights and inverse) and its colour terms depend on alpha and the
/// frame only, not on the estimates: they are computed for a whole span first, eight pixels a
/// vector, and the walk along the span is left with the vector work that does depend on the
/// neighbours, the foreground's colour in one vector and the background's in another. What one
/// pixel hands the next (its new value, the next pixel's left neighbour) stays in registers,
/// and two rows run side by side, so that one row's chain of dependent operations fills the
/// other's waits.
#[cfg(target_arch = "x86_64")]
mod fused {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::{Estimate, PixelSystem, RowInputs, pixel_colour, pixel_system};

    /// Whether this CPU runs these sweeps.
    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }

    /// The terms of eight consecutive pixels that do not depend on the estimates, a vector's
    /// worth of each.
    #[derive(Debug, Default, Clone, Copy)]
    #[repr(C, align(32))]
    struct TermBlock {
        /// Left, right, upper and lower neighbour's weight.
        weights: [[f32; 8]; 4],
        /// The 2x2 system's inverse, `b00`, `b01`, `b11`.
        inverse: [[f32; 8]; 3],
        alpha: [f32; 8],
        /// One minus alpha.
        beta: [f32; 8],
        /// The pixel's colour, 0..1, and a zero lane.
        colour: [[f32; 4]; 8],
    }

    /// The terms of a span's pixels, in blocks of eight from the span's start.
    #[derive(Debug, Default)]
    pub(super) struct SpanTerms {
        blocks: Vec<TermBlock>,
    }

    /// Entry `i`'s block and lane.
    #[inline(always)]
    fn place(i: usize) -> (usize, usize) {
        (i / 8, i % 8)
    }

    impl SpanTerms {
        /// Pixel `x`'s terms at entry `i`, one float at a time.
        fn set_one(&mut self, i: usize, inputs: &RowInputs<'_>, x: usize) {
            let PixelSystem {
                alpha,
                beta,
                weights,
                inverse,
            } = pixel_system(inputs, x);
            let (block, lane) = place(i);
            let block = &mut self.blocks[block];
            for (field, value) in block.weights.iter_mut().zip(weights) {
                field[lane] = value;
            }
            for (field, value) in block.inverse.iter_mut().zip(inverse) {
                field[lane] = value;
            }
            block.alpha[lane] = alpha;
            block.beta[lane] = beta;
        }

        /// The terms of `span`'s pixels: [`pixel_system`]'s operations on a block's eight
        /// pixels at once where all their neighbours lie inside the row, one at a time in the
        /// blocks at the row's ends and the span's last.
        #[target_feature(enable = "avx2,fma")]
        pub(super) fn compute(&mut self, inputs: &RowInputs<'_>, span: Range<usize>) {
            let width = inputs.alpha.len();
            self.blocks
                .resize(span.len().div_ceil(8), TermBlock::default());
            for (i, x) in span.clone().enumerate() {
                let [red, green, blue] = pixel_colour(inputs, x);
                let (block, lane) = place(i);
                self.blocks[block].colour[lane] = [red, green, blue, 0.0];
            }
            for block in 0..self.blocks.len() {
                let first = span.start + 8 * block;
                // Eight pixels read alpha from first - 1 to first + 8.
                if first >= 1 && first + 8 <= span.end && first + 9 <= width {
                    self.set_eight(block, inputs, first);
                } else {
                    for x in first..(first + 8).min(span.end) {
                        self.set_one(x - span.start, inputs, x);
                    }
                }
            }
        }

        /// Pixels `x..x + 8`'s terms in block `block` (`1 <= x`, `x + 9 <= width`).
        #[target_feature(enable = "avx2,fma")]
        fn set_eight(&mut self, block: usize, inputs: &RowInputs<'_>, x: usize) {
            // The byte values to 0..1 as `unit_table` computes them (`v as f32 / 255.0`).
            let units = |bytes: &[u8]| {
                let bytes: &[u8; 8] = bytes[..8].try_into().expect("eight bytes");
                // SAFETY: eight bytes read; this function is compiled for AVX2.
                let values = unsafe { _mm_loadl_epi64(bytes.as_ptr().cast()) };
                _mm256_div_ps(
                    _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(values)),
                    _mm256_set1_ps(255.0),
                )
            };
            let a0 = units(&inputs.alpha[x..]);
            let neighbours = [
                &inputs.alpha[x - 1..],
                &inputs.alpha[x + 1..],
                &inputs.alpha_up[x..],
                &inputs.alpha_down[x..],
            ];
            let (regularization, gradient_weight) = (
                _mm256_set1_ps(inputs.regularization),
                _mm256_set1_ps(inputs.gradient_weight),
            );
            let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
            let [left, right, up, down] = neighbours.map(|alpha| {
                let difference = _mm256_and_ps(_mm256_sub_ps(a0, units(alpha)), magnitude);
                _mm256_add_ps(regularization, _mm256_mul_ps(gradient_weight, difference))
            });
            let a1 = _mm256_sub_ps(_mm256_set1_ps(1.0), a0);
            let spread = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(left, right), up), down);
            let a00 = _mm256_add_ps(_mm256_mul_ps(a0, a0), spread);
            // The inverse in double precision, four pixels a vector.
            let halves = |v: __m256| {
                [
                    _mm256_cvtps_pd(_mm256_castps256_ps128(v)),
                    _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)),
                ]
            };
            let (a00, a0d, a1d, spread_d) = (halves(a00), halves(a0), halves(a1), halves(spread));
            let sign = _mm256_set1_pd(-0.0);
            let mut inverse = [[_mm_setzero_ps(); 2]; 3];
            for h in 0..2 {
                let a01 = _mm256_mul_pd(a0d[h], a1d[h]);
                let a11 = _mm256_add_pd(_mm256_mul_pd(a1d[h], a1d[h]), spread_d[h]);
                let determinant =
                    _mm256_sub_pd(_mm256_mul_pd(a00[h], a11), _mm256_mul_pd(a01, a01));
                let reciprocal = _mm256_div_pd(_mm256_set1_pd(1.0), determinant);
                inverse[0][h] = _mm256_cvtpd_ps(_mm256_mul_pd(reciprocal, a11));
                inverse[1][h] =
                    _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_xor_pd(reciprocal, sign), a01));
                inverse[2][h] = _mm256_cvtpd_ps(_mm256_mul_pd(reciprocal, a00[h]));
            }
            let block = &mut self.blocks[block];
            let store = |field: &mut [f32; 8], v: __m256| {
                // SAFETY: eight floats written; this function is compiled for AVX.
                unsafe { _mm256_storeu_ps(field.as_mut_ptr(), v) };
            };
            for (field, v) in block.weights.iter_mut().zip([left, right, up, down]) {
                store(field, v);
            }
            for (field, [low, high]) in block.inverse.iter_mut().zip(inverse) {
                store(field, _mm256_set_m128(high, low));
            }
            store(&mut block.alpha, a0);
            store(&mut block.beta, a1);
        }
    }

    /// A pixel's estimate in two vectors: the foreground's colour and the background's.
    #[derive(Clone, Copy)]
    struct Halves {
        foreground: __m128,
        background: __m128,
    }

    // The kernels below are not compiled for AVX2 themselves (`inline(always)` and
    // `target_feature` do not go together): they are inlined into the functions that are, which
    // is what makes their intrinsics safe to call, and so they are `unsafe` to call elsewhere.

    /// # Safety
    /// Only from functions compiled for AVX2 and FMA.
    #[inline(always)]
    unsafe fn load(estimate: &Estimate) -> Halves {
        let lanes = &estimate.0;
        // SAFETY: eight floats read, in two vectors of four, on a CPU with AVX (the caller's).
        unsafe {
            Halves {
                foreground: _mm_loadu_ps(lanes[..4].as_ptr()),
                background: _mm_loadu_ps(lanes[4..].as_ptr()),
            }
        }
    }

    /// # Safety
    /// Only from functions compiled for AVX2 and FMA.
    #[inline(always)]
    unsafe fn store(value: Halves, estimate: &mut Estimate) {
        let lanes = &mut estimate.0;
        // SAFETY: eight floats written, in two vectors of four, on a CPU with AVX.
        unsafe {
            _mm_storeu_ps(lanes[..4].as_mut_ptr(), value.foreground);
            _mm_storeu_ps(lanes[4..].as_mut_ptr(), value.background);
        }
    }

    /// `clamp_unit` lane by lane: `min(1, v)` keeps v unless it is above 1 (NaN too), and
    /// `max(v, 0)` keeps it only if it is above 0, as `clamp_unit`'s comparisons do.
    ///
    /// # Safety
    /// Only from functions compiled for AVX2 and FMA.
    #[inline(always)]
    unsafe fn clamp_unit(v: __m128) -> __m128 {
        // SAFETY: the caller's CPU has AVX.
        unsafe { _mm_max_ps(_mm_min_ps(_mm_set1_ps(1.0), v), _mm_setzero_ps()) }
    }

    /// Entry `i`'s new estimate from its neighbours, `left` already in registers.
    ///
    /// # Safety
    /// Only from functions compiled for AVX2 and FMA.
    #[inline(always)]
    unsafe fn relaxed(
        terms: &SpanTerms,
        i: usize,
        left: Halves,
        right: &Estimate,
        up: &Estimate,
        down: &Estimate,
    ) -> Halves {
        // SAFETY: the caller's CPU has AVX2 and FMA.
        unsafe {
            let (block, lane) = place(i);
            let block = &terms.blocks[block];
            // No closures here: a closure would be compiled apart, without AVX2.
            let [weight_left, weight_right, weight_up, weight_down] = &block.weights;
            let [b00, b01, b11] = &block.inverse;
            let colour = _mm_loadu_ps(block.colour[lane].as_ptr());
            let (right, up, down) = (load(right), load(up), load(down));
            let (alpha, beta) = (
                _mm_broadcast_ss(&block.alpha[lane]),
                _mm_broadcast_ss(&block.beta[lane]),
            );
            let mut rest = Halves {
                foreground: _mm_mul_ps(alpha, colour),
                background: _mm_mul_ps(beta, colour),
            };
            for (weight, neighbour) in [(weight_right, right), (weight_up, up), (weight_down, down)]
            {
                let weight = _mm_broadcast_ss(&weight[lane]);
                rest.foreground = _mm_fmadd_ps(weight, neighbour.foreground, rest.foreground);
                rest.background = _mm_fmadd_ps(weight, neighbour.background, rest.background);
            }
            let weight_left = _mm_broadcast_ss(&weight_left[lane]);
            let b0 = _mm_fmadd_ps(weight_left, left.foreground, rest.foreground);
            let b1 = _mm_fmadd_ps(weight_left, left.background, rest.background);
            let (b00, b01, b11) = (
                _mm_broadcast_ss(&b00[lane]),
                _mm_broadcast_ss(&b01[lane]),
                _mm_broadcast_ss(&b11[lane]),
            );
            Halves {
                foreground: clamp_unit(_mm_fmadd_ps(b00, b0, _mm_mul_ps(b01, b1))),
                background: clamp_unit(_mm_fmadd_ps(b01, b0, _mm_mul_ps(b11, b1))),
            }
        }
    }

    /// See [`super::sweep_span`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn sweep_span(
        row: &mut [Estimate],
        up: Option<&[Estimate]>,
        down: Option<&[Estimate]>,
        inputs: &RowInputs<'_>,
        span: Range<usize>,
        terms: &mut SpanTerms,
    ) {
        let width = row.len();
        terms.compute(inputs, span.clone());
        // SAFETY (the kernels below): this function is compiled for AVX2 and FMA.
        let mut left = unsafe { load(&row[span.start.saturating_sub(1)]) };
        for (i, x) in span.enumerate() {
            // At the frame's edges the pixel is its own neighbour (its value before this step).
            let right = &row[(x + 1).min(width - 1)];
            let above = up.map_or(&row[x], |r| &r[x]);
            let below = down.map_or(&row[x], |r| &r[x]);
            unsafe {
                left = relaxed(terms, i, left, right, above, below);
                store(left, &mut row[x]);
            }
        }
    }

    /// See [`super::sweep_span_pair`]: the second row a pixel behind the first, so that each of
    /// its pixels has the first row's new value above it and each of the first row's the second
    /// row's old value below it, as in pymatting's order.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn sweep_span_pair(
        rows: [&mut [Estimate]; 2],
        up: Option<&[Estimate]>,
        down: Option<&[Estimate]>,
        inputs: [&RowInputs<'_>; 2],
        span: Range<usize>,
        terms: &mut [SpanTerms; 2],
    ) {
        let [first, second] = rows;
        let [first_terms, second_terms] = terms;
        first_terms.compute(inputs[0], span.clone());
        second_terms.compute(inputs[1], span.clone());
        let width = first.len();
        let (start, end) = (span.start, span.end);
        // SAFETY (the kernels below): this function is compiled for AVX2 and FMA.
        let mut left_first = unsafe { load(&first[start.saturating_sub(1)]) };
        let mut left_second = unsafe { load(&second[start.saturating_sub(1)]) };
        for x in start..=end {
            // At the frame's edges a pixel is its own neighbour (its value before this step).
            if x < end {
                let right = &first[(x + 1).min(width - 1)];
                let above = up.map_or(&first[x], |r| &r[x]);
                left_first = unsafe {
                    relaxed(first_terms, x - start, left_first, right, above, &second[x])
                };
            }
            if x > start {
                let behind = x - 1;
                let right = &second[x.min(width - 1)];
                let below = down.map_or(&second[behind], |r| &r[behind]);
                let above = &first[behind];
                unsafe {
                    left_second = relaxed(
                        second_terms,
                        behind - start,
                        left_second,
                        right,
                        above,
                        below,
                    );
                    store(left_second, &mut second[behind]);
                }
            }
            if x < end {
                unsafe { store(left_first, &mut first[x]) };
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::super::{MultilevelParams, unit_table};
        use super::*;
        use crate::imageops::{ImageRef, PixelLayout};
        use crate::matting::test_data;

        #[test]
        fn span_terms_are_the_pixel_systems_float_for_float() {
            if !available() {
                eprintln!("no AVX2 and FMA here: nothing to compare");
                return;
            }
            let (width, height) = (37, 3);
            // Mostly the bytes a matte has (0, 255) with partial values between.
            let alpha: Vec<u8> = test_data::noise_bytes(width * height, 1)
                .into_iter()
                .map(|v| match v % 4 {
                    0 => 0,
                    1 => 255,
                    _ => v,
                })
                .collect();
            let image = test_data::noise_bytes(width * height * 3, 2);
            let frame = ImageRef::packed(&image, width, height, PixelLayout::RGB);
            let units = unit_table();
            let columns: Vec<usize> = (0..width).collect();
            let params = MultilevelParams {
                regularization: test_data::noise_floats(1, 3)[0] * 1e-3,
                ..MultilevelParams::default()
            };
            let inputs = RowInputs {
                alpha: &alpha[width..2 * width],
                alpha_up: &alpha[..width],
                alpha_down: &alpha[2 * width..],
                image_row: frame.row(1),
                bytes_per_pixel: 3,
                columns: &columns,
                units: &units,
                regularization: params.regularization,
                gradient_weight: params.gradient_weight,
            };
            let mut terms = SpanTerms::default();
            for span in [0..37, 1..20, 5..37, 0..9, 28..37, 3..4, 0..1, 36..37] {
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                unsafe { terms.compute(&inputs, span.clone()) };
                for (i, x) in span.clone().enumerate() {
                    let (block, lane) = place(i);
                    let block = &terms.blocks[block];
                    let expected = pixel_system(&inputs, x);
                    let bits =
                        |values: &[f32]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    let weights: Vec<f32> = block.weights.iter().map(|w| w[lane]).collect();
                    let inverse: Vec<f32> = block.inverse.iter().map(|w| w[lane]).collect();
                    assert_eq!(bits(&weights), bits(&expected.weights), "{span:?} x {x}");
                    assert_eq!(bits(&inverse), bits(&expected.inverse), "{span:?} x {x}");
                    assert_eq!(block.alpha[lane].to_bits(), expected.alpha.to_bits());
                    assert_eq!(block.beta[lane].to_bits(), expected.beta.to_bits());
                    assert_eq!(block.colour[lane][..3], pixel_colour(&inputs, x));
                }
            }
        }
    }
}

#[inline(always)]
fn clamp_unit(v: f32) -> f32 {
    let v = if v > 1.0 { 1.0 } else { v };
    if v > 0.0 { v } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imageops::PixelLayout;
    use crate::matting::test_data;

    #[test]
    fn the_pyramid_climbs_from_one_pixel_to_the_frame_as_pymatting_does() {
        // pymatting: n = ceil(log2(max(w, h))), sizes round(w ** (i / n)).
        // Sizes printed by numba running pymatting's expression.
        assert_eq!(
            pyramid(640, 480),
            vec![
                (1, 1),
                (2, 2),
                (4, 3),
                (7, 6),
                (13, 12),
                (25, 22),
                (48, 41),
                (92, 75),
                (176, 140),
                (335, 259),
                (640, 480)
            ]
        );
        assert_eq!(
            pyramid(333, 17),
            vec![
                (1, 1),
                (2, 1),
                (4, 2),
                (7, 3),
                (13, 4),
                (25, 5),
                (48, 7),
                (92, 9),
                (175, 12),
                (333, 17)
            ]
        );
        assert_eq!(pyramid(1, 1), vec![(1, 1)]);
        assert_eq!(pyramid(2, 1), vec![(1, 1), (2, 1)]);
    }

    #[test]
    fn the_sweeps_of_this_cpu_give_the_floats_of_pixel_after_pixel() {
        // A level of 53 x 37 taken from a 80 x 50 frame (nearest neighbour), relaxed in a few
        // tiles: spans that start and end inside the row and at its edges, rows in pairs and
        // an odd last one; the estimates random (as upsampled values are before a sweep).
        let (frame_width, frame_height, width, height) = (80, 50, 53, 37);
        let image = test_data::noise_bytes(frame_width * frame_height * 3, 5);
        let frame = ImageRef::packed(&image, frame_width, frame_height, PixelLayout::RGB);
        let alpha: Vec<u8> = test_data::noise_bytes(width * height, 6)
            .into_iter()
            .map(|v| match v % 3 {
                0 => 0,
                1 => 255,
                _ => v,
            })
            .collect();
        let (mut columns, mut rows) = (Vec::new(), Vec::new());
        nearest(frame_width, width, &mut columns);
        nearest(frame_height, height, &mut rows);
        let mut relaxed = TileMask::default();
        relaxed.reset(width, height);
        relaxed.mark_pixels((0, 15), (0, 15));
        relaxed.mark_pixels((32, 52), (16, 36));
        relaxed.mark_pixels((16, 31), (32, 36));
        let units = unit_table();
        let inputs = LevelInputs {
            image: &frame,
            alpha: &alpha,
            width,
            height,
            columns: &columns,
            rows: &rows,
            relaxed: &relaxed,
            units: &units,
            params: MultilevelParams::default(),
        };
        let start: Vec<Estimate> = test_data::noise_floats(width * height * 6, 7)
            .chunks_exact(6)
            .map(|v| Estimate::splat([v[0], v[1], v[2]], [v[3], v[4], v[5]]))
            .collect();

        let mut expected = start.clone();
        for y in 0..height {
            let (above, rest) = expected.split_at_mut(y * width);
            let (row, below) = rest.split_at_mut(width);
            let up = (y > 0).then(|| &above[(y - 1) * width..]);
            let down = (y + 1 < height).then(|| &below[..width]);
            for span in relaxed.spans(y) {
                sweep_span_with::<Fused>(row, up, down, &RowInputs::new(&inputs, y), span);
            }
        }

        let mut swept = start.clone();
        let grid = Grid::new(&mut swept, width, height);
        let mut scratch = SweepScratch::default();
        let mut y = 0;
        while y < height {
            // SAFETY: one thread.
            y = unsafe { grid.sweep_rows(y, &inputs, &mut scratch) };
        }
        let bits = |estimates: &[Estimate]| -> Vec<u32> {
            estimates
                .iter()
                .flat_map(|e| e.0.map(f32::to_bits))
                .collect()
        };
        assert_ne!(bits(&expected), bits(&start), "the sweep changed nothing");
        assert_eq!(bits(&swept), bits(&expected));
    }

    fn estimate(image: &[u8], alpha: &[u8], width: usize, height: usize) -> Vec<u8> {
        let image_ref = ImageRef::packed(image, width, height, PixelLayout::RGB);
        let mut out = image.to_vec();
        MultilevelEstimator::default().estimate(&image_ref, alpha, &mut out);
        out
    }

    #[test]
    fn a_mask_of_only_opaque_and_transparent_pixels_changes_nothing() {
        let image: Vec<u8> = (0..5 * 4 * 3).map(|i| (i * 7 % 256) as u8).collect();
        let alpha: Vec<u8> = (0..20).map(|i| if i % 3 == 0 { 255 } else { 0 }).collect();
        assert_eq!(estimate(&image, &alpha, 5, 4), image);
        assert_eq!(estimate(&image, &[0; 20], 5, 4), image);
        assert_eq!(estimate(&image, &[255; 20], 5, 4), image);
    }

    #[test]
    fn a_blend_of_two_flat_colours_gives_back_the_foreground_colour() {
        // Left half red foreground, right half blue background, a soft edge between: the edge
        // pixels are the blends the camera would see; the estimate should be red again.
        let (width, height) = (40, 24);
        let alpha_at = |x: usize| match x {
            0..16 => 255u8,
            16..24 => (255 - (x - 15) * 28) as u8,
            _ => 0,
        };
        let (front, back) = ([220.0f32, 30.0, 20.0], [10.0f32, 40.0, 230.0]);
        let mut image = Vec::new();
        let mut alpha = Vec::new();
        for _ in 0..height {
            for x in 0..width {
                let a = f32::from(alpha_at(x)) / 255.0;
                alpha.push(alpha_at(x));
                for c in 0..3 {
                    image.push((a * front[c] + (1.0 - a) * back[c]).round() as u8);
                }
            }
        }
        let out = estimate(&image, &alpha, width, height);
        for (pixel, &a) in out.chunks(3).zip(&alpha) {
            if a != 0 && a != 255 {
                for c in 0..3 {
                    assert!(
                        (f32::from(pixel[c]) - front[c]).abs() <= 12.0,
                        "alpha {a}: {pixel:?} is not the foreground {front:?}"
                    );
                }
            }
        }
        // Opaque and transparent pixels keep their colour.
        for (i, &a) in alpha.iter().enumerate() {
            if a == 0 || a == 255 {
                assert_eq!(out[i * 3..][..3], image[i * 3..][..3]);
            }
        }
    }

    #[test]
    fn one_pixel_and_thin_frames_do_not_divide_by_zero() {
        assert_eq!(estimate(&[10, 20, 30], &[128], 1, 1).len(), 3);
        // A flat colour is its own foreground and background, whatever the alpha.
        let image = vec![100u8; 7 * 3];
        let ramp = [0, 50, 100, 150, 200, 250, 255];
        for (width, height) in [(7, 1), (1, 7)] {
            let out = estimate(&image, &ramp, width, height);
            assert!(out.iter().all(|v| v.abs_diff(100) <= 1), "{out:?}");
        }
    }

    #[test]
    fn the_wavefront_gives_what_one_thread_gives() {
        let (width, height) = (97, 61);
        let image: Vec<u8> = (0..width * height * 3)
            .map(|i| ((i * 2654435761usize) >> 7) as u8)
            .collect();
        let alpha: Vec<u8> = (0..width * height)
            .map(|i| ((i % width) * 255 / width) as u8)
            .collect();
        let parallel = estimate(&image, &alpha, width, height);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let sequential = pool.install(|| estimate(&image, &alpha, width, height));
        assert_eq!(parallel, sequential);
    }

    /// A textured frame and a disc of soft edge centred at (`cx`, `cy`), `radius` wide, with a
    /// soft line one pixel thick across the frame (thin enough for coarse levels to miss).
    fn disc_scene(
        width: usize,
        height: usize,
        cx: f32,
        cy: f32,
        radius: f32,
    ) -> (Vec<u8>, Vec<u8>) {
        let image = (0..width * height * 3)
            .map(|i| (((i * 2654435761usize) >> 9) % 200) as u8 + (i % 3) as u8 * 20)
            .collect();
        let alpha = (0..width * height)
            .map(|i| {
                let (x, y) = ((i % width) as f32, (i / width) as f32);
                if (i / width) == height / 3 {
                    return 77;
                }
                let distance = ((x - cx).powi(2) + (y - cy).powi(2)).sqrt();
                ((radius - distance) * 40.0 + 128.0).clamp(0.0, 255.0) as u8
            })
            .collect();
        (image, alpha)
    }

    #[test]
    fn relaxing_near_partial_alpha_only_gives_what_relaxing_every_pixel_gives() {
        // One estimator for frames of every size, as an element keeps it: its level buffers
        // hold the previous frame's values wherever this frame's regions do not rewrite them.
        let mut estimator = MultilevelEstimator::default();
        for (width, height, cx, cy, radius) in [
            (640, 480, 320.0, 260.0, 150.0),
            (1000, 333, 30.0, 20.0, 60.0),
            (517, 901, 500.0, 890.0, 300.0),
            (300, 140, 150.0, 20.0, 12.0),
        ] {
            let (image, alpha) = disc_scene(width, height, cx, cy, radius);
            let image_ref = ImageRef::packed(&image, width, height, PixelLayout::RGB);
            let (mut banded, mut whole) = (image.clone(), image.clone());
            estimator.estimate(&image_ref, &alpha, &mut banded);
            let relaxed = estimator.levels.last().unwrap().relaxed.pixels();
            let mut pymatting_work = MultilevelEstimator::default();
            pymatting_work.relax_whole_levels(true);
            pymatting_work.estimate(&image_ref, &alpha, &mut whole);
            assert!(
                relaxed < width * height,
                "{width}x{height}: the whole frame was relaxed"
            );
            let differing = banded.iter().zip(&whole).filter(|(a, b)| a != b).count();
            assert_eq!(differing, 0, "{width}x{height}: {differing} bytes differ");
        }
    }

    #[test]
    fn padded_and_four_byte_frames_give_what_packed_rgb_gives() {
        let (width, height) = (9, 5);
        let rgb: Vec<u8> = (0..width * height * 3)
            .map(|i| (i * 31 % 256) as u8)
            .collect();
        let alpha: Vec<u8> = (0..width * height).map(|i| (i * 17 % 256) as u8).collect();
        let expected = estimate(&rgb, &alpha, width, height);
        let stride = width * 4 + 8;
        let mut padded = vec![7u8; stride * height];
        for y in 0..height {
            for x in 0..width {
                padded[y * stride + x * 4..][..3].copy_from_slice(&rgb[(y * width + x) * 3..][..3]);
            }
        }
        let image = ImageRef {
            data: &padded,
            width,
            height,
            stride,
            layout: PixelLayout::RGBX,
        };
        let mut out = vec![0u8; width * height * 4];
        MultilevelEstimator::default().estimate(&image, &alpha, &mut out);
        for i in 0..width * height {
            if alpha[i] != 0 && alpha[i] != 255 {
                assert_eq!(out[i * 4..][..3], expected[i * 3..][..3]);
            }
        }
    }
}
