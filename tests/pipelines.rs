//! The ready-made scripts in pipelines/, run as a user runs them (with the installed plugin).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("pipelines")
        .join(name)
}

fn run_script(name: &str, args: &[&str], env: &[(&str, &str)]) {
    let output = Command::new(script(name))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{name} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("neuralfx-pipelines-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Five frames of the astronaut photo in lossless FFV1/Matroska, as an input video.
fn input_video() -> PathBuf {
    let path = scratch("input.mkv");
    if !path.exists() {
        write_astronaut_video(&path, 5, 256);
    }
    path
}

fn decoded_frames(path: &Path, format: &str) -> Vec<gst::Sample> {
    collect_samples(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! video/x-raw,format={format} ! appsink name=sink",
        path.display()
    ))
    .unwrap()
}

#[test]
fn still_image_becomes_a_transparent_png_like_rembgfilter_computes() {
    let output = scratch("cutout.png");
    let photo = sample("coffee");
    run_script(
        "cutout-image.sh",
        &[photo.to_str().unwrap(), output.to_str().unwrap()],
        &[],
    );
    let png = decoded_frames(&output, "RGBA");
    let expected = collect_samples(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! rembgfilter ! appsink name=sink",
        photo.display()
    ))
    .unwrap();
    let pixels = packed_pixels(&png[0]).1;
    assert_eq!(alpha_of(&pixels), alpha_of(&packed_pixels(&expected[0]).1));
    // Colour where nothing shows is cleared (clear-transparent=true), so the file is smaller
    // than with the colour kept; visible pixels keep theirs.
    let hidden = pixels.chunks_exact(4).filter(|p| p[3] == 0);
    assert!(hidden.clone().count() > 1000);
    assert!(hidden.into_iter().all(|p| p[..3] == [0, 0, 0]));
    let kept = scratch("cutout-kept.png");
    run_script(
        "cutout-image.sh",
        &[
            photo.to_str().unwrap(),
            kept.to_str().unwrap(),
            "clear-transparent=false",
        ],
        &[],
    );
    let (cleared_size, kept_size) = (
        std::fs::metadata(&output).unwrap().len(),
        std::fs::metadata(&kept).unwrap().len(),
    );
    assert!(
        cleared_size * 10 < kept_size * 9,
        "{cleared_size} bytes cleared, {kept_size} kept"
    );
    let kept_pixels = packed_pixels(&decoded_frames(&kept, "RGBA")[0]).1;
    assert_eq!(alpha_of(&kept_pixels), alpha_of(&pixels));
    assert!(
        kept_pixels
            .chunks_exact(4)
            .any(|p| p[3] == 0 && p[..3] != [0, 0, 0])
    );
}

#[test]
fn video_with_alpha_keeps_the_alpha_through_ffv1() {
    let output = scratch("alpha.mkv");
    run_script(
        "video-with-alpha.sh",
        &[input_video().to_str().unwrap(), output.to_str().unwrap()],
        &[],
    );
    let frames = decoded_frames(&output, "RGBA");
    assert_eq!(frames.len(), 5);
    for frame in &frames {
        let alpha = alpha_of(&packed_pixels(frame).1);
        let clear = alpha.iter().filter(|&&a| a < 10).count();
        let solid = alpha.iter().filter(|&&a| a > 245).count();
        assert!(
            clear > alpha.len() / 10 && solid > alpha.len() / 10,
            "alpha survived: {clear} clear, {solid} solid"
        );
    }
}

#[test]
fn blurred_background_video_is_an_mp4_of_every_frame() {
    let output = scratch("blurred.mp4");
    run_script(
        "blur-background.sh",
        &[input_video().to_str().unwrap(), output.to_str().unwrap()],
        &[],
    );
    let frames = decoded_frames(&output, "RGB");
    assert_eq!(frames.len(), 5);
    let (info, _) = packed_pixels(&frames[0]);
    assert_eq!((info.width(), info.height()), (256, 256));
    let (profile, chroma) = h264_profile(&output);
    assert!(
        !profile.contains("4:4:4") && chroma == "4:2:0",
        "{profile}, {chroma}"
    );
}

#[test]
fn webcam_script_runs_live_with_a_test_source() {
    run_script(
        "webcam-blur.sh",
        &[],
        &[
            ("SOURCE", "videotestsrc is-live=true num-buffers=15"),
            ("SINK", "fakesink sync=true"),
        ],
    );
}
