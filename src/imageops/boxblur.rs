//! Box blur with running sums: rows, then columns through a transpose, each direction in as many
//! passes as asked (two passes make a triangle filter). Used for mask feathering (one channel)
//! and blur mode's background (packed 4-byte pixels, colour only).

use rayon::prelude::*;

/// What the window does where it runs past the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edges {
    /// Repeat the edge pixel: every window counts `2 * radius + 1` pixels.
    Repeat,
    /// Leave the outside out: the window shrinks to the pixels inside.
    Shrink,
}

/// The shape of the pixels blurred: `channels` interleaved bytes per pixel, of which the first
/// `blurred` are averaged and the rest copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxBlur {
    pub channels: usize,
    pub blurred: usize,
    pub radius: usize,
    pub passes: usize,
    pub edges: Edges,
}

impl BoxBlur {
    /// Blurs `pixels` (`width` x `height`, packed) in place, using `scratch` as the second
    /// buffer so repeated calls do not allocate.
    pub fn apply(&self, pixels: &mut [u8], scratch: &mut Vec<u8>, width: usize, height: usize) {
        if self.radius == 0 || self.passes == 0 || width == 0 || height == 0 {
            return;
        }
        scratch.resize(pixels.len(), 0);
        let scratch = &mut scratch[..pixels.len()];
        // Each pass moves the image between the two buffers; an odd count needs one copy back.
        let passes_into_pixels = |data: &mut [u8], other: &mut [u8], length: usize| {
            for pass in 0..self.passes {
                if pass % 2 == 0 {
                    self.pass(data, other, length);
                } else {
                    self.pass(other, data, length);
                }
            }
            if self.passes % 2 == 1 {
                data.copy_from_slice(other);
            }
        };
        passes_into_pixels(pixels, scratch, width);
        transpose(pixels, scratch, width, height, self.channels);
        passes_into_pixels(scratch, pixels, height);
        transpose(scratch, pixels, height, width, self.channels);
    }

    /// One pass along rows of `length` pixels.
    fn pass(&self, input: &[u8], out: &mut [u8], length: usize) {
        let (channels, radius) = (self.channels, self.radius as isize);
        let last = length as isize - 1;
        out.par_chunks_mut(length * channels)
            .zip(input.par_chunks(length * channels))
            .for_each(|(row, src)| {
                let at = |x: isize, c: usize| u32::from(src[x as usize * channels + c]);
                for c in 0..self.blurred {
                    let (mut sum, mut count) = (0u32, 0u32);
                    for x in -radius..=radius {
                        match self.edges {
                            Edges::Repeat => {
                                sum += at(x.clamp(0, last), c);
                                count += 1;
                            }
                            Edges::Shrink if (0..=last).contains(&x) => {
                                sum += at(x, c);
                                count += 1;
                            }
                            Edges::Shrink => {}
                        }
                    }
                    for x in 0..length as isize {
                        row[x as usize * channels + c] = ((sum + count / 2) / count) as u8;
                        let (entering, leaving) = (x + radius + 1, x - radius);
                        match self.edges {
                            Edges::Repeat => {
                                sum += at(entering.min(last), c);
                                sum -= at(leaving.max(0), c);
                            }
                            Edges::Shrink => {
                                if entering <= last {
                                    sum += at(entering, c);
                                    count += 1;
                                }
                                if leaving >= 0 {
                                    sum -= at(leaving, c);
                                    count -= 1;
                                }
                            }
                        }
                    }
                }
                for c in self.blurred..channels {
                    for x in 0..length {
                        row[x * channels + c] = src[x * channels + c];
                    }
                }
            });
    }
}

/// Transposes a `width` x `height` image of `channels`-byte pixels into `out` (`height` x `width`).
fn transpose(input: &[u8], out: &mut [u8], width: usize, height: usize, channels: usize) {
    out.par_chunks_mut(height * channels)
        .enumerate()
        .for_each(|(x, column)| {
            for y in 0..height {
                column[y * channels..][..channels]
                    .copy_from_slice(&input[(y * width + x) * channels..][..channels]);
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blur written the slow way: every window summed from scratch.
    fn naive(blur: &BoxBlur, pixels: &[u8], width: usize, height: usize) -> Vec<u8> {
        let ch = blur.channels;
        let r = blur.radius as isize;
        let one_pass = |input: &[u8], w: usize, h: usize| -> Vec<u8> {
            let mut out = input.to_vec();
            for y in 0..h {
                for x in 0..w as isize {
                    for c in 0..blur.blurred {
                        let (mut sum, mut count) = (0u32, 0u32);
                        for i in x - r..=x + r {
                            let inside = (0..w as isize).contains(&i);
                            let i = match blur.edges {
                                Edges::Repeat => i.clamp(0, w as isize - 1),
                                Edges::Shrink if inside => i,
                                Edges::Shrink => continue,
                            };
                            sum += u32::from(input[(y * w + i as usize) * ch + c]);
                            count += 1;
                        }
                        out[(y * w + x as usize) * ch + c] = ((sum + count / 2) / count) as u8;
                    }
                }
            }
            out
        };
        let flip = |input: &[u8], w: usize, h: usize| -> Vec<u8> {
            let mut out = vec![0u8; input.len()];
            transpose(input, &mut out, w, h, ch);
            out
        };
        let mut rows = pixels.to_vec();
        for _ in 0..blur.passes {
            rows = one_pass(&rows, width, height);
        }
        let mut columns = flip(&rows, width, height);
        for _ in 0..blur.passes {
            columns = one_pass(&columns, height, width);
        }
        flip(&columns, height, width)
    }

    #[test]
    fn running_sums_match_the_direct_sums_for_both_edge_rules() {
        let (width, height) = (23, 11);
        let mut seed = 12345u32;
        for (channels, blurred) in [(1, 1), (4, 3)] {
            let pixels: Vec<u8> = (0..width * height * channels)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (seed >> 16) as u8
                })
                .collect();
            for edges in [Edges::Repeat, Edges::Shrink] {
                for (radius, passes) in [(1, 1), (2, 2), (5, 2), (30, 1)] {
                    let blur = BoxBlur {
                        channels,
                        blurred,
                        radius,
                        passes,
                        edges,
                    };
                    let mut fast = pixels.clone();
                    blur.apply(&mut fast, &mut Vec::new(), width, height);
                    assert_eq!(fast, naive(&blur, &pixels, width, height), "{blur:?}");
                }
            }
            // Copied channels stay as they were.
            if channels == 4 {
                let blur = BoxBlur {
                    channels,
                    blurred,
                    radius: 3,
                    passes: 2,
                    edges: Edges::Repeat,
                };
                let mut fast = pixels.clone();
                blur.apply(&mut fast, &mut Vec::new(), width, height);
                assert!(
                    fast.iter()
                        .skip(3)
                        .step_by(4)
                        .eq(pixels.iter().skip(3).step_by(4))
                );
            }
        }
    }
}
