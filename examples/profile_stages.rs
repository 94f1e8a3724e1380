//! Times each stage of rembgfilter's per-frame work alone (resize in, tensor fill, model,
//! mask out, alpha attach), to see where time outside the model goes.
use std::sync::Arc;
use std::time::Instant;

use gstneuralfx::imageops::{ImageRef, PixelLayout};
use gstneuralfx::inference::Backend;
use gstneuralfx::inference::onnx::{OnnxBackend, SessionOptions};
use gstneuralfx::segmentation::catalog::ModelProfile;
use gstneuralfx::segmentation::{Segmenter, attach_alpha, locate};

fn main() {
    let resolved = locate::resolve("u2netp", false).unwrap();
    let backend: Arc<dyn Backend> =
        OnnxBackend::load(&resolved.path, SessionOptions::default()).unwrap();
    let mut segmenter = Segmenter::new(backend, ModelProfile::U2NET).unwrap();
    let mut input = gstneuralfx::segmentation::ModelInput::default();
    for (w, h) in [(640usize, 480usize), (1920, 1080)] {
        let frame: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        let image = ImageRef::packed(&frame, w, h, PixelLayout::RGB);
        let mut mask = vec![0u8; w * h];
        let mut out = vec![0u8; w * h * 4];
        let n = 20;
        let t = Instant::now();
        for _ in 0..n {
            segmenter.preparer.prepare(&image, &mut input).unwrap();
        }
        let pre = t.elapsed() / n;
        let outputs = segmenter.model.run(&input).unwrap().outputs;
        let t = Instant::now();
        for _ in 0..n {
            segmenter
                .finisher
                .finish(&outputs, w, h, &mut mask)
                .unwrap();
        }
        let post = t.elapsed() / n;
        let t = Instant::now();
        for _ in 0..n {
            attach_alpha(&image, &mask, &mut out, w * 4);
        }
        let attach = t.elapsed() / n;
        println!("{w}x{h}: preprocess {pre:?} postprocess {post:?} attach {attach:?}");
    }
}
