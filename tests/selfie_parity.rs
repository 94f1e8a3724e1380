//! The selfie models converted by models/tflite_to_onnx.py against MediaPipe's own runtime
//! (mediapipe 0.10.21, the wheel the TFLite files come from), on the sample photos.

mod common;

use std::path::PathBuf;

use common::*;
use gst_check::Harness;
use gstneuralfx::inference::Backend;
use gstneuralfx::inference::TensorView;
use gstneuralfx::inference::onnx::{OnnxBackend, SessionOptions};
use ndarray::{Array2, Array3};

/// A photo at the model's input size and MediaPipe's float mask for it.
struct Reference {
    rgb: Array3<u8>,
    mask: Array2<f32>,
}

fn mediapipe_reference(variant: &str, photo: &str) -> Reference {
    mediapipe_run(variant, photo, false)
}

fn mediapipe_run(variant: &str, photo: &str, full_size: bool) -> Reference {
    let prefix = std::env::temp_dir().join(format!(
        "neuralfx-mediapipe-{variant}-{photo}-{}-{}",
        if full_size { "full" } else { "model-size" },
        std::process::id()
    ));
    let image = sample(photo);
    let mut args = vec![variant, image.to_str().unwrap(), prefix.to_str().unwrap()];
    if full_size {
        args.push("--full-size");
    }
    run_reference_with(
        &python_in("NEURALFX_MEDIAPIPE_VENV"),
        "mediapipe_selfie.py",
        &args,
    );
    let read = |suffix: &str| PathBuf::from(format!("{}.{suffix}.npy", prefix.display()));
    let rgb = ndarray_npy::read_npy(read("rgb")).unwrap();
    let mask = ndarray_npy::read_npy(read("mask")).unwrap();
    std::fs::remove_file(read("rgb")).unwrap();
    std::fs::remove_file(read("mask")).unwrap();
    Reference { rgb, mask }
}

fn model_path(model: &str) -> PathBuf {
    let home = PathBuf::from(std::env::var_os("U2NET_HOME").expect("U2NET_HOME is not set"));
    home.join(format!("{model}.onnx"))
}

/// The converted model's raw output, run on exactly MediaPipe's input, within 1e-3 of MediaPipe.
fn assert_model_matches_mediapipe(model: &str, variant: &str, photo: &str) {
    init();
    let reference = mediapipe_reference(variant, photo);
    let (height, width, _) = reference.rgb.dim();
    let backend = OnnxBackend::load(&model_path(model), SessionOptions::default()).unwrap();
    let input: Vec<f32> = reference
        .rgb
        .iter()
        .map(|&v| f32::from(v) / 255.0)
        .collect();
    let outputs = backend
        .run(&[TensorView {
            shape: &[1, height, width, 3],
            data: &input,
        }])
        .unwrap();
    assert_eq!(outputs[0].shape, vec![1, height, width, 1]);
    let max_difference = outputs[0]
        .data
        .iter()
        .zip(reference.mask.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let foreground =
        reference.mask.iter().filter(|&&v| v > 0.5).count() as f64 / reference.mask.len() as f64;
    println!(
        "{model} {photo}: max |onnx - mediapipe| = {max_difference:.2e}, foreground {:.1}%",
        foreground * 100.0
    );
    assert!(
        max_difference <= 1e-3,
        "{model} on {photo}: max difference {max_difference} > 1e-3"
    );
    // A mask that is all background or all foreground would make the comparison say little.
    assert!(
        (0.02..0.98).contains(&foreground),
        "{photo}: degenerate reference mask"
    );
}

/// rembgfilter with the catalog's selfie profile gives MediaPipe's mask (to the 8-bit level) on a
/// frame of the model's size, where neither side resizes: NHWC input, /255, no min-max stretch.
fn assert_element_matches_mediapipe(model: &str, variant: &str, photo: &str) {
    init();
    let reference = mediapipe_reference(variant, photo);
    let (height, width, _) = reference.rgb.dim();
    let element = gst::ElementFactory::make("rembgfilter")
        .property("model", model)
        .property_from_str("mode", "mask")
        .build()
        .unwrap();
    let mut h = Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps_str(&format!(
        "video/x-raw,format=RGB,width={width},height={height},framerate=30/1"
    ));
    let mut buffer = gst::Buffer::from_mut_slice(reference.rgb.iter().copied().collect::<Vec<_>>());
    buffer.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
    h.push(buffer).unwrap();
    let out = h.pull().unwrap();
    let map = out.map_readable().unwrap();
    // GRAY8 rows of 256 or more bytes are already 4-byte aligned: the buffer is packed.
    assert_eq!(map.len(), width * height);
    let worst = map
        .iter()
        .zip(reference.mask.iter())
        .map(|(&ours, &theirs)| (f32::from(ours) - (theirs * 255.0).round()).abs())
        .fold(0.0f32, f32::max);
    println!("{model} {photo} through rembgfilter: max |mask - mediapipe| = {worst} levels");
    assert!(
        worst <= 1.0,
        "{model} on {photo}: {worst} levels off MediaPipe"
    );
}

#[test]
fn selfie_matches_mediapipe_on_astronaut() {
    if without_set_up() {
        return;
    }
    assert_model_matches_mediapipe("selfie", "general", "astronaut");
}

#[test]
fn selfie_matches_mediapipe_on_chelsea() {
    if without_set_up() {
        return;
    }
    assert_model_matches_mediapipe("selfie", "general", "chelsea");
}

#[test]
fn selfie_matches_mediapipe_on_coffee() {
    if without_set_up() {
        return;
    }
    assert_model_matches_mediapipe("selfie", "general", "coffee");
}

#[test]
fn selfie_landscape_matches_mediapipe_on_astronaut() {
    if without_set_up() {
        return;
    }
    assert_model_matches_mediapipe("selfie-landscape", "landscape", "astronaut");
}

#[test]
fn selfie_landscape_matches_mediapipe_on_chelsea() {
    if without_set_up() {
        return;
    }
    assert_model_matches_mediapipe("selfie-landscape", "landscape", "chelsea");
}

#[test]
fn selfie_landscape_matches_mediapipe_on_coffee() {
    if without_set_up() {
        return;
    }
    assert_model_matches_mediapipe("selfie-landscape", "landscape", "coffee");
}

#[test]
fn rembgfilter_with_selfie_gives_mediapipe_mask() {
    if without_set_up() {
        return;
    }
    assert_element_matches_mediapipe("selfie", "general", "astronaut");
}

#[test]
fn rembgfilter_with_selfie_landscape_gives_mediapipe_mask() {
    if without_set_up() {
        return;
    }
    assert_element_matches_mediapipe("selfie-landscape", "landscape", "coffee");
}

/// The whole chain on a photo at its own size (512x512): the element resizes in
/// and out with PIL-style bilinear filters, MediaPipe with its own, so the masks agree closely
/// rather than exactly.
fn assert_photo_close_to_mediapipe(model: &str, variant: &str, photo: &str) {
    init();
    let reference = mediapipe_run(variant, photo, true);
    let samples = collect_samples(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! video/x-raw,format=RGB \
         ! rembgfilter model={model} mode=mask ! appsink name=sink",
        sample(photo).display()
    ))
    .unwrap();
    let (info, mask) = packed_pixels(&samples[0]);
    let (height, width) = reference.mask.dim();
    assert_eq!(
        (info.width() as usize, info.height() as usize),
        (width, height)
    );
    let theirs: Vec<u8> = reference
        .mask
        .iter()
        .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    let (mean_difference, iou) = compare_masks(&mask, &theirs);
    println!(
        "{model} {photo} ({width}x{height}): mean |mask - mediapipe| = {mean_difference:.2}/255, IoU {iou:.4}"
    );
    // Measured on the astronaut: IoU 0.989 (selfie), 0.949 (landscape); mean 3.7 and 7.4 levels. MediaPipe shrinks the photo by point
    // sampling (cv::warpAffine), the element with an antialiasing filter, so edges differ a little;
    // a wrong channel order, scaling or output step would be far off these bounds.
    assert!(iou >= 0.93, "{photo}: IoU {iou} < 0.93");
    assert!(
        mean_difference <= 12.0,
        "{photo}: mean difference {mean_difference}"
    );
}

// Only the astronaut: the selfie models segment people. On the cat and the coffee cup their mask
// hovers around 0.5, and the two resampling choices flip large areas (IoU 0.60..0.98 there); a
// Python emulation of the element's chain (PIL bilinear down, model, bilinear up) gives the same
// figures as the element, so that spread is the models' sensitivity, not an element error.
#[test]
fn selfie_on_a_whole_photo_is_close_to_mediapipe() {
    if without_set_up() {
        return;
    }
    assert_photo_close_to_mediapipe("selfie", "general", "astronaut");
}

#[test]
fn selfie_landscape_on_a_whole_photo_is_close_to_mediapipe() {
    if without_set_up() {
        return;
    }
    assert_photo_close_to_mediapipe("selfie-landscape", "landscape", "astronaut");
}
