//! Alpha matting (rembgfilter `alpha-matting`) against Python rembg's, measured in one run on
//! each sample photo at its own size and at 1080p, with u2netp's mask from rembgfilter:
//! - rembg's matting step alone (`alpha_matting_cutout` on the same image and mask: its trimap,
//!   pymatting's closed-form matting and foreground estimation; the median of three runs) and
//!   its process's peak memory;
//! - ours, stage by stage (trimap and the band's Laplacian, the sparse solve, the foreground
//!   estimate on the matte; median of BENCH_FRAMES runs, default 3) and the peak memory it added;
//! - the same foreground estimate relaxing every pixel of every level, as pymatting does (ours
//!   relaxes big levels only near partial alpha, the same result to float rounding);
//! - and at 4K ours only (rembg's needs 25 float64 and 25 int64 per pixel of the frame before
//!   its solver: over 3 GB).
//!
//! Run with `scripts/bench.sh alpha_matting`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{median, memory_kib, ms, photo_and_mask_at, python, reference, run};
use gstneuralfx::imageops::{ImageRef, PixelLayout};
use gstneuralfx::matting::closed_form::{self, BandSystem, TrimapParams};
use gstneuralfx::matting::{ForegroundEstimator, ForegroundMethod, MultilevelEstimator};

const PHOTOS: [&str; 4] = ["astronaut", "chelsea", "coffee", "motorcycle_left"];

/// rembg's matting step is timed this many times, the median kept: one run moved the ratio by
/// a tenth or more at the photos' size, and coffee's at 1080p from 2.7 s to 1.7 s between two
/// runs. (At 1080p that is up to two minutes a photo.)
const REMBG_TIMES: usize = 3;

/// rembg's alpha_matting_cutout on the image and mask: seconds (the median of `times` runs)
/// and its process's peak MiB.
fn rembg_matting(
    rgb: &[u8],
    mask: &[u8],
    width: usize,
    height: usize,
    times: usize,
) -> (Duration, f64) {
    let dir = std::env::temp_dir().join(format!("neuralfx-bench-matting-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (rgb_path, mask_path, out) = (dir.join("rgb"), dir.join("mask"), dir.join("out"));
    std::fs::write(&rgb_path, rgb).unwrap();
    std::fs::write(&mask_path, mask).unwrap();
    let printed = run(Command::new(python())
        .arg(reference("alpha_matting.py"))
        .args(["cutout", &width.to_string(), &height.to_string()])
        .args([&rgb_path, &mask_path, &out])
        .args(["240", "10", "10"])
        .arg(times.to_string()));
    std::fs::remove_dir_all(&dir).unwrap();
    let fields: Vec<f64> = printed
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("alpha_matting.py printed {printed:?}"))
        })
        .collect();
    (Duration::from_secs_f64(fields[2]), fields[3])
}

/// Resets the process's peak resident memory to what it holds now (Linux >= 4.0).
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

struct Ours {
    unknown: usize,
    build: Duration,
    solve: Duration,
    foreground: Duration,
    foreground_whole_levels: Duration,
    peak_mib: f64,
}

fn ours(rgb: &[u8], mask: &[u8], width: usize, height: usize, repeats: usize) -> Ours {
    let image = ImageRef::packed(rgb, width, height, PixelLayout::RGB);
    let (mut builds, mut solves, mut foregrounds) = (Vec::new(), Vec::new(), Vec::new());
    let mut matte = Vec::new();
    let mut unknown = 0;
    let before = memory_kib("VmRSS:");
    reset_peak_memory();
    let mut estimator = ForegroundEstimator::default();
    for _ in 0..repeats {
        let started = Instant::now();
        let trimap = closed_form::trimap(mask, width, height, &TrimapParams::default());
        let system = BandSystem::build(&image, &trimap);
        unknown = system.pixels.len();
        builds.push(started.elapsed());
        let started = Instant::now();
        let positions = system.pixels.clone();
        let solution = system.solve().expect("a solution");
        matte = closed_form::to_bytes(&closed_form::alpha_of(&trimap, &positions, &solution));
        solves.push(started.elapsed());
        let started = Instant::now();
        estimator.estimate(&image, &matte, ForegroundMethod::Multilevel);
        foregrounds.push(started.elapsed());
    }
    let peak = memory_kib("VmHWM:");
    let mut whole_levels = MultilevelEstimator::default();
    whole_levels.relax_whole_levels(true);
    let mut out = rgb.to_vec();
    let foregrounds_whole_levels = (0..repeats)
        .map(|_| {
            let started = Instant::now();
            whole_levels.estimate(&image, &matte, &mut out);
            started.elapsed()
        })
        .collect();
    Ours {
        unknown,
        build: median(builds),
        solve: median(solves),
        foreground: median(foregrounds),
        foreground_whole_levels: median(foregrounds_whole_levels),
        peak_mib: peak.saturating_sub(before) as f64 / 1024.0,
    }
}

fn main() {
    gst::init().unwrap();
    gstneuralfx::plugin_register_static().unwrap();
    let repeats: usize = std::env::var("BENCH_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    println!(
        "size       photo            unknown | rembg s  peak MiB | ours: band ms  solve ms  foreground ms (whole levels)  total ms  added MiB | x rembg"
    );
    let mut cases: Vec<(&str, Option<(usize, usize)>)> =
        PHOTOS.iter().map(|&p| (p, None)).collect();
    cases.extend(PHOTOS.iter().map(|&p| (p, Some((1920, 1080)))));
    cases.push(("chelsea", Some((3840, 2160))));
    for (photo, size) in cases {
        let (rgb, mask, _, (width, height)) = photo_and_mask_at(photo, size);
        let measured = ours(&rgb, &mask, width, height, repeats);
        let total = measured.build + measured.solve + measured.foreground;
        let (rembg, ratio) = if width * height <= 1920 * 1080 {
            let (seconds, peak) = rembg_matting(&rgb, &mask, width, height, REMBG_TIMES);
            (
                format!("{:>7.2}  {peak:>8.0}", seconds.as_secs_f64()),
                format!("{:>7.1}", seconds.as_secs_f64() / total.as_secs_f64()),
            )
        } else {
            (format!("{:>7}  {:>8}", "-", "-"), format!("{:>7}", "-"))
        };
        println!(
            "{:<10} {:<16} {:>7} | {rembg} | {:>13.0}  {:>8.0}  {:>13.0} {:>14}  {:>8.0}  {:>9.0} | {ratio}",
            format!("{width}x{height}"),
            photo,
            measured.unknown,
            ms(measured.build),
            ms(measured.solve),
            ms(measured.foreground),
            format!("({:.0})", ms(measured.foreground_whole_levels)),
            ms(total),
            measured.peak_mib,
        );
    }
}
