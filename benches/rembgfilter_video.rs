//! Prints rembgfilter's figures for video: flicker (mean absolute change of alpha between
//! consecutive frames of a still, slightly noisy scene) with and without temporal smoothing, and
//! for a live 640x480 30 fps source, the share of frames delivered and the end-to-end latency at
//! mask-interval 1, 2 and 4, all measured in this one run.
//!
//! Run with `scripts/bench.sh rembgfilter_video`.

mod common;

use std::sync::{Arc, Mutex};

use gst::prelude::*;

const FLICKER_FRAMES: usize = 12;
const LIVE_SECONDS: u64 = 10;

/// The astronaut photo at 320x240, as packed RGB.
fn still_scene() -> Vec<u8> {
    let samples =
        std::env::var("NEURALFX_SAMPLES").expect("NEURALFX_SAMPLES (set by scripts/env.sh)");
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={samples}/astronaut.png ! pngdec ! videoconvert ! videoscale \
         ! video/x-raw,format=RGB,width=320,height=240 ! appsink name=sink"
    ))
    .unwrap();
    let sink = pipeline
        .downcast_ref::<gst::Bin>()
        .unwrap()
        .by_name("sink")
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let sample = sink
        .emit_by_name::<Option<gst::Sample>>("pull-sample", &[])
        .unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    sample.buffer().unwrap().map_readable().unwrap().to_vec()
}

/// Mean |alpha(t) - alpha(t-1)| over a still scene with +-3 levels of fresh noise per frame.
fn flicker(smoothing: f64, scene: &[u8]) -> f64 {
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time caps=video/x-raw,format=RGB,width=320,height=240,framerate=25/1 \
         ! rembgfilter temporal-smoothing={smoothing} ! appsink name=sink sync=false"
    ))
    .unwrap();
    let bin = pipeline.downcast_ref::<gst::Bin>().unwrap();
    let src = bin.by_name("src").unwrap();
    let sink = bin.by_name("sink").unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut seed = 12345u64;
    let mut previous: Option<Vec<u8>> = None;
    let mut total = 0.0;
    for frame in 0..FLICKER_FRAMES {
        let noisy: Vec<u8> = scene
            .iter()
            .map(|&v| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (i32::from(v) + ((seed >> 33) % 7) as i32 - 3).clamp(0, 255) as u8
            })
            .collect();
        let mut buffer = gst::Buffer::from_mut_slice(noisy);
        buffer
            .get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(frame as u64 * 40));
        buffer
            .get_mut()
            .unwrap()
            .set_duration(gst::ClockTime::from_mseconds(40));
        let pushed = src.emit_by_name::<gst::FlowReturn>("push-buffer", &[&buffer]);
        assert_eq!(pushed, gst::FlowReturn::Ok);
        let sample = sink
            .emit_by_name::<Option<gst::Sample>>("pull-sample", &[])
            .unwrap();
        let alpha: Vec<u8> = sample
            .buffer()
            .unwrap()
            .map_readable()
            .unwrap()
            .chunks(4)
            .map(|p| p[3])
            .collect();
        if let Some(previous) = &previous {
            total += alpha
                .iter()
                .zip(previous)
                .map(|(&a, &b)| f64::from(a.abs_diff(b)))
                .sum::<f64>()
                / alpha.len() as f64;
        }
        previous = Some(alpha);
    }
    pipeline.set_state(gst::State::Null).unwrap();
    total / (FLICKER_FRAMES - 1) as f64
}

/// A live 640x480 30 fps source for LIVE_SECONDS: (frames produced, frames delivered, mean
/// latency from capture time to the sink rendering it, in ms).
fn live(interval: u32) -> (usize, usize, f64) {
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true pattern=ball name=src ! video/x-raw,format=RGB,width=640,height=480,framerate=30/1 \
         ! rembgfilter model=u2netp mask-interval={interval} ! fakesink name=sink sync=true qos=true"
    ))
    .unwrap();
    let bin = pipeline.downcast_ref::<gst::Bin>().unwrap();
    let produced = Arc::new(Mutex::new(0usize));
    let delivered = Arc::new(Mutex::new(Vec::<f64>::new()));
    let counter = produced.clone();
    bin.by_name("src")
        .unwrap()
        .static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            *counter.lock().unwrap() += 1;
            gst::PadProbeReturn::Ok
        });
    let sink = bin.by_name("sink").unwrap();
    let latencies = delivered.clone();
    let element = sink.clone();
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let (Some(buffer), Some(clock), Some(base)) =
                (info.buffer(), element.clock(), element.base_time())
                && let Some(pts) = buffer.pts()
            {
                let now = clock.time();
                let latency = now.nseconds() as f64 - (base + pts).nseconds() as f64;
                latencies.lock().unwrap().push(latency / 1e6);
            }
            gst::PadProbeReturn::Ok
        });
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(LIVE_SECONDS));
    pipeline.set_state(gst::State::Null).unwrap();
    let latencies = delivered.lock().unwrap();
    let mean = latencies.iter().sum::<f64>() / latencies.len().max(1) as f64;
    let produced = *produced.lock().unwrap();
    (produced, latencies.len(), mean)
}

fn main() {
    gst::init().unwrap();
    gstneuralfx::plugin_register_static().unwrap();
    let scene = still_scene();
    println!(
        "flicker (u2netp, still 320x240 scene, +-3 noise, {FLICKER_FRAMES} frames): mean |alpha change| per frame"
    );
    for smoothing in [0.0, 0.5, 0.8] {
        println!(
            "  temporal-smoothing {smoothing:.1}: {:.3} levels",
            flicker(smoothing, &scene)
        );
    }
    println!(
        "live 640x480 30 fps source, u2netp, {LIVE_SECONDS} s each (fakesink sync=true qos=true):"
    );
    println!(
        "{:>15} {:>10} {:>10} {:>10} {:>18}",
        "mask-interval", "produced", "delivered", "share", "latency ms (mean)"
    );
    for interval in [1, 2, 4] {
        let (produced, delivered, latency) = live(interval);
        println!(
            "{interval:>15} {produced:>10} {delivered:>10} {:>10.3} {latency:>18.1}",
            delivered as f64 / produced.max(1) as f64
        );
    }
    println!(
        "peak RSS of this process: {:.1} MiB",
        common::memory_kib("VmHWM:") as f64 / 1024.0
    );
}
