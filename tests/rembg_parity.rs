//! rembgfilter against the real Python rembg 2.0.86, same model file, on the sample photos.

mod common;

use common::*;

fn assert_matches_python_rembg(photo: &str) {
    assert_model_matches_python_rembg("u2netp", photo, "auto");
}

/// `backend` is rembgfilter's property: auto (OpenVINO where it loads, what users get), or one
/// runtime named, so that both are held to rembg.
fn assert_model_matches_python_rembg(model: &str, photo: &str, backend: &str) {
    let image = sample(photo);
    let reference_file = std::env::temp_dir().join(format!(
        "neuralfx-rembg-{model}-{photo}-{}.raw",
        std::process::id()
    ));
    let size = run_reference(
        "rembg_mask.py",
        &[
            model,
            image.to_str().unwrap(),
            reference_file.to_str().unwrap(),
        ],
    );
    let reference = std::fs::read(&reference_file).unwrap();
    std::fs::remove_file(&reference_file).unwrap();

    let samples = collect_samples(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! rembgfilter model={model} backend={backend} ! appsink name=sink",
        image.display()
    ))
    .unwrap();
    assert_eq!(samples.len(), 1);
    let (info, rgba) = packed_pixels(&samples[0]);
    assert_eq!(
        format!("{} {}", info.width(), info.height()),
        size.trim(),
        "mask size"
    );
    let (mean_difference, iou) = compare_masks(&alpha_of(&rgba), &reference);
    println!(
        "{model} {photo} ({backend}): mean |alpha - rembg| = {mean_difference:.3}/255, foreground IoU = {iou:.5}"
    );
    assert!(
        mean_difference <= 1.5,
        "{photo}: mean difference {mean_difference:.3}/255 > 1.5"
    );
    assert!(iou >= 0.99, "{photo}: foreground IoU {iou:.5} < 0.99");
}

#[test]
fn alpha_matches_python_rembg_on_astronaut() {
    assert_matches_python_rembg("astronaut");
}

#[test]
fn alpha_matches_python_rembg_on_chelsea() {
    assert_matches_python_rembg("chelsea");
}

#[test]
fn alpha_matches_python_rembg_on_coffee() {
    assert_matches_python_rembg("coffee");
}

#[test]
fn onnxruntime_alpha_matches_python_rembg_on_astronaut() {
    assert_model_matches_python_rembg("u2netp", "astronaut", "onnxruntime");
}

#[test]
fn onnxruntime_alpha_matches_python_rembg_on_chelsea() {
    assert_model_matches_python_rembg("u2netp", "chelsea", "onnxruntime");
}

#[test]
fn onnxruntime_alpha_matches_python_rembg_on_coffee() {
    assert_model_matches_python_rembg("u2netp", "coffee", "onnxruntime");
}

#[test]
fn openvino_alpha_matches_python_rembg_on_astronaut() {
    assert_model_matches_python_rembg("u2netp", "astronaut", "openvino");
}

#[test]
fn openvino_alpha_matches_python_rembg_on_chelsea() {
    assert_model_matches_python_rembg("u2netp", "chelsea", "openvino");
}

#[test]
fn openvino_alpha_matches_python_rembg_on_coffee() {
    assert_model_matches_python_rembg("u2netp", "coffee", "openvino");
}

#[test]
fn isnet_int8_from_npm_matches_python_rembg() {
    assert_model_matches_python_rembg("isnet-int8", "coffee", "auto");
}

#[test]
fn isnet_fp16_from_npm_matches_python_rembg() {
    assert_model_matches_python_rembg("isnet-fp16", "chelsea", "auto");
}

#[test]
fn isnet_fp16_on_openvino_matches_python_rembg() {
    assert_model_matches_python_rembg("isnet-fp16", "chelsea", "openvino");
}
