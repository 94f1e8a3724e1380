//! Inputs for the talking-head tests: speech from espeak-ng, an encoder-shaped ONNX model with
//! random weights, a generated U-Net and a small template set.

use std::path::{Path, PathBuf};
use std::process::Command;

use gst::prelude::*;

use super::*;

pub fn librosa_python() -> PathBuf {
    python_in("NEURALFX_LIBROSA_VENV")
}

/// A 16 kHz mono 16-bit wav of `sentence` spoken by espeak-ng (22.05 kHz, resampled by
/// GStreamer's audioresample).
pub fn spoken(dir: &Path, sentence: &str) -> PathBuf {
    let raw = dir.join("espeak.wav");
    let status = Command::new("espeak-ng")
        .args(["-w", raw.to_str().unwrap(), sentence])
        .status()
        .expect("espeak-ng (scripts/setup.sh --test installs it)");
    assert!(status.success());
    let wav = dir.join("speech16k.wav");
    init();
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! wavparse ! audioconvert ! audioresample ! \
         audio/x-raw,format=S16LE,rate=16000,channels=1 ! wavenc ! filesink location={}",
        raw.display(),
        wav.display()
    ))
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    bus.timed_pop_filtered(gst::ClockTime::from_seconds(30), &[gst::MessageType::Eos])
        .expect("the wav is written");
    pipeline.set_state(gst::State::Null).unwrap();
    wav
}

/// The samples of a 16-bit mono wav (its data chunk only), as f32 in -1..1.
pub fn samples_of(wav: &Path) -> Vec<f32> {
    let bytes = std::fs::read(wav).unwrap();
    let at = bytes
        .windows(4)
        .position(|w| w == b"data")
        .expect("a data chunk");
    let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
    // Only the chunk's declared bytes: wavenc may write more chunks after it.
    bytes[at + 8..(at + 8 + size).min(bytes.len())]
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect()
}

/// An encoder-shaped ONNX model ([batch,1,80,16] in, 512 out) with random weights.
pub fn encoder_model(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let mut all = vec![path.to_str().unwrap()];
    all.extend_from_slice(args);
    run_reference_with(&librosa_python(), "make_audio_encoder.py", &all);
    path
}

/// A six-template set of 400x300 from the astronaut photo in `dir`/template, with
/// `feature_frames` frames of features of each mode in `dir`/features
/// (tests/reference/make_lipsync_data.py).
pub fn template_set(dir: &Path, feature_frames: usize) -> PathBuf {
    run_reference(
        "make_lipsync_data.py",
        &[
            sample("astronaut").to_str().unwrap(),
            dir.to_str().unwrap(),
            "--templates",
            "6",
            "--width",
            "400",
            "--height",
            "300",
            "--feature-frames",
            &feature_frames.to_string(),
        ],
    );
    dir.join("template")
}

/// The generated U-Net (328, ave; narrow: these tests need its interface, not its speed) and a
/// six-template set of 400x300 from the astronaut photo.
pub fn lipsync_inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let unet = dir.join("unet_ave.onnx");
    run_reference(
        "make_unet328.py",
        &["ave", unet.to_str().unwrap(), "--narrow"],
    );
    (template_set(&dir.join("data"), 4), unet)
}

/// The default audio encoder, the template set and the U-Net of [`lipsync_inputs`], made once
/// per test process in a folder of their own (three Python scripts, 2-3 s, that each test would
/// otherwise run again for the same files), which the next run clears. For tests that read them
/// and change nothing: (encoder, template folder, U-Net).
pub fn shared_speech_inputs() -> &'static (PathBuf, PathBuf, PathBuf) {
    static INPUTS: std::sync::OnceLock<(PathBuf, PathBuf, PathBuf)> = std::sync::OnceLock::new();
    INPUTS.get_or_init(|| {
        let dir = temp_dir_of("speech-inputs", "");
        let encoder = encoder_model(&dir, "encoder.onnx", &[]);
        let (template, unet) = lipsync_inputs(&dir);
        (encoder, template, unet)
    })
}

/// The PyTorch venv's Python, or why there is none (`scripts/setup.sh --torch` makes it).
pub fn torch_python() -> Result<PathBuf, String> {
    let venv = std::env::var_os("NEURALFX_TORCH_VENV")
        .ok_or("NEURALFX_TORCH_VENV is not set (scripts/env.sh sets it)")?;
    let python = Path::new(&venv).join("bin/python");
    if python.is_file() {
        Ok(python)
    } else {
        Err(format!(
            "no PyTorch venv at {} (scripts/setup.sh --torch installs it)",
            Path::new(&venv).display()
        ))
    }
}

/// Runs `command`, which must succeed, and gives what it printed.
pub fn run_ok(command: &mut Command) -> String {
    let output = command.output().expect("start the command");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?}:\n{printed}");
    printed
}

/// PyTorch's Python and a stand-in SyncTalk_2D checkout (tests/reference/fake_synctalk.py with
/// `arguments`) in a fresh `neuralfx-<kind>-<pid>` folder, as (python, folder, checkout); `None`,
/// having said why, where `scripts/setup.sh --torch` did not install PyTorch.
pub fn synctalk_checkout(kind: &str, arguments: &[&str]) -> Option<(PathBuf, PathBuf, PathBuf)> {
    let python = match torch_python() {
        Ok(python) => python,
        Err(reason) => {
            println!("skipped: {reason}");
            return None;
        }
    };
    let dir = temp_dir_of(kind, "");
    let checkout = dir.join("SyncTalk_2D");
    run_ok(
        Command::new(&python)
            .arg(reference_script("fake_synctalk.py"))
            .arg(&checkout)
            .args(arguments),
    );
    Some((python, dir, checkout))
}
