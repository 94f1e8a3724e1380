//! rembgfilter against the real Python rembg 2.0.86, same model file, on the sample photos.

mod common;

use common::*;

fn assert_matches_python_rembg(photo: &str) {
    assert_model_matches_python_rembg("u2netp", photo, "auto");
}

/// `backend` is rembgfilter's property: auto (OpenVINO where it loads, what users get), or one
/// runtime named, so that both are held to rembg.
fn assert_model_matches_python_rembg(model: &str, photo: &str, backend: &str) {
    assert_file_matches_python_rembg(model, model, &[], photo, backend);
}

/// rembgfilter with `model=element_model` against Python rembg's session `rembg_model` (with
/// `reference_options` for tests/reference/rembg_mask.py) on the sample `photo`.
fn assert_file_matches_python_rembg(
    rembg_model: &str,
    element_model: &str,
    reference_options: &[&str],
    photo: &str,
    backend: &str,
) {
    let image = sample(photo);
    let (size, reference) = &*python_rembg_mask(rembg_model, reference_options, photo);

    let samples = collect_samples(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! rembgfilter model={element_model} backend={backend} ! appsink name=sink",
        image.display()
    ))
    .unwrap();
    assert_eq!(samples.len(), 1);
    let (info, rgba) = packed_pixels(&samples[0]);
    assert_eq!(
        format!("{} {}", info.width(), info.height()),
        size.as_str(),
        "mask size"
    );
    let (mean_difference, iou) = compare_masks(&alpha_of(&rgba), reference);
    println!(
        "{rembg_model} {photo} ({backend}): mean |alpha - rembg| = {mean_difference:.3}/255, foreground IoU = {iou:.5}"
    );
    assert!(
        mean_difference <= 1.5,
        "{rembg_model} {photo}: mean difference {mean_difference:.3}/255 > 1.5"
    );
    assert!(
        iou >= 0.99,
        "{rembg_model} {photo}: foreground IoU {iou:.5} < 0.99"
    );
}

/// The mask Python rembg's session `rembg_model` computes for the sample `photo` (with
/// `reference_options` for tests/reference/rembg_mask.py), and its "WIDTH HEIGHT". Several tests
/// hold different backends or model files to the same mask: rembg computes each one once per run
/// (the tests run side by side, so the first to ask computes it and the others wait for it).
fn python_rembg_mask(
    rembg_model: &str,
    reference_options: &[&str],
    photo: &str,
) -> std::sync::Arc<(String, Vec<u8>)> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    type Masks = Mutex<HashMap<String, Arc<OnceLock<Arc<(String, Vec<u8>)>>>>>;
    static MASKS: OnceLock<Masks> = OnceLock::new();
    let key = format!("{rembg_model} {} {photo}", reference_options.join(" "));
    let slot = MASKS
        .get_or_init(Masks::default)
        .lock()
        .unwrap()
        .entry(key.clone())
        .or_default()
        .clone();
    slot.get_or_init(|| {
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let reference_file = std::env::temp_dir().join(format!(
            "neuralfx-rembg-{rembg_model}-{photo}-{}-{call}.raw",
            std::process::id()
        ));
        let image = sample(photo);
        let mut arguments = vec![
            rembg_model,
            image.to_str().unwrap(),
            reference_file.to_str().unwrap(),
        ];
        arguments.extend_from_slice(reference_options);
        let size = run_reference("rembg_mask.py", &arguments);
        let reference = std::fs::read(&reference_file).unwrap();
        std::fs::remove_file(&reference_file).unwrap();
        println!("rembg computed the mask of {key}");
        Arc::new((size.trim().to_string(), reference))
    })
    .clone()
}

/// rembg's 1024x1024 sessions other than ISNet (bria-rmbg's ImageNet statistics, BiRefNet's
/// sigmoid, isnet-anime's mean with std 1) are 178-970 MB downloads, so a small seeded stand-in
/// (tests/reference/make_test_models.py: conv, tanh, conv) is saved under each catalog file
/// name: a file named like a catalog entry takes its processing, and rembg finds it in its home.
fn assert_catalog_processing_matches_python_rembg(name: &str) {
    let home =
        std::env::temp_dir().join(format!("neuralfx-rembg-home-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let model = home.join(format!("{name}.onnx"));
    std::fs::copy(test_model("rembg_1024.onnx"), &model).unwrap();
    for photo in ["chelsea", "coffee"] {
        assert_file_matches_python_rembg(
            name,
            model.to_str().unwrap(),
            &["--home", home.to_str().unwrap()],
            photo,
            "auto",
        );
    }
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn bria_rmbg_processing_matches_python_rembg() {
    if without_set_up() {
        return;
    }
    assert_catalog_processing_matches_python_rembg("bria-rmbg");
}

#[test]
fn birefnet_processing_with_its_sigmoid_matches_python_rembg() {
    if without_set_up() {
        return;
    }
    assert_catalog_processing_matches_python_rembg("birefnet-general");
}

#[test]
fn isnet_anime_processing_matches_python_rembg() {
    if without_set_up() {
        return;
    }
    assert_catalog_processing_matches_python_rembg("isnet-anime");
}

/// u2netp rewritten with float16 inputs and outputs (tests/reference/float16_io.py: casts at the
/// edges, float32 inside, as exporters leave models), saved under the catalog's file name so it
/// keeps u2netp's processing: the local runtimes convert at the model's edge, and the mask stays
/// rembg's within float16's rounding.
fn assert_float16_io_matches_python_rembg(photo: &str, backend: &str) {
    let dir = std::env::temp_dir().join(format!(
        "neuralfx-float16-io-{backend}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let home = std::env::var("U2NET_HOME").expect("U2NET_HOME (scripts/env.sh sets it)");
    let original = std::path::Path::new(&home).join("u2netp.onnx");
    let model = dir.join("u2netp.onnx");
    let converted = run_reference(
        "float16_io.py",
        &[original.to_str().unwrap(), model.to_str().unwrap()],
    );
    assert_eq!(
        converted.trim(),
        "1 7",
        "float16 inputs and outputs written"
    );
    assert_file_matches_python_rembg("u2netp", model.to_str().unwrap(), &[], photo, backend);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_model_with_float16_inputs_and_outputs_matches_python_rembg_on_onnxruntime() {
    if without_set_up() {
        return;
    }
    assert_float16_io_matches_python_rembg("chelsea", "onnxruntime");
}

#[test]
fn a_model_with_float16_inputs_and_outputs_matches_python_rembg_on_openvino() {
    if without_set_up() {
        return;
    }
    assert_float16_io_matches_python_rembg("coffee", "openvino");
}

#[test]
fn alpha_matches_python_rembg_on_astronaut() {
    if without_set_up() {
        return;
    }
    assert_matches_python_rembg("astronaut");
}

#[test]
fn alpha_matches_python_rembg_on_chelsea() {
    if without_set_up() {
        return;
    }
    assert_matches_python_rembg("chelsea");
}

#[test]
fn alpha_matches_python_rembg_on_coffee() {
    if without_set_up() {
        return;
    }
    assert_matches_python_rembg("coffee");
}

#[test]
fn onnxruntime_alpha_matches_python_rembg_on_astronaut() {
    if without_set_up() {
        return;
    }
    assert_model_matches_python_rembg("u2netp", "astronaut", "onnxruntime");
}

#[test]
fn onnxruntime_alpha_matches_python_rembg_on_chelsea() {
    if without_set_up() {
        return;
    }
    assert_model_matches_python_rembg("u2netp", "chelsea", "onnxruntime");
}

#[test]
fn onnxruntime_alpha_matches_python_rembg_on_coffee() {
    if without_set_up() {
        return;
    }
    assert_model_matches_python_rembg("u2netp", "coffee", "onnxruntime");
}

#[test]
fn openvino_alpha_matches_python_rembg_on_astronaut() {
    if without_set_up() {
        return;
    }
    assert_model_matches_python_rembg("u2netp", "astronaut", "openvino");
}

#[test]
fn openvino_alpha_matches_python_rembg_on_chelsea() {
    if without_set_up() {
        return;
    }
    assert_model_matches_python_rembg("u2netp", "chelsea", "openvino");
}

#[test]
fn openvino_alpha_matches_python_rembg_on_coffee() {
    if without_set_up() {
        return;
    }
    assert_model_matches_python_rembg("u2netp", "coffee", "openvino");
}

#[test]
fn isnet_int8_from_npm_matches_python_rembg() {
    if without_set_up() {
        return;
    }
    assert_model_matches_python_rembg("isnet-int8", "coffee", "auto");
}

#[test]
fn isnet_fp16_from_npm_matches_python_rembg() {
    if without_set_up() {
        return;
    }
    assert_model_matches_python_rembg("isnet-fp16", "chelsea", "auto");
}

#[test]
fn isnet_fp16_on_openvino_matches_python_rembg() {
    if without_set_up() {
        return;
    }
    assert_model_matches_python_rembg("isnet-fp16", "chelsea", "openvino");
}
