//! models/export_audio_encoder.py run as a user runs it: in a SyncTalk_2D-shaped checkout
//! (tests/reference/fake_synctalk.py: the same layer names and shapes, random weights, since
//! SyncTalk_2D's code and checkpoint cannot ship here), then the exported ONNX model in neuralfx:
//! its rows against PyTorch's on real speech, and lipsyncsrc taking it. Needs PyTorch
//! (`scripts/setup.sh --torch`, about 5 GB); without it the test says it is skipped and why.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::talking_head::*;
use common::*;
use gstneuralfx::inference::onnx::{OnnxBackend, SessionOptions};
use gstneuralfx::talking_head::speech::{
    AudioEncoder, ENCODER_WIDTH, encoder_windows, mel_spectrogram,
};

#[test]
fn an_exported_synctalk_encoder_gives_pytorchs_rows_and_drives_lipsyncsrc() {
    if without_set_up() {
        return;
    }
    let Some((python, dir, checkout)) = synctalk_checkout("export-encoder", &[]) else {
        return;
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/export_audio_encoder.py");
    // As the script's own usage says: run from the checkout, default paths.
    let said = run_ok(Command::new(&python).arg(&script).current_dir(&checkout));
    println!("{said}");
    assert!(said.contains("largest difference from PyTorch"), "{said}");
    let exported = checkout.join("ave_encoder.onnx");

    // Rows from real speech: neuralfx's windows through the exported model, against PyTorch's
    // encoder on the same windows.
    let wav = spoken(&dir, "The exported encoder, row for row.");
    let samples = samples_of(&wav);
    let windows = encoder_windows(&mel_spectrogram(&samples), samples.len()).unwrap();
    let encoder =
        AudioEncoder::new(OnnxBackend::load(&exported, SessionOptions::default()).unwrap())
            .unwrap();
    let ours = encoder.encode(&windows).unwrap();
    let windows_file = dir.join("windows.f32");
    let rows_file = dir.join("rows.f32");
    std::fs::write(
        &windows_file,
        windows
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    run_ok(
        Command::new(&python)
            .arg(reference_script("fake_synctalk.py"))
            .arg(&checkout)
            .arg("--forward")
            .args([&windows_file, &rows_file]),
    );
    let pytorch: Vec<f32> = std::fs::read(&rows_file)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(ours.len(), pytorch.len());
    assert_eq!(ours.len() % ENCODER_WIDTH, 0);
    let largest = ours
        .iter()
        .zip(&pytorch)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!(
        "{} rows: largest difference from PyTorch {largest:.2e}",
        ours.len() / ENCODER_WIDTH
    );
    assert!(largest <= 1e-4, "largest difference {largest}");

    // lipsyncsrc takes the export as its audio-encoder.
    let (template, unet) = lipsync_inputs(&dir);
    let frames = collect_samples(&format!(
        "lipsyncsrc model={} template={} audio-location={} audio-encoder={} \
         ! video/x-raw,format=BGR ! appsink name=sink",
        unet.display(),
        template.display(),
        wav.display(),
        exported.display()
    ))
    .unwrap();
    assert_eq!(frames.len(), ours.len() / ENCODER_WIDTH + 2);
    std::fs::remove_dir_all(&dir).unwrap();
}
