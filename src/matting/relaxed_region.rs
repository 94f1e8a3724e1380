//! Which pixels of each level of the multi-level foreground estimate are worth relaxing.
//!
//! Only pixels of partial alpha are written out, and a pixel's estimate hardly depends on
//! pixels far from it: each Gauss-Seidel step takes a weighted mean of four neighbours, two of
//! them already relaxed in the same sweep, so what happens `d` pixels away reaches a pixel with a
//! weight of about `d 2^-d`. A big level is therefore relaxed only within [`MARGIN`] of what is
//! needed from it (the pixels of partial alpha, and what the next finer level is upsampled from);
//! elsewhere it keeps the values it was upsampled to, and the result differs from relaxing the
//! whole level by less than a float's rounding.
//!
//! Regions are marked in square tiles of [`TILE`] pixels, so that a row's work is a few spans.

use std::ops::Range;

/// Side of the square tiles regions are marked in.
pub const TILE: usize = 16;

/// Pixels within this distance of what is needed are relaxed: `32 * 2^-32` is below the
/// rounding of the 32-bit floats the estimate is computed in.
pub const MARGIN: usize = 32;

/// A set of tiles over a `width` x `height` level.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TileMask {
    width: usize,
    height: usize,
    across: usize,
    down: usize,
    set: Vec<bool>,
}

impl TileMask {
    /// Clears the mask and sizes it for a `width` x `height` level.
    pub fn reset(&mut self, width: usize, height: usize) {
        self.width = width;
        self.height = height;
        self.across = width.div_ceil(TILE);
        self.down = height.div_ceil(TILE);
        self.set.clear();
        self.set.resize(self.across * self.down, false);
    }

    /// Sets every tile.
    pub fn fill(&mut self) {
        self.set.fill(true);
    }

    /// Sets the tiles that hold a byte of `alpha` (the level's, row by row) that is neither 0
    /// nor 255.
    pub fn mark_partial(&mut self, alpha: &[u8]) {
        for (y, row) in alpha.chunks_exact(self.width).enumerate() {
            let tiles = &mut self.set[y / TILE * self.across..][..self.across];
            for (tile, pixels) in tiles.iter_mut().zip(row.chunks(TILE)) {
                // No early exit: a fixed-length loop over the tile vectorises.
                *tile |= pixels
                    .iter()
                    .fold(false, |any, &a| any | (a != 0 && a != 255));
            }
        }
    }

    /// Sets the tiles covering the pixels in `columns` x `rows` (inclusive ranges).
    pub fn mark_pixels(&mut self, columns: (usize, usize), rows: (usize, usize)) {
        for ty in rows.0 / TILE..=rows.1 / TILE {
            self.set[ty * self.across..][columns.0 / TILE..=columns.1 / TILE].fill(true);
        }
    }

    /// `into` = this mask grown by `by` tiles in every direction (a square).
    pub fn dilate(&self, by: usize, into: &mut TileMask) {
        into.reset(self.width, self.height);
        let mut rows = vec![false; self.set.len()];
        for ty in 0..self.down {
            let from = &self.set[ty * self.across..][..self.across];
            let to = &mut rows[ty * self.across..][..self.across];
            for tx in (0..self.across).filter(|&tx| from[tx]) {
                to[tx.saturating_sub(by)..(tx + by + 1).min(self.across)].fill(true);
            }
        }
        for ty in 0..self.down {
            let reach = ty.saturating_sub(by)..(ty + by + 1).min(self.down);
            for tx in 0..self.across {
                into.set[ty * self.across + tx] =
                    reach.clone().any(|other| rows[other * self.across + tx]);
            }
        }
    }

    /// The columns of row `y` in set tiles, as runs of consecutive columns.
    pub fn spans(&self, y: usize) -> impl Iterator<Item = Range<usize>> + '_ {
        let tiles = &self.set[y / TILE * self.across..][..self.across];
        let width = self.width;
        let mut tx = 0;
        std::iter::from_fn(move || {
            while tx < tiles.len() && !tiles[tx] {
                tx += 1;
            }
            if tx == tiles.len() {
                return None;
            }
            let start = tx;
            while tx < tiles.len() && tiles[tx] {
                tx += 1;
            }
            Some(start * TILE..(tx * TILE).min(width))
        })
    }

    /// Whether pixel (x, y) lies in a set tile.
    #[cfg(test)]
    pub fn contains(&self, x: usize, y: usize) -> bool {
        self.set[y / TILE * self.across + x / TILE]
    }

    /// How many pixels the set tiles cover.
    #[cfg(test)]
    pub fn pixels(&self) -> usize {
        (0..self.height)
            .map(|y| self.spans(y).map(|s| s.len()).sum::<usize>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_the_runs_of_set_tiles_cut_at_the_edge() {
        let mut mask = TileMask::default();
        mask.reset(5 * TILE + 3, 2 * TILE);
        mask.mark_pixels((0, 0), (0, 0));
        mask.mark_pixels((2 * TILE + 1, 5 * TILE + 2), (TILE, TILE + 1));
        assert_eq!(mask.spans(0).collect::<Vec<_>>(), vec![0..TILE]);
        assert_eq!(mask.spans(TILE - 1).collect::<Vec<_>>(), vec![0..TILE]);
        assert_eq!(
            mask.spans(TILE).collect::<Vec<_>>(),
            vec![2 * TILE..5 * TILE + 3]
        );
        assert_eq!(mask.pixels(), TILE * TILE + TILE * (3 * TILE + 3));
    }

    #[test]
    fn partial_alpha_marks_its_tile_and_dilation_grows_a_square() {
        let (width, height) = (7 * TILE, 6 * TILE);
        let mut alpha = vec![255u8; width * height];
        alpha[(3 * TILE + 5) * width + 2 * TILE + 7] = 128;
        let mut partial = TileMask::default();
        partial.reset(width, height);
        partial.mark_partial(&alpha);
        assert!(partial.contains(2 * TILE, 3 * TILE));
        assert_eq!(partial.pixels(), TILE * TILE);
        let mut grown = TileMask::default();
        partial.dilate(2, &mut grown);
        for ty in 0..6 {
            for tx in 0..7 {
                let inside = (1..=5).contains(&ty) && tx <= 4;
                assert_eq!(
                    grown.contains(tx * TILE, ty * TILE),
                    inside,
                    "tile {tx},{ty}"
                );
            }
        }
        // Opaque and transparent pixels mark nothing.
        alpha
            .iter_mut()
            .for_each(|a| *a = if *a == 128 { 0 } else { *a });
        partial.reset(width, height);
        partial.mark_partial(&alpha);
        assert_eq!(partial.pixels(), 0);
    }
}
