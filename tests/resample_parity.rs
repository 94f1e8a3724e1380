//! neuralfx's resampler against PIL's `Image.resize`, byte for byte, on random images of random
//! sizes: shrinking, growing, mixed, one axis only, both pass orders, odd strides.

mod common;

use common::*;
use gstneuralfx::imageops::{Filter, ImageRef, PixelLayout, Resizer};

/// A small deterministic generator, so a failure names a reproducible case.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }
}

fn pil_resize(
    pixels: &[u8],
    (w, h, c): (usize, usize, usize),
    (ow, oh): (usize, usize),
    filter: &str,
) -> Vec<u8> {
    let dir = std::env::temp_dir();
    let id = format!("{}-{w}x{h}x{c}-{ow}x{oh}-{filter}", std::process::id());
    let (input, output) = (
        dir.join(format!("pil-in-{id}.raw")),
        dir.join(format!("pil-out-{id}.raw")),
    );
    std::fs::write(&input, pixels).unwrap();
    let size = |v: usize| v.to_string();
    run_reference(
        "pil_resize.py",
        &[
            input.to_str().unwrap(),
            &size(w),
            &size(h),
            &size(c),
            &size(ow),
            &size(oh),
            output.to_str().unwrap(),
            filter,
        ],
    );
    let result = std::fs::read(&output).unwrap();
    std::fs::remove_file(input).unwrap();
    std::fs::remove_file(output).unwrap();
    result
}

#[test]
fn lanczos_bilinear_and_bicubic_match_pil_byte_for_byte() {
    if without_set_up() {
        return;
    }
    let mut rng = Lcg(20261121);
    let mut resizer = Resizer::new();
    for case in 0..36 {
        let channels = [1, 3, 4][case % 3];
        let (mut w, mut h) = (1 + rng.below(300), 1 + rng.below(300));
        let (mut ow, mut oh) = (1 + rng.below(300), 1 + rng.below(300));
        match case % 6 {
            0 => ow = w,
            1 => oh = h,
            2 => (ow, oh) = (w / 3 + 1, h / 9 + 1), // height shrinks far more: vertical pass first
            _ => {}
        }
        // What rembgfilter does at 1080p: the frame down to the model, the mask back up.
        match case {
            28 => (w, h, ow, oh) = (1920, 1080, 320, 320),
            29 => (w, h, ow, oh) = (320, 320, 1920, 1080),
            _ => {}
        }
        // MODNet's processing: the frame down to its reference size, the matte back up.
        match case {
            34 => (w, h, ow, oh) = (1920, 1080, 896, 512),
            35 => (w, h, ow, oh) = (896, 512, 1920, 1080),
            _ => {}
        }
        let filter = match case % 4 {
            3 => "bilinear",
            1 if case >= 17 && case != 29 => "bicubic",
            _ if case >= 34 => "bicubic",
            _ => "lanczos",
        };
        let pixels: Vec<u8> = (0..w * h * channels).map(|_| rng.next() as u8).collect();
        let expected = pil_resize(&pixels, (w, h, channels), (ow, oh), filter);

        // Rows padded by 5 bytes, as a GStreamer frame may be.
        let stride = w * channels + 5;
        let mut padded = vec![0xA5; stride * h];
        for y in 0..h {
            padded[y * stride..y * stride + w * channels]
                .copy_from_slice(&pixels[y * w * channels..][..w * channels]);
        }
        let layout = PixelLayout::new(channels, 0, channels.min(2) / 2, channels - 1);
        let image = ImageRef {
            data: &padded,
            width: w,
            height: h,
            stride,
            layout,
        };
        let mut ours = vec![0; ow * oh * channels];
        let filter_kind = match filter {
            "bilinear" => Filter::Bilinear,
            "bicubic" => Filter::Bicubic,
            _ => Filter::Lanczos3,
        };
        resizer
            .resize(&image, &mut ours, ow, oh, filter_kind)
            .unwrap();
        let differing = ours.iter().zip(&expected).filter(|(a, b)| a != b).count();
        assert_eq!(
            differing, 0,
            "case {case}: {w}x{h}x{channels} -> {ow}x{oh} {filter}: {differing} bytes differ"
        );
    }
}

#[test]
fn cubic_matches_opencv_within_one_level() {
    if without_set_up() {
        return;
    }
    let mut rng = Lcg(328);
    let dir = std::env::temp_dir();
    for case in 0..12 {
        // Face crops go to 328x328 and back to their own square size.
        let (w, h, ow, oh) = match case % 3 {
            0 => {
                let s = 20 + rng.below(400);
                (s, s, 328, 328)
            }
            1 => {
                let s = 20 + rng.below(400);
                (328, 328, s, s)
            }
            _ => (
                1 + rng.below(300),
                1 + rng.below(300),
                1 + rng.below(300),
                1 + rng.below(300),
            ),
        };
        let pixels: Vec<u8> = (0..w * h * 3).map(|_| rng.next() as u8).collect();
        let (input, output) = (
            dir.join(format!("cv2-in-{}-{case}.raw", std::process::id())),
            dir.join(format!("cv2-out-{}-{case}.raw", std::process::id())),
        );
        std::fs::write(&input, &pixels).unwrap();
        let size = |v: usize| v.to_string();
        run_reference(
            "cv2_resize.py",
            &[
                input.to_str().unwrap(),
                &size(w),
                &size(h),
                &size(ow),
                &size(oh),
                output.to_str().unwrap(),
            ],
        );
        let expected = std::fs::read(&output).unwrap();
        std::fs::remove_file(input).unwrap();
        std::fs::remove_file(output).unwrap();
        let mut ours = vec![0; ow * oh * 3];
        gstneuralfx::imageops::resize_cubic(&pixels, w, h, w * 3, 3, &mut ours, ow, oh);
        let worst = largest_difference(&ours, &expected);
        assert!(
            worst <= 1,
            "case {case}: {w}x{h} -> {ow}x{oh}: differs by {worst} levels"
        );
    }
}
