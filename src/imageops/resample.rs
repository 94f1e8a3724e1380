//! PIL's convolution resampler (`Image.resize` with LANCZOS, BILINEAR or BICUBIC on 8-bit images),
//! reproduced to the bit.
//!
//! rembg's masks depend on PIL's exact arithmetic: a horizontal pass first, rounded to 8 bits,
//! then a vertical pass, with 22-bit fixed-point weights. SIMD resizers such as
//! fast_image_resize run the passes the other way round with 16-bit weights, which moves pixels
//! near sharp edges by up to 13 levels and the mask with them. Both passes here are one
//! multiply-add kernel ([`weighted_sums`], AVX-512 or AVX2 where present, portable elsewhere)
//! over contiguous bytes: source rows for the vertical pass, strips turned on their side for the
//! horizontal one. Integer sums do not depend on their order, so every variant gives PIL's bytes.
//! Rows are spread over the cores with rayon. Single-threaded on 1080p RGB to 320x320 (the
//! model input of u2netp): 2.1 ms, where compiler-vectorised loops took 7-12 ms.

use rayon::prelude::*;

/// PIL's `PRECISION_BITS` for 8-bit images.
const PRECISION_BITS: u32 = 32 - 8 - 2;
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Which PIL filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Filter {
    /// PIL's `Image.LANCZOS`: Lanczos-3, widened by the scale factor when shrinking.
    Lanczos3,
    /// PIL's `Image.BILINEAR`: triangle filter, widened by the scale factor when shrinking.
    Bilinear,
    /// PIL's `Image.BICUBIC`: Keys' cubic with a = -0.5, widened by the scale factor when
    /// shrinking.
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Lanczos3 => 3.0,
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        fn sinc(x: f64) -> f64 {
            if x == 0.0 {
                1.0
            } else {
                let x = x * std::f64::consts::PI;
                x.sin() / x
            }
        }
        match self {
            Filter::Lanczos3 if (-3.0..3.0).contains(&x) => sinc(x) * sinc(x / 3.0),
            Filter::Lanczos3 => 0.0,
            Filter::Bilinear => (1.0 - x.abs()).max(0.0),
            Filter::Bicubic => {
                // PIL's bicubic_filter, in its own order of operations.
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// Fixed-point weights of one resampling direction: output `i` reads `len[i]` inputs from
/// `start[i]`, weighted by `weights[i * width..]`.
#[derive(Debug, Clone)]
struct Weights {
    start: Vec<usize>,
    len: Vec<usize>,
    width: usize,
    weights: Vec<i32>,
}

impl Weights {
    /// PIL's `precompute_coeffs` followed by `normalize_coeffs_8bpc`.
    fn new(in_size: usize, out_size: usize, filter: Filter) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filter_scale = scale.max(1.0);
        let support = filter.support() * filter_scale;
        let width = support.ceil() as usize * 2 + 1;
        let mut start = Vec::with_capacity(out_size);
        let mut len = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * width];
        let mut row = vec![0f64; width];
        for out in 0..out_size {
            let center = (out as f64 + 0.5) * scale;
            // C's (int) cast truncates toward zero, as `as i64` does.
            let first = ((center - support + 0.5) as i64).max(0);
            let last = ((center + support + 0.5) as i64).min(in_size as i64);
            let count = (last - first).clamp(0, width as i64) as usize;
            let mut total = 0.0;
            for (x, w) in row.iter_mut().enumerate().take(count) {
                *w = filter.weight((x as f64 + first as f64 - center + 0.5) / filter_scale);
                total += *w;
            }
            for (x, w) in row.iter().enumerate().take(count) {
                let normalized = if total != 0.0 { w / total } else { *w };
                let fixed = normalized * f64::from(1u32 << PRECISION_BITS);
                weights[out * width + x] = if normalized < 0.0 {
                    (fixed - 0.5) as i32
                } else {
                    (fixed + 0.5) as i32
                };
            }
            start.push(first as usize);
            len.push(count);
        }
        Self {
            start,
            len,
            width,
            weights,
        }
    }

    fn of(&self, out: usize) -> (usize, &[i32]) {
        let start = out * self.width;
        (self.start[out], &self.weights[start..start + self.len[out]])
    }
}

#[inline(always)]
fn clip8(value: i32) -> u8 {
    // PIL's clip8: 0 at or below 0, 255 from 256 << PRECISION_BITS on, else the shifted value;
    // as a clamp of the shift it has no branches and vectorises.
    (value >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Rows the horizontal pass takes at a time.
const STRIP: usize = 64;

/// Turns `rows` rows of `row_bytes` bytes, `src_stride` apart, on their side:
/// `dst[j * dst_stride + y] = src[y * src_stride + j]`. 16x16 blocks go through SSE2 shuffles
/// (part of every x86-64 CPU); the edges byte by byte.
fn transpose(
    src: &[u8],
    src_stride: usize,
    rows: usize,
    row_bytes: usize,
    dst: &mut [u8],
    dst_stride: usize,
) {
    if rows == 0 || row_bytes == 0 {
        return;
    }
    assert!(rows <= dst_stride && row_bytes <= src_stride);
    assert!(src.len() >= (rows - 1) * src_stride + row_bytes);
    assert!(dst.len() >= (row_bytes - 1) * dst_stride + rows);
    // The rows and bytes covered by whole 16x16 blocks (none without SSE2).
    let (whole_rows, whole_bytes) = if cfg!(target_arch = "x86_64") {
        (rows / 16 * 16, row_bytes / 16 * 16)
    } else {
        (0, 0)
    };
    #[cfg(target_arch = "x86_64")]
    {
        for y in (0..whole_rows).step_by(16) {
            for j in (0..whole_bytes).step_by(16) {
                // SAFETY: the asserts above keep the 16 rows of 16 bytes read from `src` and the
                // 16 columns of 16 bytes written to `dst` inside their slices.
                unsafe {
                    transpose_16x16(
                        src,
                        y * src_stride + j,
                        src_stride,
                        dst,
                        j * dst_stride + y,
                        dst_stride,
                    )
                };
            }
        }
    }
    for y in 0..rows {
        let row = &src[y * src_stride..y * src_stride + row_bytes];
        let first = if y < whole_rows { whole_bytes } else { 0 };
        for (j, &v) in row.iter().enumerate().skip(first) {
            dst[j * dst_stride + y] = v;
        }
    }
}

/// Writes the 16x16 block of bytes at `src[from..]` (rows `stride` apart) turned on its side
/// into `dst[to..]` (columns `dst_stride` apart): four rounds of interleaving, bytes, then
/// pairs, quads and eights, each doubling the run of one column's bytes.
///
/// # Safety
/// `src[from + 15 * stride + 15]` and `dst[to + 15 * dst_stride + 15]` must be in bounds.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn transpose_16x16(
    src: &[u8],
    from: usize,
    stride: usize,
    dst: &mut [u8],
    to: usize,
    dst_stride: usize,
) {
    use std::arch::x86_64::*;
    unsafe {
        let row = |i: usize| _mm_loadu_si128(src.as_ptr().add(from + i * stride).cast());
        // After round 1, pairs[p][h] holds rows 2p and 2p+1 for columns 8h..8h+8, a 2-byte
        // group per column.
        let pairs: [[__m128i; 2]; 8] = std::array::from_fn(|p| {
            let (a, b) = (row(2 * p), row(2 * p + 1));
            [_mm_unpacklo_epi8(a, b), _mm_unpackhi_epi8(a, b)]
        });
        // quads[q][k]: rows 4q..4q+4 for columns 4k..4k+4.
        let quads: [[__m128i; 4]; 4] = std::array::from_fn(|q| {
            std::array::from_fn(|k| {
                let (a, b) = (pairs[2 * q][k / 2], pairs[2 * q + 1][k / 2]);
                if k % 2 == 0 {
                    _mm_unpacklo_epi16(a, b)
                } else {
                    _mm_unpackhi_epi16(a, b)
                }
            })
        });
        // eights[o][m]: rows 8o..8o+8 for columns 2m..2m+2.
        let eights: [[__m128i; 8]; 2] = std::array::from_fn(|o| {
            std::array::from_fn(|m| {
                let (a, b) = (quads[2 * o][m / 2], quads[2 * o + 1][m / 2]);
                if m % 2 == 0 {
                    _mm_unpacklo_epi32(a, b)
                } else {
                    _mm_unpackhi_epi32(a, b)
                }
            })
        });
        let [upper, lower] = eights;
        for (m, (a, b)) in upper.into_iter().zip(lower).enumerate() {
            let out = dst.as_mut_ptr().add(to + 2 * m * dst_stride);
            _mm_storeu_si128(out.cast(), _mm_unpacklo_epi64(a, b));
            _mm_storeu_si128(out.add(dst_stride).cast(), _mm_unpackhi_epi64(a, b));
        }
    }
}

/// The horizontal pass over one strip of at most [`STRIP`] rows. Along a row, each output value
/// is a short dot product over interleaved channels, which vectorises poorly (one horizontal sum
/// per value); so the strip is first turned on its side (one column of `STRIP` bytes per source
/// byte), and each output column becomes the sum of whole source columns times a weight: the
/// contiguous multiply-adds of the vertical pass, 16 rows per instruction with AVX-512. Integer
/// sums do not depend on their order, so the result is PIL's to the bit. The turned strip of a
/// 1080p RGB row is 360 KiB, which stays in the L2 cache while the outputs read it.
#[allow(clippy::too_many_arguments)]
fn horizontal_strip<const C: usize>(
    instructions: Instructions,
    src: &[u8],
    stride: usize,
    rows: usize,
    src_width: usize,
    weights: &Weights,
    scratch: &mut (Vec<u8>, Vec<u8>),
    out: &mut [u8],
    dst_row_bytes: usize,
) {
    let outputs = weights.start.len();
    // Only the source pixels some output reads are turned.
    let lowest = weights.start.first().copied().unwrap_or(0);
    let highest = (0..outputs)
        .map(|o| weights.start[o] + weights.len[o])
        .max()
        .unwrap_or(lowest)
        .min(src_width);
    let span_bytes = (highest - lowest) * C;
    let (columns, sums_turned) = scratch;
    columns.resize(span_bytes * STRIP, 0);
    transpose(&src[lowest * C..], stride, rows, span_bytes, columns, STRIP);
    // Each output byte's column of STRIP rows, written contiguously and turned back at the end:
    // storing them straight into the rows would be one scattered byte store per value.
    sums_turned.resize(outputs * C * STRIP, 0);
    for o in 0..outputs {
        let (start, taps) = weights.of(o);
        for c in 0..C {
            // Tap k of this output byte reads the turned column of source byte
            // (start + k) * C + c: columns C * STRIP bytes apart.
            weighted_sums(
                instructions,
                columns,
                ((start - lowest) * C + c) * STRIP,
                C * STRIP,
                taps,
                &mut sums_turned[(o * C + c) * STRIP..][..STRIP],
            );
        }
    }
    transpose(sums_turned, STRIP, outputs * C, rows, out, dst_row_bytes);
}

/// Which instructions [`weighted_sums`] uses: found once per resize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Instructions {
    Avx512,
    Avx2,
    Portable,
}

impl Instructions {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Instructions::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Instructions::Avx2;
            }
        }
        Instructions::Portable
    }
}

/// Bytes [`weighted_sums`] makes per call of its SIMD kernels.
const BLOCK: usize = 64;

/// The multiply-add both passes are made of: `out[i] = clip8(HALF + sum over k of
/// taps[k] * data[first + k * step + i])`. In the vertical pass the `data` rows are source rows;
/// in the horizontal pass they are the turned columns of a strip.
fn weighted_sums(
    instructions: Instructions,
    data: &[u8],
    first: usize,
    step: usize,
    taps: &[i32],
    out: &mut [u8],
) {
    if let Some(last) = taps.len().checked_sub(1) {
        // What every kernel below relies on: all the bytes it reads are in `data`.
        assert!(first + last * step + out.len() <= data.len());
    }
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    while done + BLOCK <= out.len() && instructions != Instructions::Portable && !taps.is_empty() {
        let block = &mut out[done..done + BLOCK];
        // SAFETY: the feature was detected, and the assert above keeps the reads inside `data`.
        unsafe {
            match instructions {
                Instructions::Avx512 => {
                    weighted_block_avx512(data, first + done, step, taps, block)
                }
                _ => weighted_block_avx2(data, first + done, step, taps, block),
            }
        }
        done += BLOCK;
    }
    while done < out.len() {
        let len = (out.len() - done).min(BLOCK);
        let mut sums = [HALF; BLOCK];
        for (k, &w) in taps.iter().enumerate() {
            let row = &data[first + done + k * step..][..len];
            for (a, &v) in sums.iter_mut().zip(row) {
                *a = a.wrapping_add(i32::from(v) * w);
            }
        }
        for (o, &a) in out[done..done + len].iter_mut().zip(&sums) {
            *o = clip8(a);
        }
        done += len;
    }
}

/// [`weighted_sums`] for one block of [`BLOCK`] bytes with AVX-512: four registers of 16 sums
/// that stay in registers over all the taps.
///
/// # Safety
/// AVX-512F must be present, `taps` not empty and
/// `first + (taps.len() - 1) * step + BLOCK <= data.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn weighted_block_avx512(
    data: &[u8],
    first: usize,
    step: usize,
    taps: &[i32],
    out: &mut [u8],
) {
    use std::arch::x86_64::*;
    unsafe {
        let half = _mm512_set1_epi32(HALF);
        let (mut s0, mut s1, mut s2, mut s3) = (half, half, half, half);
        let mut at = data.as_ptr().add(first);
        for &w in taps {
            let weight = _mm512_set1_epi32(w);
            let bytes = |i: usize| _mm512_cvtepu8_epi32(_mm_loadu_si128(at.add(16 * i).cast()));
            s0 = _mm512_add_epi32(s0, _mm512_mullo_epi32(bytes(0), weight));
            s1 = _mm512_add_epi32(s1, _mm512_mullo_epi32(bytes(1), weight));
            s2 = _mm512_add_epi32(s2, _mm512_mullo_epi32(bytes(2), weight));
            s3 = _mm512_add_epi32(s3, _mm512_mullo_epi32(bytes(3), weight));
            at = at.wrapping_add(step);
        }
        // clip8: shift, negatives to 0, the unsigned saturating narrowing caps at 255.
        let zero = _mm512_setzero_si512();
        for (i, sums) in [s0, s1, s2, s3].into_iter().enumerate() {
            let clipped = _mm512_max_epi32(_mm512_srai_epi32::<{ PRECISION_BITS }>(sums), zero);
            _mm_storeu_si128(
                out.as_mut_ptr().add(16 * i).cast(),
                _mm512_cvtusepi32_epi8(clipped),
            );
        }
    }
}

/// [`weighted_sums`] for one block of [`BLOCK`] bytes with AVX2: eight registers of 8 sums.
///
/// # Safety
/// AVX2 must be present, `taps` not empty and
/// `first + (taps.len() - 1) * step + BLOCK <= data.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn weighted_block_avx2(
    data: &[u8],
    first: usize,
    step: usize,
    taps: &[i32],
    out: &mut [u8],
) {
    use std::arch::x86_64::*;
    unsafe {
        let mut sums = [_mm256_set1_epi32(HALF); 8];
        let mut at = data.as_ptr().add(first);
        for &w in taps {
            let weight = _mm256_set1_epi32(w);
            for (i, sum) in sums.iter_mut().enumerate() {
                let bytes = _mm256_cvtepu8_epi32(_mm_loadl_epi64(at.add(8 * i).cast()));
                *sum = _mm256_add_epi32(*sum, _mm256_mullo_epi32(bytes, weight));
            }
            at = at.wrapping_add(step);
        }
        let (zero, max) = (_mm256_setzero_si256(), _mm256_set1_epi32(255));
        let clipped = sums.map(|s| {
            _mm256_min_epi32(
                _mm256_max_epi32(_mm256_srai_epi32::<{ PRECISION_BITS as i32 }>(s), zero),
                max,
            )
        });
        // The packs work within 128-bit lanes: dwords come out as a0-3 b0-3 c0-3 d0-3 |
        // a4-7 b4-7 c4-7 d4-7, which the permutation puts back in order.
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for half in 0..2 {
            let [a, b, c, d] = [0, 1, 2, 3].map(|i| clipped[4 * half + i]);
            let packed = _mm256_packus_epi16(_mm256_packus_epi32(a, b), _mm256_packus_epi32(c, d));
            let ordered = _mm256_permutevar8x32_epi32(packed, order);
            _mm256_storeu_si256(out.as_mut_ptr().add(32 * half).cast(), ordered);
        }
    }
}

/// The horizontal pass over `rows` source rows starting at `first_row`, into packed `out`.
#[allow(clippy::too_many_arguments)]
fn horizontal_pass(
    src: &[u8],
    stride: usize,
    first_row: usize,
    rows: usize,
    src_width: usize,
    dst_width: usize,
    channels: usize,
    weights: &Weights,
    out: &mut [u8],
) {
    let strip = match channels {
        1 => horizontal_strip::<1>,
        3 => horizontal_strip::<3>,
        _ => horizontal_strip::<4>,
    };
    let instructions = Instructions::detect();
    let dst_row_bytes = dst_width * channels;
    out[..rows * dst_row_bytes]
        .par_chunks_mut(STRIP * dst_row_bytes)
        .enumerate()
        .for_each_init(Default::default, |scratch, (index, out_rows)| {
            let first = (first_row + index * STRIP) * stride;
            let count = out_rows.len() / dst_row_bytes;
            strip(
                instructions,
                &src[first..],
                stride,
                count,
                src_width,
                weights,
                scratch,
                out_rows,
                dst_row_bytes,
            );
        });
}

fn vertical_pass(
    rows: &[u8],
    stride: usize,
    row_offset: usize,
    weights: &Weights,
    row_bytes: usize,
    out: &mut [u8],
) {
    let out_rows = weights.start.len();
    let instructions = Instructions::detect();
    out[..out_rows * row_bytes]
        .par_chunks_mut(row_bytes)
        .enumerate()
        .for_each(|(y, out_row)| {
            let (start, taps) = weights.of(y);
            let first = (start - row_offset) * stride;
            weighted_sums(instructions, rows, first, stride, taps, out_row);
        });
}

/// Resizes a packed image of `channels` interleaved 8-bit channels (1, 3 or 4) whose rows are
/// `src_stride` bytes apart, into the packed `dst`, exactly as PIL (Pillow 13) does. `temp` is
/// scratch space kept by the caller between frames.
/// What [`resize`] keeps between calls: the intermediate image, and the weights of the last few
/// sizes (computing them takes tens of thousands of sines, a noticeable part of a 1080p frame).
#[derive(Debug, Default)]
pub struct Scratch {
    temp: Vec<u8>,
    weights: Vec<((usize, usize, Filter), std::sync::Arc<Weights>)>,
}

impl Scratch {
    fn weights(
        &mut self,
        in_size: usize,
        out_size: usize,
        filter: Filter,
    ) -> std::sync::Arc<Weights> {
        let key = (in_size, out_size, filter);
        if let Some((_, weights)) = self.weights.iter().find(|(k, _)| *k == key) {
            return weights.clone();
        }
        // A handful of sizes per element: the frame's and the model's, both ways.
        if self.weights.len() >= 8 {
            self.weights.remove(0);
        }
        let weights = std::sync::Arc::new(Weights::new(in_size, out_size, filter));
        self.weights.push((key, weights.clone()));
        weights
    }
}

#[allow(clippy::too_many_arguments)]
pub fn resize(
    src: &[u8],
    src_width: usize,
    src_height: usize,
    src_stride: usize,
    channels: usize,
    dst: &mut [u8],
    dst_width: usize,
    dst_height: usize,
    filter: Filter,
    scratch: &mut Scratch,
) {
    let src_row_bytes = src_width * channels;
    let dst_row_bytes = dst_width * channels;
    let needs_horizontal = src_width != dst_width;
    let needs_vertical = src_height != dst_height;
    // Pillow 13 runs the vertical pass first when the height shrinks by more than twice as many
    // pixels as the width does; the order changes the 8-bit intermediate, so it is kept.
    let shrink_y = src_height as i64 - dst_height as i64;
    let shrink_x = src_width as i64 - dst_width as i64;
    let horizontal_first = !(shrink_y > 0 && shrink_y > shrink_x * 2);
    match (needs_horizontal, needs_vertical) {
        (false, false) => {
            for (y, out_row) in dst
                .chunks_exact_mut(dst_row_bytes)
                .take(dst_height)
                .enumerate()
            {
                out_row.copy_from_slice(&src[y * src_stride..y * src_stride + src_row_bytes]);
            }
        }
        (true, false) => {
            let horizontal = scratch.weights(src_width, dst_width, filter);
            horizontal_pass(
                src,
                src_stride,
                0,
                dst_height,
                src_width,
                dst_width,
                channels,
                &horizontal,
                dst,
            )
        }
        (false, true) => {
            let vertical = scratch.weights(src_height, dst_height, filter);
            vertical_pass(src, src_stride, 0, &vertical, dst_row_bytes, dst);
        }
        (true, true) if horizontal_first => {
            let horizontal = scratch.weights(src_width, dst_width, filter);
            let vertical = scratch.weights(src_height, dst_height, filter);
            let temp = &mut scratch.temp;
            // Only the source rows the vertical pass reads go through the horizontal pass.
            let first_row = vertical.start[0];
            let last_row = vertical.start[dst_height - 1] + vertical.len[dst_height - 1];
            let count = last_row - first_row;
            temp.resize(count * dst_row_bytes, 0);
            horizontal_pass(
                src,
                src_stride,
                first_row,
                count,
                src_width,
                dst_width,
                channels,
                &horizontal,
                temp,
            );
            vertical_pass(
                temp,
                dst_row_bytes,
                first_row,
                &vertical,
                dst_row_bytes,
                dst,
            );
        }
        (true, true) => {
            let horizontal = scratch.weights(src_width, dst_width, filter);
            let vertical = scratch.weights(src_height, dst_height, filter);
            let temp = &mut scratch.temp;
            temp.resize(dst_height * src_row_bytes, 0);
            vertical_pass(src, src_stride, 0, &vertical, src_row_bytes, temp);
            horizontal_pass(
                temp,
                src_row_bytes,
                0,
                dst_height,
                src_width,
                dst_width,
                channels,
                &horizontal,
                dst,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_of_bytes_turns_on_its_side_exactly_for_every_edge_shape() {
        // Sizes around the 16x16 blocks: whole blocks, partial rows and bytes, both at once;
        // turned into columns STRIP apart (the strips) or any other distance (turning back).
        let shapes = [
            (64, 64),
            (16, 16),
            (17, 33),
            (1, 100),
            (63, 5760),
            (40, 15),
            (960, 64),
        ];
        for (rows, row_bytes) in shapes {
            for dst_stride in [rows, rows + 5, STRIP.max(rows)] {
                let stride = row_bytes + 7;
                let src: Vec<u8> = (0..rows * stride).map(|i| (i * 31 % 255) as u8).collect();
                let mut dst = vec![0u8; row_bytes * dst_stride];
                transpose(&src, stride, rows, row_bytes, &mut dst, dst_stride);
                for y in 0..rows {
                    for j in 0..row_bytes {
                        assert_eq!(
                            dst[j * dst_stride + y],
                            src[y * stride + j],
                            "{rows}x{row_bytes} to stride {dst_stride}: row {y} byte {j}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_instruction_set_gives_the_portable_sums_clipped_alike() {
        let mut available = vec![Instructions::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                available.push(Instructions::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                available.push(Instructions::Avx512);
            }
        }
        let data: Vec<u8> = (0..4000u32).map(|i| (i * 97 % 256) as u8).collect();
        // Real Lanczos weights, and large ones of both signs that push sums below 0 and past
        // 255 << PRECISION_BITS, so both ends of the clip are taken.
        let lanczos = Weights::new(1920, 320, Filter::Lanczos3);
        let wide = [3 << 20, -(5 << 20), 3 << 20, 1 << 20];
        for taps in [
            lanczos.of(100).1,
            &wide[..],
            &[1 << PRECISION_BITS][..],
            &[],
        ] {
            for (first, step, len) in [(0, 64, 64), (5, 71, 200), (13, 64, 63), (0, 1, 129)] {
                let mut expected = vec![0u8; len];
                weighted_sums(
                    Instructions::Portable,
                    &data,
                    first,
                    step,
                    taps,
                    &mut expected,
                );
                if taps == wide {
                    assert!(expected.contains(&0) && expected.contains(&255));
                }
                for &instructions in &available {
                    let mut out = vec![1u8; len];
                    weighted_sums(instructions, &data, first, step, taps, &mut out);
                    assert_eq!(out, expected, "{instructions:?} {first} {step} {len}");
                }
            }
        }
    }
}
