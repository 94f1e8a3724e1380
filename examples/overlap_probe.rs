//! Does overlapping rembgfilter's work around the model (resize in, mask out, alpha) with the
//! model run of the neighbouring frame raise throughput on this machine? Runs the same frames
//! serially and overlapped (model of frame N beside post-processing of N-1 and pre-processing of
//! N+1, frame order kept) and prints both per-frame times, measured in this one run.
//!
//! `cargo run --release --example overlap_probe [FRAMES]`
use std::sync::Arc;
use std::time::Instant;

use gstneuralfx::imageops::{ImageRef, PixelLayout};
use gstneuralfx::inference::onnx::{OnnxBackend, SessionOptions};
use gstneuralfx::inference::{Backend, Tensor, TensorView};
use gstneuralfx::segmentation::catalog::ModelProfile;
use gstneuralfx::segmentation::{Segmenter, attach_alpha, locate};

fn main() {
    let frames: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(12);
    let resolved = locate::resolve("u2netp", false).unwrap();
    let backend: Arc<dyn Backend> =
        OnnxBackend::load(&resolved.path, SessionOptions::default()).unwrap();
    let mut segmenter = Segmenter::new(backend.clone(), ModelProfile::U2NET).unwrap();
    let shape = *segmenter.input_shape();
    let run = |tensor: &[f32]| -> Vec<Tensor> {
        backend
            .run(&[TensorView {
                shape: &shape,
                data: tensor,
            }])
            .unwrap()
    };
    for (w, h) in [(640usize, 480usize), (1920, 1080)] {
        let frame: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        let image = ImageRef::packed(&frame, w, h, PixelLayout::RGB);
        let mut mask = vec![0u8; w * h];
        let mut out = vec![0u8; w * h * 4];
        run(segmenter.preprocess(&image).unwrap());

        let started = Instant::now();
        for _ in 0..frames {
            let tensor = segmenter.preprocess(&image).unwrap().to_vec();
            let outputs = run(&tensor);
            segmenter.postprocess(&outputs, w, h, &mut mask).unwrap();
            attach_alpha(&image, &mask, &mut out, w * 4);
        }
        let serial = started.elapsed() / frames as u32;

        let started = Instant::now();
        let mut tensor = segmenter.preprocess(&image).unwrap().to_vec();
        let mut previous: Option<Vec<Tensor>> = None;
        for index in 0..frames {
            let last = index + 1 == frames;
            let (outputs, next) = rayon::join(
                || run(&tensor),
                || {
                    if let Some(outputs) = previous.take() {
                        segmenter.postprocess(&outputs, w, h, &mut mask).unwrap();
                        attach_alpha(&image, &mask, &mut out, w * 4);
                    }
                    (!last).then(|| segmenter.preprocess(&image).unwrap().to_vec())
                },
            );
            previous = Some(outputs);
            if let Some(next) = next {
                tensor = next;
            }
        }
        if let Some(outputs) = previous.take() {
            segmenter.postprocess(&outputs, w, h, &mut mask).unwrap();
            attach_alpha(&image, &mask, &mut out, w * 4);
        }
        let overlapped = started.elapsed() / frames as u32;
        println!(
            "{w}x{h}: serial {serial:.1?}/frame, overlapped {overlapped:.1?}/frame, serial/overlapped {:.3}",
            serial.as_secs_f64() / overlapped.as_secs_f64()
        );
    }
}
