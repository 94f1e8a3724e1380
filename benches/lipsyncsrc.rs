//! Prints, for lipsyncsrc on generated 1280x720 and 1920x1080 templates with a U-Net-328-shaped
//! model: frames per second, bare U-Net inference per frame, their ratio, the time per frame
//! outside the model, memory growth over the run; and the same timings for the Python reference
//! loop (OpenCV + ONNX Runtime), all measured in this one run. "Outside the model" is measured the
//! same way on both sides: time per frame minus the time inside the model's runs of that same run
//! (lipsyncsrc's `stats` property; the reference's own timer), not minus a separate bare run, whose
//! run-to-run wander on this machine (several ms) would swamp a figure of about one ms.
//!
//! Each size runs the element on ONNX Runtime and on OpenVINO (f32), with the bare model on the
//! same runtime, and prints OpenVINO's speed-up over ONNX Runtime per frame.
//!
//! Run with `scripts/bench.sh lipsyncsrc` (it sets up ONNX Runtime, OpenVINO and the Python venv).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{memory_kib, ms, python, reference, run};
use gst::prelude::*;
use gstneuralfx::inference::Backend;
use gstneuralfx::inference::onnx::{OnnxBackend, SessionOptions};
use gstneuralfx::inference::openvino::{CompileOptions, OpenVinoBackend};
use gstneuralfx::talking_head::{AudioFeatures, LipsyncModel, Mode};

const FRAMES: usize = 150;
const TEMPLATES: usize = 30;

/// The runtimes compared: the `backend` property's value.
const RUNTIMES: [&str; 2] = ["onnxruntime", "openvino"];

/// Mean time of the U-Net alone on real inputs, on `runtime`.
fn bare_inference(model: &Path, features: &Path, runtime: &str) -> Duration {
    let backend: Arc<dyn Backend> = if runtime == "openvino" {
        OpenVinoBackend::load(model, CompileOptions::default()).unwrap()
    } else {
        OnnxBackend::load(model, SessionOptions::default()).unwrap()
    };
    let model = LipsyncModel::new(backend, Mode::Ave).unwrap();
    let features = AudioFeatures::load(features, Mode::Ave).unwrap();
    let image: Vec<f32> = (0..6 * 320 * 320)
        .map(|i| (i % 255) as f32 / 255.0)
        .collect();
    let mut audio = Vec::new();
    features.window(0, &mut audio);
    model.run(&image, &audio).unwrap();
    let start = Instant::now();
    for _ in 0..FRAMES {
        model.run(&image, &audio).unwrap();
    }
    start.elapsed() / FRAMES as u32
}

/// One run of the element.
struct ElementRun {
    timing: common::PipelineRun,
    /// Mean time inside the model for the frames `timing.per_frame` covers, from the element's
    /// `stats` property: the rest of `per_frame` is the time around the model, measured as the
    /// Python reference does.
    model_per_frame: Duration,
}

/// (frames, model-time) from lipsyncsrc's `stats`.
fn stats(source: &gst::Element) -> (u64, Duration) {
    let stats = source.property::<gst::Structure>("stats");
    (
        stats.get::<u64>("frames").unwrap(),
        Duration::from_nanos(stats.get::<u64>("model-time").unwrap()),
    )
}

/// lipsyncsrc ! fakesink, timed between output buffers.
fn element(model: &Path, template: &Path, features: &Path, runtime: &str) -> ElementRun {
    let pipeline = gst::parse::launch(&format!(
        "lipsyncsrc name=src backend={runtime} model={} template={} features={} ! video/x-raw,format=BGR ! fakesink name=sink sync=false",
        model.display(),
        template.display(),
        features.display()
    ))
    .unwrap();
    let source = pipeline
        .downcast_ref::<gst::Bin>()
        .unwrap()
        .by_name("src")
        .unwrap();
    // Per-frame time counts from the first buffer's arrival, so the model time does too.
    let at_first = Arc::new(Mutex::new(None::<(u64, Duration)>));
    let (first, observed) = (at_first.clone(), source.clone());
    let timing = common::time_pipeline(&pipeline, move |index| {
        if index == 0 {
            *first.lock().unwrap() = Some(stats(&observed));
        }
    });
    assert_eq!(timing.frames, FRAMES);
    // The stats outlive the run: they are reset at the next start only.
    let (frames_end, model_end) = stats(&source);
    let (frames_first, model_first) = at_first.lock().unwrap().unwrap();
    // The source may already have made the second frame when the first arrives: the model time
    // is averaged over exactly the frames it covers.
    ElementRun {
        timing,
        model_per_frame: (model_end - model_first) / (frames_end - frames_first) as u32,
    }
}

fn main() {
    gst::init().unwrap();
    gstneuralfx::plugin_register_static().unwrap();
    let samples = PathBuf::from(std::env::var("NEURALFX_SAMPLES").expect("NEURALFX_SAMPLES"));
    let dir = std::env::temp_dir().join(format!("neuralfx-lipsync-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("unet_ave.onnx");
    run(Command::new(python())
        .arg(reference("make_unet328.py"))
        .args(["ave", model.to_str().unwrap()]));
    println!(
        "lipsyncsrc benchmark: U-Net-328-shaped model (random weights, real widths), mode ave, {FRAMES} frames, \
         {TEMPLATES} templates (all fit the default 32-frame cache)"
    );
    println!(
        "{:>10} {:>12} {:>8} {:>8} {:>8} {:>7} {:>10} | {:>9} {:>8} {:>7} {:>10} | {:>15} | {:>10} | {:>10}",
        "templates",
        "backend",
        "fps",
        "ours ms",
        "bare ms",
        "ratio",
        "outside ms",
        "python ms",
        "bare ms",
        "ratio",
        "outside ms",
        "outside ours/py",
        "RSS +MiB",
        "vs ORT"
    );
    for (width, height) in [(1280, 720), (1920, 1080)] {
        let data = dir.join(format!("{width}x{height}"));
        run(Command::new(python())
            .arg(reference("make_lipsync_data.py"))
            .args([
                samples.join("astronaut.png").to_str().unwrap(),
                data.to_str().unwrap(),
                "--templates",
                &TEMPLATES.to_string(),
                "--width",
                &width.to_string(),
                "--height",
                &height.to_string(),
                "--feature-frames",
                &FRAMES.to_string(),
            ]));
        let (template, features) = (data.join("template"), data.join("features/ave.npy"));
        let python_run = || {
            let times = run(Command::new(python())
                .arg(reference("lipsync_reference.py"))
                .args([
                    model.to_str().unwrap(),
                    template.to_str().unwrap(),
                    features.to_str().unwrap(),
                    "ave",
                    "/dev/null",
                    "--time",
                ]));
            let fields: Vec<f64> = times
                .split_whitespace()
                .map(|v| v.parse().unwrap())
                .collect();
            (fields[0], fields[1])
        };
        // The faster of two runs of the reference.
        let (first, second) = (python_run(), python_run());
        let (python_frame, python_bare) = if first.0 <= second.0 { first } else { second };
        let python_outside = python_frame - python_bare;
        let mut onnxruntime_frame = None;
        for runtime in RUNTIMES {
            // This machine's timings wander by several percent; the minimum of interleaved runs
            // of each is the figure least disturbed by whatever else the machine is doing.
            let mut bare = bare_inference(&model, &features, runtime);
            let mut ours = element(&model, &template, &features, runtime);
            for _ in 0..2 {
                bare = bare.min(bare_inference(&model, &features, runtime));
                let again = element(&model, &template, &features, runtime);
                if again.timing.per_frame < ours.timing.per_frame {
                    ours = again;
                }
            }
            let growth =
                (ours.timing.rss_end_kib as f64 - ours.timing.rss_start_kib as f64) / 1024.0;
            let ours_frame = ms(ours.timing.per_frame);
            let reference_frame = *onnxruntime_frame.get_or_insert(ours_frame);
            // As for Python: each frame's time minus the model's time in the same run.
            let ours_outside = ours_frame - ms(ours.model_per_frame);
            println!(
                "{:>10} {:>12} {:>8.1} {:>8.2} {:>8.2} {:>7.3} {:>10.2} | {:>9.2} {:>8.2} {:>7.3} {:>10.2} | {:>15.3} | {:>10.1} | {:>9.2}x",
                format!("{width}x{height}"),
                runtime,
                1000.0 / ours_frame,
                ours_frame,
                ms(bare),
                ours_frame / ms(bare),
                ours_outside,
                python_frame,
                python_bare,
                python_frame / python_bare,
                python_outside,
                ours_outside / python_outside,
                growth,
                reference_frame / ours_frame
            );
        }
    }
    println!(
        "peak RSS of this process: {:.1} MiB",
        memory_kib("VmHWM:") as f64 / 1024.0
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
