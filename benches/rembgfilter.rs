//! Prints, measured in this one run, per model (u2netp, u2netp-int8, selfie, isnet-fp16, modnet)
//! and runtime (ONNX Runtime, OpenVINO f32, OpenVINO bf16):
//! - bare inference per frame on that runtime (at the model's input size; for MODNet, whose input
//!   follows the frame, at 896x512, what a 1080p frame runs at), and the rembgfilter pipeline per
//!   frame (videotestsrc ! imagefreeze ! rembgfilter ! fakesink) at 640x480, 720p and 1080p with
//!   overlap=false, each the median of its frames (this machine's speed comes and goes; medians
//!   compare best);
//! - each pipeline against bare ONNX Runtime inference of the model (speed-up), against bare
//!   inference on its own runtime, and against the model's own time inside the element over the
//!   same frames (what pre- and post-processing add, the last measured within one run);
//! - Python rembg with u2netp at both sizes, and the speed-up of each u2netp row over it;
//! - mask quality against ONNX Runtime f32 of the same model (of u2netp for u2netp-int8): foreground
//!   IoU and mean |alpha difference|, the mean over eight held-out photos and the worst photo; and
//!   for the fast variants (u2netp-int8, bf16) a table of both on every photo, the worst in bold.
//!
//! Run with `scripts/bench.sh rembgfilter`. BENCH_FRAMES (12) sets frames per figure (a quarter
//! of them for ISNet, at least 3); BENCH_MODELS a comma-separated subset of the models.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ms;
use gst::prelude::*;
use gstneuralfx::imageops::{ImageRef, PixelLayout};
use gstneuralfx::inference::Backend;
use gstneuralfx::inference::onnx::{OnnxBackend, SessionOptions};
use gstneuralfx::inference::openvino::{CompileOptions, OpenVinoBackend, Precision};
use gstneuralfx::segmentation::{Segmenter, locate};

const MODELS: [&str; 5] = ["u2netp", "u2netp-int8", "selfie", "isnet-fp16", "modnet"];
/// Where mask quality is judged: photos none of the models was calibrated on.
const PHOTOS: [&str; 8] = common::held_out::HELD_OUT_PHOTOS;
const SIZES: [(u32, u32); 3] = [(640, 480), (1280, 720), (1920, 1080)];

#[derive(Clone, Copy)]
enum Runtime {
    OnnxRuntime,
    OpenVino(Precision),
}

impl Runtime {
    const ALL: [Runtime; 3] = [
        Runtime::OnnxRuntime,
        Runtime::OpenVino(Precision::F32),
        Runtime::OpenVino(Precision::Bf16),
    ];

    fn name(self) -> &'static str {
        match self {
            Runtime::OnnxRuntime => "onnxruntime",
            Runtime::OpenVino(Precision::F32) => "openvino f32",
            Runtime::OpenVino(Precision::Bf16) => "openvino bf16",
        }
    }

    fn properties(self) -> &'static str {
        match self {
            Runtime::OnnxRuntime => "backend=onnxruntime",
            Runtime::OpenVino(Precision::F32) => "backend=openvino precision=f32",
            Runtime::OpenVino(Precision::Bf16) => "backend=openvino precision=bf16",
        }
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Median time of the model alone on `runtime`, on a prepared frame.
/// None where the runtime refuses the model on this CPU (bf16 without bfloat16 instructions).
fn bare_inference(model: &str, runtime: Runtime, frames: usize) -> Option<Duration> {
    let resolved = locate::resolve(model, false)
        .unwrap_or_else(|e| panic!("{model}: {e} (scripts/setup.sh --test installs it)"));
    let backend: Arc<dyn Backend> = match runtime {
        Runtime::OnnxRuntime => OnnxBackend::load(&resolved.path, SessionOptions::default())
            .unwrap_or_else(|e| panic!("{model}: {e}")),
        Runtime::OpenVino(precision) => match OpenVinoBackend::load(
            &resolved.path,
            CompileOptions {
                threads: 0,
                precision,
            },
        ) {
            Ok(backend) => backend,
            Err(e) if precision == Precision::Bf16 => {
                println!("{model} on openvino bf16 left out: {e}");
                return None;
            }
            Err(e) => panic!("{model}: {e}"),
        },
    };
    let profile = resolved.entry.expect("a catalog model").profile;
    let mut segmenter = Segmenter::new(backend, profile).unwrap();
    let (width, height) = if profile.follows_frame_size() {
        (1920, 1080)
    } else {
        profile.input_size
    };
    let frame: Vec<u8> = (0..width * height * 3).map(|i| (i % 251) as u8).collect();
    let mut input = gstneuralfx::segmentation::ModelInput::default();
    segmenter
        .preparer
        .prepare(
            &ImageRef::packed(&frame, width, height, PixelLayout::RGB),
            &mut input,
        )
        .unwrap();
    let run = || segmenter.model.run(&input).unwrap();
    run();
    Some(common::median(
        (0..frames)
            .map(|_| {
                let start = Instant::now();
                run();
                start.elapsed()
            })
            .collect(),
    ))
}

/// How the element did on one pipeline run.
struct ElementRun {
    /// Median time between output buffers.
    median_frame: Duration,
    /// Mean time between output buffers over the run, and the mean time inside the model over
    /// the same frames, read from the element's `stats`: their ratio is what the element adds
    /// to the model, measured in one run, so unaffected by the machine's speed changing between
    /// runs (it does, here, by up to 2x).
    mean_frame: Duration,
    mean_model: Duration,
}

/// One test frame repeated by imagefreeze (which costs nothing per frame, where videotestsrc
/// draws each 1080p frame in about 2 ms on the same thread) ! rembgfilter ! fakesink, timed
/// between output buffers: what the pipeline adds over bare inference is the element's alone.
fn pipeline(
    model: &str,
    runtime: Runtime,
    (width, height): (u32, u32),
    frames: usize,
) -> ElementRun {
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=1 ! video/x-raw,format=RGB,width={width},height={height},framerate=30/1 \
         ! imagefreeze num-buffers={} ! rembgfilter name=filter model={model} {} overlap=false \
         ! fakesink name=sink sync=false",
        frames + 1,
        runtime.properties()
    ))
    .unwrap();
    let filter = pipeline
        .downcast_ref::<gst::Bin>()
        .unwrap()
        .by_name("filter")
        .unwrap();
    let model_time = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = model_time.clone();
    let run = common::time_pipeline(&pipeline, move |index| {
        // The first and the last buffer: the model time of the frames between them.
        if index == 0 || index == frames {
            let stats = filter.property::<gst::Structure>("stats");
            let nanoseconds = stats.get::<u64>("model-time").unwrap();
            recorded.lock().unwrap().push(nanoseconds);
        }
    });
    assert_eq!(run.frames, frames + 1, "every frame must come out");
    let model_time = model_time.lock().unwrap();
    ElementRun {
        median_frame: run.median_frame,
        mean_frame: run.per_frame,
        mean_model: Duration::from_nanos((model_time[1] - model_time[0]) / frames as u64),
    }
}

fn alpha(model: &str, runtime: Runtime, photo: &str) -> Vec<u8> {
    let samples = std::env::var("NEURALFX_SAMPLES").expect("NEURALFX_SAMPLES (scripts/env.sh)");
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={samples}/{photo} ! decodebin ! videoconvert ! rembgfilter model={model} {} \
         ! video/x-raw,format=RGBA ! appsink name=sink sync=false",
        runtime.properties()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let sample = sink.pull_sample().expect("a frame");
    let caps = sample.caps().unwrap();
    let info = gst_video::VideoInfo::from_caps(caps).unwrap();
    let map = sample.buffer().unwrap().map_readable().unwrap();
    let (width, height, stride) = (
        info.width() as usize,
        info.height() as usize,
        info.stride()[0] as usize,
    );
    let mut alpha = Vec::with_capacity(width * height);
    for row in 0..height {
        let line = &map[row * stride..row * stride + width * 4];
        alpha.extend(line.chunks_exact(4).map(|px| px[3]));
    }
    drop(map);
    pipeline.set_state(gst::State::Null).unwrap();
    alpha
}

/// Foreground IoU (alpha > 127) and mean |difference| of two masks.
fn compare(ours: &[u8], reference: &[u8]) -> (f64, f64) {
    let (mut both, mut either, mut total) = (0u64, 0u64, 0u64);
    for (&a, &b) in ours.iter().zip(reference) {
        both += u64::from(a > 127 && b > 127);
        either += u64::from(a > 127 || b > 127);
        total += u64::from(a.abs_diff(b));
    }
    let iou = if either == 0 {
        1.0
    } else {
        both as f64 / either as f64
    };
    (iou, total as f64 / ours.len() as f64)
}

/// Mean time of Python rembg's remove() with u2netp on one image of this size, in its own process.
fn python_rembg((width, height): (u32, u32), iterations: usize) -> Duration {
    let samples =
        std::env::var("NEURALFX_SAMPLES").expect("NEURALFX_SAMPLES (set by scripts/env.sh)");
    let stdout = common::run(
        Command::new(common::python())
            .arg(common::reference("rembg_timing.py"))
            .args(["u2netp", &format!("{samples}/astronaut.png")])
            .args([
                width.to_string(),
                height.to_string(),
                iterations.to_string(),
            ]),
    );
    Duration::from_secs_f64(stdout.trim().parse::<f64>().unwrap() / 1000.0)
}

fn main() {
    gst::init().unwrap();
    gstneuralfx::plugin_register_static().unwrap();
    let frames = env_or("BENCH_FRAMES", 12);
    let models: Vec<String> = std::env::var("BENCH_MODELS")
        .map(|list| list.split(',').map(str::to_string).collect())
        .unwrap_or_else(|_| MODELS.iter().map(|m| m.to_string()).collect());
    println!(
        "rembgfilter benchmark: {frames} frames per figure (ISNet a quarter), default threads"
    );
    let rembg: Vec<Duration> = SIZES
        .iter()
        .map(|&size| python_rembg(size, frames))
        .collect();
    println!(
        "Python rembg u2netp: {:.1} ms at 640x480, {:.1} ms at 1280x720, {:.1} ms at 1920x1080",
        ms(rembg[0]),
        ms(rembg[1]),
        ms(rembg[2])
    );
    println!(
        "| model | runtime | bare ms | 640x480 ms | 720p ms | 1080p ms | 1080p vs bare ORT | 1080p vs own bare | 1080p vs model inside | 1080p vs rembg | IoU vs ORT f32 (worst) | mean abs d |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut fast_rows = Vec::new();
    for model in &models {
        let model = model.as_str();
        let frames = if model.starts_with("isnet") {
            (frames / 4).max(3)
        } else {
            frames
        };
        let reference_model = if model == "u2netp-int8" {
            "u2netp"
        } else {
            model
        };
        let references: Vec<Vec<u8>> = PHOTOS
            .iter()
            .map(|photo| alpha(reference_model, Runtime::OnnxRuntime, photo))
            .collect();
        let mut bare_onnxruntime = None;
        for runtime in Runtime::ALL {
            let Some(bare) = bare_inference(model, runtime, frames) else {
                continue;
            };
            let bare_ort = *bare_onnxruntime.get_or_insert(bare);
            let small = pipeline(model, runtime, SIZES[0], frames).median_frame;
            let medium = pipeline(model, runtime, SIZES[1], frames).median_frame;
            let large_run = pipeline(model, runtime, SIZES[2], frames);
            let large = large_run.median_frame;
            let qualities: Vec<(f64, f64)> = PHOTOS
                .iter()
                .zip(&references)
                .map(|(photo, reference)| compare(&alpha(model, runtime, photo), reference))
                .collect();
            let iou = qualities.iter().map(|q| q.0).sum::<f64>() / PHOTOS.len() as f64;
            let mean_difference = qualities.iter().map(|q| q.1).sum::<f64>() / PHOTOS.len() as f64;
            let worst = (0..PHOTOS.len())
                .min_by(|&a, &b| qualities[a].0.total_cmp(&qualities[b].0))
                .unwrap();
            let versus_rembg = if model.starts_with("u2netp") {
                format!("{:.2}x", rembg[2].as_secs_f64() / large.as_secs_f64())
            } else {
                "-".into()
            };
            let fast_variant =
                model == "u2netp-int8" || matches!(runtime, Runtime::OpenVino(Precision::Bf16));
            if fast_variant {
                let cells: Vec<String> = qualities
                    .iter()
                    .enumerate()
                    .map(|(k, (i, d))| {
                        let cell = format!("{i:.3} / {d:.1}");
                        if k == worst {
                            format!("**{cell}**")
                        } else {
                            cell
                        }
                    })
                    .collect();
                fast_rows.push(format!(
                    "| {model} | {} | {} | {versus_rembg} |",
                    runtime.name(),
                    cells.join(" | "),
                ));
            }
            println!(
                "| {model} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2}x | {:.3} | {:.3} | {versus_rembg} | {iou:.4} ({} {:.3}) | {mean_difference:.2} |",
                runtime.name(),
                ms(bare),
                ms(small),
                ms(medium),
                ms(large),
                bare_ort.as_secs_f64() / large.as_secs_f64(),
                large.as_secs_f64() / bare.as_secs_f64(),
                large_run.mean_frame.as_secs_f64() / large_run.mean_model.as_secs_f64(),
                PHOTOS[worst],
                qualities[worst].0,
            );
        }
    }
    println!(
        "\nfast variants against ONNX Runtime f32 u2netp (of the same model for bf16), IoU / mean |d| \
         per held-out photo, the worst in bold, and the 1080p pipeline's speed-up over Python rembg u2netp:"
    );
    println!(
        "| model | runtime | {} | 1080p vs rembg |",
        PHOTOS.join(" | ")
    );
    println!("|---|---|{}---|", "---|".repeat(PHOTOS.len()));
    for row in &fast_rows {
        println!("{row}");
    }
    println!(
        "columns: 'vs bare ORT' = bare ONNX Runtime time / pipeline time (above 1: faster than the model alone on ORT); \
         'vs own bare' = pipeline time / bare time on the same runtime (what pre/post add); \
         'vs model inside' = mean time per frame / mean time inside the model for the same frames of the same run (what pre/post add, immune to the machine's speed changing between runs); \
         'vs rembg' = Python rembg u2netp time / pipeline time"
    );
}
