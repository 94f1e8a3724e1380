//! Soak: resident memory over long runs, so that a leak shows as a number. For rembgfilter with
//! u2netp and with selfie, and for lipsyncsrc with a U-Net-328-shaped model: RSS after the first
//! frames and at the end of N frames; then RSS before and after M start/stop cycles of each
//! (each loads the model again, since a session lives only while an element holds it).
//!
//! `scripts/bench.sh soak`; BENCH_SOAK_FRAMES=N (default 300), BENCH_SOAK_RELOADS=M (default 30).

mod common;

use std::process::Command;

use common::{memory_kib, python, reference, run, run_pipeline};
use gst::prelude::*;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Plays `description` to EOS and stops it, `times` times; RSS before and after, in KiB.
fn reload(description: &str, times: usize) -> (u64, u64) {
    let before = memory_kib("VmRSS:");
    for _ in 0..times {
        let pipeline = gst::parse::launch(description).unwrap();
        common::play_until_eos(&pipeline);
        pipeline.set_state(gst::State::Null).unwrap();
    }
    (before, memory_kib("VmRSS:"))
}

fn main() {
    gst::init().unwrap();
    gstneuralfx::plugin_register_static().unwrap();
    let (frames, reloads) = (
        env_or("BENCH_SOAK_FRAMES", 300),
        env_or("BENCH_SOAK_RELOADS", 30),
    );
    // lipsyncsrc's inputs: a generated U-Net and 8 templates of 640x480 with `frames` feature rows.
    let dir = std::env::temp_dir().join(format!("neuralfx-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("unet_ave.onnx");
    run(Command::new(python())
        .arg(reference("make_unet328.py"))
        .args(["ave", model.to_str().unwrap()]));
    let samples = std::env::var("NEURALFX_SAMPLES").expect("NEURALFX_SAMPLES");
    run(Command::new(python())
        .arg(reference("make_lipsync_data.py"))
        .args([
            &format!("{samples}/astronaut.png"),
            dir.to_str().unwrap(),
            "--templates",
            "8",
            "--width",
            "640",
            "--height",
            "480",
            "--feature-frames",
            &frames.to_string(),
        ]));
    let lipsync = |count: usize| {
        format!(
            "lipsyncsrc model={} template={} features={} num-buffers={count} ! fakesink name=sink",
            model.display(),
            dir.join("template").display(),
            dir.join("features/ave.npy").display()
        )
    };
    let rembg = |model: &str, count: usize| {
        format!(
            "videotestsrc num-buffers={count} pattern=ball ! video/x-raw,format=RGB,width=320,height=240 \
             ! rembgfilter model={model} ! fakesink name=sink"
        )
    };
    let runs = [
        (
            "rembgfilter u2netp",
            rembg("u2netp", frames),
            rembg("u2netp", 3),
        ),
        (
            "rembgfilter selfie",
            rembg("selfie", frames),
            rembg("selfie", 3),
        ),
        ("lipsyncsrc", lipsync(frames), lipsync(3)),
    ];
    println!("soak: {frames} frames per run, {reloads} start/stop cycles (3 frames each)");
    println!(
        "{:>20} {:>14} {:>12} {:>12} | {:>15} {:>14} {:>16}",
        "element",
        "RSS start MiB",
        "RSS end MiB",
        "growth MiB",
        "before reloads",
        "after reloads",
        "per reload KiB"
    );
    for (label, long, short) in runs {
        let soak = run_pipeline(&long);
        let (before, after) = reload(&short, reloads);
        println!(
            "{label:>20} {:>14.1} {:>12.1} {:>12.2} | {:>15.1} {:>14.1} {:>16.1}",
            mib(soak.rss_start_kib),
            mib(soak.rss_end_kib),
            mib(soak.rss_end_kib.saturating_sub(soak.rss_start_kib)),
            mib(before),
            mib(after),
            after.saturating_sub(before) as f64 / reloads.max(1) as f64
        );
    }
    println!(
        "peak RSS of this process: {:.1} MiB",
        mib(memory_kib("VmHWM:"))
    );
    let _ = std::fs::remove_dir_all(&dir);
}
