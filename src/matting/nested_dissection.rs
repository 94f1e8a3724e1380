//! A fill-reducing elimination order for a sparse system over pixels, from the pixels'
//! positions: geometric nested dissection. A straight cut of the pixel set (a column or row strip
//! as thick as a pixel's reach) leaves two halves with no coupling between them; each half is
//! ordered the same way, then the strip comes last. A Cholesky factor then fills only within
//! the halves and the strips, which on 2-D pixel grids is far less than a general minimum degree
//! order finds, and is found in O(n log n) without looking at the matrix.

/// Pixels below this many are not cut further: a small set fills little whatever its order.
const SMALLEST_CUT: usize = 16;

/// Cuts that leave more than this share of the remaining pixels on one side are not taken:
/// a thin cut that leaves nearly everything on one side does not shrink the problem.
const MOST_ON_ONE_SIDE: f64 = 0.7;

/// A pixel to order: its column, its row, and its index in the caller's numbering.
#[derive(Debug, Clone, Copy)]
struct Pixel {
    x: u32,
    y: u32,
    index: u32,
}

/// The elimination order of the pixels at `positions` (frame positions `y * width + x`), each
/// coupled to those within `reach` pixels on both axes: `order[k]` is the index into
/// `positions` of the pixel eliminated `k`-th.
pub fn order(positions: &[u32], width: usize, reach: u32) -> Vec<usize> {
    order_in_pieces(positions, width, reach, SMALLEST_PARALLEL_HALVES)
}

/// [`order`], with halves of fewer than `smallest_parallel_halves` pixels between them ordered
/// one after the other.
fn order_in_pieces(
    positions: &[u32],
    width: usize,
    reach: u32,
    smallest_parallel_halves: usize,
) -> Vec<usize> {
    let mut pixels: Vec<Pixel> = positions
        .iter()
        .enumerate()
        .map(|(index, &p)| Pixel {
            x: p % width as u32,
            y: p / width as u32,
            index: index as u32,
        })
        .collect();
    let mut order = Vec::with_capacity(pixels.len());
    dissect(
        &mut pixels,
        reach.max(1),
        smallest_parallel_halves,
        &mut order,
    );
    order
}

fn dissect(
    pixels: &mut [Pixel],
    reach: u32,
    smallest_parallel_halves: usize,
    order: &mut Vec<usize>,
) {
    let cut = if pixels.len() < SMALLEST_CUT {
        None
    } else {
        thinnest_cut(pixels, reach)
    };
    let Some(cut) = cut else {
        order.extend(pixels.iter().map(|p| p.index as usize));
        return;
    };
    let (after, strip) = partition(pixels, &cut);
    let (first, rest) = pixels.split_at_mut(after);
    let (second, strip) = rest.split_at_mut(strip - after);
    if first.len() + second.len() >= smallest_parallel_halves {
        // The halves are independent: ordered at once, each into its own list.
        let ordered = |half: &mut [Pixel]| {
            let mut order = Vec::with_capacity(half.len());
            dissect(half, reach, smallest_parallel_halves, &mut order);
            order
        };
        let (first, second) = rayon::join(|| ordered(first), || ordered(second));
        order.extend(first);
        order.extend(second);
    } else {
        dissect(first, reach, smallest_parallel_halves, order);
        dissect(second, reach, smallest_parallel_halves, order);
    }
    order.extend(strip.iter().map(|p| p.index as usize));
}

/// Halves with fewer pixels than this between them are ordered one after the other: a task
/// costs more than ordering a few thousand pixels.
const SMALLEST_PARALLEL_HALVES: usize = 4096;

/// A strip `start .. start + reach` along one axis: pixels before it and after it are not
/// coupled.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cut {
    along_x: bool,
    start: u32,
    end: u32,
}

impl Cut {
    fn key(&self, pixel: &Pixel) -> u32 {
        if self.along_x { pixel.x } else { pixel.y }
    }
}

/// The strip, on either axis, that holds the fewest pixels, weighted against imbalance, among
/// those that leave at most [`MOST_ON_ONE_SIDE`] on one side; `None` when no strip separates.
fn thinnest_cut(pixels: &[Pixel], reach: u32) -> Option<Cut> {
    let n = pixels.len();
    let mut best: Option<(f64, Cut)> = None;
    for along_x in [true, false] {
        let probe = Cut {
            along_x,
            start: 0,
            end: 0,
        };
        let (low, high) = pixels.iter().fold((u32::MAX, 0), |(low, high), p| {
            let k = probe.key(p);
            (low.min(k), high.max(k))
        });
        // A strip needs pixels on both sides of it.
        if high - low < reach + 1 {
            continue;
        }
        let mut per_line = vec![0usize; (high - low + 1) as usize];
        for p in pixels {
            per_line[(probe.key(p) - low) as usize] += 1;
        }
        let reach = reach as usize;
        let mut in_strip: usize = per_line[1..=reach].iter().sum();
        let mut before = per_line[0];
        for start in 1..per_line.len() - reach {
            if start > 1 {
                before += per_line[start - 1];
                in_strip = in_strip + per_line[start + reach - 1] - per_line[start - 1];
            }
            let after = n - before - in_strip;
            let larger = before.max(after) as f64 / (before + after).max(1) as f64;
            if larger > MOST_ON_ONE_SIDE {
                continue;
            }
            let cost = in_strip as f64 * (0.5 + larger);
            if best.is_none_or(|(best_cost, _)| cost < best_cost) {
                let start = low + start as u32;
                let cut = Cut {
                    along_x,
                    start,
                    end: start + reach as u32,
                };
                best = Some((cost, cut));
            }
        }
    }
    best.map(|(_, cut)| cut)
}

/// Reorders `pixels` as [before the strip | after it | in it]; returns where the second and the
/// third part start.
fn partition(pixels: &mut [Pixel], cut: &Cut) -> (usize, usize) {
    // Dutch national flag: [0, before) before, [before, next) after, [strip, len) in the strip.
    let (mut before, mut next, mut strip) = (0, 0, pixels.len());
    while next < strip {
        let k = cut.key(&pixels[next]);
        if k < cut.start {
            pixels.swap(before, next);
            before += 1;
            next += 1;
        } else if k >= cut.end {
            next += 1;
        } else {
            strip -= 1;
            pixels.swap(next, strip);
        }
    }
    (before, strip)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Positions of a `width` x `height` frame's pixels for which `keep` holds.
    fn pixels_where(width: usize, height: usize, keep: impl Fn(usize, usize) -> bool) -> Vec<u32> {
        (0..width * height)
            .filter(|&p| keep(p % width, p / width))
            .map(|p| p as u32)
            .collect()
    }

    /// The fill of a Cholesky factor in `order` of the pixels at `positions` coupled within
    /// `reach`: the number of entries of L, by eliminating a dense copy of the graph.
    fn fill(positions: &[u32], width: usize, reach: i64, order: &[usize]) -> usize {
        let n = positions.len();
        let mut rank = vec![0; n];
        for (k, &i) in order.iter().enumerate() {
            rank[i] = k;
        }
        let mut adjacent = vec![vec![false; n]; n];
        for i in 0..n {
            for j in 0..n {
                let (a, b) = (positions[i] as i64, positions[j] as i64);
                let (dx, dy) = (
                    a % width as i64 - b % width as i64,
                    a / width as i64 - b / width as i64,
                );
                adjacent[rank[i]][rank[j]] = dx.abs() <= reach && dy.abs() <= reach;
            }
        }
        let mut entries = 0;
        for k in 0..n {
            let later: Vec<usize> = (k + 1..n).filter(|&j| adjacent[k][j]).collect();
            entries += 1 + later.len();
            for &a in &later {
                for &b in &later {
                    adjacent[a][b] = true;
                }
            }
        }
        entries
    }

    #[test]
    fn the_order_is_a_permutation_of_every_pixel() {
        for (width, height) in [(1, 1), (3, 1), (1, 40), (37, 23), (64, 64)] {
            let positions = pixels_where(width, height, |x, y| (x * 7 + y * 3) % 5 != 0);
            let mut order = order(&positions, width, 2);
            order.sort_unstable();
            assert_eq!(
                order,
                (0..positions.len()).collect::<Vec<_>>(),
                "{width}x{height}"
            );
        }
    }

    #[test]
    fn halves_are_ordered_before_the_strip_that_separates_them() {
        // On a full square, the last pixels eliminated form a strip two pixels thick that cuts
        // the square in two, and no pixel before it is coupled to a pixel on its other side.
        let (width, height) = (40, 40);
        let positions = pixels_where(width, height, |_, _| true);
        let order = order(&positions, width, 2);
        let last: Vec<(u32, u32)> = order[order.len() - 2 * 40..]
            .iter()
            .map(|&i| (positions[i] % 40, positions[i] / 40))
            .collect();
        let columns: std::collections::BTreeSet<u32> = last.iter().map(|p| p.0).collect();
        let rows: std::collections::BTreeSet<u32> = last.iter().map(|p| p.1).collect();
        assert!(
            columns.len() == 2 || rows.len() == 2,
            "the last 80 pixels are a strip: columns {columns:?} rows {rows:?}"
        );
    }

    #[test]
    fn halves_ordered_at_once_give_the_order_of_halves_ordered_in_turn() {
        // A band around a silhouette big enough to be cut in parallel many times over.
        let (width, height) = (400, 300);
        let positions = pixels_where(width, height, |x, y| {
            let r2 = (x as i64 - 200).pow(2) + (y as i64 - 150).pow(2) * 2;
            (70 * 70..=120 * 120).contains(&r2)
        });
        assert!(positions.len() > 4 * SMALLEST_PARALLEL_HALVES);
        assert_eq!(
            order_in_pieces(&positions, width, 2, 1),
            order_in_pieces(&positions, width, 2, usize::MAX)
        );
        assert_eq!(
            order(&positions, width, 2),
            order_in_pieces(&positions, width, 2, usize::MAX)
        );
    }

    #[test]
    fn a_band_fills_less_than_raster_order() {
        // A ring, the shape of an unknown band around a silhouette.
        let (width, height) = (30, 30);
        let positions = pixels_where(width, height, |x, y| {
            let r2 = (x as i64 - 15).pow(2) + (y as i64 - 15).pow(2);
            (60..=170).contains(&r2)
        });
        let raster: Vec<usize> = (0..positions.len()).collect();
        let dissected = order(&positions, width, 2);
        let (raster_fill, dissected_fill) = (
            fill(&positions, width, 2, &raster),
            fill(&positions, width, 2, &dissected),
        );
        assert!(
            dissected_fill < raster_fill,
            "{dissected_fill} entries against raster order's {raster_fill}"
        );
    }
}
