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
    let clamp = |i: isize, size: usize| i.clamp(0, size as isize - 1) as usize;
    // Byte offsets of the four source pixels of each output column, edges repeated.
    let columns: Vec<([usize; 4], [i32; 4])> = taps(src_width, dst_width)
        .into_iter()
        .map(|(first, weights)| {
            (
                [0, 1, 2, 3].map(|k| clamp(first + k, src_width) * channels),
                weights,
            )
        })
        .collect();
    let y_taps = taps(src_height, dst_height);
    let row_len = dst_width * channels;
    // Horizontal pass for every source row, kept in 32 bits as OpenCV does.
    let mut horizontal = vec![0i32; src_height * row_len];
    for (y, out_row) in horizontal.chunks_exact_mut(row_len).enumerate() {
        let src_row = &src[y * src_stride..];
        for (out, (offsets, weights)) in out_row.chunks_exact_mut(channels).zip(&columns) {
            for (c, value) in out.iter_mut().enumerate() {
                *value = i32::from(src_row[offsets[0] + c]) * weights[0]
                    + i32::from(src_row[offsets[1] + c]) * weights[1]
                    + i32::from(src_row[offsets[2] + c]) * weights[2]
                    + i32::from(src_row[offsets[3] + c]) * weights[3];
            }
        }
    }
    let round = 1i32 << (2 * COEF_BITS - 1);
    for (y, out_row) in dst.chunks_exact_mut(row_len).take(dst_height).enumerate() {
        let (first, weights) = y_taps[y];
        let [r0, r1, r2, r3] =
            [0, 1, 2, 3].map(|k| &horizontal[clamp(first + k, src_height) * row_len..][..row_len]);
        for (x, out) in out_row.iter_mut().enumerate() {
            let sum =
                r0[x] * weights[0] + r1[x] * weights[1] + r2[x] * weights[2] + r3[x] * weights[3];
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
