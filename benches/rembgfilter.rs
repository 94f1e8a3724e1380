//! Prints, for u2netp at 640x480 and 1920x1080: bare model inference per frame, the rembgfilter
//! pipeline per frame (videotestsrc ! rembgfilter ! fakesink), the same with overlap=true (the
//! model's run overlapping the work around the neighbouring frames), Python rembg per image, and the
//! ratios between them, all measured in this one run.
//!
//! Run with `scripts/bench.sh` (it sets up the model, ONNX Runtime and the Python venv).

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{memory_kib, ms};
use gstneuralfx::imageops::{ImageRef, PixelLayout};
use gstneuralfx::inference::Backend;
use gstneuralfx::inference::onnx::{OnnxBackend, SessionOptions};
use gstneuralfx::segmentation::catalog::ModelProfile;
use gstneuralfx::segmentation::{Segmenter, locate};

const MODEL: &str = "u2netp";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Mean time of `model` alone on a preprocessed frame.
fn bare_inference(frames: usize) -> Duration {
    let resolved = locate::resolve(MODEL, false).expect("u2netp installed by scripts/setup.sh");
    let backend: Arc<dyn Backend> =
        OnnxBackend::load(&resolved.path, SessionOptions::default()).unwrap();
    let mut segmenter = Segmenter::new(backend, ModelProfile::U2NET).unwrap();
    let frame: Vec<u8> = (0..320 * 320 * 3).map(|i| (i % 251) as u8).collect();
    let mut input = gstneuralfx::segmentation::ModelInput::default();
    segmenter
        .preparer
        .prepare(
            &ImageRef::packed(&frame, 320, 320, PixelLayout::RGB),
            &mut input,
        )
        .unwrap();
    let run = || segmenter.model.run(&input).unwrap();
    run();
    let start = Instant::now();
    for _ in 0..frames {
        run();
    }
    start.elapsed() / frames as u32
}

/// videotestsrc ! rembgfilter ! fakesink, timed between output buffers.
fn pipeline(width: u32, height: u32, frames: usize, overlap: bool) -> common::PipelineRun {
    let run = common::run_pipeline(&format!(
        "videotestsrc num-buffers={} ! video/x-raw,format=RGB,width={width},height={height},framerate=30/1 \
         ! rembgfilter model={MODEL} overlap={overlap} ! fakesink name=sink sync=false",
        frames + 1
    ));
    assert_eq!(run.frames, frames + 1, "every frame must come out");
    run
}

/// Mean time of Python rembg's remove() on one image of this size, in its own process.
fn python_rembg(width: u32, height: u32, iterations: usize) -> Duration {
    let venv = std::env::var("NEURALFX_VENV").expect("NEURALFX_VENV (set by scripts/env.sh)");
    let samples =
        std::env::var("NEURALFX_SAMPLES").expect("NEURALFX_SAMPLES (set by scripts/env.sh)");
    let output = Command::new(format!("{venv}/bin/python"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/reference/rembg_timing.py"
        ))
        .args([MODEL, &format!("{samples}/astronaut.png")])
        .args([
            width.to_string(),
            height.to_string(),
            iterations.to_string(),
        ])
        .output()
        .expect("run the Python rembg timing script");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let millis: f64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();
    Duration::from_secs_f64(millis / 1000.0)
}

fn main() {
    gst::init().unwrap();
    gstneuralfx::plugin_register_static().unwrap();
    let frames = env_or("BENCH_FRAMES", 20);
    println!(
        "rembgfilter benchmark: model {MODEL}, {frames} frames per figure, ONNX Runtime default threads"
    );
    let bare = bare_inference(frames);
    println!("bare u2netp inference: {:.1} ms/frame", ms(bare));
    println!(
        "{:>10} {:>12} {:>10} {:>10} {:>14} {:>15} {:>15} {:>14} {:>15}",
        "size",
        "pipeline ms",
        "overlap ms",
        "rembg ms",
        "pipeline/bare",
        "rembg/pipeline",
        "plain/overlap",
        "RSS start MiB",
        "RSS growth MiB"
    );
    for (width, height) in [(640, 480), (1920, 1080)] {
        let ours = pipeline(width, height, frames, false);
        let overlapped = pipeline(width, height, frames, true);
        let theirs = python_rembg(width, height, frames);
        println!(
            "{:>10} {:>12.1} {:>10.1} {:>10.1} {:>14.3} {:>15.3} {:>15.3} {:>14.1} {:>15.2}",
            format!("{width}x{height}"),
            ms(ours.per_frame),
            ms(overlapped.per_frame),
            ms(theirs),
            ours.per_frame.as_secs_f64() / bare.as_secs_f64(),
            theirs.as_secs_f64() / ours.per_frame.as_secs_f64(),
            ours.per_frame.as_secs_f64() / overlapped.per_frame.as_secs_f64(),
            ours.rss_start_kib as f64 / 1024.0,
            (ours.rss_end_kib as f64 - ours.rss_start_kib as f64) / 1024.0
        );
    }
    println!(
        "peak RSS of this process: {:.1} MiB",
        memory_kib("VmHWM:") as f64 / 1024.0
    );
}
