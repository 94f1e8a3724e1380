//! models/export_unet328.py run as docs/synctalk2d.md tells a SyncTalk_2D user to run it: in a
//! SyncTalk_2D-shaped checkout (tests/reference/fake_synctalk.py: SyncTalk_2D's constructor,
//! forward signature, per-mode audio shapes and checkpoint folder, random weights, since its code
//! and checkpoints cannot ship here), then the export in neuralfx against PyTorch, and the page's
//! path from dataset/<name> + checkpoint/<name> to an mp4. Needs PyTorch (`scripts/setup.sh
//! --torch`, about 5 GB); without it the test says it is skipped and why.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::talking_head::*;
use common::*;
use gstneuralfx::inference::onnx::{OnnxBackend, SessionOptions};
use gstneuralfx::inference::{Backend, TensorView};

fn run(command: &mut Command) -> (bool, String) {
    let output = command.output().expect("start the command");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn a_synctalk_checkpoint_exports_to_pytorchs_faces_and_becomes_an_mp4() {
    if without_set_up() {
        return;
    }
    let Some((python, dir, checkout)) = synctalk_checkout("export-unet", &["--unet", "May", "ave"])
    else {
        return;
    };
    // dataset/May as SyncTalk_2D's data_utils/process.py leaves it (templates and landmarks).
    let template = template_set(&dir.join("data"), 4);
    std::fs::create_dir_all(checkout.join("dataset")).unwrap();
    std::fs::rename(template, checkout.join("dataset/May")).unwrap();

    // As the docs say: from the checkout, the person's name, the latest checkpoint.
    let exporter = repo_file("models/export_unet328.py");
    let said = run_ok(
        Command::new(&python)
            .arg(&exporter)
            .arg("May")
            .current_dir(&checkout),
    );
    println!("{said}");
    assert!(
        said.contains("exporting checkpoint/May/40.pth (mode ave)"),
        "{said}"
    );
    let difference: f64 = said
        .split("largest difference from PyTorch ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .expect("the exporter's own comparison");
    assert!(difference <= 1e-4, "{said}");
    let unet = checkout.join("unet_328_May.onnx");

    // neuralfx runs the export as PyTorch runs the checkpoint, on a real face crop's values.
    let model = OnnxBackend::load(&unet, SessionOptions::default()).unwrap();
    let shapes: Vec<&[Option<usize>]> = model.inputs().iter().map(|s| &s.shape[..]).collect();
    let fixed = |dims: &[usize]| dims.iter().copied().map(Some).collect::<Vec<_>>();
    assert_eq!(
        shapes,
        [&fixed(&[1, 6, 320, 320])[..], &fixed(&[1, 32, 16, 16])[..]]
    );
    let crop = scaled_photo("astronaut", 320, 320);
    let image: Vec<f32> = (0..6 * 320 * 320)
        .map(|i| f32::from(crop[(i % (320 * 320)) * 3 + (i / (320 * 320)) % 3]) / 255.0)
        .collect();
    let audio: Vec<f32> = (0..32 * 16 * 16)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let ours = model
        .run(&[
            TensorView {
                shape: &[1, 6, 320, 320],
                data: &image,
            },
            TensorView {
                shape: &[1, 32, 16, 16],
                data: &audio,
            },
        ])
        .unwrap()
        .remove(0);
    let (image_file, audio_file, face_file) = (
        dir.join("image.f32"),
        dir.join("audio.f32"),
        dir.join("face.f32"),
    );
    std::fs::write(&image_file, f32_bytes(&image)).unwrap();
    std::fs::write(&audio_file, f32_bytes(&audio)).unwrap();
    run_ok(
        Command::new(&python)
            .arg(reference_script("fake_synctalk.py"))
            .arg(&checkout)
            .arg("--forward-unet")
            .args(["May", "ave"])
            .args([&image_file, &audio_file, &face_file]),
    );
    let pytorch: Vec<f32> = std::fs::read(&face_file)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let face = &ours.data;
    assert_eq!(face.len(), pytorch.len());
    let largest = face
        .iter()
        .zip(&pytorch)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("face against PyTorch: largest difference {largest:.2e}");
    assert!(largest <= 1e-4, "largest difference {largest}");

    // The rest of the page: the audio encoder exported, then speech to an mp4 with the script,
    // every path relative to the checkout.
    run_ok(
        Command::new(&python)
            .arg(repo_file("models/export_audio_encoder.py"))
            .current_dir(&checkout),
    );
    spoken(&checkout, "From a checkpoint to a video.");
    std::fs::rename(checkout.join("speech16k.wav"), checkout.join("speech.wav")).unwrap();
    run_ok(
        Command::new(repo_file("pipelines/lipsync-to-mp4.sh"))
            .args([
                "unet_328_May.onnx",
                "dataset/May",
                "speech.wav",
                "May.mp4",
                "audio-encoder=ave_encoder.onnx",
            ])
            .current_dir(&checkout),
    );
    let video = checkout.join("May.mp4");
    let discoverer = gst_pbutils::Discoverer::new(gst::ClockTime::from_seconds(30)).unwrap();
    let info = discoverer
        .discover_uri(&format!("file://{}", video.display()))
        .unwrap();
    assert_eq!(info.video_streams().len(), 1, "one video stream");
    assert_eq!(info.audio_streams().len(), 1, "the speech");
    let (_, chroma) = h264_profile(&video);
    assert_eq!(chroma, "4:2:0");

    // A checkpoint exported for the wrong features is refused, saying what to check.
    let (ok, said) = run(Command::new(&python)
        .arg(&exporter)
        .args(["May", "--mode", "wenet"])
        .current_dir(&checkout));
    assert!(
        !ok && said.contains("was it trained with another --mode"),
        "{said}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
