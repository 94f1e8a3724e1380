//! The OpenVINO backend and backend=auto: what runs (the `active-backend` property and the bus),
//! bf16 against f32, refused combinations, lipsyncsrc on OpenVINO, and the compiled-model cache.
//! Parity with Python rembg through OpenVINO is in rembg_parity.rs.

mod common;

use common::held_out::HELD_OUT_PHOTOS;
use common::*;

/// Brings a pipeline to PAUSED and returns `active-backend` of the element named `nf`.
fn active_backend(description: &str) -> String {
    active_backend_and_infos(description).0
}

fn rembgfilter_runs_on(properties: &str) -> String {
    active_backend(&format!(
        "videotestsrc num-buffers=1 ! video/x-raw,format=RGB,width=64,height=48 \
         ! rembgfilter name=nf {properties} ! fakesink"
    ))
}

/// Whether Linux reports bfloat16 instructions on this CPU (AVX512_BF16 or AMX), which OpenVINO's
/// bf16 needs. The machines this runs on differ: some have them, some have no AVX-512 at all.
fn cpu_has_bf16() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| {
        info.split_whitespace()
            .any(|flag| flag == "avx512_bf16" || flag == "amx_bf16")
    })
}

/// On a CPU without bfloat16 instructions: checks that precision=bf16 is refused naming the
/// property and what the CPU lacks, says that the calling test's bf16 part is skipped, and returns
/// true. On a CPU with them, returns false and the caller tests bf16 itself.
fn bf16_is_refused_on_this_cpu() -> bool {
    if cpu_has_bf16() {
        return false;
    }
    let (err, _) = rembgfilter_error("backend=openvino precision=bf16");
    assert!(
        err.contains("property 'precision'") && err.contains("bfloat16 instructions"),
        "this CPU has no bfloat16 instructions, so precision=bf16 should be refused: {err}"
    );
    tell(
        "",
        "precision=bf16 refused as it should be on this CPU (no avx512_bf16 or amx_bf16 in \
         /proc/cpuinfo); the bf16 computation itself is tested on machines that have them",
    );
    true
}

#[test]
fn auto_runs_u2netp_on_openvino_in_f32() {
    if without_set_up() {
        return;
    }
    let runs_on = rembgfilter_runs_on("");
    assert!(
        runs_on.starts_with("OpenVINO 2026.") && runs_on.contains("on the CPU, f32"),
        "{runs_on}"
    );
    assert!(runs_on.contains("libopenvino_c.so"), "{runs_on}");
}

#[test]
fn auto_leaves_dynamically_quantized_isnet_int8_to_onnxruntime() {
    if without_set_up() {
        return;
    }
    let runs_on = rembgfilter_runs_on("model=isnet-int8");
    assert!(
        runs_on.starts_with("ONNX Runtime's CPUExecutionProvider"),
        "{runs_on}"
    );
}

#[test]
fn auto_with_cuda_asked_for_uses_onnxruntime() {
    if without_set_up() {
        return;
    }
    let runs_on = rembgfilter_runs_on("execution-provider=cuda");
    assert!(runs_on.starts_with("ONNX Runtime's"), "{runs_on}");
}

#[test]
fn bf16_makes_auto_choose_openvino_and_says_so() {
    if without_set_up() || bf16_is_refused_on_this_cpu() {
        return;
    }
    let runs_on = rembgfilter_runs_on("precision=bf16");
    assert!(runs_on.contains("on the CPU, bf16"), "{runs_on}");
}

#[test]
fn named_backends_are_reported_as_they_run() {
    if without_set_up() {
        return;
    }
    assert!(
        rembgfilter_runs_on("backend=onnxruntime")
            .starts_with("ONNX Runtime's CPUExecutionProvider")
    );
    assert!(rembgfilter_runs_on("backend=openvino").starts_with("OpenVINO"));
}

#[test]
fn what_runs_is_said_once_in_an_info_message_gst_launch_prints() {
    if without_set_up() {
        return;
    }
    for backend in ["onnxruntime", "openvino"] {
        let (runs_on, infos) = active_backend_and_infos(&format!(
            "videotestsrc num-buffers=1 ! video/x-raw,format=RGB,width=64,height=48 \
             ! rembgfilter name=nf backend={backend} ! fakesink"
        ));
        // Once, naming the model, in the text and in the debug string (all gst-launch shows).
        assert_eq!(infos.len(), 1, "{infos:?}");
        let (text, debug) = &infos[0];
        assert!(
            text.contains("u2netp.onnx runs on ") && text.ends_with(&runs_on),
            "{backend}: {text}"
        );
        assert_eq!(debug, text);
    }
    let output = std::process::Command::new("gst-launch-1.0")
        .args(
            "videotestsrc num-buffers=1 ! video/x-raw,format=RGB,width=64,height=48 \
             ! rembgfilter backend=openvino ! fakesink"
                .split_whitespace(),
        )
        .output()
        .expect("gst-launch-1.0 (scripts/setup.sh installs it)");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}");
    assert!(
        printed.contains("u2netp.onnx runs on OpenVINO 2026.") && !printed.contains("element.rs("),
        "{printed}"
    );
}

#[test]
fn bf16_with_onnxruntime_is_refused_naming_the_property() {
    if without_set_up() {
        return;
    }
    let (err, _) = rembgfilter_error("backend=onnxruntime precision=bf16");
    assert!(
        err.contains("property 'precision'") && err.contains("backend=onnxruntime"),
        "{err}"
    );
}

#[test]
fn cuda_with_openvino_is_refused_naming_the_property() {
    if without_set_up() {
        return;
    }
    let (err, _) = rembgfilter_error("backend=openvino execution-provider=cuda");
    assert!(
        err.contains("property 'execution-provider'") && err.contains("backend=openvino"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_a_model_is_named_by_openvino() {
    if without_set_up() {
        return;
    }
    let dir = temp_dir_of("ov-bad-model", "");
    let bad = dir.join("not-a-model.onnx");
    std::fs::write(&bad, b"this is not an ONNX file").unwrap();
    let (err, took) = rembgfilter_error(&format!("backend=openvino model={}", bad.display()));
    assert!(
        err.contains("property 'model'") && err.contains("not-a-model.onnx"),
        "{err}"
    );
    assert!(took.as_secs() < 30, "took {took:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The alpha of rembgfilter on a photo with `properties`.
fn alpha_on(photo: &str, properties: &str) -> Vec<u8> {
    alpha_on_file(&format!("{photo}.png"), properties)
}

#[test]
fn bf16_masks_are_close_to_f32_but_computed_differently() {
    if without_set_up() || bf16_is_refused_on_this_cpu() {
        return;
    }
    for photo in ["astronaut", "chelsea", "coffee"] {
        let f32_alpha = alpha_on(photo, "backend=openvino precision=f32");
        let bf16_alpha = alpha_on(photo, "backend=openvino precision=bf16");
        let (mean_difference, iou) = compare_masks(&bf16_alpha, &f32_alpha);
        println!("{photo}: bf16 vs f32 mean |d| {mean_difference:.3}/255, IoU {iou:.4}");
        // Measured 0.947-0.998 IoU; bf16 silently computing in f32 would give exactly 0 here.
        assert!(iou >= 0.9, "{photo}: IoU {iou:.4}");
        assert!(mean_difference > 0.0, "{photo}: bf16 gave the f32 mask");
    }
}

#[test]
fn openvino_and_onnxruntime_give_the_same_alpha() {
    if without_set_up() {
        return;
    }
    let ov = alpha_on("chelsea", "backend=openvino");
    let ort = alpha_on("chelsea", "backend=onnxruntime");
    let largest = largest_difference(&ov, &ort);
    assert!(largest <= 1, "largest difference {largest}/255");
}

#[test]
fn lipsyncsrc_runs_the_unet_on_openvino_like_onnxruntime() {
    if without_set_up() {
        return;
    }
    let dir = temp_dir_of("ov-lipsync", "");
    let unet = dir.join("unet_ave.onnx");
    run_reference("make_unet328.py", &["ave", unet.to_str().unwrap()]);
    let frames = lipsync_frames_on_test_data(&dir.join("data"), 6);
    let ov = frames(&format!("backend=openvino model={}", unet.display()));
    let ort = frames(&format!("backend=onnxruntime model={}", unet.display()));
    assert_eq!(ov.len(), 6);
    assert_eq!(ov.len(), ort.len());
    for (i, (a, b)) in ov.iter().zip(&ort).enumerate() {
        let quality = psnr(a, b);
        assert!(quality >= 45.0, "frame {i}: PSNR {quality:.1} dB");
    }
    if bf16_is_refused_on_this_cpu() {
        std::fs::remove_dir_all(&dir).unwrap();
        return;
    }
    // bf16, the fast choice (about 1.7-1.9x per frame in ./scripts/bench.sh lipsyncsrc): close
    // to f32, and computed in bf16 (not silently the f32 frames).
    let bf16 = frames(&format!(
        "backend=openvino precision=bf16 model={}",
        unet.display()
    ));
    assert_eq!(bf16.len(), ort.len());
    for (i, (a, b)) in bf16.iter().zip(&ort).enumerate() {
        let quality = psnr(a, b);
        println!("frame {i}: bf16 vs ONNX Runtime f32 PSNR {quality:.1} dB");
        assert!(quality >= 50.0, "frame {i}: PSNR {quality:.1} dB");
    }
    assert!(bf16 != ov, "bf16 gave the f32 frames");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compiled_models_are_cached_for_the_next_start() {
    if without_set_up() {
        return;
    }
    let cache = std::path::PathBuf::from(
        std::env::var("NEURALFX_CACHE").expect("scripts/env.sh sets NEURALFX_CACHE"),
    )
    .join("openvino-model-cache");
    rembgfilter_runs_on("backend=openvino");
    let blobs = std::fs::read_dir(&cache)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "blob"))
                .count()
        })
        .unwrap_or(0);
    assert!(blobs > 0, "no compiled model in {}", cache.display());
}

/// A compiled-model cache OpenVINO cannot use costs a compilation, not the model: it loads without
/// the cache. Seen when another process compiling the same model removed the blob being written
/// (OpenVINO: "cannot set permissions: No such file or directory"); made here by a preloaded
/// library under which setting a blob's permissions fails in just that way.
#[test]
fn a_compiled_model_cache_that_fails_does_not_stop_the_model() {
    if without_set_up() {
        return;
    }
    let dir = temp_dir_of("ov-failing-cache", "");
    let shim = dir.join("blob_chmod_fails.so");
    let compiled = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&shim)
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/fault_injection/blob_chmod_fails.c"),
        )
        .status()
        .expect("cc (Rust's linker needs it too)");
    assert!(compiled.success());
    let (succeeded, printed) = gst_launch(
        "videotestsrc num-buffers=1 ! video/x-raw,format=RGB,width=64,height=48 \
         ! rembgfilter backend=openvino ! fakesink",
        // An empty cache of its own: the model is compiled, and writing the blob fails.
        &[
            ("NEURALFX_CACHE", dir.as_os_str()),
            ("LD_PRELOAD", shim.as_os_str()),
        ],
    );
    assert!(
        succeeded && printed.contains("u2netp.onnx runs on OpenVINO"),
        "{printed}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The alpha rembgfilter gives the sample file `file` (any format decodebin reads).
fn alpha_on_file(file: &str, properties: &str) -> Vec<u8> {
    let samples = collect_samples(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! rembgfilter {properties} ! appsink name=sink",
        sample_file(file).display()
    ))
    .unwrap();
    alpha_of(&packed_pixels(&samples[0]).1)
}

#[test]
fn u2netp_int8_is_calibrated_on_none_of_the_held_out_photos() {
    let manifest: serde_json::Value =
        serde_json::from_str(include_str!("../models/manifest.json")).unwrap();
    let int8 = manifest["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|model| model["name"] == "u2netp-int8")
        .unwrap();
    let calibration: Vec<&str> = int8["source"]["calibration"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert!(calibration.len() >= 10, "{calibration:?}");
    for photo in HELD_OUT_PHOTOS {
        assert!(!calibration.contains(&photo), "{photo} is calibrated on");
    }
}

#[test]
fn u2netp_int8_masks_stay_close_to_u2netp_on_held_out_photos_on_both_runtimes() {
    if without_set_up() {
        return;
    }
    for photo in HELD_OUT_PHOTOS {
        let exact = alpha_on_file(photo, "model=u2netp backend=onnxruntime");
        for backend in ["onnxruntime", "openvino"] {
            let int8 = alpha_on_file(photo, &format!("model=u2netp-int8 backend={backend}"));
            let (mean_difference, iou) = compare_masks(&int8, &exact);
            println!("{photo} int8 on {backend}: mean |d| {mean_difference:.2}/255, IoU {iou:.4}");
            // #27's bar. Measured 0.964 (chelsea) to 0.999 on an AMD EPYC without VNNI, and
            // 0.963 or above when calibrated on 13 or 8 of the 16 pictures. With 8-bit weights
            // rocket fell to 0.925 on OpenVINO; the per-tensor model calibrated on three of
            // these photos gave rocket 0.36.
            assert!(iou >= 0.95, "{photo} on {backend}: IoU {iou:.4}");
        }
    }
}
