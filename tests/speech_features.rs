//! The `ave` audio features computed in Rust (src/talking_head/speech.rs) against a reference built on
//! librosa (tests/reference/ave_features.py): the mel spectrogram of real speech (espeak-ng) and of
//! tones, and the rows of an encoder-shaped ONNX model with random weights.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::talking_head::*;
use common::*;
use gstneuralfx::inference::Backend;
use gstneuralfx::inference::onnx::{OnnxBackend, SessionOptions};
use gstneuralfx::talking_head::speech::{
    AudioEncoder, ENCODER_WIDTH, MEL_BANDS, MelSpectrogram, encoder_windows, mel_spectrogram,
};

/// A 16 kHz mono 16-bit wav of two tones, written directly.
fn tones(dir: &Path) -> PathBuf {
    let samples: Vec<i16> = (0..24000)
        .map(|i| {
            let t = i as f64 / 16000.0;
            let value = 0.4 * (2.0 * std::f64::consts::PI * 220.0 * t).sin()
                + 0.2 * (2.0 * std::f64::consts::PI * 3100.0 * t).sin();
            (value * 32767.0) as i16
        })
        .collect();
    let path = dir.join("tones.wav");
    let data_len = (samples.len() * 2) as u32;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data_len).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    for value in [16u32, 0x0001_0001, 16000, 32000] {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    bytes.extend_from_slice(&0x0010_0002u32.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data_len.to_le_bytes());
    for sample in samples {
        bytes.extend_from_slice(&sample.to_le_bytes());
    }
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The samples of a 16-bit wav as float32 in [-1, 1), as soundfile reads them.
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let array: ndarray::ArrayD<f32> = ndarray_npy::read_npy(path).unwrap();
    (
        array.shape().to_vec(),
        array.as_standard_layout().iter().copied().collect(),
    )
}

fn largest_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn assert_mel_matches_librosa(wav: &Path) -> MelSpectrogram {
    let reference = wav.with_extension("mel.npy");
    run_reference_with(
        &librosa_python(),
        "ave_features.py",
        &[wav.to_str().unwrap(), reference.to_str().unwrap()],
    );
    let (shape, expected) = read_npy(&reference);
    let ours = mel_spectrogram(&samples_of(wav));
    assert_eq!(shape, vec![ours.frames, MEL_BANDS], "{}", wav.display());
    let largest = largest_difference(&ours.data, &expected);
    println!(
        "{}: {} mel frames, largest difference {largest:e}",
        wav.display(),
        ours.frames
    );
    assert!(largest <= 1e-3, "mel differs by {largest}");
    ours
}

#[test]
fn mel_of_speech_matches_librosa() {
    if without_set_up() {
        return;
    }
    let dir = temp_dir_of("speech-mel", "");
    let wav = spoken(&dir, "The quick brown fox jumps over the lazy dog, twice.");
    let mel = assert_mel_matches_librosa(&wav);
    // Speech, not silence: the mel spans most of its range.
    let (low, high) = mel
        .data
        .iter()
        .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    assert!(low <= -3.5 && high >= 0.5, "{low} {high}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mel_of_tones_matches_librosa() {
    if without_set_up() {
        return;
    }
    let dir = temp_dir_of("speech-tones", "");
    assert_mel_matches_librosa(&tones(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The encoder of make_audio_encoder.py with `args`.
fn load(model: &Path) -> Arc<dyn Backend> {
    init();
    OnnxBackend::load(model, SessionOptions::default()).unwrap()
}

#[test]
fn encoder_rows_match_the_reference_with_fixed_and_dynamic_batches() {
    if without_set_up() {
        return;
    }
    let dir = temp_dir_of("speech-encoder", "");
    let wav = spoken(&dir, "Hello, this is a test of the audio encoder.");
    let dynamic = encoder_model(&dir, "encoder.onnx", &[]);
    let fixed = encoder_model(&dir, "encoder_batch1.onnx", &["--batch", "1"]);
    // A fixed batch that the window count does not fill: the last batch is padded.
    let fixed4 = encoder_model(&dir, "encoder_batch4.onnx", &["--batch", "4"]);
    let (mel_path, rows_path) = (dir.join("mel.npy"), dir.join("rows.npy"));
    run_reference_with(
        &librosa_python(),
        "ave_features.py",
        &[
            wav.to_str().unwrap(),
            mel_path.to_str().unwrap(),
            dynamic.to_str().unwrap(),
            rows_path.to_str().unwrap(),
        ],
    );
    let (mel_shape, mel) = read_npy(&mel_path);
    let (rows_shape, expected) = read_npy(&rows_path);
    // The reference's own mel, windowed here: the encoder alone is compared.
    let reference_mel = MelSpectrogram {
        frames: mel_shape[0],
        data: mel,
    };
    let windows = encoder_windows(&reference_mel, 0).unwrap();
    assert_eq!(windows.len() / (80 * 16), rows_shape[0], "window count");
    assert_ne!(
        rows_shape[0] % 4,
        0,
        "the padding case needs a count that 4 does not divide"
    );
    for model in [&dynamic, &fixed, &fixed4] {
        let encoder = AudioEncoder::new(load(model)).unwrap();
        let rows = encoder.encode(&windows).unwrap();
        assert_eq!(rows.len(), rows_shape[0] * ENCODER_WIDTH);
        let scale = expected.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let largest = largest_difference(&rows, &expected);
        println!(
            "{}: largest row difference {largest:e} (values up to {scale})",
            model.display()
        );
        assert!(largest <= 1e-4 * scale, "rows differ by {largest}");
    }
    // End to end, from the wav: our mel's windows through the encoder.
    let ours = mel_spectrogram(&samples_of(&wav));
    let encoder = AudioEncoder::new(load(&dynamic)).unwrap();
    let rows = encoder.encode(&encoder_windows(&ours, 0).unwrap()).unwrap();
    let scale = expected.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let largest = largest_difference(&rows, &expected);
    println!("end to end: largest row difference {largest:e}");
    assert!(largest <= 1e-3 * scale, "rows differ by {largest}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn encoders_of_the_wrong_shape_are_refused() {
    if without_set_up() {
        return;
    }
    let dir = temp_dir_of("speech-wrong-encoder", "");
    for (args, expected) in [
        (["--wrong-input"], "[?,1,80,20]"),
        (["--wrong-output"], "256"),
    ] {
        let model = encoder_model(&dir, &format!("{}.onnx", &args[0][2..]), &args);
        let err = AudioEncoder::new(load(&model))
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains(expected) && err.contains(model.to_str().unwrap()),
            "{err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Templates, landmarks and a U-Net for lipsyncsrc in `dir`: (template folder, U-Net).
#[test]
fn lipsyncsrc_from_speech_matches_the_reference_loop_on_python_features() {
    if without_set_up() {
        return;
    }
    let dir = temp_dir_of("speech-lipsync", "");
    let wav = spoken(&dir, "Talking heads from speech.");
    let (encoder, template, unet) = shared_speech_inputs();
    let features = dir.join("features.npy");
    run_reference_with(
        &librosa_python(),
        "ave_features.py",
        &[
            wav.to_str().unwrap(),
            dir.join("mel.npy").to_str().unwrap(),
            encoder.to_str().unwrap(),
            dir.join("rows.npy").to_str().unwrap(),
            features.to_str().unwrap(),
        ],
    );
    let reference_file = dir.join("reference.raw");
    run_reference(
        "lipsync_reference.py",
        &[
            unet.to_str().unwrap(),
            template.to_str().unwrap(),
            features.to_str().unwrap(),
            "ave",
            reference_file.to_str().unwrap(),
        ],
    );
    let reference = std::fs::read(&reference_file).unwrap();
    let samples = collect_samples(&format!(
        "lipsyncsrc model={} template={} audio-location={} audio-encoder={} \
         ! video/x-raw,format=BGR ! appsink name=sink",
        unet.display(),
        template.display(),
        wav.display(),
        encoder.display()
    ))
    .unwrap();
    let frame_bytes = 400 * 300 * 3;
    assert_eq!(samples.len(), reference.len() / frame_bytes, "frame count");
    // About 1.5 s of speech: one frame per 40 ms, plus the repeated first and last.
    assert!(samples.len() > 20, "{} frames", samples.len());
    let mut worst = f64::INFINITY;
    for (i, sample) in samples.iter().enumerate() {
        let (_, ours) = packed_pixels(sample);
        let value = psnr(&ours, &reference[i * frame_bytes..(i + 1) * frame_bytes]);
        worst = worst.min(value);
        assert!(value >= 40.0, "frame {i}: PSNR {value:.1} dB < 40");
    }
    println!(
        "{} frames from speech, worst PSNR {worst:.1} dB",
        samples.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compressed_speech_plays_with_as_many_frames() {
    if without_set_up() {
        return;
    }
    let dir = temp_dir_of("speech-ogg", "");
    let wav = spoken(&dir, "Compressed speech works too.");
    let ogg = dir.join("speech.ogg");
    let samples = collect_samples(&format!(
        "filesrc location={} ! wavparse ! audioconvert ! tee name=t \
         t. ! queue ! vorbisenc ! oggmux ! filesink location={} \
         t. ! queue ! fakesink t. ! queue ! appsink name=sink",
        wav.display(),
        ogg.display()
    ));
    assert!(samples.is_ok(), "{samples:?}");
    let (encoder, template, unet) = shared_speech_inputs();
    let frames = |audio: &Path| {
        collect_samples(&format!(
            "lipsyncsrc model={} template={} audio-location={} audio-encoder={} \
             ! video/x-raw,format=BGR ! appsink name=sink",
            unet.display(),
            template.display(),
            audio.display(),
            encoder.display()
        ))
        .unwrap()
        .len()
    };
    let (from_wav, from_ogg) = (frames(&wav), frames(&ogg));
    // Vorbis may pad the end by a few milliseconds.
    assert!(
        from_wav.abs_diff(from_ogg) <= 1,
        "{from_wav} against {from_ogg}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The error message lipsyncsrc stops with, given `properties` besides model and template.
fn lipsync_error(dir: &Path, properties: &str) -> String {
    let (template, unet) = (dir.join("data/template"), dir.join("unet_ave.onnx"));
    start_error(&format!(
        "lipsyncsrc model={} template={} {properties} ! fakesink",
        unet.display(),
        template.display()
    ))
}

#[test]
fn bad_speech_inputs_are_named_errors() {
    if without_set_up() {
        return;
    }
    let dir = temp_dir_of("speech-errors", "");
    let wav = spoken(&dir, "Errors.");
    let encoder = encoder_model(&dir, "encoder.onnx", &[]);
    lipsync_inputs(&dir);
    let short = dir.join("short.wav");
    std::fs::write(&short, {
        let mut bytes = std::fs::read(tones(&dir)).unwrap();
        // 0.1 s: 1600 samples; RIFF and data sizes patched.
        bytes.truncate(44 + 3200);
        bytes[4..8].copy_from_slice(&(36u32 + 3200).to_le_bytes());
        bytes[40..44].copy_from_slice(&3200u32.to_le_bytes());
        bytes
    })
    .unwrap();
    let picture = sample("astronaut");
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            format!("audio-location={}", wav.display()),
            vec!["'audio-encoder' is not set"],
        ),
        (
            format!(
                "audio-location=/nonexistent/speech.wav audio-encoder={}",
                encoder.display()
            ),
            vec![
                "'audio-location'",
                "/nonexistent/speech.wav",
                "does not exist",
            ],
        ),
        (
            format!(
                "audio-location={} audio-encoder={}",
                picture.display(),
                encoder.display()
            ),
            vec![
                "'audio-location'",
                "astronaut.png",
                "no audio stream",
                "video/x-raw",
            ],
        ),
        (
            format!(
                "audio-location={} audio-encoder={}",
                short.display(),
                encoder.display()
            ),
            vec!["'audio-location'", "short.wav", "1600 samples", "0.2 s"],
        ),
        (
            format!(
                "audio-location={} audio-encoder={} features={}",
                wav.display(),
                encoder.display(),
                wav.display()
            ),
            vec!["'features' and 'audio-location'"],
        ),
        (
            format!(
                "mode=hubert audio-location={} audio-encoder={}",
                wav.display(),
                encoder.display()
            ),
            vec!["mode=hubert"],
        ),
        (
            format!(
                "audio-location={} audio-encoder={}",
                wav.display(),
                encoder_model(&dir, "wrong.onnx", &["--wrong-output"]).display()
            ),
            vec!["'audio-encoder'", "wrong.onnx", "512"],
        ),
    ];
    for (properties, expected) in cases {
        let started = std::time::Instant::now();
        let err = lipsync_error(&dir, &properties);
        for part in expected {
            assert!(
                err.contains(part),
                "{properties}: {err} (expected '{part}')"
            );
        }
        assert!(
            started.elapsed().as_secs() < 30,
            "{properties}: took {:?}",
            started.elapsed()
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mp4_script_renders_speech_alone_with_its_sound() {
    if without_set_up() {
        return;
    }
    let dir = temp_dir_of("speech-mp4", "");
    let wav = spoken(&dir, "A talking head from a sound file, no Python.");
    let (encoder, template, unet) = shared_speech_inputs();
    let output = dir.join("talking.mp4");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pipelines/lipsync-to-mp4.sh");
    let run = Command::new(&script)
        .args([unet, template, &wav, &output])
        .arg(format!("audio-encoder={}", encoder.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let discoverer = gst_pbutils::Discoverer::new(gst::ClockTime::from_seconds(30)).unwrap();
    let info = discoverer
        .discover_uri(&gst::glib::filename_to_uri(&output, None).unwrap())
        .unwrap();
    assert_eq!(info.video_streams().len(), 1, "one video stream");
    assert_eq!(info.audio_streams().len(), 1, "one audio stream");
    let speech = discoverer
        .discover_uri(&gst::glib::filename_to_uri(&wav, None).unwrap())
        .unwrap()
        .duration()
        .unwrap()
        .mseconds() as i64;
    let video = info.duration().unwrap().mseconds() as i64;
    // N + 2 feature rows for about speech * 25 frames: within three frames (120 ms).
    assert!(
        (video - speech).abs() <= 120,
        "video {video} ms, speech {speech} ms"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
