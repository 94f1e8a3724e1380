//! Prints, for lipsyncsrc on generated 1280x720 and 1920x1080 templates with a U-Net-328-shaped
//! model: frames per second, bare U-Net inference per frame, their ratio, the time per frame
//! outside the model, memory growth over the run; and the same timings for the Python reference
//! loop (OpenCV + ONNX Runtime), all measured in this one run. "Outside the model" is measured the
//! same way on both sides: time per frame minus the time inside the model's runs of that same run
//! (lipsyncsrc's `stats` property; the reference's own timer), not minus a separate bare run, whose
//! run-to-run wander on this machine (several ms) would swamp a figure of about one ms.
//!
//! Each size runs the element on ONNX Runtime, on OpenVINO f32 and on OpenVINO bf16 (where the CPU
//! has it), with the bare model on the same runtime, and prints the speed-up over ONNX Runtime per
//! frame and the PSNR of the U-Net's output against ONNX Runtime's on the same input.
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
use gstneuralfx::inference::openvino::{CompileOptions, OpenVinoBackend, Precision};
use gstneuralfx::talking_head::{AudioFeatures, LipsyncModel, Mode};

const FRAMES: usize = 150;
const TEMPLATES: usize = 30;

/// The runtimes compared: the `backend` and `precision` properties' values.
const RUNTIMES: [(&str, &str); 3] = [
    ("onnxruntime", "f32"),
    ("openvino", "f32"),
    ("openvino", "bf16"),
];

fn load(model: &Path, (backend, precision): (&str, &str)) -> Option<Arc<dyn Backend>> {
    if backend == "openvino" {
        let options = CompileOptions {
            precision: if precision == "bf16" {
                Precision::Bf16
            } else {
                Precision::F32
            },
            ..Default::default()
        };
        // bf16 is refused on a CPU without it: that row is left out.
        let loaded = OpenVinoBackend::load(model, options).ok()?;
        Some(loaded)
    } else {
        Some(OnnxBackend::load(model, SessionOptions::default()).unwrap())
    }
}

/// PSNR (dB, values scaled to 0..255 as the paste does) of the U-Net's output on `runtime`
/// against ONNX Runtime's, on the same real input.
fn output_psnr(model: &Path, features: &Path, runtime: (&str, &str)) -> f64 {
    let run = |runtime| {
        let model = LipsyncModel::new(load(model, runtime).unwrap(), Mode::Ave).unwrap();
        let features = AudioFeatures::load(features, Mode::Ave).unwrap();
        let image: Vec<f32> = (0..6 * 320 * 320)
            .map(|i| (i % 255) as f32 / 255.0)
            .collect();
        let mut audio = Vec::new();
        features.window(3, &mut audio);
        model.run(&image, &audio).unwrap()
    };
    let (reference, found) = (run(("onnxruntime", "f32")), run(runtime));
    let mse = reference
        .iter()
        .zip(&found)
        .map(|(a, b)| f64::from((a - b) * 255.0).powi(2))
        .sum::<f64>()
        / reference.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64.powi(2) / mse).log10()
    }
}

/// Mean time of the U-Net alone on real inputs, on `runtime`.
fn bare_inference(model: &Path, features: &Path, runtime: (&str, &str)) -> Duration {
    let backend = load(model, runtime).unwrap();
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
fn element(
    model: &Path,
    template: &Path,
    features: &Path,
    (backend, precision): (&str, &str),
) -> ElementRun {
    let pipeline = gst::parse::launch(&format!(
        "lipsyncsrc name=src backend={backend} precision={precision} model={} template={} features={} ! video/x-raw,format=BGR ! fakesink name=sink sync=false",
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
        "{:>10} {:>14} {:>8} {:>8} {:>8} {:>7} {:>10} | {:>9} {:>8} {:>7} {:>10} | {:>15} | {:>10} | {:>10} | {:>11}",
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
        "vs ORT",
        "PSNR vs ORT"
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
            if load(&model, runtime).is_none() {
                println!("{runtime:?}: not on this CPU");
                continue;
            }
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
                "{:>10} {:>14} {:>8.1} {:>8.2} {:>8.2} {:>7.3} {:>10.2} | {:>9.2} {:>8.2} {:>7.3} {:>10.2} | {:>15.3} | {:>10.1} | {:>9.2}x | {:>8.1} dB",
                format!("{width}x{height}"),
                format!("{} {}", runtime.0, runtime.1),
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
                reference_frame / ours_frame,
                output_psnr(&model, &features, runtime)
            );
        }
    }
    println!(
        "peak RSS of this process: {:.1} MiB",
        memory_kib("VmHWM:") as f64 / 1024.0
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
