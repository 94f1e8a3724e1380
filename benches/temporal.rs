//! Temporal quality on a moving clip whose alpha is known: the astronaut (its "true" alpha and
//! foreground colour from tests/reference/make_composites.py: closed-form matting of a third
//! model's trimap) slides across the coffee photo for half the clip, then stands still. For
//! u2netp, selfie, modnet and the recurrent stand-in (RVM's interface), with temporal-smoothing
//! off and at 0.5, measured in this one run:
//! - the mean |alpha - truth| over the frame and over the band where the truth is partial;
//! - flicker: the mean change of alpha from one frame to the next where the truth did not change;
//! - ms per frame.
//!
//! Run with `scripts/bench.sh temporal`. BENCH_FRAMES (24) sets the clip's length.

mod common;

use std::time::Instant;

use gst::prelude::*;

const WIDTH: usize = 640;
const HEIGHT: usize = 512;
const STEP: usize = 4;

struct Clip {
    frames: Vec<Vec<u8>>,
    truths: Vec<Vec<u8>>,
}

/// The astronaut's true alpha and colour (512x512) and the coffee photo scaled to the clip.
fn clip(frames: usize) -> Clip {
    let dir = std::env::temp_dir().join(format!("neuralfx-temporal-{}", std::process::id()));
    let samples = std::env::var("NEURALFX_SAMPLES").expect("NEURALFX_SAMPLES (scripts/env.sh)");
    common::run(
        std::process::Command::new(common::python())
            .arg(common::reference("make_composites.py"))
            .args([&samples, dir.to_str().unwrap()]),
    );
    let alpha = std::fs::read(dir.join("astronaut.alpha")).unwrap();
    let colour = std::fs::read(dir.join("astronaut.foreground")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let background = common::decoded_rgb(&format!("{samples}/coffee.png"), WIDTH, HEIGHT);
    let side = 512;
    let (mut all_frames, mut truths) = (Vec::new(), Vec::new());
    for t in 0..frames {
        // Moving for the first half, still for the second.
        let offset = t.min(frames / 2) * STEP;
        let mut frame = background.clone();
        let mut truth = vec![0u8; WIDTH * HEIGHT];
        for y in 0..side.min(HEIGHT) {
            for x in 0..side {
                let (fx, i) = (x + offset, y * side + x);
                if fx >= WIDTH {
                    continue;
                }
                let a = f64::from(alpha[i]) / 255.0;
                let o = (y * WIDTH + fx) * 3;
                for c in 0..3 {
                    let blend =
                        a * f64::from(colour[i * 3 + c]) + (1.0 - a) * f64::from(frame[o + c]);
                    frame[o + c] = blend.round() as u8;
                }
                truth[y * WIDTH + fx] = alpha[i];
            }
        }
        all_frames.push(frame);
        truths.push(truth);
    }
    Clip {
        frames: all_frames,
        truths,
    }
}

/// Each frame's alpha from rembgfilter with `model` and `smoothing`, and ms per frame.
fn alphas(model: &str, smoothing: f64, clip: &Clip) -> (Vec<Vec<u8>>, f64) {
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time caps=video/x-raw,format=RGB,width={WIDTH},height={HEIGHT},framerate=25/1 \
         ! rembgfilter model={model} temporal-smoothing={smoothing} ! appsink name=sink sync=false"
    ))
    .unwrap();
    let bin = pipeline.downcast_ref::<gst::Bin>().unwrap();
    let (src, sink) = (bin.by_name("src").unwrap(), bin.by_name("sink").unwrap());
    pipeline.set_state(gst::State::Playing).unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    for (index, frame) in clip.frames.iter().enumerate() {
        let mut buffer = gst::Buffer::from_mut_slice(frame.clone());
        let buffer_mut = buffer.get_mut().unwrap();
        buffer_mut.set_pts(gst::ClockTime::from_mseconds(index as u64 * 40));
        buffer_mut.set_duration(gst::ClockTime::from_mseconds(40));
        let pushed = src.emit_by_name::<gst::FlowReturn>("push-buffer", &[&buffer]);
        assert_eq!(pushed, gst::FlowReturn::Ok, "{model}");
        let sample = sink
            .emit_by_name::<Option<gst::Sample>>("pull-sample", &[])
            .unwrap();
        let map = sample.buffer().unwrap().map_readable().unwrap();
        out.push(map.chunks_exact(4).map(|p| p[3]).collect());
    }
    let per_frame = started.elapsed().as_secs_f64() * 1000.0 / clip.frames.len() as f64;
    pipeline.set_state(gst::State::Null).unwrap();
    (out, per_frame)
}

/// Mean |alpha - truth| over the frame and over the truth's partial band, and the flicker.
fn figures(alphas: &[Vec<u8>], clip: &Clip) -> (f64, f64, f64) {
    let (mut frame_sum, mut frame_n, mut band_sum, mut band_n) = (0.0, 0usize, 0.0, 0usize);
    for (alpha, truth) in alphas.iter().zip(&clip.truths) {
        for (&a, &t) in alpha.iter().zip(truth) {
            let d = (f64::from(a) - f64::from(t)).abs();
            frame_sum += d;
            frame_n += 1;
            if t != 0 && t != 255 {
                band_sum += d;
                band_n += 1;
            }
        }
    }
    let (mut flicker_sum, mut flicker_n) = (0.0, 0usize);
    for t in 1..alphas.len() {
        let truths = clip.truths[t].iter().zip(&clip.truths[t - 1]);
        let changes = alphas[t].iter().zip(&alphas[t - 1]);
        for ((now, before), (&a, &b)) in truths.zip(changes) {
            if now == before {
                flicker_sum += (f64::from(a) - f64::from(b)).abs();
                flicker_n += 1;
            }
        }
    }
    (
        frame_sum / frame_n.max(1) as f64,
        band_sum / band_n.max(1) as f64,
        flicker_sum / flicker_n.max(1) as f64,
    )
}

fn main() {
    gst::init().unwrap();
    gstneuralfx::plugin_register_static().unwrap();
    let frames = common::bench_frames(24);
    let clip = clip(frames);
    let stand_in = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models/recurrent_matting.onnx");
    let models = [
        ("u2netp", "u2netp".to_string()),
        ("selfie", "selfie".to_string()),
        ("modnet", "modnet".to_string()),
        ("recurrent stand-in", stand_in.display().to_string()),
    ];
    println!(
        "{frames} frames of {WIDTH}x{HEIGHT}: the astronaut moving {STEP} px a frame, then still; \
         alpha in levels (0-255)"
    );
    println!(
        "| model | temporal-smoothing | mean abs error, frame | in the band | flicker | ms/frame |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, model) in &models {
        for smoothing in [0.0, 0.5] {
            let (alphas, ms) = alphas(model, smoothing, &clip);
            let (frame, band, flicker) = figures(&alphas, &clip);
            println!("| {name} | {smoothing} | {frame:.2} | {band:.2} | {flicker:.3} | {ms:.0} |");
        }
    }
    println!(
        "The recurrent stand-in has RVM's interface, not its weights (GPL-3.0, users bring the \
         file): its figures show the state at work, not RVM's quality."
    );
}
