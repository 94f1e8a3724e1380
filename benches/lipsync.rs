//! Prints, for the live `lipsync` element with the generated U-Net (328) and audio encoder on
//! 400x300 templates, measured in this one run:
//! - not live (speech from a wav, as fast as it goes): frames per second, and that every frame the
//!   speech calls for came out;
//! - live (a live 16 kHz source in real time), with catch-up on (the default) and off: frames per
//!   second, how many went through the U-Net and how many reused the last mouth, and the latency
//!   from the audio a frame shows to the frame's arrival at the sink (arrival running time minus
//!   the frame's timestamp), median and worst, against the latency the element reports.
//!
//! Run with `scripts/bench.sh lipsync` (BENCH_LIVE_SECONDS=N, default 10, for the live part).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{median, ms, python, reference, run};
use gst::prelude::*;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The U-Net, the encoder and 400x300 templates in `dir`.
fn inputs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let samples = PathBuf::from(std::env::var("NEURALFX_SAMPLES").expect("NEURALFX_SAMPLES"));
    let unet = dir.join("unet_ave.onnx");
    run(Command::new(python())
        .arg(reference("make_unet328.py"))
        .args(["ave", unet.to_str().unwrap()]));
    let encoder = dir.join("encoder.onnx");
    let librosa =
        PathBuf::from(std::env::var("NEURALFX_LIBROSA_VENV").expect("NEURALFX_LIBROSA_VENV"))
            .join("bin/python");
    run(Command::new(librosa)
        .arg(reference("make_audio_encoder.py"))
        .arg(&encoder));
    let data = dir.join("data");
    run(Command::new(python())
        .arg(reference("make_lipsync_data.py"))
        .args([
            samples.join("astronaut.png").to_str().unwrap(),
            data.to_str().unwrap(),
            "--templates",
            "10",
            "--width",
            "400",
            "--height",
            "300",
            "--feature-frames",
            "4",
        ]));
    (unet, encoder, data.join("template"))
}

/// Ten seconds of espeak-ng speech at 16 kHz.
fn speech(dir: &Path) -> PathBuf {
    let raw = dir.join("speech.wav");
    let status = Command::new("espeak-ng")
        .args([
            "-w",
            raw.to_str().unwrap(),
            "A talking head made live from speech, frame by frame, as the sound arrives. \
             Every frame shows the audio forty milliseconds after the one before it.",
        ])
        .status()
        .expect("espeak-ng");
    assert!(status.success());
    raw
}

fn main() {
    gst::init().unwrap();
    gstneuralfx::plugin_register_static().unwrap();
    let dir = std::env::temp_dir().join(format!(
        "neuralfx-lipsync-live-bench-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (unet, encoder, template) = inputs(&dir);
    let wav = speech(&dir);
    let element = format!(
        "lipsync name=ls model={} template={} audio-encoder={}",
        unet.display(),
        template.display(),
        encoder.display()
    );

    // Not live: as fast as the machine goes.
    let started = Instant::now();
    let offline = common::run_pipeline(&format!(
        "filesrc location={} ! wavparse ! audioconvert ! audioresample \
         ! audio/x-raw,rate=16000,channels=1 ! {element} ! fakesink name=sink sync=false",
        wav.display()
    ));
    let offline_total = started.elapsed();
    let discoverer = gst_pbutils::Discoverer::new(gst::ClockTime::from_seconds(30)).unwrap();
    let seconds = discoverer
        .discover_uri(&gst::glib::filename_to_uri(&wav, None).unwrap())
        .unwrap()
        .duration()
        .unwrap()
        .seconds_f64();
    println!(
        "not live: {:.1} s of speech made {} frames ({:.1} fps between frames, {:.2} s in all with loading)",
        seconds,
        offline.frames,
        1000.0 / ms(offline.per_frame),
        offline_total.as_secs_f64()
    );

    // Live: a live source in real time; each frame's lateness at the sink, with and without
    // catching up.
    let live_seconds = env_or("BENCH_LIVE_SECONDS", 10);
    for catch_up in [true, false] {
        live_run(&element, live_seconds, catch_up);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One live run of `live_seconds` of audio; prints frames per second, the U-Net runs and the
/// audio-to-frame latency.
fn live_run(element: &str, live_seconds: u64, catch_up: bool) {
    let pipeline = gst::parse::launch(&format!(
        "audiotestsrc is-live=true wave=sine freq=220 num-buffers={} samplesperbuffer=320 \
         ! audio/x-raw,rate=16000,channels=1,format=S16LE ! {element} catch-up={catch_up} \
         ! fakesink name=sink sync=false",
        live_seconds * 50
    ))
    .unwrap();
    let bin = pipeline.downcast_ref::<gst::Bin>().unwrap();
    let lateness = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let recorded = lateness.clone();
    let sink = bin.by_name("sink").unwrap();
    let clock_source = sink.clone();
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let (Some(buffer), Some(clock), Some(base)) = (
                info.buffer(),
                clock_source.clock(),
                clock_source.base_time(),
            ) {
                let now = clock.time().saturating_sub(base);
                if let Some(pts) = buffer.pts() {
                    recorded
                        .lock()
                        .unwrap()
                        .push(Duration::from_nanos(now.saturating_sub(pts).nseconds()));
                }
            }
            gst::PadProbeReturn::Ok
        });
    let started = Instant::now();
    common::play_until_eos(&pipeline);
    let elapsed = started.elapsed();
    let element = bin.by_name("ls").unwrap();
    let mut query = gst::query::Latency::new();
    let reported = element
        .static_pad("src")
        .unwrap()
        .query(&mut query)
        .then(|| query.result().1);
    let stats = element.property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    let lateness = lateness.lock().unwrap().clone();
    let frames = lateness.len();
    let worst = lateness.iter().max().copied().unwrap_or_default();
    println!(
        "live, catch-up={catch_up}: {live_seconds} s of audio made {frames} frames ({:.1} fps), \
         {} through the U-Net, {} reusing the last mouth; audio-to-frame latency median {:.0} ms, \
         worst {:.0} ms; reported latency {}",
        frames as f64 / elapsed.as_secs_f64(),
        stats.get::<u64>("model-runs").unwrap_or(0),
        stats.get::<u64>("late-frames").unwrap_or(0),
        ms(median(lateness)),
        ms(worst),
        reported.map_or("?".into(), |latency| format!(
            "{:.0} ms",
            latency.nseconds() as f64 / 1e6
        ))
    );
}
