//! rembg's alpha matting: a trimap from the model's mask (confident foreground and background
//! eroded, the rest unknown), then closed-form matting (Levin, Lischinski and Weiss, "A
//! closed-form solution to natural image matting", 2008) over the unknown pixels, as pymatting's
//! `estimate_alpha_cf` computes it: the matting Laplacian over 3x3 windows with epsilon 1e-7,
//! the known pixels as fixed values, `L_U x_U = -R x_K`.
//!
//! Only the unknown band is built and solved: the rows of the Laplacian of the unknown pixels
//! (25 neighbours each), assembled from the windows that touch them, so memory follows the band
//! and not the frame (pymatting allocates 25 entries for every pixel of the frame). The system
//! is solved by a sparse Cholesky factorisation (see [`supernodal`]: faer's symbolic analysis,
//! the pixels in a nested-dissection order, a single-precision factor on all cores and the
//! solution refined in double): pymatting reaches the same answer by conjugate gradients
//! preconditioned with an incomplete Cholesky factor (rtol 1e-7); measured on u2netp's masks,
//! conjugate gradients with a Jacobi or zero-fill incomplete Cholesky preconditioner need
//! hundreds to thousands of iterations at this epsilon, and the exact factor of the band costs
//! less than pymatting's incomplete one.

use faer::Side;
use faer::sparse::SymbolicSparseColMat;
use faer::sparse::linalg::SupernodalThreshold;
use faer::sparse::linalg::cholesky::{
    CholeskySymbolicParams, SymbolicCholesky, SymbolicCholeskyRaw, SymmetricOrdering,
    factorize_symbolic_cholesky,
};
use rayon::prelude::*;

use super::{nested_dissection, supernodal};
use crate::imageops::ImageRef;

/// pymatting's default regularisation of the window covariances.
pub const EPSILON: f64 = 1e-7;

/// Trimap values, as rembg writes them.
pub const TRIMAP_BACKGROUND: u8 = 0;
pub const TRIMAP_UNKNOWN: u8 = 128;
pub const TRIMAP_FOREGROUND: u8 = 255;

/// rembg's `alpha_matting_*` parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrimapParams {
    /// Mask values above it are foreground (before erosion).
    pub foreground_threshold: u8,
    /// Mask values below it are background (before erosion).
    pub background_threshold: u8,
    /// Side of the square the confident regions are eroded with; 0 erodes with scipy's default
    /// 3x3 cross, as rembg does when it passes no structure.
    pub erode_size: usize,
}

impl Default for TrimapParams {
    fn default() -> Self {
        Self {
            foreground_threshold: 240,
            background_threshold: 10,
            erode_size: 10,
        }
    }
}

/// The trimap rembg's `alpha_matting_cutout` makes of `mask` (one byte a pixel):
/// `mask > foreground_threshold` eroded (outside the frame counts as not foreground) is
/// foreground, `mask < background_threshold` eroded (outside counts as background) is
/// background, the rest unknown.
pub fn trimap(mask: &[u8], width: usize, height: usize, params: &TrimapParams) -> Vec<u8> {
    assert_eq!(mask.len(), width * height, "one mask byte per pixel");
    let erosion =
        |sure: Vec<bool>, border: bool| erode(&sure, width, height, params.erode_size, border);
    // The two erosions are independent: one a core.
    let (foreground, background) = rayon::join(
        || {
            erosion(
                mask.iter()
                    .map(|&m| m > params.foreground_threshold)
                    .collect(),
                false,
            )
        },
        || {
            erosion(
                mask.iter()
                    .map(|&m| m < params.background_threshold)
                    .collect(),
                true,
            )
        },
    );
    foreground
        .iter()
        .zip(&background)
        .map(|(&f, &b)| match (f, b) {
            (true, _) => TRIMAP_FOREGROUND,
            (false, true) => TRIMAP_BACKGROUND,
            (false, false) => TRIMAP_UNKNOWN,
        })
        .collect()
}

/// scipy's `binary_erosion` with a `size` x `size` square (offsets `-size/2 ..= size-1-size/2`
/// on each axis, as scipy centres even sizes), or its default 3x3 cross when `size` is 0;
/// `border` is what lies outside the frame.
fn erode(set: &[bool], width: usize, height: usize, size: usize, border: bool) -> Vec<bool> {
    let at = |x: isize, y: isize| -> bool {
        if x < 0 || y < 0 || x >= width as isize || y >= height as isize {
            border
        } else {
            set[y as usize * width + x as usize]
        }
    };
    if size == 0 {
        return (0..width * height)
            .map(|i| {
                let (x, y) = ((i % width) as isize, (i / width) as isize);
                at(x, y) && at(x - 1, y) && at(x + 1, y) && at(x, y - 1) && at(x, y + 1)
            })
            .collect();
    }
    // A square is separable: rows, then columns, each an AND over a run of `size` cells (of
    // rows, for the columns) of the set padded with `border`.
    let before = size / 2;
    let mut scratch = WindowScratch::default();
    let mut rows = vec![false; width * height];
    for y in 0..height {
        let padded = scratch.padded(width + size - 1, border);
        padded[before..][..width].copy_from_slice(&set[y * width..][..width]);
        scratch.and_over_windows(1, size, &mut rows[y * width..][..width]);
    }
    let padded = scratch.padded((height + size - 1) * width, border);
    padded[before * width..][..width * height].copy_from_slice(&rows);
    let mut eroded = vec![false; width * height];
    scratch.and_over_windows(width, size, &mut eroded);
    eroded
}

/// Buffers for [`WindowScratch::and_over_windows`].
#[derive(Default)]
struct WindowScratch {
    padded: Vec<bool>,
    spare: Vec<bool>,
}

impl WindowScratch {
    /// The input of the next AND, `len` cells set to `border`, to be filled in.
    fn padded(&mut self, len: usize, border: bool) -> &mut [bool] {
        self.padded.clear();
        self.padded.resize(len, border);
        &mut self.padded
    }

    /// `out[i]` (cells of `unit` values: one value, or a whole row) is the AND of cells
    /// `i..i + size` of the padded input. Windows of doubling length are ANDed from two of
    /// half their length, then the last two overlapping ones cover `size`: log2(size) passes,
    /// each over whole slices.
    fn and_over_windows(&mut self, unit: usize, size: usize, out: &mut [bool]) {
        let mut length = 1;
        while 2 * length <= size {
            let shift = length * unit;
            let input = &self.padded;
            self.spare.clear();
            self.spare.extend(
                input[..input.len() - shift]
                    .iter()
                    .zip(&input[shift..])
                    .map(|(&a, &b)| a & b),
            );
            std::mem::swap(&mut self.padded, &mut self.spare);
            length *= 2;
        }
        let shift = (size - length) * unit;
        let input = &self.padded;
        for ((out, &a), &b) in out.iter_mut().zip(input).zip(&input[shift..]) {
            *out = a & b;
        }
    }
}

/// Why closed-form matting gave no matte.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MattingError {
    #[error("the matting system of {unknown} unknown pixels could not be factorised: {reason}")]
    Factorisation { unknown: usize, reason: String },
    #[error(
        "the trimap has {unknown} unknown pixels, more than the {limit} (a whole 4K frame) \
         matted at once; raise alpha-matting-foreground-threshold or lower \
         alpha-matting-erode-size, or scale the frame down"
    )]
    BandTooLarge { unknown: usize, limit: usize },
}

/// The most unknown pixels solved at once: a whole 3840x2160 frame. The factor of a wide 4K
/// band took 5.4 GiB in double precision (`scripts/bench.sh alpha_matting`; single precision,
/// tried first, halves it); much past this, a 24 GB machine would run out of memory instead of
/// reporting it.
pub const MAX_UNKNOWN_PIXELS: usize = 3840 * 2160;

/// The 5x5 neighbourhood a pixel's Laplacian row spans with 3x3 windows, in raster order.
const REACH: isize = 2;
const NEIGHBOURS: usize = 25;
/// The pixel's own slot in its neighbourhood.
const CENTRE: u8 = 12;

/// The linear system of closed-form matting over the unknown pixels, `L_U x = rhs`, with its
/// pixels in a fill-reducing elimination order (see [`nested_dissection`]) and the symbolic
/// structure of its Cholesky factor.
pub struct BandSystem {
    /// Frame position (`y * width + x`) of the unknown pixel of each column, in elimination
    /// order.
    pub pixels: Vec<u32>,
    /// `L_U`'s lower triangle in compressed columns: column `k` holds the entries at rows `>= k`,
    /// the diagonal first.
    column_starts: Vec<usize>,
    row_indices: Vec<usize>,
    values: Vec<f64>,
    /// `-sum over known foreground neighbours j of L_ij`, per column.
    rhs: Vec<f64>,
    /// The supernodal structure of the factor, computed while the values are.
    symbolic: Result<SymbolicCholesky<usize>, String>,
}

impl BandSystem {
    /// Builds the system for `image` under `trimap` (one byte a pixel: 0 and 255 known,
    /// anything else unknown, as pymatting's `trimap_split` reads 0.1/0.9 of 0..1), from the
    /// 3x3 windows centred inside the frame that touch an unknown pixel. The factor's structure
    /// follows from the trimap alone, so it is analysed on one core while the Laplacian's values
    /// are computed on the others.
    pub fn build(image: &ImageRef<'_>, trimap: &[u8]) -> Self {
        let (width, height) = (image.width, image.height);
        assert_eq!(trimap.len(), width * height, "one trimap byte per pixel");
        let unknown: Vec<u32> = (0..width * height)
            .filter(|&i| !is_known(trimap[i]))
            .map(|i| i as u32)
            .collect();
        let pixels: Vec<u32> = nested_dissection::order(&unknown, width, REACH as u32)
            .into_iter()
            .map(|u| unknown[u])
            .collect();
        drop(unknown);
        let mut place = vec![u32::MAX; width * height];
        for (k, &p) in pixels.iter().enumerate() {
            place[p as usize] = k as u32;
        }
        let structure = Structure::new(&pixels, &place, width, height);
        let (symbolic, (values, rhs)) = rayon::join(
            || structure.analyse(),
            || structure.values(image, trimap, &pixels),
        );
        Self {
            pixels,
            column_starts: structure.lower_starts,
            row_indices: structure.lower_rows,
            values,
            rhs,
            symbolic,
        }
    }

    /// `L_U`'s lower triangle as (row, column, value) and the right-hand side, both in the
    /// raster order of the unknown pixels (pymatting's numbering).
    pub fn in_raster_order(&self) -> (Vec<(usize, usize, f64)>, Vec<f64>) {
        let mut by_position: Vec<(u32, usize)> = self
            .pixels
            .iter()
            .enumerate()
            .map(|(k, &p)| (p, k))
            .collect();
        by_position.sort_unstable();
        let mut raster = vec![0; self.pixels.len()];
        for (r, &(_, k)) in by_position.iter().enumerate() {
            raster[k] = r;
        }
        let mut entries = Vec::with_capacity(self.values.len());
        for column in 0..self.pixels.len() {
            for e in self.column_starts[column]..self.column_starts[column + 1] {
                let (a, b) = (raster[self.row_indices[e]], raster[column]);
                entries.push((a.max(b), a.min(b), self.values[e]));
            }
        }
        let mut rhs = vec![0.0; self.pixels.len()];
        for (k, &value) in self.rhs.iter().enumerate() {
            rhs[raster[k]] = value;
        }
        (entries, rhs)
    }

    /// The solution, one value per pixel of [`Self::pixels`], by a sparse Cholesky
    /// factorisation (see [`supernodal::solve`]). A component of unknown pixels that touches no
    /// known one makes the matrix singular (its alpha is free): pymatting's solver leaves such a
    /// component near 0 from its zero start; a tiny shift of the diagonal does the same here.
    pub fn solve(self) -> Result<Vec<f64>, MattingError> {
        let n = self.pixels.len();
        let failure = |reason: String| MattingError::Factorisation { unknown: n, reason };
        let symbolic = self.symbolic.map_err(failure)?;
        let SymbolicCholeskyRaw::Supernodal(symbolic) = symbolic.raw() else {
            unreachable!("the analysis is asked for a supernodal structure");
        };
        let mut values = self.values;
        for shift in [0.0, 1e-10] {
            for &position in &self.column_starts[..n] {
                values[position] += shift;
            }
            let matrix = supernodal::LowerColumns {
                starts: &self.column_starts,
                rows: &self.row_indices,
                values: &values,
            };
            match supernodal::solve(symbolic, matrix, &self.rhs) {
                Ok(solution) => return Ok(solution),
                Err(supernodal::FactorError::NotPositiveDefinite { .. }) if shift == 0.0 => {}
                Err(e) => return Err(failure(e.to_string())),
            }
        }
        unreachable!("the shifted factorisation returns")
    }
}

/// The sparsity of a band's system, from the trimap alone: per column (pixel in elimination
/// order) its neighbours at or after it, the lower triangle, with which of the 25 neighbours
/// each is.
struct Structure {
    lower_starts: Vec<usize>,
    lower_rows: Vec<usize>,
    /// Which neighbour (0..25, raster order over the 5x5 neighbourhood) each lower entry is.
    lower_slots: Vec<u8>,
}

impl Structure {
    fn new(pixels: &[u32], place: &[u32], width: usize, height: usize) -> Self {
        // Column k's neighbours at or after it in the elimination order, itself first (the
        // diagonal), the rest in slot order: counted first, then written on all cores into
        // their own slices.
        let n = pixels.len();
        let counts: Vec<usize> = (0..n)
            .into_par_iter()
            .map(|k| {
                let mut count = 0;
                later_neighbours(k, pixels, place, width, height, |_, _| count += 1);
                count
            })
            .collect();
        let mut lower_starts = Vec::with_capacity(n + 1);
        lower_starts.push(0);
        for count in counts {
            lower_starts.push(lower_starts.last().unwrap() + count);
        }
        let mut lower_rows = vec![0; lower_starts[n]];
        let mut lower_slots = vec![0; lower_starts[n]];
        split_by_columns(&lower_starts, &mut lower_rows)
            .into_par_iter()
            .zip(split_by_columns(&lower_starts, &mut lower_slots))
            .enumerate()
            .for_each(|(chunk, (rows, slots))| {
                let mut at = 0;
                for k in chunk * BUILD_CHUNK..((chunk + 1) * BUILD_CHUNK).min(n) {
                    later_neighbours(k, pixels, place, width, height, |other, slot| {
                        rows[at] = other as usize;
                        slots[at] = slot;
                        at += 1;
                    });
                }
            });
        Self {
            lower_starts,
            lower_rows,
            lower_slots,
        }
    }

    /// The upper triangle's structure (column k: the rows at or before it, ascending), the
    /// transpose of the lower one.
    fn upper(&self) -> (Vec<usize>, Vec<usize>) {
        let n = self.lower_starts.len() - 1;
        let mut starts = vec![0; n + 1];
        for &row in &self.lower_rows {
            starts[row + 1] += 1;
        }
        for k in 0..n {
            starts[k + 1] += starts[k];
        }
        let mut next = starts[..n].to_vec();
        let mut rows = vec![0; self.lower_rows.len()];
        for column in 0..n {
            for &row in &self.lower_rows[self.lower_starts[column]..self.lower_starts[column + 1]] {
                rows[next[row]] = column;
                next[row] += 1;
            }
        }
        (starts, rows)
    }

    /// faer's symbolic analysis of the factor, supernodal always (what
    /// [`supernodal::factorize`] works on), in the columns' own order.
    fn analyse(&self) -> Result<SymbolicCholesky<usize>, String> {
        let n = self.lower_starts.len() - 1;
        let (starts, rows) = self.upper();
        let upper = SymbolicSparseColMat::new_checked(n, n, starts, None, rows);
        factorize_symbolic_cholesky(
            upper.as_ref(),
            Side::Upper,
            SymmetricOrdering::Identity,
            CholeskySymbolicParams {
                supernodal_flop_ratio_threshold: SupernodalThreshold::FORCE_SUPERNODAL,
                ..Default::default()
            },
        )
        .map_err(|e| e.to_string())
    }

    /// The lower triangle's values and the right-hand side: each unknown pixel's row of the
    /// Laplacian over its 5x5 neighbourhood, known foreground neighbours moved to the
    /// right-hand side, in chunks of columns on all cores.
    fn values(&self, image: &ImageRef<'_>, trimap: &[u8], pixels: &[u32]) -> (Vec<f64>, Vec<f64>) {
        let width = image.width;
        let windows = WindowStats::new(image, pixels);
        let mut values = vec![0.0; self.lower_rows.len()];
        let mut rhs = vec![0.0; pixels.len()];
        split_by_columns(&self.lower_starts, &mut values)
            .into_par_iter()
            .zip(rhs.par_chunks_mut(BUILD_CHUNK))
            .enumerate()
            .for_each(|(chunk, (values, rhs))| {
                let first = chunk * BUILD_CHUNK;
                let base = self.lower_starts[first];
                for (offset, rhs) in rhs.iter_mut().enumerate() {
                    let k = first + offset;
                    let p = pixels[k] as usize;
                    let (x, y) = ((p % width) as isize, (p / width) as isize);
                    let row = laplacian_row(image, &windows, x, y);
                    let entries = self.lower_starts[k]..self.lower_starts[k + 1];
                    for e in entries {
                        values[e - base] = row[self.lower_slots[e] as usize];
                    }
                    *rhs = 0.0;
                    for_each_neighbour(x, y, width, image.height, |slot, nx, ny| {
                        if trimap[ny * width + nx] == TRIMAP_FOREGROUND {
                            *rhs -= row[slot];
                        }
                    });
                }
            });
        (values, rhs)
    }
}

/// Calls `visit(column, slot)` for column `k` (of `pixels`, in elimination order; `place` maps a
/// frame position to its column, `u32::MAX` for known pixels) and for each of its 24
/// neighbours with a later column, in slot order.
fn later_neighbours(
    k: usize,
    pixels: &[u32],
    place: &[u32],
    width: usize,
    height: usize,
    mut visit: impl FnMut(u32, u8),
) {
    let p = pixels[k] as usize;
    visit(k as u32, CENTRE);
    let (x, y) = ((p % width) as isize, (p / width) as isize);
    for_each_neighbour(x, y, width, height, |slot, nx, ny| {
        let other = place[ny * width + nx];
        if other != u32::MAX && other as usize > k {
            visit(other, slot as u8);
        }
    });
}

/// Unknown pixels per piece of work when the system is built on all cores.
const BUILD_CHUNK: usize = 4096;

/// `entries` (of compressed columns starting at `starts`) cut into the slices of successive
/// runs of [`BUILD_CHUNK`] columns.
fn split_by_columns<'a, T>(starts: &[usize], entries: &'a mut [T]) -> Vec<&'a mut [T]> {
    let columns = starts.len() - 1;
    let mut slices = Vec::with_capacity(columns.div_ceil(BUILD_CHUNK));
    let mut rest = entries;
    for first in (0..columns).step_by(BUILD_CHUNK) {
        let last = (first + BUILD_CHUNK).min(columns);
        let (slice, tail) = rest.split_at_mut(starts[last] - starts[first]);
        slices.push(slice);
        rest = tail;
    }
    slices
}

fn is_known(trimap: u8) -> bool {
    trimap == TRIMAP_FOREGROUND || trimap == TRIMAP_BACKGROUND
}

/// Closed-form alpha for `image` under `trimap` (see [`BandSystem::build`]): 0..1 per pixel,
/// known pixels 0 or 1, unknown ones the solution clipped to 0..1; and how many were unknown.
pub fn estimate_alpha(
    image: &ImageRef<'_>,
    trimap: &[u8],
) -> Result<(Vec<f32>, usize), MattingError> {
    let unknown = trimap.iter().filter(|&&t| !is_known(t)).count();
    if unknown > MAX_UNKNOWN_PIXELS {
        return Err(MattingError::BandTooLarge {
            unknown,
            limit: MAX_UNKNOWN_PIXELS,
        });
    }
    let system = BandSystem::build(image, trimap);
    let positions = system.pixels.clone();
    let solution = if positions.is_empty() {
        Vec::new()
    } else {
        system.solve()?
    };
    Ok((alpha_of(trimap, &positions, &solution), unknown))
}

/// The alpha of a solved system: known pixels 0 or 1, the unknown ones (at `positions`, as
/// [`BandSystem::pixels`] lists them) their solution clipped to 0..1.
pub fn alpha_of(trimap: &[u8], positions: &[u32], solution: &[f64]) -> Vec<f32> {
    let mut alpha: Vec<f32> = trimap
        .iter()
        .map(|&t| if t == TRIMAP_FOREGROUND { 1.0 } else { 0.0 })
        .collect();
    for (&p, &value) in positions.iter().zip(solution) {
        alpha[p as usize] = value.clamp(0.0, 1.0) as f32;
    }
    alpha
}

/// An alpha in 0..1 as rembg writes it to 8 bits: truncated.
pub fn to_bytes(alpha: &[f32]) -> Vec<u8> {
    alpha.iter().map(|&a| (a * 255.0) as u8).collect()
}

/// Per window (a 3x3 block centred on an interior pixel) that touches an unknown pixel: its mean
/// colour and the inverse of its regularised colour covariance, as pymatting computes them.
struct WindowStats {
    width: usize,
    /// Window number of each centre, `u32::MAX` where no unknown pixel is in the window.
    index: Vec<u32>,
    /// Mean (3), then the inverse covariance's m00 m01 m02 m11 m12 m22.
    stats: Vec<[f64; 9]>,
}

impl WindowStats {
    fn new(image: &ImageRef<'_>, unknown: &[u32]) -> Self {
        let (width, height) = (image.width, image.height);
        // Windows centred within one pixel of an unknown one, not on the frame's edge: marked,
        // then numbered in raster order by one pass over the frame (the unknown pixels come in
        // elimination order). The mark is no window's number: frame positions are u32, so
        // there are fewer windows than `u32::MAX - 1`.
        const NEEDED: u32 = u32::MAX - 1;
        let mut index = vec![u32::MAX; width * height];
        for &p in unknown {
            let (x, y) = (p as usize % width, p as usize / width);
            let (left, right) = (x.max(2) - 1, (x + 1).min(width.saturating_sub(2)));
            for cy in y.max(2) - 1..=(y + 1).min(height.saturating_sub(2)) {
                if left <= right {
                    index[cy * width + left..=cy * width + right].fill(NEEDED);
                }
            }
        }
        let mut centres = Vec::new();
        for (centre, slot) in index.iter_mut().enumerate() {
            if *slot == NEEDED {
                *slot = centres.len() as u32;
                centres.push(centre as u32);
            }
        }
        let stats = centres
            .par_iter()
            .map(|&c| window_stats(image, c as usize % width, c as usize / width))
            .collect();
        Self {
            width,
            index,
            stats,
        }
    }

    fn at(&self, x: usize, y: usize) -> Option<&[f64; 9]> {
        let k = self.index[y * self.width + x];
        (k != u32::MAX).then(|| &self.stats[k as usize])
    }
}

fn colour(image: &ImageRef<'_>, x: usize, y: usize) -> [f64; 3] {
    let pixel = &image.row(y)[x * image.layout.bytes_per_pixel..][..3];
    [0, 1, 2].map(|c| LEVELS[pixel[c] as usize])
}

/// `v / 255` for each 8-bit `v`, as rembg scales the image (a table: the Laplacian reads each
/// pixel's colour dozens of times).
static LEVELS: [f64; 256] = {
    let mut levels = [0.0; 256];
    let mut v = 0;
    while v < 256 {
        levels[v] = v as f64 / 255.0;
        v += 1;
    }
    levels
};

/// pymatting's window mean and inverse covariance (with `EPSILON` added before the division
/// by the window's area, and its own sign convention for the determinant and cofactors).
fn window_stats(image: &ImageRef<'_>, x: usize, y: usize) -> [f64; 9] {
    let area = 9.0;
    let mut colours = [[0.0; 3]; 9];
    for (k, c) in colours.iter_mut().enumerate() {
        *c = colour(image, x + k % 3 - 1, y + k / 3 - 1);
    }
    let mean: [f64; 3] = std::array::from_fn(|d| colours.iter().map(|c| c[d]).sum::<f64>() / area);
    let centred = colours.map(|c| [c[0] - mean[0], c[1] - mean[1], c[2] - mean[2]]);
    let (mut a00, mut a01, mut a02, mut a11, mut a12, mut a22) =
        (EPSILON, 0.0, 0.0, EPSILON, 0.0, EPSILON);
    for c in &centred {
        a00 += c[0] * c[0];
        a01 += c[0] * c[1];
        a02 += c[0] * c[2];
        a11 += c[1] * c[1];
        a12 += c[1] * c[2];
        a22 += c[2] * c[2];
    }
    let [a00, a01, a02, a11, a12, a22] = [a00, a01, a02, a11, a12, a22].map(|a| a / area);
    let det = a00 * a12 * a12 + a01 * a01 * a22 + a02 * a02 * a11
        - a00 * a11 * a22
        - 2.0 * a01 * a02 * a12;
    let inv_det = 1.0 / det;
    [
        mean[0],
        mean[1],
        mean[2],
        (a12 * a12 - a11 * a22) * inv_det,
        (a01 * a22 - a02 * a12) * inv_det,
        (a02 * a11 - a01 * a12) * inv_det,
        (a02 * a02 - a00 * a22) * inv_det,
        (a00 * a12 - a01 * a02) * inv_det,
        (a01 * a01 - a00 * a11) * inv_det,
    ]
}

/// Row (x, y) of the matting Laplacian over its 5x5 neighbourhood (raster order): the sum over
/// the windows containing it of `delta_ij - (1 + (I_i - mu)^T M (I_j - mu)) / 9`.
///
/// A window's term for neighbour j is `c + w . I_j` with `w = M (I_i - mu)` and
/// `c = 1 - w . mu`: the 3x3 windows around the pixel each give one (c, w), and each neighbour
/// sums those of the windows it shares with the pixel, a 3x3 box sum of the windows' grid
/// (separable: along x, then along y), before one dot product with its colour. (`w . mu` and
/// `w . I_j` nearly cancel where a window's colours barely vary, but `w` stays below a few
/// thousand for 8-bit colours in 0..1, so that costs a few of double precision's 16 digits:
/// the test finds the sums within 1e-9 of the window-by-window ones.)
fn laplacian_row(image: &ImageRef<'_>, windows: &WindowStats, x: isize, y: isize) -> [f64; 25] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { laplacian_row_avx2(image, windows, x, y) };
    }
    laplacian_row_with(image, windows, x, y)
}

/// A window's mean colour (from its [`WindowStats`] entry) and `M (own - mean)`, its inverse
/// covariance applied to a pixel's colour relative to the mean.
#[inline(always)]
fn weighted_by_window(stats: &[f64; 9], own: [f64; 3]) -> ([f64; 3], [f64; 3]) {
    let mean = [stats[0], stats[1], stats[2]];
    let [m00, m01, m02, m11, m12, m22] =
        [stats[3], stats[4], stats[5], stats[6], stats[7], stats[8]];
    let (s, t, u) = (own[0] - mean[0], own[1] - mean[1], own[2] - mean[2]);
    let weighted = [
        m00 * s + m01 * t + m02 * u,
        m01 * s + m11 * t + m12 * u,
        m02 * s + m12 * t + m22 * u,
    ];
    (mean, weighted)
}

/// The colours of pixel (x, y)'s 5x5 neighbourhood in slot order, black outside the frame.
#[inline(always)]
fn neighbourhood_colours(image: &ImageRef<'_>, x: isize, y: isize) -> [[f64; 3]; NEIGHBOURS] {
    let mut patch = [[0.0; 3]; NEIGHBOURS];
    for_each_neighbour(x, y, image.width, image.height, |slot, nx, ny| {
        patch[slot] = colour(image, nx, ny);
    });
    patch
}

/// Calls `visit(slot, x, y)` for each slot of pixel (x, y)'s 5x5 neighbourhood (raster order)
/// that lies inside the `width` x `height` frame, with its column and row.
#[inline(always)]
fn for_each_neighbour(
    x: isize,
    y: isize,
    width: usize,
    height: usize,
    mut visit: impl FnMut(usize, usize, usize),
) {
    let reach = REACH as usize;
    let (x, y) = (x as usize, y as usize);
    let columns = x.saturating_sub(reach)..(x + reach + 1).min(width);
    for ny in y.saturating_sub(reach)..(y + reach + 1).min(height) {
        let first_slot = (ny + reach - y) * 5 + reach - x;
        for nx in columns.clone() {
            visit(first_slot + nx, nx, ny);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn laplacian_row_avx2(
    image: &ImageRef<'_>,
    windows: &WindowStats,
    x: isize,
    y: isize,
) -> [f64; 25] {
    laplacian_row_with(image, windows, x, y)
}

#[inline(always)]
fn laplacian_row_with(
    image: &ImageRef<'_>,
    windows: &WindowStats,
    x: isize,
    y: isize,
) -> [f64; 25] {
    type Term = [f64; 4];
    let add = |a: Term, b: Term| -> Term { std::array::from_fn(|d| a[d] + b[d]) };
    let own = colour(image, x as usize, y as usize);
    // (c, w) of the window centred at (x - 1 + i, y - 1 + j), zero where there is none.
    let mut terms = [[[0.0; 4]; 3]; 3];
    let mut windows_in = 0.0;
    for (j, row_of_terms) in terms.iter_mut().enumerate() {
        let cy = y - 1 + j as isize;
        if cy < 0 || cy as usize >= image.height {
            continue;
        }
        for (i, term) in row_of_terms.iter_mut().enumerate() {
            let cx = x - 1 + i as isize;
            if cx < 0 || cx as usize >= image.width {
                continue;
            }
            let Some(stats) = windows.at(cx as usize, cy as usize) else {
                continue;
            };
            let (mean, w) = weighted_by_window(stats, own);
            let c = 1.0 - (w[0] * mean[0] + w[1] * mean[1] + w[2] * mean[2]);
            *term = [c, w[0], w[1], w[2]];
            windows_in += 1.0;
        }
    }
    // Box sums along x: neighbour column k (0..5) shares windows i = k-2..=k (within 0..3);
    // then along y, the same for rows.
    let mut along_x = [[[0.0; 4]; 5]; 3];
    for (sums, [a, b, c]) in along_x.iter_mut().zip(terms) {
        let ab = add(a, b);
        *sums = [a, ab, add(ab, c), add(b, c), c];
    }
    let mut shared = [[0.0; 4]; NEIGHBOURS];
    for k in 0..5 {
        let (top, middle, bottom) = (along_x[0][k], along_x[1][k], along_x[2][k]);
        let top_middle = add(top, middle);
        shared[k] = top;
        shared[5 + k] = top_middle;
        shared[10 + k] = add(top_middle, bottom);
        shared[15 + k] = add(middle, bottom);
        shared[20 + k] = bottom;
    }
    // The neighbours' colours; those outside the frame share no window with the pixel (their
    // sums are 0), any colour does.
    let patch = neighbourhood_colours(image, x, y);
    const NINTH: f64 = 1.0 / 9.0;
    let mut row = [0.0; NEIGHBOURS];
    for ((value, [c, w0, w1, w2]), other) in row.iter_mut().zip(shared).zip(patch) {
        *value = -(c + w0 * other[0] + w1 * other[1] + w2 * other[2]) * NINTH;
    }
    row[CENTRE as usize] += windows_in;
    row
}

/// rembg's `alpha_matting_cutout` alpha: the trimap of `mask` under `params`, closed-form
/// matting over its unknown pixels, and 8 bits as rembg writes them (truncated); with how many
/// pixels were unknown. `None` when the trimap has no sure foreground or no sure background:
/// pymatting refuses those (ValueError), and rembg then keeps the mask (with its colour
/// decontaminated).
pub fn alpha_matting(
    image: &ImageRef<'_>,
    mask: &[u8],
    params: &TrimapParams,
) -> Result<Option<(Vec<u8>, usize)>, MattingError> {
    let trimap = trimap(mask, image.width, image.height, params);
    if !trimap.contains(&TRIMAP_FOREGROUND) || !trimap.contains(&TRIMAP_BACKGROUND) {
        return Ok(None);
    }
    let (alpha, unknown) = estimate_alpha(image, &trimap)?;
    Ok(Some((to_bytes(&alpha), unknown)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imageops::PixelLayout;

    /// [`laplacian_row`] as it was first written, window by window: the reference it is checked
    /// against. Row (x, y) of the matting Laplacian over its 5x5 neighbourhood (raster order):
    /// the sum over the windows containing it of `delta_ij - (1 + (I_i - mu)^T M (I_j - mu)) / 9`.
    fn laplacian_row_window_by_window(
        image: &ImageRef<'_>,
        windows: &WindowStats,
        x: isize,
        y: isize,
    ) -> [f64; 25] {
        // The colours of the 5x5 neighbourhood, read once (those outside the frame are never used:
        // windows are centred inside it).
        let patch = neighbourhood_colours(image, x, y);
        // Per neighbour, the sum over windows of `1 + (I_i - mu)^T M (I_j - mu)`, divided by the
        // window's area once at the end; and how many windows hold the pixel (its delta's sum).
        let mut sums = [0.0; NEIGHBOURS];
        let mut windows_in = 0.0;
        let own = patch[CENTRE as usize];
        for cy in y - 1..=y + 1 {
            for cx in x - 1..=x + 1 {
                if cx < 0 || cy < 0 {
                    continue;
                }
                if cx as usize >= image.width || cy as usize >= image.height {
                    continue;
                }
                let Some(stats) = windows.at(cx as usize, cy as usize) else {
                    continue;
                };
                let (mean, weighted) = weighted_by_window(stats, own);
                windows_in += 1.0;
                for jy in cy - 1..=cy + 1 {
                    for jx in cx - 1..=cx + 1 {
                        let k = ((jy - y + REACH) * 5 + (jx - x + REACH)) as usize;
                        let other = patch[k];
                        let product = weighted[0] * (other[0] - mean[0])
                            + weighted[1] * (other[1] - mean[1])
                            + weighted[2] * (other[2] - mean[2]);
                        sums[k] += 1.0 + product;
                    }
                }
            }
        }
        let mut row = sums.map(|sum| -sum / 9.0);
        row[CENTRE as usize] += windows_in;
        row
    }

    #[test]
    fn laplacian_rows_summed_by_shared_windows_are_those_summed_window_by_window() {
        // A noisy image (flat patches too) with a scattered unknown set, edges included.
        let (width, height) = (19, 13);
        let rgb: Vec<u8> = (0..width * height * 3)
            .map(|i| {
                if (i / 3) % 7 == 0 {
                    90
                } else {
                    (i * 7919 % 251) as u8
                }
            })
            .collect();
        let image = ImageRef::packed(&rgb, width, height, PixelLayout::RGB);
        let unknown: Vec<u32> = (0..(width * height) as u32)
            .filter(|i| i % 3 != 1)
            .collect();
        let windows = WindowStats::new(&image, &unknown);
        for &p in &unknown {
            let (x, y) = ((p as usize % width) as isize, (p as usize / width) as isize);
            let summed = laplacian_row(&image, &windows, x, y);
            let reference = laplacian_row_window_by_window(&image, &windows, x, y);
            for slot in 0..NEIGHBOURS {
                let scale = reference[slot].abs().max(1.0);
                assert!(
                    (summed[slot] - reference[slot]).abs() <= 1e-9 * scale,
                    "({x}, {y}) slot {slot}: {} against {}",
                    summed[slot],
                    reference[slot]
                );
            }
        }
    }

    fn indices(set: &[bool]) -> Vec<usize> {
        (0..set.len()).filter(|&i| set[i]).collect()
    }

    #[test]
    fn erosion_centres_windows_as_scipy_does() {
        // scipy.ndimage.binary_erosion of one run 5..=19 of a 30-pixel line by (1, k) ones:
        // even sizes reach one further back than forward. (The line is a frame's middle row,
        // every row alike, so that the rows above and below change nothing.)
        let line: Vec<bool> = (0..30).map(|i| (5..20).contains(&i)).collect();
        let middle_row = |set: &[bool], size: usize, border: bool| {
            let width = set.len();
            let frame: Vec<bool> = (0..30).flat_map(|_| set.iter().copied()).collect();
            erode(&frame, width, 30, size, border)[15 * width..][..width].to_vec()
        };
        for (size, expected) in [
            (1, (5..20).collect::<Vec<_>>()),
            (2, (6..20).collect()),
            (3, (6..19).collect()),
            (4, (7..19).collect()),
            (10, (10..16).collect()),
        ] {
            assert_eq!(
                indices(&middle_row(&line, size, false)),
                expected,
                "size {size}"
            );
        }
        // What lies outside: nothing (foreground) or everything (background).
        let full = vec![true; 12];
        assert_eq!(
            indices(&middle_row(&full, 4, false)),
            (2..11).collect::<Vec<_>>()
        );
        assert_eq!(
            indices(&middle_row(&full, 4, true)),
            (0..12).collect::<Vec<_>>()
        );
    }

    #[test]
    fn square_erosion_keeps_the_cells_whose_whole_square_is_set() {
        // Against the definition, on a scattered set, for odd and even sizes and both borders.
        let (width, height) = (23, 17);
        let set: Vec<bool> = (0..width * height)
            .map(|i| (i * 7919 % 13) > 2 || (i % width) < 6)
            .collect();
        for size in (1..=9).chain([16, 17, 40]) {
            let (before, after) = ((size / 2) as isize, (size - 1 - size / 2) as isize);
            for border in [false, true] {
                let eroded = erode(&set, width, height, size, border);
                for y in 0..height as isize {
                    for x in 0..width as isize {
                        let expected = (y - before..=y + after).all(|cy| {
                            (x - before..=x + after).all(|cx| {
                                let outside = cx < 0
                                    || cy < 0
                                    || cx >= width as isize
                                    || cy >= height as isize;
                                if outside {
                                    border
                                } else {
                                    set[cy as usize * width + cx as usize]
                                }
                            })
                        });
                        assert_eq!(
                            eroded[y as usize * width + x as usize],
                            expected,
                            "size {size}, border {border}, ({x}, {y})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn erode_size_zero_is_scipys_default_cross() {
        // A 3x3 block in a 5x5 frame keeps only its centre; a 3x3 square would keep it too,
        // but a plus-shaped set keeps its centre only under the cross.
        let plus: Vec<bool> = (0..25)
            .map(|i| matches!((i % 5, i / 5), (2, 1..=3) | (1..=3, 2)))
            .collect();
        assert_eq!(indices(&erode(&plus, 5, 5, 0, false)), vec![12]);
        assert_eq!(indices(&erode(&plus, 5, 5, 3, false)), Vec::<usize>::new());
    }

    #[test]
    fn the_trimap_marks_sure_regions_and_the_band_between() {
        let (width, height) = (40, 10);
        let mask: Vec<u8> = (0..width * height)
            .map(|i| match i % width {
                0..15 => 255,
                15..25 => 128,
                _ => 0,
            })
            .collect();
        let trimap = trimap(&mask, width, height, &TrimapParams::default());
        for y in 0..height {
            for x in 0..width {
                let t = trimap[y * width + x];
                // The foreground is eroded 5 back and 4 forward, the frame's edge included;
                // the background only away from the band.
                let expected = if (5..11).contains(&x) && y == 5 {
                    TRIMAP_FOREGROUND
                } else if x >= 30 {
                    TRIMAP_BACKGROUND
                } else {
                    TRIMAP_UNKNOWN
                };
                assert_eq!(t, expected, "({x}, {y})");
            }
        }
    }

    fn image_of(pixels: &[[u8; 3]]) -> Vec<u8> {
        pixels.iter().flatten().copied().collect()
    }

    #[test]
    fn laplacian_rows_sum_to_zero_and_are_symmetric() {
        // Everything unknown: L_U is the whole Laplacian, whose rows sum to 0 (constants are
        // in its null space) and which is symmetric.
        let (width, height) = (9, 7);
        let pixels: Vec<[u8; 3]> = (0..width * height)
            .map(|i| {
                [
                    (i * 37 % 256) as u8,
                    (i * 91 % 256) as u8,
                    (i * 53 % 256) as u8,
                ]
            })
            .collect();
        let data = image_of(&pixels);
        let image = ImageRef::packed(&data, width, height, PixelLayout::RGB);
        let system = BandSystem::build(&image, &vec![TRIMAP_UNKNOWN; width * height]);
        let n = width * height;
        let (entries, rhs) = system.in_raster_order();
        let mut dense = vec![0.0; n * n];
        for (row, column, value) in entries {
            dense[row * n + column] = value;
            dense[column * n + row] = value;
        }
        for row in 0..n {
            let sum: f64 = dense[row * n..][..n].iter().sum();
            let scale: f64 = dense[row * n..][..n].iter().map(|v| v.abs()).sum();
            assert!(
                sum.abs() <= 1e-9 * scale.max(1.0),
                "row {row} sums to {sum}"
            );
        }
        assert!(
            rhs.iter().all(|&v| v == 0.0),
            "nothing known, nothing on the right"
        );
    }

    #[test]
    fn a_blend_of_two_colours_gives_back_its_alpha() {
        // The colour-line model holds exactly for a blend of two flat colours: the matte is
        // the blend's alpha.
        let (width, height) = (48, 12);
        let (front, back) = ([230.0, 40.0, 30.0], [20.0, 60.0, 220.0]);
        let truth = |x: usize| ((x as f64 - 14.0) / 20.0).clamp(0.0, 1.0);
        let mut data = Vec::new();
        let mut trimap = Vec::new();
        for _ in 0..height {
            for x in 0..width {
                let a = truth(x);
                data.extend((0..3).map(|c| (a * front[c] + (1.0 - a) * back[c]).round() as u8));
                trimap.push(match x {
                    0..8 => TRIMAP_BACKGROUND,
                    40.. => TRIMAP_FOREGROUND,
                    _ => TRIMAP_UNKNOWN,
                });
            }
        }
        let image = ImageRef::packed(&data, width, height, PixelLayout::RGB);
        let (alpha, unknown) = estimate_alpha(&image, &trimap).unwrap();
        assert_eq!(unknown, 32 * height);
        for (i, &a) in alpha.iter().enumerate() {
            let expected = truth(i % width);
            assert!(
                (f64::from(a) - expected).abs() < 2.0 / 255.0,
                "({}, {}): {a} for {expected}",
                i % width,
                i / width
            );
        }
    }

    #[test]
    fn a_band_too_large_to_solve_is_refused_before_it_is_built() {
        let (width, height) = (3841, 2160);
        let data = vec![0u8; width * height * 3];
        let image = ImageRef::packed(&data, width, height, PixelLayout::RGB);
        let error = estimate_alpha(&image, &vec![TRIMAP_UNKNOWN; width * height]).unwrap_err();
        assert_eq!(
            error,
            MattingError::BandTooLarge {
                unknown: width * height,
                limit: MAX_UNKNOWN_PIXELS
            }
        );
        assert!(error.to_string().contains("alpha-matting-erode-size"));
    }

    #[test]
    fn no_band_no_work_and_bands_without_anchors_stay_finite() {
        let data = vec![100u8; 5 * 4 * 3];
        let image = ImageRef::packed(&data, 5, 4, PixelLayout::RGB);
        let known: Vec<u8> = (0..20).map(|i| if i < 10 { 0 } else { 255 }).collect();
        let (alpha, unknown) = estimate_alpha(&image, &known).unwrap();
        assert_eq!(unknown, 0);
        assert_eq!(
            alpha,
            known
                .iter()
                .map(|&t| f32::from(t) / 255.0)
                .collect::<Vec<_>>()
        );
        // Nothing known (a singular system), and frames too small for any window.
        for (width, height) in [(5, 4), (1, 1), (2, 2), (3, 1), (1, 7)] {
            let data = vec![77u8; width * height * 4];
            let image = ImageRef::packed(&data, width, height, PixelLayout::RGBX);
            let (alpha, unknown) =
                estimate_alpha(&image, &vec![TRIMAP_UNKNOWN; width * height]).unwrap();
            assert_eq!(unknown, width * height);
            assert!(
                alpha
                    .iter()
                    .all(|a| a.is_finite() && (0.0..=1.0).contains(a))
            );
        }
    }
}
