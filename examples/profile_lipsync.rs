//! Times each stage of lipsyncsrc's per-frame work outside the model (JPEG decode, crop and
//! resize to 328, model input, paste-back, frame write) on a template folder.
//! Usage: profile_lipsync TEMPLATE_DIR FEATURES.npy
use std::time::Instant;

use gstneuralfx::imageops::PixelLayout;
use gstneuralfx::talking_head::{self, AudioFeatures, Mode, TemplateSet};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let templates = TemplateSet::open(args[1].as_ref(), 0, false, 64).unwrap();
    let features = AudioFeatures::load(args[2].as_ref(), Mode::Ave).unwrap();
    let n = 20;
    let t = Instant::now();
    for i in 0..n {
        talking_head::templates::decode_jpeg(
            &std::path::PathBuf::from(&args[1]).join(format!("full_body_img/{}.jpg", i % 8)),
        )
        .unwrap();
    }
    println!("decode jpeg {:?}", t.elapsed() / n);
    for i in 0..templates.count() {
        templates.image(i).unwrap();
    }
    let t = Instant::now();
    let cache = talking_head::face_cache(&templates);
    let mut faces = Vec::new();
    for i in 0..n as usize {
        faces.push(talking_head::prepare(&templates, &cache, &features, i).unwrap());
    }
    println!("prepare (cached template) {:?}", t.elapsed() / n);
    let output = vec![0.5f32; 3 * 320 * 320];
    let t = Instant::now();
    let mut squares = Vec::new();
    for face in &faces {
        squares.push(talking_head::paste_face(face, &output).square);
    }
    println!("paste_face {:?}", t.elapsed() / n);
    let (w, h) = templates.size();
    let layout = PixelLayout::BGR;
    let t = Instant::now();
    for (face, square) in faces.iter().zip(&squares) {
        let mut out = vec![0u8; w * h * 3];
        talking_head::write_frame(face, Some(square), &mut out, w * 3, layout);
    }
    println!("write_frame incl. allocation {:?}", t.elapsed() / n);
}
