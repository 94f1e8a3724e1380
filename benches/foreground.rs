//! Foreground colour estimation (rembgfilter `foreground-estimation`), measured in one run at
//! 640x480, 1280x720 and 1920x1080 on each sample photo with u2netp's mask at that size:
//! - ms per frame of each estimator (median of BENCH_FRAMES runs, default 7), next to the model's
//!   own time per frame inside rembgfilter (u2netp, the element's `stats`) and pymatting's
//!   `estimate_foreground_ml` (numba, compiled before it is timed) on the same image and alpha;
//! - the share of pixels of partial alpha (the band the estimate changes);
//! - each estimator's mean |difference| from pymatting's foreground over that band, in levels.
//!
//! Run with `scripts/bench.sh foreground`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{median, ms};
use gst::prelude::*;
use gst_video::prelude::*;
use gstneuralfx::imageops::{ImageRef, PixelLayout};
use gstneuralfx::matting::ForegroundEstimator;
use gstneuralfx::matting::ForegroundMethod;

const PHOTOS: [&str; 3] = ["astronaut", "chelsea", "coffee"];
const SIZES: [(usize, usize); 3] = [(640, 480), (1280, 720), (1920, 1080)];

/// The photo at `width` x `height` as RGB, u2netp's mask at that size, and the model's mean time
/// per frame inside rembgfilter.
fn photo_and_mask(photo: &str, width: usize, height: usize) -> (Vec<u8>, Vec<u8>, Duration) {
    let samples = std::env::var("NEURALFX_SAMPLES").expect("NEURALFX_SAMPLES (scripts/env.sh)");
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={samples}/{photo}.png ! pngdec ! videoconvert ! videoscale \
         ! video/x-raw,format=RGB,width={width},height={height} ! imagefreeze num-buffers=3 \
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
    let sample = last.expect("a frame");
    let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
    let buffer = sample.buffer().unwrap();
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).unwrap();
    let stride = frame.plane_stride()[0] as usize;
    let data = frame.plane_data(0).unwrap();
    let (mut rgb, mut alpha) = (Vec::new(), Vec::new());
    for y in 0..height {
        for pixel in data[y * stride..][..width * 4].chunks_exact(4) {
            rgb.extend_from_slice(&pixel[..3]);
            alpha.push(pixel[3]);
        }
    }
    (rgb, alpha, model)
}

/// pymatting's foreground (0..1 floats) and its time, from tests/reference/estimate_foreground.py.
fn pymatting(rgb: &[u8], alpha: &[u8], width: usize, height: usize) -> (Vec<f32>, Duration) {
    let dir =
        std::env::temp_dir().join(format!("neuralfx-bench-foreground-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (rgb_path, alpha_path, out_path) =
        (dir.join("rgb"), dir.join("alpha"), dir.join("foreground"));
    std::fs::write(&rgb_path, rgb).unwrap();
    std::fs::write(&alpha_path, alpha).unwrap();
    let seconds = common::run(
        Command::new(common::python())
            .arg(common::reference("estimate_foreground.py"))
            .args([width.to_string(), height.to_string()])
            .args([&rgb_path, &alpha_path, &out_path]),
    );
    let bytes = std::fs::read(&out_path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let foreground = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (
        foreground,
        Duration::from_secs_f64(seconds.trim().parse().unwrap()),
    )
}

/// Mean |ours - pymatting's| in levels over the pixels of partial alpha.
fn band_error(ours: &[u8], reference: &[f32], alpha: &[u8]) -> f64 {
    let (mut total, mut count) = (0.0, 0usize);
    for (i, &a) in alpha.iter().enumerate() {
        if a != 0 && a != 255 {
            for c in 0..3 {
                total +=
                    (f64::from(ours[i * 3 + c]) - f64::from(reference[i * 3 + c]) * 255.0).abs();
            }
            count += 3;
        }
    }
    total / count.max(1) as f64
}

fn main() {
    gst::init().unwrap();
    gstneuralfx::plugin_register_static().unwrap();
    let repeats: usize = std::env::var("BENCH_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let methods = [ForegroundMethod::Multilevel];
    println!(
        "size       photo      band %  u2netp ms  pymatting ms | {}",
        methods
            .iter()
            .map(|m| format!("{:>12} ms  x pymatting  error", m.name()))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    for (width, height) in SIZES {
        for photo in PHOTOS {
            let (rgb, alpha, model) = photo_and_mask(photo, width, height);
            let band = alpha.iter().filter(|&&a| a != 0 && a != 255).count();
            let (reference, reference_time) = pymatting(&rgb, &alpha, width, height);
            let image = ImageRef::packed(&rgb, width, height, PixelLayout::RGB);
            let mut columns = Vec::new();
            for method in methods {
                let mut estimator = ForegroundEstimator::default();
                let mut times = Vec::new();
                let mut out = Vec::new();
                for _ in 0..repeats {
                    let started = Instant::now();
                    let estimated = estimator.estimate(&image, &alpha, method);
                    times.push(started.elapsed());
                    out = estimated.data.to_vec();
                }
                let time = median(times);
                columns.push(format!(
                    "{:>15.1}  {:>11.1}  {:>5.2}",
                    ms(time),
                    reference_time.as_secs_f64() / time.as_secs_f64(),
                    band_error(&out, &reference, &alpha)
                ));
            }
            println!(
                "{:<10} {:<10} {:>6.1}  {:>9.1}  {:>12.1} | {}",
                format!("{width}x{height}"),
                photo,
                100.0 * band as f64 / alpha.len() as f64,
                ms(model),
                ms(reference_time),
                columns.join(" | ")
            );
        }
    }
}
