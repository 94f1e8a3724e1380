//! Does overlapping rembgfilter's work around the model (resize in, mask out, alpha) with the
//! model run of the neighbouring frame raise throughput on this machine? Runs the same frames
//! serially and through the element's own frame queue with one request in flight (the model on
//! frame N beside the post-processing of N-1 and the pre-processing of N+1, frame order kept)
//! and prints both per-frame times, measured in this one run.
//!
//! `cargo run --release --example overlap_probe [FRAMES]`
use std::sync::Arc;
use std::time::Instant;

use gstneuralfx::imageops::{ImageRef, PixelLayout};
use gstneuralfx::inference::Backend;
use gstneuralfx::inference::onnx::{OnnxBackend, SessionOptions};
use gstneuralfx::inference::requests::RequestPool;
use gstneuralfx::segmentation::catalog::ModelProfile;
use gstneuralfx::segmentation::schedule::{FrameQueue, Ready};
use gstneuralfx::segmentation::{Segmenter, attach_alpha, locate};

fn main() {
    let frames: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(12);
    let resolved = locate::resolve("u2netp", false).unwrap();
    let backend: Arc<dyn Backend> =
        OnnxBackend::load(&resolved.path, SessionOptions::default()).unwrap();
    let mut segmenter = Segmenter::new(backend, ModelProfile::U2NET).unwrap();
    let model = segmenter.model.clone();
    let pool = RequestPool::new(
        "probe-model",
        1,
        move |tensor: gstneuralfx::segmentation::ModelInput| {
            let run = model.run(&tensor).unwrap();
            (tensor, run)
        },
    )
    .unwrap();
    let mut queue = FrameQueue::new(pool);
    for (w, h) in [(640usize, 480usize), (1920, 1080)] {
        let frame: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        let image = ImageRef::packed(&frame, w, h, PixelLayout::RGB);
        let mut mask = vec![0u8; w * h];
        let mut out = vec![0u8; w * h * 4];
        segmenter.compute_mask(&image, &mut mask).unwrap();

        let started = Instant::now();
        for _ in 0..frames {
            segmenter.compute_mask(&image, &mut mask).unwrap();
            attach_alpha(&image, &mask, &mut out, w * 4);
        }
        let serial = started.elapsed() / frames as u32;

        let started = Instant::now();
        let mut spare = Vec::new();
        for index in 0..=frames {
            let last = index == frames;
            if !last {
                let mut tensor: gstneuralfx::segmentation::ModelInput =
                    spare.pop().unwrap_or_default();
                segmenter.preparer.prepare(&image, &mut tensor).unwrap();
                queue.push(index, Some(tensor)).unwrap();
            }
            while let Some((_, ready)) = queue.pop(last).unwrap() {
                let Ready::Inferred((tensor, run)) = ready else {
                    unreachable!("every frame runs the model");
                };
                segmenter
                    .finisher
                    .finish(&run.outputs, w, h, &mut mask)
                    .unwrap();
                attach_alpha(&image, &mask, &mut out, w * 4);
                spare.push(tensor);
            }
        }
        let overlapped = started.elapsed() / frames as u32;
        println!(
            "{w}x{h}: serial {serial:.1?}/frame, overlapped {overlapped:.1?}/frame, serial/overlapped {:.3}",
            serial.as_secs_f64() / overlapped.as_secs_f64()
        );
    }
}
