//! models/tflite_to_onnx.py on MediaPipe's selfie TFLite files: the conversion set-up ran gives
//! the same bytes again (so the manifest's checksum means something), and an op the converter
//! does not handle stops it with a message naming the op, leaving no output behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn convert_python() -> PathBuf {
    python_in("NEURALFX_CONVERT_VENV")
}

fn converter() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/tflite_to_onnx.py")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("neuralfx-conversion-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Extracts a member of the cached mediapipe wheel (set-up downloaded it).
fn selfie_tflite(member: &str, out: &Path) {
    let cache = PathBuf::from(std::env::var_os("NEURALFX_CACHE").expect("NEURALFX_CACHE"));
    let script = "import glob, sys, zipfile\n\
         wheel = sorted(glob.glob(sys.argv[1] + '/wheels/mediapipe-0.10.21-*.whl'))[0]\n\
         open(sys.argv[3], 'wb').write(zipfile.ZipFile(wheel).read(sys.argv[2]))\n";
    let status = Command::new(convert_python())
        .args(["-c", script])
        .arg(&cache)
        .arg(member)
        .arg(out)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "extract {member} from the mediapipe wheel"
    );
}

fn run(python: &Path, script: &Path, args: &[&Path]) -> Output {
    Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .unwrap()
}

fn md5_hex(path: &Path) -> String {
    use md5::Digest;
    format!("{:x}", md5::Md5::digest(std::fs::read(path).unwrap()))
}

#[test]
fn converting_again_gives_the_catalog_file() {
    if without_set_up() {
        return;
    }
    for (member, catalog_name) in [
        ("selfie_segmentation.tflite", "selfie"),
        ("selfie_segmentation_landscape.tflite", "selfie-landscape"),
    ] {
        let tflite = scratch(member);
        selfie_tflite(
            &format!("mediapipe/modules/selfie_segmentation/{member}"),
            &tflite,
        );
        let onnx = scratch(&format!("{catalog_name}.onnx"));
        let output = run(&convert_python(), &converter(), &[&tflite, &onnx]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let entry = gstneuralfx::segmentation::catalog::find(catalog_name).unwrap();
        assert_eq!(
            md5_hex(&onnx),
            entry.checksum.hex(),
            "{catalog_name}: conversion is deterministic"
        );
    }
}

#[test]
fn an_unhandled_op_is_refused_by_name() {
    if without_set_up() {
        return;
    }
    let tflite = scratch("selfie.tflite");
    selfie_tflite(
        "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
        &tflite,
    );
    let patched = scratch("selfie-with-tanh.tflite");
    let output = run(
        &convert_python(),
        &reference_script("tflite_unsupported_op.py"),
        &[&tflite, &patched],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let onnx = scratch("selfie-with-tanh.onnx");
    let output = run(&convert_python(), &converter(), &[&patched, &onnx]);
    assert!(!output.status.success(), "the converter must refuse TANH");
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("TANH is not handled"),
        "the error names the op: {message}"
    );
    assert!(!onnx.exists(), "nothing is written for a refused model");
}
