//! `execution-provider=cuda` as `scripts/setup.sh --cuda` installs it: ONNX Runtime's GPU build
//! named beside the plugin, NVIDIA's CUDA/cuDNN wheels loaded by the plugin. Runs the installed
//! plugin with gst-launch and no ONNX Runtime variable, as a user would. Where a GPU is present
//! u2netp runs on it and its mask is compared with the CPU's; elsewhere the test checks that the
//! libraries all load (ONNX Runtime gets as far as looking for a device) and that the element
//! falls back to the CPU with a warning, and says that the GPU part was skipped and why. Without
//! the GPU build at all, the whole test says it is skipped.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn user_plugin_dir() -> PathBuf {
    PathBuf::from(std::env::var("HOME").expect("HOME")).join(".local/share/gstreamer-1.0/plugins")
}

/// The GPU build's library in the venv `setup.sh --cuda` made, or why there is none.
fn gpu_onnxruntime() -> Result<PathBuf, String> {
    let venv = PathBuf::from(
        std::env::var_os("NEURALFX_CUDA_VENV")
            .ok_or("NEURALFX_CUDA_VENV is not set (scripts/env.sh sets it)")?,
    );
    let lib = venv.join("lib");
    std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|python| python.path().join("site-packages/onnxruntime/capi"))
        .flat_map(|capi| std::fs::read_dir(capi).into_iter().flatten().flatten())
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so."))
        })
        .ok_or_else(|| {
            format!(
                "no GPU build of ONNX Runtime in {} (scripts/setup.sh --cuda installs it)",
                venv.display()
            )
        })
}

fn has_gpu() -> Result<String, String> {
    let output = Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .map_err(|e| format!("no nvidia-smi ({e})"))?;
    let listed = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if output.status.success() && listed.starts_with("GPU") {
        Ok(listed)
    } else {
        Err(format!("nvidia-smi -L lists no GPU: {listed}"))
    }
}

/// Runs rembgfilter on `photo` with `properties` through the installed plugin, with no
/// ORT_DYLIB_PATH; the alpha, and what gst-launch printed (-v: `active-backend`; warnings).
fn alpha_through_gst_launch(photo: &Path, properties: &str, out: &Path) -> (Vec<u8>, String) {
    let mut args = vec![
        "-v".to_string(),
        "filesrc".into(),
        format!("location={}", photo.display()),
        "!".into(),
        "pngdec".into(),
        "!".into(),
        "videoconvert".into(),
        "!".into(),
        "video/x-raw,format=RGB".into(),
        "!".into(),
        "rembgfilter".into(),
        "model=u2netp".into(),
    ];
    args.extend(properties.split_whitespace().map(String::from));
    args.extend(
        [
            "!",
            "video/x-raw,format=RGBA",
            "!",
            "filesink",
            &format!("location={}", out.display()),
        ]
        .map(String::from),
    );
    let output = Command::new("gst-launch-1.0")
        .args(&args)
        .env_remove("ORT_DYLIB_PATH")
        .output()
        .expect("gst-launch-1.0");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{properties}: {said}");
    (alpha_of(&std::fs::read(out).unwrap()), said)
}

#[test]
fn cuda_runs_u2netp_on_the_gpu_or_says_why_not() {
    if without_set_up() {
        return;
    }
    let library = match gpu_onnxruntime() {
        Ok(library) => library,
        Err(reason) => {
            println!("skipped: {reason}");
            return;
        }
    };
    // setup.sh --cuda points the installed plugin at the GPU build.
    let pointer = user_plugin_dir().join("neuralfx-onnxruntime.path");
    let named = std::fs::read_to_string(&pointer).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (scripts/setup.sh --cuda writes it)",
            pointer.display()
        )
    });
    assert_eq!(Path::new(named.trim()), library);

    let dir = temp_dir_of("cuda", "");
    let photo = sample("astronaut");
    let (cpu, said_cpu) =
        alpha_through_gst_launch(&photo, "backend=onnxruntime", &dir.join("cpu.rgba"));
    assert!(
        said_cpu.contains(&format!("CPUExecutionProvider ({})", library.display())),
        "the GPU build runs CPU sessions too: {said_cpu}"
    );
    let (cuda, said) = alpha_through_gst_launch(
        &photo,
        "backend=onnxruntime execution-provider=cuda",
        &dir.join("cuda.rgba"),
    );
    // Every library the wheels bring was found: the only one that may be missing is the
    // driver's libcuda.so.1 (no GPU here).
    let missing: Vec<&str> = said
        .split(": cannot open shared object file")
        .map(|before| before.rsplit([' ', '/', '(']).next().unwrap_or_default())
        .collect::<Vec<_>>()
        .split_last()
        .map(|(_, found)| found.to_vec())
        .unwrap_or_default();
    assert!(
        missing.iter().all(|name| *name == "libcuda.so.1"),
        "libraries not found: {missing:?}\n{said}"
    );
    match has_gpu() {
        Ok(gpu) => {
            assert!(said.contains("CUDAExecutionProvider"), "{gpu}: {said}");
            assert!(!said.contains("CUDA is not available"), "{gpu}: {said}");
            let (mean_difference, iou) = compare_masks(&cuda, &cpu);
            println!("{gpu}: u2netp on CUDA vs CPU: IoU {iou:.4}, mean |d| {mean_difference:.3}");
            assert!(
                iou >= 0.99 && mean_difference < 1.0,
                "IoU {iou}, mean |d| {mean_difference}"
            );
        }
        Err(reason) => {
            println!("GPU part skipped: {reason}; checked the fallback instead");
            assert!(said.contains("CUDA is not available"), "{said}");
            if !missing.is_empty() {
                assert!(said.contains("the NVIDIA driver's"), "{said}");
            }
            assert!(said.contains("CPUExecutionProvider"), "{said}");
            assert_eq!(cuda, cpu, "the fallback runs the same CPU session");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
