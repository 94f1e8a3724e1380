//! Foreground colour estimation (rembgfilter `foreground-estimation`), measured in one run at
//! 640x480, 1280x720 and 1920x1080 on each sample photo with u2netp's mask at that size:
//! - ms per frame of each estimator (median of BENCH_FRAMES runs, default 7), next to the model's
//!   own time per frame inside rembgfilter (u2netp, the element's `stats`) and pymatting's
//!   `estimate_foreground_ml` (numba, compiled before it is timed) on the same image and alpha;
//! - the share of pixels of partial alpha (the band the estimate changes);
//! - each estimator's mean |difference| from pymatting's foreground over that band, in levels;
//! - and `edge-refinement=guided-filter`'s time on the same frame and mask (default radius and
//!   epsilon), the other live-video edge step.
//!
//! Run with `scripts/bench.sh foreground`.

mod common;

use std::time::Instant;

use common::{foreground_oracles, median, ms, photo_and_mask};
use gstneuralfx::imageops::{ImageRef, PixelLayout};
use gstneuralfx::matting::ForegroundEstimator;
use gstneuralfx::matting::ForegroundMethod;
use gstneuralfx::matting::guided_filter::{GuidedFilter, GuidedFilterParams};

const PHOTOS: [&str; 3] = ["astronaut", "chelsea", "coffee"];
const SIZES: [(usize, usize); 3] = [(640, 480), (1280, 720), (1920, 1080)];

fn main() {
    gst::init().unwrap();
    gstneuralfx::plugin_register_static().unwrap();
    let repeats: usize = std::env::var("BENCH_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let methods = [ForegroundMethod::Multilevel, ForegroundMethod::BlurFusion];
    println!(
        "size       photo      band %  u2netp ms  refine ms  pymatting ms | {}",
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
            let (reference, reference_time) =
                foreground_oracles::estimate_foreground(&rgb, &alpha, width, height);
            let reference: Vec<f64> = reference.iter().map(|&v| f64::from(v) * 255.0).collect();
            let image = ImageRef::packed(&rgb, width, height, PixelLayout::RGB);
            let mut filter = GuidedFilter::default();
            let params = GuidedFilterParams {
                radius: 4,
                epsilon: 1e-5,
            };
            // Once untimed: the first call sizes the buffers.
            filter.refine(&image, &mut alpha.clone(), &params);
            let refine = median(
                (0..repeats)
                    .map(|_| {
                        let mut mask = alpha.clone();
                        let started = Instant::now();
                        filter.refine(&image, &mut mask, &params);
                        started.elapsed()
                    })
                    .collect(),
            );
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
                    foreground_oracles::band_difference(&out, &reference, &alpha).0
                ));
            }
            println!(
                "{:<10} {:<10} {:>6.1}  {:>9.1}  {:>9.1}  {:>12.1} | {}",
                format!("{width}x{height}"),
                photo,
                100.0 * band as f64 / alpha.len() as f64,
                ms(model),
                ms(refine),
                ms(reference_time),
                columns.join(" | ")
            );
        }
    }
}
