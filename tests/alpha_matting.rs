//! rembgfilter's `alpha-matting` against Python rembg's (`remove(alpha_matting=True)`,
//! pymatting's closed-form matting and foreground estimation), and its parts against theirs:
//! the trimap (scipy's erosion) and the matting Laplacian.

mod common;

use common::{collect_samples, packed_pixels, run_reference, sample};
use gst::prelude::*;
use gstneuralfx::imageops::{ImageRef, PixelLayout};
use gstneuralfx::matting::closed_form::{self, BandSystem, TrimapParams};

/// The cutout (RGBA) rembgfilter makes of the sample `photo` with `properties`.
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

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "neuralfx-alpha-matting-{}-{:?}-{name}",
        std::process::id(),
        std::thread::current().id()
    ))
}

/// Runs tests/reference/alpha_matting.py `command` with `arguments` (OUT is where it writes an
/// RGBA cutout) and returns the cutout and the seconds rembg's matting step took.
fn rembg_cutout(command: &str, arguments: &[&str]) -> (Vec<u8>, f64) {
    let out = temp_path("rembg.rgba");
    let mut all = vec![command];
    all.extend_from_slice(&arguments[..arguments.len() - 3]);
    all.push(out.to_str().unwrap());
    all.extend_from_slice(&arguments[arguments.len() - 3..]);
    let printed = run_reference("alpha_matting.py", &all);
    let seconds: f64 = printed.split_whitespace().nth(2).unwrap().parse().unwrap();
    let pixels = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    (pixels, seconds)
}

/// Mean |a - b| of alpha over `band`, and of colour over the pixels both show (alpha > 0).
fn differences(ours: &[u8], theirs: &[u8], band: &[bool]) -> (f64, f64, usize) {
    let (mut alpha_total, mut band_pixels) = (0.0, 0usize);
    let (mut colour_total, mut visible) = (0.0, 0usize);
    for (i, (o, t)) in ours.chunks_exact(4).zip(theirs.chunks_exact(4)).enumerate() {
        if band[i] {
            alpha_total += (f64::from(o[3]) - f64::from(t[3])).abs();
            band_pixels += 1;
        }
        if o[3] > 0 && t[3] > 0 {
            colour_total += (0..3)
                .map(|c| (f64::from(o[c]) - f64::from(t[c])).abs())
                .sum::<f64>()
                / 3.0;
            visible += 1;
        }
    }
    (
        alpha_total / band_pixels.max(1) as f64,
        colour_total / visible.max(1) as f64,
        band_pixels,
    )
}

/// The photo's RGB and the model's mask rembgfilter computes for it (mode=alpha, whose colour
/// is the frame's, no other control).
fn photo_and_mask(photo: &str) -> (usize, usize, Vec<u8>, Vec<u8>) {
    let (width, height, pixels) = cutout(photo, "");
    let rgb = pixels
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    (width, height, rgb, common::alpha_of(&pixels))
}

/// The matting step alone: rembg's alpha_matting_cutout on rembgfilter's own mask, against
/// rembgfilter with alpha-matting on (the same mask, so any difference is the matting's).
fn check_matting_step(photo: &str, params: (u8, u8, usize)) {
    let (width, height, rgb, mask) = photo_and_mask(photo);
    let (rgb_path, mask_path) = (temp_path("rgb"), temp_path("mask"));
    std::fs::write(&rgb_path, &rgb).unwrap();
    std::fs::write(&mask_path, &mask).unwrap();
    let (fg, bg, erode) = (
        params.0.to_string(),
        params.1.to_string(),
        params.2.to_string(),
    );
    let (theirs, rembg_seconds) = rembg_cutout(
        "cutout",
        &[
            &width.to_string(),
            &height.to_string(),
            rgb_path.to_str().unwrap(),
            mask_path.to_str().unwrap(),
            &fg,
            &bg,
            &erode,
        ],
    );
    std::fs::remove_file(&rgb_path).unwrap();
    std::fs::remove_file(&mask_path).unwrap();
    let (_, _, ours) = cutout(
        photo,
        &format!(
            "alpha-matting=true alpha-matting-foreground-threshold={fg} \
             alpha-matting-background-threshold={bg} alpha-matting-erode-size={erode}"
        ),
    );
    let trimap = closed_form::trimap(
        &mask,
        width,
        height,
        &TrimapParams {
            foreground_threshold: params.0,
            background_threshold: params.1,
            erode_size: params.2,
        },
    );
    let band: Vec<bool> = trimap.iter().map(|&t| t == 128).collect();
    let (alpha, colour, band_pixels) = differences(&ours, &theirs, &band);
    let (model_alpha, _, _) = differences(
        &mask.iter().flat_map(|&a| [0, 0, 0, a]).collect::<Vec<_>>(),
        &theirs,
        &band,
    );
    println!(
        "{photo} {params:?}: {band_pixels} unknown pixels; mean |alpha - rembg's| {alpha:.3} \
         (the model's mask: {model_alpha:.3}), colour {colour:.3}; rembg's matting {rembg_seconds:.2} s"
    );
    assert!(
        band_pixels > 1000,
        "{photo}: an unknown band ({band_pixels})"
    );
    assert!(
        alpha <= 2.0,
        "{photo}: alpha {alpha:.3} levels from rembg's"
    );
    assert!(
        model_alpha > 3.0 * alpha.max(0.5),
        "{photo}: the model's own mask ({model_alpha:.3}) is as close to rembg's matte"
    );
    assert!(
        colour <= 3.0,
        "{photo}: colour {colour:.3} levels from rembg's"
    );
}

#[test]
fn the_matting_step_matches_rembgs_on_a_held_out_photo() {
    if common::without_set_up() {
        return;
    }
    check_matting_step("motorcycle_left", (240, 10, 10));
}

#[test]
fn the_matting_step_matches_rembgs_with_other_parameters() {
    if common::without_set_up() {
        return;
    }
    check_matting_step("chelsea", (200, 40, 4));
    check_matting_step("coffee", (240, 10, 0));
}

#[test]
fn alpha_matting_matches_python_rembg_end_to_end() {
    if common::without_set_up() {
        return;
    }
    // rembg's own mask and matting against ours, from the same model file.
    for photo in ["motorcycle_left", "astronaut"] {
        let (width, height, ours) = cutout(photo, "alpha-matting=true");
        let (theirs, _) = rembg_cutout(
            "remove",
            &["u2netp", sample(photo).to_str().unwrap(), "240", "10", "10"],
        );
        assert_eq!(theirs.len(), width * height * 4, "{photo}: rembg's size");
        // The band: where either matte is neither 0 nor 255.
        let band: Vec<bool> = ours
            .chunks_exact(4)
            .zip(theirs.chunks_exact(4))
            .map(|(o, t)| (o[3] != 0 && o[3] != 255) || (t[3] != 0 && t[3] != 255))
            .collect();
        let (alpha, colour, band_pixels) = differences(&ours, &theirs, &band);
        println!(
            "{photo} end to end: {band_pixels} partly transparent pixels; mean |alpha - rembg's| \
             {alpha:.3}, colour {colour:.3}"
        );
        assert!(band_pixels > 1000);
        assert!(
            alpha <= 2.0,
            "{photo}: alpha {alpha:.3} levels from rembg's"
        );
        assert!(
            colour <= 3.0,
            "{photo}: colour {colour:.3} levels from rembg's"
        );
    }
}

#[test]
fn the_trimap_is_rembgs() {
    if common::without_set_up() {
        return;
    }
    // rembgfilter's u2netp mask of the cat, under several parameters, against scipy's erosion
    // as rembg calls it (even sizes, the default cross for 0, the frame's border).
    let (width, height, _, mask) = photo_and_mask("chelsea");
    let mask_path = temp_path("trimap-mask");
    let out = temp_path("trimap");
    std::fs::write(&mask_path, &mask).unwrap();
    for (fg, bg, erode) in [
        (240, 10, 10),
        (200, 50, 3),
        (240, 10, 0),
        (128, 127, 1),
        (250, 5, 31),
    ] {
        run_reference(
            "alpha_matting.py",
            &[
                "trimap",
                &width.to_string(),
                &height.to_string(),
                mask_path.to_str().unwrap(),
                out.to_str().unwrap(),
                &fg.to_string(),
                &bg.to_string(),
                &erode.to_string(),
            ],
        );
        let theirs = std::fs::read(&out).unwrap();
        let ours = closed_form::trimap(
            &mask,
            width,
            height,
            &TrimapParams {
                foreground_threshold: fg,
                background_threshold: bg,
                erode_size: erode,
            },
        );
        let differing = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
        assert_eq!(
            differing, 0,
            "({fg}, {bg}, {erode}): {differing} pixels differ"
        );
        assert!(ours.contains(&128) && ours.contains(&0) && ours.contains(&255));
    }
    std::fs::remove_file(&mask_path).unwrap();
    std::fs::remove_file(&out).unwrap();
}

#[test]
fn the_band_laplacian_is_pymattings() {
    if common::without_set_up() {
        return;
    }
    // A 23x19 crop of the astronaut's shoulder and the wall, with a trimap whose unknown
    // pixels reach the crop's edges and corners (where pymatting has no window centres).
    let (width, height) = (23, 19);
    let samples = collect_samples(&format!(
        "filesrc location={} ! pngdec ! videoconvert ! videocrop left=300 top=180 \
         right={} bottom={} ! video/x-raw,format=RGB ! appsink name=sink",
        sample("astronaut").display(),
        512 - 300 - width,
        512 - 180 - height
    ))
    .unwrap();
    let (_, rgb) = packed_pixels(&samples[0]);
    let trimap: Vec<u8> = (0..width * height)
        .map(|i| {
            let (x, y) = (i % width, i / width);
            match (x + 2 * y) % 17 {
                0..=3 => 0,
                4..=8 => 255,
                _ => 128,
            }
        })
        .collect();
    let (rgb_path, trimap_path, out) = (temp_path("rgb"), temp_path("tri"), temp_path("lap"));
    std::fs::write(&rgb_path, &rgb).unwrap();
    std::fs::write(&trimap_path, &trimap).unwrap();
    run_reference(
        "alpha_matting.py",
        &[
            "laplacian",
            &width.to_string(),
            &height.to_string(),
            rgb_path.to_str().unwrap(),
            trimap_path.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
    let theirs: Vec<f64> = std::fs::read(&out)
        .unwrap()
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    for path in [rgb_path, trimap_path, out] {
        std::fs::remove_file(path).unwrap();
    }
    let system = BandSystem::build(
        &ImageRef::packed(&rgb, width, height, PixelLayout::RGB),
        &trimap,
    );
    let n = system.pixels.len();
    assert_eq!(theirs.len(), n * n + n, "pymatting's unknown count");
    // Ours holds the lower triangle; theirs is the dense L_U.
    let (entries, rhs) = system.in_raster_order();
    let mut dense = vec![0.0; n * n];
    for (row, column, value) in entries {
        dense[row * n + column] = value;
        dense[column * n + row] = value;
    }
    let scale = theirs[..n * n].iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let worst = dense
        .iter()
        .zip(&theirs[..n * n])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= 1e-9 * scale,
        "L_U differs by {worst:e} (largest entry {scale:e})"
    );
    let worst_rhs = rhs
        .iter()
        .zip(&theirs[n * n..])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst_rhs <= 1e-9 * scale, "rhs differs by {worst_rhs:e}");
    assert!(
        n > 100 && scale > 1.0,
        "a real band ({n} unknown, scale {scale})"
    );
}

#[test]
fn a_trimap_with_nothing_sure_keeps_the_mask_and_decontaminates_it_as_rembg_does() {
    if common::without_set_up() {
        return;
    }
    // No mask value is above 255: pymatting refuses a trimap without foreground and rembg
    // falls back to its decontaminated cutout of the mask; so does rembgfilter.
    let photo = "coffee";
    let (width, height, ours) = cutout(
        photo,
        "alpha-matting=true alpha-matting-foreground-threshold=255",
    );
    let (_, _, decontaminated) = cutout(photo, "foreground-estimation=multilevel");
    assert_eq!(ours, decontaminated, "the mask, its colour estimated");
    let (theirs, _) = rembg_cutout(
        "remove",
        &["u2netp", sample(photo).to_str().unwrap(), "255", "10", "10"],
    );
    assert_eq!(theirs.len(), width * height * 4);
    let band: Vec<bool> = ours
        .chunks_exact(4)
        .map(|p| p[3] != 0 && p[3] != 255)
        .collect();
    let (alpha, colour, _) = differences(&ours, &theirs, &band);
    println!("{photo} without sure foreground: alpha {alpha:.3}, colour {colour:.3} from rembg's");
    assert!(
        alpha <= 2.0 && colour <= 3.0,
        "alpha {alpha:.3}, colour {colour:.3}"
    );
}

#[test]
fn matting_switches_on_while_playing_and_its_time_is_in_the_stats() {
    if common::without_set_up() {
        return;
    }
    let mut h = common::rembgfilter_harness(&[], 96, 64);
    // Left half one colour, right half another, a soft mask from the model in between.
    let frame: Vec<u8> = (0..96 * 64)
        .flat_map(|i| {
            if i % 96 < 48 {
                [200, 180, 160]
            } else {
                [(i * 7 % 251) as u8, 40, 90]
            }
        })
        .collect();
    let push = |h: &mut gst_check::Harness| {
        h.push(gst::Buffer::from_slice(frame.clone())).unwrap();
        h.pull().unwrap()
    };
    let matting_time = |h: &gst_check::Harness| {
        h.element()
            .unwrap()
            .property::<gst::Structure>("stats")
            .get::<u64>("matting-time")
            .unwrap()
    };
    push(&mut h);
    assert_eq!(matting_time(&h), 0, "no matting yet");
    let element = h.element().unwrap();
    element.set_property("alpha-matting", true);
    element.set_property("alpha-matting-erode-size", 3u32);
    assert_eq!(element.property::<u32>("alpha-matting-erode-size"), 3);
    assert_eq!(
        element.property::<u32>("alpha-matting-foreground-threshold"),
        240
    );
    assert_eq!(
        element.property::<u32>("alpha-matting-background-threshold"),
        10
    );
    push(&mut h);
    assert!(matting_time(&h) > 0, "the matting's time is counted");
}

#[test]
fn tiny_odd_and_uniform_frames_pass_through_with_matting_on() {
    if common::without_set_up() {
        return;
    }
    // The tiny stand-in model (the brightness as the mask: the ball's rim partly transparent)
    // runs in microseconds; what is tested is the matting step on frames of these sizes.
    let model = common::test_model("brightness.onnx");
    for (width, height, pattern) in [
        (1, 1, "ball"),
        (2, 1, "ball"),
        (333, 17, "ball"),
        (17, 201, "ball"),
        (64, 48, "black"),
        (64, 48, "white"),
    ] {
        for mode in ["alpha", "composite", "mask"] {
            let samples = collect_samples(&format!(
                "videotestsrc num-buffers=2 pattern={pattern} \
                 ! video/x-raw,format=BGRx,width={width},height={height} \
                 ! rembgfilter model={} mode={mode} alpha-matting=true alpha-matting-erode-size=1 \
                 ! appsink name=sink",
                model.display()
            ))
            .unwrap_or_else(|e| panic!("{width}x{height} {pattern} {mode}: {e}"));
            assert_eq!(samples.len(), 2, "{width}x{height} {pattern} {mode}");
        }
    }
}

#[test]
fn a_4k_photo_is_matted() {
    if common::without_set_up() {
        return;
    }
    // pymatting's Laplacian has 25 float64 entries and 25 int64 indices for every pixel of the
    // frame (3.3 GB at 4K before the solver); rembgfilter's follows the unknown band (its peak
    // memory is in scripts/bench.sh alpha_matting).
    let samples = collect_samples(&format!(
        "filesrc location={} ! pngdec ! videoconvert ! videoscale \
         ! video/x-raw,format=RGB,width=3840,height=2160 \
         ! rembgfilter alpha-matting=true ! appsink name=sink",
        sample("chelsea").display()
    ))
    .unwrap();
    let (_, pixels) = packed_pixels(&samples[0]);
    let partial = common::alpha_of(&pixels)
        .iter()
        .filter(|&&a| a != 0 && a != 255)
        .count();
    println!("4K: {partial} partly transparent pixels");
    assert!(partial > 10_000, "a matte ({partial} partial pixels)");
}
