//! Shared by the benchmarks: time a pipeline frame by frame, and read this process's memory.
#![allow(dead_code)] // each benchmark uses part of it

#[path = "../../tests/common/foreground_oracles.rs"]
pub mod foreground_oracles;
#[path = "../../tests/common/held_out.rs"]
pub mod held_out;
#[path = "../../tests/common/triton_server.rs"]
pub mod triton_server;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_video::prelude::*;

/// One line of /proc/self/status, in KiB (VmRSS: now, VmHWM: peak).
/// `BENCH_FRAMES`, or `default` when it is unset or not a number.
pub fn bench_frames(default: usize) -> usize {
    std::env::var("BENCH_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A picture GStreamer decodes, scaled to `width` x `height`, as packed RGB.
pub fn decoded_rgb(location: &str, width: usize, height: usize) -> Vec<u8> {
    first_frame(&format!(
        "filesrc location={location} ! decodebin ! videoconvert ! videoscale \
         ! video/x-raw,format=RGB,width={width},height={height} ! appsink name=sink"
    ))
}

/// The bytes of the first buffer that reaches the appsink named "sink" of `description`.
pub fn first_frame(description: &str) -> Vec<u8> {
    let pipeline = gst::parse::launch(description).unwrap();
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

pub fn memory_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// What one pipeline run measured at its sink named "sink".
pub struct PipelineRun {
    /// Mean time between consecutive output buffers (start-up not counted).
    pub per_frame: Duration,
    /// Median time between consecutive output buffers: on a shared machine whose speed comes and
    /// goes, the figure that compares best between runs.
    pub median_frame: Duration,
    pub frames: usize,
    /// When each buffer arrived.
    pub arrived: Vec<Instant>,
    /// Resident memory when the second and the last buffer arrived.
    pub rss_start_kib: u64,
    pub rss_end_kib: u64,
}

/// Plays `description` to EOS, stamping each buffer that reaches the element named "sink".
pub fn run_pipeline(description: &str) -> PipelineRun {
    time_pipeline(&gst::parse::launch(description).unwrap(), |_| {})
}

/// Plays `pipeline` to EOS, stamping each buffer that reaches its element named "sink";
/// `on_arrival` is called with each buffer's index as it arrives (to read element state then).
pub fn time_pipeline(
    pipeline: &gst::Element,
    on_arrival: impl Fn(usize) + Send + Sync + 'static,
) -> PipelineRun {
    let bin = pipeline.downcast_ref::<gst::Bin>().unwrap();
    let arrivals = Arc::new(Mutex::new(Vec::<(Instant, u64)>::new()));
    let recorded = arrivals.clone();
    bin.by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            let mut arrivals = recorded.lock().unwrap();
            let rss = if arrivals.len() <= 1 {
                memory_kib("VmRSS:")
            } else {
                0
            };
            arrivals.push((Instant::now(), rss));
            on_arrival(arrivals.len() - 1);
            gst::PadProbeReturn::Ok
        });
    play_until_eos(pipeline);
    let rss_end_kib = memory_kib("VmRSS:");
    pipeline.set_state(gst::State::Null).unwrap();
    let arrivals = arrivals.lock().unwrap();
    let frames = arrivals.len();
    assert!(frames >= 3, "too few frames to time");
    let gaps: Vec<Duration> = arrivals.windows(2).map(|w| w[1].0 - w[0].0).collect();
    PipelineRun {
        median_frame: median(gaps),
        per_frame: (arrivals[frames - 1].0 - arrivals[0].0) / (frames - 1) as u32,
        frames,
        arrived: arrivals.iter().map(|(at, _)| *at).collect(),
        rss_start_kib: arrivals[1].1,
        rss_end_kib,
    }
}

/// The median of some durations (the upper one of an even count).
pub fn median(mut durations: Vec<Duration>) -> Duration {
    durations.sort();
    durations
        .get(durations.len() / 2)
        .copied()
        .unwrap_or_default()
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Plays `pipeline` to EOS, panicking on an error message.
pub fn play_until_eos(pipeline: &gst::Element) {
    pipeline.set_state(gst::State::Playing).unwrap();
    for message in pipeline.bus().unwrap().iter_timed(gst::ClockTime::NONE) {
        match message.view() {
            gst::MessageView::Eos(..) => break,
            gst::MessageView::Error(err) => panic!("{}: {:?}", err.error(), err.debug()),
            _ => {}
        }
    }
}

/// The Python of the reference venv that scripts/setup.sh --test made.
pub fn python() -> PathBuf {
    PathBuf::from(std::env::var("NEURALFX_VENV").expect("NEURALFX_VENV (set by scripts/env.sh)"))
        .join("bin/python")
}

/// A script of tests/reference.
pub fn reference(script: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference")
        .join(script)
}

/// Runs a reference script, panicking with its stderr if it fails; returns its stdout.
pub fn run(command: &mut Command) -> String {
    let output = command.output().expect("start a reference script");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The photo at `width` x `height` as RGB, u2netp's mask at that size, and the model's mean time
/// per frame inside rembgfilter.
pub fn photo_and_mask(photo: &str, width: usize, height: usize) -> (Vec<u8>, Vec<u8>, Duration) {
    let (rgb, mask, model, _) = photo_and_mask_at(photo, Some((width, height)));
    (rgb, mask, model)
}

/// [`photo_and_mask`] at `size`, or at the photo's own size (returned last).
pub fn photo_and_mask_at(
    photo: &str,
    size: Option<(usize, usize)>,
) -> (Vec<u8>, Vec<u8>, Duration, (usize, usize)) {
    let caps_size = size.map_or(String::new(), |(w, h)| format!(",width={w},height={h}"));
    let samples = std::env::var("NEURALFX_SAMPLES").expect("NEURALFX_SAMPLES (scripts/env.sh)");
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={samples}/{photo}.png ! pngdec ! videoconvert ! videoscale \
         ! video/x-raw,format=RGB{caps_size} ! imagefreeze num-buffers=3 \
         ! rembgfilter name=filter ! appsink name=sink sync=false"
    ))
    .unwrap();
    let bin = pipeline.downcast_ref::<gst::Bin>().unwrap();
    let sink = bin
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut last = None;
    while let Ok(sample) = sink.pull_sample() {
        last = Some(sample);
    }
    let stats = bin
        .by_name("filter")
        .unwrap()
        .property::<gst::Structure>("stats");
    let runs = stats.get::<u64>("model-runs").unwrap().max(1);
    let model = Duration::from_nanos(stats.get::<u64>("model-time").unwrap() / runs);
    pipeline.set_state(gst::State::Null).unwrap();
    // The runtime's worker threads spin for a while after their last inference; what is timed
    // next must not share the cores with them.
    std::thread::sleep(Duration::from_millis(500));
    let sample = last.expect("a frame");
    let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
    let buffer = sample.buffer().unwrap();
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).unwrap();
    let (width, height) = (info.width() as usize, info.height() as usize);
    let stride = frame.plane_stride()[0] as usize;
    let data = frame.plane_data(0).unwrap();
    let (mut rgb, mut alpha) = (Vec::new(), Vec::new());
    for y in 0..height {
        for pixel in data[y * stride..][..width * 4].chunks_exact(4) {
            rgb.extend_from_slice(&pixel[..3]);
            alpha.push(pixel[3]);
        }
    }
    (rgb, alpha, model, (width, height))
}
