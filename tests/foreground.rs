//! rembgfilter's `foreground-estimation` against pymatting's `estimate_foreground_ml` (the
//! oracle rembg's decontaminate and alpha matting run), through whole pipelines.

mod common;

use common::foreground_oracles::{band_difference, blur_fusion, estimate_foreground};
use common::{collect_samples, packed_pixels, sample};
use gst::prelude::*;

/// The photo's RGB and the cutout (RGBA) rembgfilter makes of it with `properties`.
fn cutout(photo: &str, properties: &str) -> (usize, usize, Vec<u8>) {
    cutout_at(photo, None, properties)
}

/// [`cutout`] of the photo scaled to `size` first (when given).
fn cutout_at(
    photo: &str,
    size: Option<(usize, usize)>,
    properties: &str,
) -> (usize, usize, Vec<u8>) {
    let size = size.map_or(String::new(), |(w, h)| format!(",width={w},height={h}"));
    let samples = collect_samples(&format!(
        "filesrc location={} ! pngdec ! videoconvert ! videoscale ! video/x-raw,format=RGB{size} \
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

/// Mean differences from pymatting's foreground over the band on `photo` with the mask
/// controls `controls`: of rembgfilter's estimate with `method`, and of the straight colour.
/// Checks on the way that the mask is the same and opaque and transparent pixels keep their
/// colour.
fn difference_from_pymatting(photo: &str, controls: &str, method: &str) -> (f64, f64) {
    let (width, height, plain) = cutout(photo, controls);
    let (_, _, estimated) = cutout(photo, &format!("{controls} foreground-estimation={method}"));
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
        "{photo} {controls} {method}: {band} pixels of partial alpha, mean |ours - pymatting| {error:.3}, straight colour {straight:.3}"
    );
    assert!(band > 1000, "{photo}: a band to compare ({band} pixels)");
    for (i, &a) in alpha.iter().enumerate() {
        if a == 0 || a == 255 {
            assert_eq!(ours[i * 3..][..3], rgb[i * 3..][..3], "{photo}: pixel {i}");
        }
    }
    (error, straight)
}

/// multilevel is pymatting's method: within 2 levels of it on average, where the straight
/// colour is clearly further (so the comparison can fail).
fn check_against_pymatting(photo: &str, controls: &str) {
    let (error, straight) = difference_from_pymatting(photo, controls, "multilevel");
    assert!(
        error <= 2.0,
        "{photo}: mean difference {error:.3} > 2 levels"
    );
    assert!(
        straight > 4.0 * error.max(0.5),
        "{photo}: the straight colour ({straight:.3}) is as close to pymatting's as the estimate ({error:.3})"
    );
}

#[test]
fn blur_fusion_is_the_papers_estimator_and_closer_to_pymatting_than_the_straight_colour() {
    if common::without_set_up() {
        return;
    }
    // blur-fusion approximates another method, so its distance from pymatting's is what the
    // method gives (the paper's own code is ~10 levels off on the motorcycle's dark wheels);
    // what is ours is the reduced-resolution shortcut, checked against the paper's estimator at
    // full resolution, at the photos' size (reduced 1 or 2 times) and at 1080p (4 times).
    for (photo, size) in [
        ("motorcycle_left", None),
        ("chelsea", None),
        ("astronaut", None),
        ("motorcycle_left", Some((1920, 1080))),
    ] {
        let (width, height, plain) = cutout_at(photo, size, "");
        let (_, _, estimated) = cutout_at(photo, size, "foreground-estimation=blur-fusion");
        let alpha = common::alpha_of(&plain);
        assert_eq!(alpha, common::alpha_of(&estimated), "the same mask");
        let (rgb, ours) = (rgb_of(&plain), rgb_of(&estimated));
        let to_levels =
            |v: Vec<f32>| -> Vec<f64> { v.iter().map(|&v| f64::from(v) * 255.0).collect() };
        let paper = to_levels(blur_fusion(&rgb, &alpha, width, height).0);
        let pymatting = to_levels(estimate_foreground(&rgb, &alpha, width, height).0);
        let (from_paper, band) = band_difference(&ours, &paper, &alpha);
        let (from_pymatting, _) = band_difference(&ours, &pymatting, &alpha);
        let (straight, _) = band_difference(&rgb, &pymatting, &alpha);
        println!(
            "{photo} {width}x{height}: {band} pixels of partial alpha, mean |ours - paper's blur-fusion| {from_paper:.3}, |ours - pymatting| {from_pymatting:.3}, straight colour {straight:.3}"
        );
        assert!(band > 1000, "{photo}: a band to compare ({band} pixels)");
        assert!(
            from_paper <= 2.0,
            "{photo} {width}x{height}: {from_paper:.3} levels from the paper's blur-fusion"
        );
        assert!(
            from_pymatting < 0.8 * straight,
            "{photo}: blur-fusion ({from_pymatting:.3}) no closer to pymatting than the straight colour ({straight:.3})"
        );
        for (i, &a) in alpha.iter().enumerate() {
            if a == 0 || a == 255 {
                assert_eq!(ours[i * 3..][..3], rgb[i * 3..][..3], "{photo}: pixel {i}");
            }
        }
    }
}

#[test]
fn foreground_matches_pymatting_on_a_held_out_photo() {
    if common::without_set_up() {
        return;
    }
    check_against_pymatting("motorcycle_left", "");
}

#[test]
fn foreground_matches_pymatting_on_the_cat_and_the_cup() {
    if common::without_set_up() {
        return;
    }
    check_against_pymatting("chelsea", "");
    check_against_pymatting("coffee", "");
}

#[test]
fn foreground_follows_the_mask_after_the_mask_controls() {
    if common::without_set_up() {
        return;
    }
    // A feathered mask has a wider band; the estimate uses the mask the frame is shown with.
    check_against_pymatting("astronaut", "feather=12");
}

#[test]
fn composite_mode_blends_the_estimated_foreground_over_the_colour() {
    if common::without_set_up() {
        return;
    }
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
    if common::without_set_up() {
        return;
    }
    // threshold makes every alpha 0 or 255: nothing to estimate.
    let (_, _, plain) = cutout("coffee", "threshold=128");
    let (_, _, estimated) = cutout("coffee", "threshold=128 foreground-estimation=multilevel");
    assert_eq!(plain, estimated);
}

#[test]
fn tiny_and_odd_frames_pass_through_with_estimation_on() {
    if common::without_set_up() {
        return;
    }
    // The tiny stand-in model (the brightness as the mask: the ball's rim partly transparent)
    // runs in microseconds; what is tested is the estimation on frames of these sizes.
    let model = common::test_model("brightness.onnx");
    for (width, height) in [(1, 1), (2, 1), (333, 17), (17, 201)] {
        for (mode, method) in [
            ("alpha", "multilevel"),
            ("composite", "multilevel"),
            ("blur", "multilevel"),
            ("alpha", "blur-fusion"),
            ("composite", "blur-fusion"),
        ] {
            let samples = collect_samples(&format!(
                "videotestsrc num-buffers=2 pattern=ball ! video/x-raw,format=BGRx,width={width},height={height} \
                 ! rembgfilter model={} mode={mode} feather=3 foreground-estimation={method} ! appsink name=sink",
                model.display()
            ))
            .unwrap_or_else(|e| panic!("{width}x{height} {mode} {method}: {e}"));
            assert_eq!(samples.len(), 2, "{width}x{height} {mode} {method}");
        }
    }
}

#[test]
fn estimation_switches_on_while_playing_and_its_time_is_in_the_stats() {
    if common::without_set_up() {
        return;
    }
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
