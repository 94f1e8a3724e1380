//! OpenCV's `cv2.resize(..., interpolation=cv2.INTER_CUBIC)` for 8-bit images: 4x4 taps with
//! A = -0.75, no widening when shrinking, edge pixels repeated, 11-bit fixed-point weights and
//! a horizontal pass kept in 32-bit integers before the vertical pass rounds to 8 bits.
//! SyncTalk_2D crops and pastes faces with it, so the paste-back must resample the same way.

const COEF_BITS: u32 = 11;
const COEF_SCALE: f32 = (1 << COEF_BITS) as f32;

/// The four cubic weights of a sample at fractional offset `x` (OpenCV's `interpolateCubic`).
fn cubic_weights(x: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let w0 = ((A * (x + 1.0) - 5.0 * A) * (x + 1.0) + 8.0 * A) * (x + 1.0) - 4.0 * A;
    let w1 = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let w2 = ((A + 2.0) * (1.0 - x) - (A + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0;
    [w0, w1, w2, 1.0 - w0 - w1 - w2]
}

/// For each output position: the first of the four source positions (may be -1 or past the
/// end; clamped when read) and the fixed-point weights.
fn taps(src_size: usize, dst_size: usize) -> Vec<(isize, [i32; 4])> {
    let scale = src_size as f64 / dst_size as f64;
    (0..dst_size)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let s = f.floor();
            let weights = cubic_weights(f - s).map(|w| (w * COEF_SCALE).round() as i32);
            (s as isize - 1, weights)
        })
        .collect()
}

/// Resizes a packed image of `channels` 8-bit channels (`src_stride` bytes per row) into the
/// packed `dst` of `dst_width x dst_height`. Panics if the buffers are smaller than their sizes.
#[allow(clippy::too_many_arguments)]
pub fn resize_cubic(
    src: &[u8],
    src_width: usize,
    src_height: usize,
    src_stride: usize,
    channels: usize,
    dst: &mut [u8],
    dst_width: usize,
    dst_height: usize,
) {
    let x_taps = taps(src_width, dst_width);
    let y_taps = taps(src_height, dst_height);
    let clamp = |i: isize, size: usize| i.clamp(0, size as isize - 1) as usize;
    let row_len = dst_width * channels;
    // Horizontal pass for every source row a destination row reads, computed once per row.
    let mut horizontal = vec![0i32; src_height * row_len];
    for (y, out_row) in horizontal.chunks_exact_mut(row_len).enumerate() {
        let src_row = &src[y * src_stride..];
        for (x, &(first, weights)) in x_taps.iter().enumerate() {
            let columns = [0, 1, 2, 3].map(|k| clamp(first + k, src_width) * channels);
            for c in 0..channels {
                out_row[x * channels + c] = (0..4)
                    .map(|k| i32::from(src_row[columns[k] + c]) * weights[k])
                    .sum();
            }
        }
    }
    let round = 1i32 << (2 * COEF_BITS - 1);
    for (y, out_row) in dst.chunks_exact_mut(row_len).take(dst_height).enumerate() {
        let (first, weights) = y_taps[y];
        let rows =
            [0, 1, 2, 3].map(|k| &horizontal[clamp(first + k, src_height) * row_len..][..row_len]);
        for (x, out) in out_row.iter_mut().enumerate() {
            let sum: i32 = (0..4).map(|k| rows[k][x] * weights[k]).sum();
            *out = ((sum + round) >> (2 * COEF_BITS)).clamp(0, 255) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one() {
        for x in [0.0, 0.25, 0.5, 0.9] {
            let sum: f32 = cubic_weights(x).iter().sum();
            assert!((sum - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn same_size_is_a_copy_and_flat_stays_flat() {
        let src: Vec<u8> = (0..5 * 4 * 3).map(|i| (i * 11 % 256) as u8).collect();
        let mut dst = vec![0; src.len()];
        resize_cubic(&src, 5, 4, 15, 3, &mut dst, 5, 4);
        assert_eq!(dst, src);
        let flat = vec![77u8; 9 * 9];
        let mut out = vec![0; 4 * 13];
        resize_cubic(&flat, 9, 9, 9, 1, &mut out, 4, 13);
        assert!(out.iter().all(|&v| v == 77));
    }
}
