//! rembgfilter's `foreground-estimation` against pymatting's `estimate_foreground_ml` (the
//! oracle rembg's decontaminate and alpha matting run), through whole pipelines.

mod common;

use common::pymatting::{band_difference, estimate_foreground};
use common::{collect_samples, packed_pixels, sample};
use gst::prelude::*;

/// The photo's RGB and the cutout (RGBA) rembgfilter makes of it with `properties`.
fn cutout(photo: &str, properties: &str) -> (usize, usize, Vec<u8>) {
    let samples = collect_samples(&format!(
        "filesrc location={} ! pngdec ! videoconvert ! video/x-raw,format=RGB \
         ! rembgfilter {properties} ! appsink name=sink",
        sample(photo).display()
    ))
    .unwrap();
    let (info, pixels) = packed_pixels(&samples[0]);
    (info.width() as usize, info.height() as usize, pixels)
}

fn rgb_of(rgba: &[u8]) -> Vec<u8> {
    rgba.chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect()
}

/// Checks the estimate against pymatting's on `photo` with the mask controls `controls`, and
/// that the straight colour is clearly further from it (so the comparison can fail).
fn check_against_pymatting(photo: &str, controls: &str) {
    let (width, height, plain) = cutout(photo, controls);
    let (_, _, estimated) = cutout(
        photo,
        &format!("{controls} foreground-estimation=multilevel"),
    );
    let alpha = common::alpha_of(&plain);
    assert_eq!(alpha, common::alpha_of(&estimated), "the same mask");
    let (rgb, ours) = (rgb_of(&plain), rgb_of(&estimated));
    let reference: Vec<f64> = estimate_foreground(&rgb, &alpha, width, height)
        .0
        .iter()
        .map(|&v| f64::from(v) * 255.0)
        .collect();
    let (error, band) = band_difference(&ours, &reference, &alpha);
    let (straight, _) = band_difference(&rgb, &reference, &alpha);
    println!(
        "{photo} {controls}: {band} pixels of partial alpha, mean |ours - pymatting| {error:.3}, straight colour {straight:.3}"
    );
    assert!(band > 1000, "{photo}: a band to compare ({band} pixels)");
    assert!(
        error <= 2.0,
        "{photo}: mean difference {error:.3} > 2 levels"
    );
    assert!(
        straight > 4.0 * error.max(0.5),
        "{photo}: the straight colour ({straight:.3}) is as close to pymatting's as the estimate ({error:.3})"
    );
    // Opaque and transparent pixels keep the frame's colour.
    for (i, &a) in alpha.iter().enumerate() {
        if a == 0 || a == 255 {
            assert_eq!(ours[i * 3..][..3], rgb[i * 3..][..3], "{photo}: pixel {i}");
        }
    }
}

#[test]
fn foreground_matches_pymatting_on_a_held_out_photo() {
    check_against_pymatting("motorcycle_left", "");
}

#[test]
fn foreground_matches_pymatting_on_the_cat_and_the_cup() {
    check_against_pymatting("chelsea", "");
    check_against_pymatting("coffee", "");
}

#[test]
fn foreground_follows_the_mask_after_the_mask_controls() {
    // A feathered mask has a wider band; the estimate uses the mask the frame is shown with.
    check_against_pymatting("astronaut", "feather=12");
}

#[test]
fn composite_mode_blends_the_estimated_foreground_over_the_colour() {
    let (width, height, plain) = cutout("chelsea", "");
    let (_, _, composite) = cutout(
        "chelsea",
        "mode=composite background-color=0xff103050 foreground-estimation=multilevel",
    );
    let alpha = common::alpha_of(&plain);
    let rgb = rgb_of(&plain);
    let (reference, _) = estimate_foreground(&rgb, &alpha, width, height);
    let background = [0x10, 0x30, 0x50].map(f64::from);
    let expected: Vec<f64> = reference
        .iter()
        .enumerate()
        .map(|(i, &f)| {
            let a = f64::from(alpha[i / 3]) / 255.0;
            f64::from(f) * 255.0 * a + background[i % 3] * (1.0 - a)
        })
        .collect();
    let (error, _) = band_difference(&rgb_of(&composite), &expected, &alpha);
    assert!(error <= 2.0, "composite off pymatting's by {error:.3}");
}

#[test]
fn a_mask_without_partial_alpha_leaves_every_colour_alone() {
    // threshold makes every alpha 0 or 255: nothing to estimate.
    let (_, _, plain) = cutout("coffee", "threshold=128");
    let (_, _, estimated) = cutout("coffee", "threshold=128 foreground-estimation=multilevel");
    assert_eq!(plain, estimated);
}

#[test]
fn tiny_and_odd_frames_pass_through_with_estimation_on() {
    for (width, height) in [(1, 1), (2, 1), (333, 17), (17, 201)] {
        for mode in ["alpha", "composite", "blur"] {
            let samples = collect_samples(&format!(
                "videotestsrc num-buffers=2 pattern=ball ! video/x-raw,format=BGRx,width={width},height={height} \
                 ! rembgfilter mode={mode} feather=3 foreground-estimation=multilevel ! appsink name=sink"
            ))
            .unwrap_or_else(|e| panic!("{width}x{height} {mode}: {e}"));
            assert_eq!(samples.len(), 2, "{width}x{height} {mode}");
        }
    }
}

#[test]
fn estimation_switches_on_while_playing_and_its_time_is_in_the_stats() {
    let mut h = common::rembgfilter_harness(&[("feather", 6u32.to_value())], 96, 64);
    let frame: Vec<u8> = (0..96 * 64 * 3).map(|i| (i * 7 % 251) as u8).collect();
    let push = |h: &mut gst_check::Harness| {
        h.push(gst::Buffer::from_slice(frame.clone())).unwrap();
        h.pull().unwrap()
    };
    let before = push(&mut h);
    let stats = |h: &gst_check::Harness| {
        h.element()
            .unwrap()
            .property::<gst::Structure>("stats")
            .get::<u64>("foreground-time")
            .unwrap()
    };
    assert_eq!(stats(&h), 0, "no estimation yet");
    h.element()
        .unwrap()
        .set_property_from_str("foreground-estimation", "multilevel");
    let after = push(&mut h);
    assert!(stats(&h) > 0, "the estimate's time is counted");
    let (before, after) = (
        before.map_readable().unwrap(),
        after.map_readable().unwrap(),
    );
    let changed = before
        .chunks_exact(4)
        .zip(after.chunks_exact(4))
        .filter(|(a, b)| a[..3] != b[..3])
        .count();
    assert!(changed > 0, "the second frame has estimated colours");
}
