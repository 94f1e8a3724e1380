//! Prints, for u2netp at 640x480 and 1920x1080: bare model inference per frame, the rembgfilter
//! pipeline per frame (videotestsrc ! rembgfilter ! fakesink), Python rembg per image, and the
//! ratios between them, all measured in this one run.
//!
//! Run with `scripts/bench.sh` (it sets up the model, ONNX Runtime and the Python venv).

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstneuralfx::imageops::{ImageRef, PixelLayout};
use gstneuralfx::inference::onnx::{OnnxBackend, SessionOptions};
use gstneuralfx::inference::{Backend, TensorView};
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
    let resolved = locate::resolve(MODEL).expect("u2netp installed by scripts/setup.sh");
    let backend: Arc<dyn Backend> =
        OnnxBackend::load(&resolved.path, SessionOptions::default()).unwrap();
    let mut segmenter = Segmenter::new(backend.clone(), ModelProfile::U2NET).unwrap();
    let frame: Vec<u8> = (0..320 * 320 * 3).map(|i| (i % 251) as u8).collect();
    let input = segmenter
        .preprocess(&ImageRef::packed(&frame, 320, 320, PixelLayout::RGB))
        .unwrap()
        .to_vec();
    let shape = *segmenter.input_shape();
    let run = || {
        backend
            .run(&[TensorView {
                shape: &shape,
                data: &input,
            }])
            .unwrap()
    };
    run();
    let start = Instant::now();
    for _ in 0..frames {
        run();
    }
    start.elapsed() / frames as u32
}

/// Mean time between consecutive output buffers of videotestsrc ! rembgfilter ! fakesink,
/// so model loading and pipeline start-up are not counted.
fn pipeline(width: u32, height: u32, frames: usize) -> Duration {
    let description = format!(
        "videotestsrc num-buffers={} ! video/x-raw,format=RGB,width={width},height={height},framerate=30/1 \
         ! rembgfilter model={MODEL} ! fakesink name=sink sync=false",
        frames + 1
    );
    let pipeline = gst::parse::launch(&description).unwrap();
    let bin = pipeline.downcast_ref::<gst::Bin>().unwrap();
    let arrivals = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let sink_pad = bin.by_name("sink").unwrap().static_pad("sink").unwrap();
    let recorded = arrivals.clone();
    sink_pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        recorded.lock().unwrap().push(Instant::now());
        gst::PadProbeReturn::Ok
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    for message in bus.iter_timed(gst::ClockTime::NONE) {
        match message.view() {
            gst::MessageView::Eos(..) => break,
            gst::MessageView::Error(err) => panic!("{}: {:?}", err.error(), err.debug()),
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    let arrivals = arrivals.lock().unwrap();
    assert_eq!(arrivals.len(), frames + 1, "every frame must come out");
    (arrivals[frames] - arrivals[0]) / frames as u32
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
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
        "{:>10} {:>14} {:>14} {:>16} {:>18}",
        "size", "pipeline ms", "rembg ms", "pipeline/bare", "rembg/pipeline"
    );
    for (width, height) in [(640, 480), (1920, 1080)] {
        let ours = pipeline(width, height, frames);
        let theirs = python_rembg(width, height, frames);
        println!(
            "{:>10} {:>14.1} {:>14.1} {:>16.3} {:>18.3}",
            format!("{width}x{height}"),
            ms(ours),
            ms(theirs),
            ours.as_secs_f64() / bare.as_secs_f64(),
            theirs.as_secs_f64() / ours.as_secs_f64()
        );
    }
}
