//! lipsyncsrc against the Python reference of SyncTalk_2D's loop (OpenCV + ONNX Runtime), on
//! generated templates and U-Net-328-shaped models; timing, formats, the MP4 pipeline and every
//! bad input.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use gst::prelude::*;

const FEATURE_FRAMES: usize = 12;
const TEMPLATES: usize = 8;
const WIDTH: usize = 480;
const HEIGHT: usize = 360;

struct Data {
    dir: PathBuf,
}

impl Data {
    fn model(&self, mode: &str) -> PathBuf {
        self.dir.join(format!("unet_{mode}.onnx"))
    }
    fn template(&self) -> PathBuf {
        self.dir.join("template")
    }
    fn features(&self, name: &str) -> PathBuf {
        self.dir.join("features").join(name)
    }
}

/// Models for every mode (and an export that declares its audio input first) and a template
/// folder with features, generated once per test run.
fn data() -> &'static Data {
    static DATA: OnceLock<Data> = OnceLock::new();
    DATA.get_or_init(|| {
        // Earlier runs' data (hundreds of MB of models) goes once its test process is gone.
        let dir = temp_dir_of("lipsync", "");
        for mode in ["ave", "hubert", "wenet"] {
            let out = dir.join(format!("unet_{mode}.onnx"));
            run_reference(
                "make_unet328.py",
                &[mode, out.to_str().unwrap(), "--narrow"],
            );
        }
        let audio_first = dir.join("unet_audio_first.onnx");
        run_reference(
            "make_unet328.py",
            &[
                "ave",
                audio_first.to_str().unwrap(),
                "--audio-first",
                "--seed",
                "7",
                "--narrow",
            ],
        );
        let (templates, width, height, frames) = (
            TEMPLATES.to_string(),
            WIDTH.to_string(),
            HEIGHT.to_string(),
            FEATURE_FRAMES.to_string(),
        );
        run_reference(
            "make_lipsync_data.py",
            &[
                sample("astronaut").to_str().unwrap(),
                dir.to_str().unwrap(),
                "--templates",
                &templates,
                "--width",
                &width,
                "--height",
                &height,
                "--feature-frames",
                &frames,
            ],
        );
        Data { dir }
    })
}

fn element_frames(properties: &str, format: &str) -> Result<Vec<gst::Sample>, String> {
    collect_samples(&format!(
        "lipsyncsrc {properties} ! video/x-raw,format={format} ! appsink name=sink"
    ))
}

/// Renders with the element and with the Python reference and compares every frame.
/// `options` pairs lipsyncsrc properties with the reference's matching flags.
fn assert_matches_reference(model: &Path, features: &Path, mode: &str, options: (&str, &[&str])) {
    assert_model_matches_reference(model, model, features, mode, options);
}

/// As [`assert_matches_reference`], the element running `element_model` and the reference
/// `reference_model`.
fn assert_model_matches_reference(
    reference_model: &Path,
    element_model: &Path,
    features: &Path,
    mode: &str,
    options: (&str, &[&str]),
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static RUN: AtomicUsize = AtomicUsize::new(0);
    let d = data();
    let reference_file = d.dir.join(format!(
        "reference-{}.raw",
        RUN.fetch_add(1, Ordering::SeqCst)
    ));
    let template = d.template();
    let mut args = vec![
        reference_model.to_str().unwrap(),
        template.to_str().unwrap(),
        features.to_str().unwrap(),
        mode,
        reference_file.to_str().unwrap(),
    ];
    args.extend_from_slice(options.1);
    run_reference("lipsync_reference.py", &args);
    let reference = std::fs::read(&reference_file).unwrap();
    std::fs::remove_file(&reference_file).unwrap();

    let properties = format!(
        "model={} template={} features={} mode={mode} {}",
        element_model.display(),
        template.display(),
        features.display(),
        options.0
    );
    let samples = element_frames(&properties, "BGR").unwrap();
    let frame_bytes = WIDTH * HEIGHT * 3;
    assert_eq!(samples.len(), reference.len() / frame_bytes, "frame count");
    assert_eq!(samples.len(), FEATURE_FRAMES);
    for (i, sample) in samples.iter().enumerate() {
        let (_, ours) = packed_pixels(sample);
        let value = psnr(&ours, &reference[i * frame_bytes..(i + 1) * frame_bytes]);
        assert!(
            value >= 40.0,
            "{mode} {}: frame {i} PSNR {value:.1} dB < 40",
            features.display()
        );
    }
}

const NO_OPTIONS: (&str, &[&str]) = ("", &[]);
const START_AT_2: (&str, &[&str]) = ("start-frame=2", &["--start-frame", "2"]);

#[test]
fn ave_per_frame_features_match_the_reference() {
    if without_set_up() {
        return;
    }
    assert_matches_reference(
        &data().model("ave"),
        &data().features("ave.npy"),
        "ave",
        NO_OPTIONS,
    );
}

#[test]
fn ave_windowed_bin_features_match_the_reference() {
    if without_set_up() {
        return;
    }
    assert_matches_reference(
        &data().model("ave"),
        &data().features("ave_windowed.bin"),
        "ave",
        NO_OPTIONS,
    );
}

#[test]
fn hubert_per_frame_and_windowed_features_match_the_reference() {
    if without_set_up() {
        return;
    }
    assert_matches_reference(
        &data().model("hubert"),
        &data().features("hubert.npy"),
        "hubert",
        NO_OPTIONS,
    );
    assert_matches_reference(
        &data().model("hubert"),
        &data().features("hubert_windowed.bin"),
        "hubert",
        NO_OPTIONS,
    );
    assert_matches_reference(
        &data().model("hubert"),
        &data().features("hubert.npy"),
        "hubert",
        START_AT_2,
    );
}

#[test]
fn wenet_per_frame_and_windowed_features_match_the_reference() {
    if without_set_up() {
        return;
    }
    assert_matches_reference(
        &data().model("wenet"),
        &data().features("wenet.npy"),
        "wenet",
        NO_OPTIONS,
    );
    assert_matches_reference(
        &data().model("wenet"),
        &data().features("wenet_windowed.bin"),
        "wenet",
        NO_OPTIONS,
    );
    assert_matches_reference(
        &data().model("wenet"),
        &data().features("wenet_windowed.bin"),
        "wenet",
        START_AT_2,
    );
}

#[test]
fn start_frame_matches_the_reference() {
    if without_set_up() {
        return;
    }
    assert_matches_reference(
        &data().model("ave"),
        &data().features("ave.npy"),
        "ave",
        ("start-frame=3", &["--start-frame", "3"]),
    );
}

#[test]
fn parsing_keeps_protected_pixels_like_the_reference() {
    if without_set_up() {
        return;
    }
    assert_matches_reference(
        &data().model("ave"),
        &data().features("ave.npy"),
        "ave",
        ("parsing=true", &["--parsing"]),
    );
}

#[test]
fn a_unet_with_float16_inputs_and_outputs_matches_the_reference() {
    if without_set_up() {
        return;
    }
    // Casts at the edges, float32 inside (tests/reference/float16_io.py), as exporters leave
    // models; the reference runs the float32 original.
    let model = data().model("ave");
    let converted = data().dir.join("unet_ave_float16_io.onnx");
    let counts = run_reference(
        "float16_io.py",
        &[model.to_str().unwrap(), converted.to_str().unwrap()],
    );
    assert_eq!(counts.trim(), "2 1", "float16 inputs and output written");
    assert_model_matches_reference(
        &model,
        &converted,
        &data().features("ave.npy"),
        "ave",
        NO_OPTIONS,
    );
}

#[test]
fn inputs_are_found_by_shape_not_name_or_order() {
    if without_set_up() {
        return;
    }
    let model = data().dir.join("unet_audio_first.onnx");
    assert_matches_reference(&model, &data().features("ave.npy"), "ave", NO_OPTIONS);
}

#[test]
fn timestamps_follow_the_mode_frame_rate_and_eos_ends_the_features() {
    if without_set_up() {
        return;
    }
    let d = data();
    for (mode, frame_ms) in [("ave", 40u64), ("wenet", 50)] {
        let samples = element_frames(
            &format!(
                "model={} template={} features={} mode={mode}",
                d.model(mode).display(),
                d.template().display(),
                d.features(&format!("{mode}.npy")).display()
            ),
            "RGBx",
        )
        .unwrap();
        assert_eq!(
            samples.len(),
            FEATURE_FRAMES,
            "{mode}: one frame per feature row, then EOS"
        );
        let caps = samples[0].caps().unwrap().structure(0).unwrap().to_owned();
        assert_eq!(
            caps.get::<gst::Fraction>("framerate").unwrap(),
            gst::Fraction::new(1000 / frame_ms as i32, 1)
        );
        assert_eq!(
            (
                caps.get::<i32>("width").unwrap(),
                caps.get::<i32>("height").unwrap()
            ),
            (WIDTH as i32, HEIGHT as i32)
        );
        for (i, sample) in samples.iter().enumerate() {
            let buffer = sample.buffer().unwrap();
            assert_eq!(
                buffer.pts(),
                Some(gst::ClockTime::from_mseconds(i as u64 * frame_ms)),
                "{mode} frame {i}"
            );
            assert_eq!(
                buffer.duration(),
                Some(gst::ClockTime::from_mseconds(frame_ms))
            );
        }
    }
}

#[test]
fn every_output_format_carries_the_same_picture() {
    if without_set_up() {
        return;
    }
    let d = data();
    let properties = format!(
        "model={} template={} features={} num-buffers=3",
        d.model("ave").display(),
        d.template().display(),
        d.features("ave.npy").display()
    );
    let bgr: Vec<Vec<u8>> = element_frames(&properties, "BGR")
        .unwrap()
        .iter()
        .map(|s| packed_pixels(s).1)
        .collect();
    assert_eq!(bgr.len(), 3, "num-buffers limits the output");
    for (format, bpp, order) in [
        ("RGB", 3, [2, 1, 0]),
        ("BGRx", 4, [0, 1, 2]),
        ("RGBx", 4, [2, 1, 0]),
    ] {
        let frames = element_frames(&properties, format).unwrap();
        for (frame, reference) in frames.iter().zip(&bgr) {
            let (_, pixels) = packed_pixels(frame);
            let as_bgr: Vec<u8> = pixels
                .chunks_exact(bpp)
                .flat_map(|p| [p[order[0]], p[order[1]], p[order[2]]])
                .collect();
            assert_eq!(&as_bgr, reference, "{format}");
        }
    }
}

/// lipsyncsrc with the generated ave model, templates and features, plus `properties`, into `sink`.
fn ave_pipeline(properties: &str, sink: &str) -> gst::Pipeline {
    let d = data();
    init();
    gst::parse::launch(&format!(
        "lipsyncsrc {properties} model={} template={} features={} ! {sink}",
        d.model("ave").display(),
        d.template().display(),
        d.features("ave.npy").display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap()
}

#[test]
fn stats_count_frames_and_time_inside_the_model() {
    if without_set_up() {
        return;
    }
    let pipeline = ave_pipeline("name=src num-buffers=5", "fakesink");
    let source = pipeline.by_name("src").unwrap();
    let started = std::time::Instant::now();
    run_to_eos(&pipeline).unwrap();
    let elapsed = started.elapsed();
    let stats = source.property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(stats.get::<u64>("frames").unwrap(), 5);
    let model_time = std::time::Duration::from_nanos(stats.get::<u64>("model-time").unwrap());
    // Five runs of a U-Net of real widths take measurable time, and less than the whole run.
    assert!(
        model_time > std::time::Duration::from_millis(1) && model_time < elapsed,
        "model-time {model_time:?} of a {elapsed:?} run"
    );
}

#[test]
fn live_mode_delivers_each_frame_when_the_clock_reaches_its_time() {
    if without_set_up() {
        return;
    }
    let d = data();
    init();
    let source = gst::ElementFactory::make("lipsyncsrc")
        .property("is-live", true)
        .property("num-buffers", 4i32)
        .property("model", d.model("ave").to_str().unwrap())
        .property("template", d.template().to_str().unwrap())
        .property("features", d.features("ave.npy").to_str().unwrap())
        .build()
        .unwrap();
    // On a TestClock time moves only when the test says: a frame made early waits for its
    // time, however fast or slow the machine made it.
    let mut h = gst_check::Harness::with_element(&source, None, Some("src"));
    h.use_testclock();
    h.play();
    let clock = h.testclock().unwrap();
    for frame in 0..4u64 {
        let due = gst::ClockTime::from_mseconds(40 * frame);
        let pending = clock.wait_for_next_pending_id();
        assert_eq!(
            pending.time(),
            due,
            "frame {frame} waits for its running time"
        );
        assert_eq!(
            h.buffers_in_queue(),
            0,
            "frame {frame} left before its time"
        );
        clock.set_time(due);
        // Not process_id(): gstreamer-check 0.25 passes the id without the reference that
        // gst_test_clock_process_id() takes over, and the id is freed twice (a crash later,
        // in another test's thread).
        let processed = clock
            .process_next_clock_id()
            .expect("the frame's wait is due");
        assert_eq!(processed.time(), due);
        let out = h.pull().unwrap();
        assert_eq!(out.pts(), Some(due));
    }
}

#[test]
fn stopping_a_live_source_returns_promptly_whenever_the_stop_comes() {
    if without_set_up() {
        return;
    }
    // The pipeline's base time an hour ahead: every live frame waits for its time for ever
    // unless the stop wakes it. Stops land at different points of the first frame: while it is
    // being made (the model's run, when an unlock used to be lost) and while it waits.
    for delay_ms in [0u64, 5, 15, 30, 60, 120, 250] {
        let pipeline = ave_pipeline("is-live=true", "fakesink sync=false");
        let clock = gst::SystemClock::obtain();
        pipeline.use_clock(Some(&clock));
        pipeline.set_start_time(gst::ClockTime::NONE);
        pipeline.set_base_time(clock.time() + gst::ClockTime::from_seconds(3600));
        pipeline.set_state(gst::State::Playing).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let (done, stopped) = std::sync::mpsc::channel();
        let stopping = pipeline.clone();
        std::thread::spawn(move || {
            let _ = stopping.set_state(gst::State::Null);
            let _ = done.send(());
        });
        assert!(
            stopped
                .recv_timeout(std::time::Duration::from_secs(5))
                .is_ok(),
            "a stop {delay_ms} ms after PLAYING did not return"
        );
    }
}

/// Writes `samples` of a test tone at `rate` Hz, mono, as a wav at `path`.
fn write_tone_wav(path: &Path, rate: u64, samples: u64) {
    let wav = gst::parse::launch(&format!(
        "audiotestsrc num-buffers=1 samplesperbuffer={samples} ! audio/x-raw,rate={rate},channels=1 \
         ! wavenc ! filesink location={}",
        path.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    run_to_eos(&wav).unwrap();
    wav.set_state(gst::State::Null).unwrap();
}

#[test]
fn pipeline_script_writes_mp4_with_video_and_speech() {
    if without_set_up() {
        return;
    }
    let d = data();
    init();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pipelines/lipsync-to-mp4.sh");
    // The script on the ave model, template and features with `speech`, then `arguments`.
    let render = |speech: &Path, output: &Path, arguments: &[&str]| {
        std::process::Command::new(&script)
            .args([
                &d.model("ave"),
                &d.template(),
                &d.features("ave.npy"),
                speech,
                output,
            ])
            .args(arguments)
            .output()
            .unwrap()
    };
    let speech = d.dir.join("speech.wav");
    // Speech as long as the video: 12 frames at 25 fps.
    write_tone_wav(
        &speech,
        44100,
        (44100.0 * FEATURE_FRAMES as f64 / 25.0) as u64,
    );
    let output = d.dir.join("talking.mp4");
    // A property before MODE: both may come in any order after the five files.
    let status = render(&speech, &output, &["start-frame=0", "ave"]);
    let stderr = String::from_utf8_lossy(&status.stderr);
    assert!(status.status.success(), "{stderr}");
    assert!(
        !stderr.contains("warning:"),
        "speech and features agree: {stderr}"
    );

    // Speech a second long against 12 frames (0.48 s): a warning says which is longer.
    let long_speech = d.dir.join("long-speech.wav");
    write_tone_wav(&long_speech, 44100, 44100);
    let mismatched = render(&long_speech, &d.dir.join("mismatched.mp4"), &[]);
    let stderr = String::from_utf8_lossy(&mismatched.stderr);
    assert!(mismatched.status.success(), "{stderr}");
    assert!(
        stderr.contains("the speech is longer by 0.52 s"),
        "{stderr}"
    );
    // Speech of 5 s and 70 s: lengths past 2^31 ns (where mawk's %d stops) are told right.
    for seconds in [5u64, 70] {
        let speech = d.dir.join(format!("speech-{seconds}s.wav"));
        write_tone_wav(&speech, 16000, seconds * 16000);
        let run = render(&speech, &d.dir.join(format!("speech-{seconds}s.mp4")), &[]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "{stderr}");
        let told = format!(
            "the speech lasts {seconds}.00 s: the speech is longer by {}.52 s",
            seconds - 1
        );
        assert!(stderr.contains(&told), "{seconds} s: {stderr}");
    }
    // An argument that is neither MODE nor key=value is refused, naming it.
    let refused = render(&long_speech, &d.dir.join("refused.mp4"), &["avee"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unexpected argument 'avee'"));

    let discoverer = gst_pbutils::Discoverer::new(gst::ClockTime::from_seconds(30)).unwrap();
    let info = discoverer
        .discover_uri(&format!("file://{}", output.display()))
        .unwrap();
    assert_eq!(info.video_streams().len(), 1, "one video stream");
    assert_eq!(info.audio_streams().len(), 1, "one audio stream");
    let video = &info.video_streams()[0];
    assert_eq!(
        (video.width(), video.height()),
        (WIDTH as u32, HEIGHT as u32)
    );
    let duration = info.duration().unwrap().mseconds();
    assert!(
        (440..=560).contains(&duration),
        "12 frames at 25 fps last 480 ms, got {duration} ms"
    );
    // Players refuse H.264 4:4:4 (what videoconvert ! x264enc makes of BGR).
    let (profile, chroma) = h264_profile(&output);
    assert!(
        !profile.contains("4:4:4") && chroma == "4:2:0",
        "{profile}, {chroma}"
    );
}

// ---- bad input: each fails at start with an element error naming what is wrong ----

/// A copy of the generated template folder, for a test to break.
fn template_copy(name: &str) -> PathBuf {
    let source = data().template();
    let copy = data().dir.join(format!("broken-{name}"));
    let _ = std::fs::remove_dir_all(&copy);
    for sub in ["full_body_img", "landmarks", "parsing"] {
        std::fs::create_dir_all(copy.join(sub)).unwrap();
        for entry in std::fs::read_dir(source.join(sub)).unwrap().flatten() {
            std::fs::copy(entry.path(), copy.join(sub).join(entry.file_name())).unwrap();
        }
    }
    copy
}

fn lipsync_error(model: &Path, template: &Path, features: &Path, mode: &str) -> String {
    start_error(&format!(
        "lipsyncsrc model={} template={} features={} mode={mode} ! fakesink",
        model.display(),
        template.display(),
        features.display()
    ))
}

fn template_error(template: &Path) -> String {
    lipsync_error(
        &data().model("ave"),
        template,
        &data().features("ave.npy"),
        "ave",
    )
}

fn features_error(features: &Path) -> String {
    lipsync_error(&data().model("ave"), &data().template(), features, "ave")
}

#[test]
fn missing_template_folder_is_named() {
    if without_set_up() {
        return;
    }
    let err = template_error(Path::new("/nonexistent/May"));
    assert!(
        err.contains("/nonexistent/May") && err.contains("full_body_img"),
        "{err}"
    );
}

#[test]
fn missing_landmarks_file_is_named() {
    if without_set_up() {
        return;
    }
    let template = template_copy("no-lms");
    std::fs::remove_file(template.join("landmarks/5.lms")).unwrap();
    let err = template_error(&template);
    assert!(err.contains("landmarks/5.lms"), "{err}");
}

#[test]
fn landmarks_with_too_few_points_are_rejected() {
    if without_set_up() {
        return;
    }
    let template = template_copy("few-points");
    std::fs::write(template.join("landmarks/2.lms"), "1 2\n3 4\n5 6\n").unwrap();
    let err = template_error(&template);
    assert!(
        err.contains("landmarks/2.lms") && err.contains("has 3 points"),
        "{err}"
    );
}

#[test]
fn landmarks_that_are_not_numbers_are_rejected() {
    if without_set_up() {
        return;
    }
    let template = template_copy("not-numbers");
    let text = std::fs::read_to_string(template.join("landmarks/1.lms")).unwrap();
    std::fs::write(template.join("landmarks/1.lms"), text.replacen('.', "x", 1)).unwrap();
    let err = template_error(&template);
    assert!(
        err.contains("landmarks/1.lms")
            && err.contains("line 1")
            && err.contains("not two numbers"),
        "{err}"
    );
}

fn landmarks_with(points: &[(f32, f32)]) -> String {
    let mut all = vec![(10.0f32, 10.0f32); 68];
    for (i, p) in points.iter().enumerate() {
        all[[1, 31, 52][i]] = *p;
    }
    all.iter().map(|(x, y)| format!("{x} {y}\n")).collect()
}

#[test]
fn crop_outside_the_image_or_empty_is_rejected() {
    if without_set_up() {
        return;
    }
    let template = template_copy("outside");
    // Square from x 400 to 520 in a 480-wide image.
    std::fs::write(
        template.join("landmarks/0.lms"),
        landmarks_with(&[(400.0, 50.0), (520.0, 60.0), (450.0, 40.0)]),
    )
    .unwrap();
    let err = template_error(&template);
    assert!(
        err.contains("landmarks/0.lms") && err.contains("falls outside the 480x360 image"),
        "{err}"
    );

    let template = template_copy("empty");
    std::fs::write(
        template.join("landmarks/4.lms"),
        landmarks_with(&[(200.0, 50.0), (200.9, 60.0), (210.0, 40.0)]),
    )
    .unwrap();
    let err = template_error(&template);
    assert!(
        err.contains("landmarks/4.lms") && err.contains("empty face crop"),
        "{err}"
    );
}

#[test]
fn missing_jpeg_is_named() {
    if without_set_up() {
        return;
    }
    let template = template_copy("no-jpeg");
    std::fs::rename(
        template.join("full_body_img/3.jpg"),
        template.join("full_body_img/30.jpg"),
    )
    .unwrap();
    let err = template_error(&template);
    assert!(
        err.contains("full_body_img/3.jpg") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn corrupt_jpeg_fails_naming_the_file() {
    if without_set_up() {
        return;
    }
    let template = template_copy("corrupt-jpeg");
    std::fs::write(template.join("full_body_img/0.jpg"), b"not a jpeg").unwrap();
    let err = template_error(&template);
    assert!(
        err.contains("full_body_img/0.jpg") && err.contains("not a readable JPEG"),
        "{err}"
    );
}

#[test]
fn features_bin_disagreeing_with_its_json_is_rejected() {
    if without_set_up() {
        return;
    }
    let dir = data().dir.join("bad-bin");
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("short.bin");
    std::fs::write(&bin, vec![0u8; 512 * 4 * 3]).unwrap();
    std::fs::write(
        dir.join("short.bin.json"),
        r#"{"num_frames": 4, "feature_size": 512, "shape": [4, 512]}"#,
    )
    .unwrap();
    let err = features_error(&bin);
    assert!(
        err.contains("short.bin") && err.contains("has 6144 bytes") && err.contains("8192 bytes"),
        "{err}"
    );
}

/// Writes a version-1 .npy file of `descr` with `shape` holding `data`.
fn write_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn npy_of_the_wrong_dtype_is_rejected() {
    if without_set_up() {
        return;
    }
    let path = data().dir.join("float64.npy");
    write_npy(&path, "<f8", &[4, 512], &vec![0u8; 4 * 512 * 8]);
    let err = features_error(&path);
    assert!(
        err.contains("float64.npy") && err.contains("not a float32 .npy"),
        "{err}"
    );
}

#[test]
fn npy_of_the_wrong_shape_states_the_accepted_shapes() {
    if without_set_up() {
        return;
    }
    let path = data().dir.join("wrong-shape.npy");
    write_npy(&path, "<f4", &[4, 100], &vec![0u8; 4 * 100 * 4]);
    let err = features_error(&path);
    assert!(
        err.contains("wrong-shape.npy")
            && err.contains("100 values per frame")
            && err.contains("512")
            && err.contains("8192 = 32x16x16"),
        "{err}"
    );
}

#[test]
fn model_whose_inputs_do_not_match_the_mode_is_rejected() {
    if without_set_up() {
        return;
    }
    let d = data();
    let err = lipsync_error(
        &d.model("ave"),
        &d.template(),
        &d.features("hubert.npy"),
        "hubert",
    );
    assert!(
        err.contains("unet_ave.onnx")
            && err.contains("[1,32,16,16]")
            && err.contains("[1,32,32,32]"),
        "{err}"
    );
}

#[test]
fn missing_model_property_is_named() {
    if without_set_up() {
        return;
    }
    let d = data();
    let err = start_error(&format!(
        "lipsyncsrc template={} features={} ! fakesink",
        d.template().display(),
        d.features("ave.npy").display()
    ));
    assert!(err.contains("property 'model' is not set"), "{err}");
}

#[test]
fn a_unet_whose_output_is_not_nchw_is_refused_showing_both_shapes() {
    if without_set_up() {
        return;
    }
    let d = data();
    let err = lipsync_error(
        &test_model("unet_nhwc.onnx"),
        &d.template(),
        &d.features("ave.npy"),
        "ave",
    );
    assert!(
        err.contains("unet_nhwc.onnx")
            && err.contains("[1,320,320,3]")
            && err.contains("[1,3,320,320]"),
        "{err}"
    );
}

#[test]
fn nan_from_the_model_shows_the_template_face_with_one_warning() {
    if without_set_up() {
        return;
    }
    let d = data();
    let (samples, warnings) = collect_samples_and_warnings(&format!(
        "lipsyncsrc model={} template={} features={} num-buffers=3 \
         ! video/x-raw,format=BGR ! appsink name=sink",
        test_model("unet_nan.onnx").display(),
        d.template().display(),
        d.features("ave.npy").display()
    ))
    .unwrap();
    let frames: Vec<Vec<u8>> = samples.iter().map(|s| packed_pixels(s).1).collect();
    assert_eq!(frames.len(), 3, "every feature row still gives a frame");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("unet_nan.onnx") && warnings[0].contains("NaN or infinite"),
        "{}",
        warnings[0]
    );
    // Frames 0, 1, 2 use templates 1, 2, 3 (the ping-pong cycle): with every model value NaN,
    // each frame is its template, the face only passed through the 328 crop and back.
    for (frame, pixels) in frames.iter().enumerate() {
        let template = gstneuralfx::talking_head::templates::decode_jpeg(
            &d.template()
                .join(format!("full_body_img/{}.jpg", frame + 1)),
        )
        .unwrap();
        let quality = psnr(pixels, &template.data);
        assert!(
            quality > 30.0,
            "frame {frame}: PSNR {quality:.1} dB against its template"
        );
    }
}

#[test]
fn grey_cmyk_and_truncated_jpegs_decode_as_opencv_reads_them() {
    if without_set_up() {
        return;
    }
    use gstneuralfx::talking_head::templates::{decode_jpeg, read_jpeg_header};
    let dir = data().dir.join("jpeg-variants");
    run_reference(
        "jpeg_variants.py",
        &[
            sample("astronaut").to_str().unwrap(),
            dir.to_str().unwrap(),
            "160",
            "120",
        ],
    );
    for name in ["grey", "cmyk", "colour", "truncated"] {
        let path = dir.join(format!("{name}.jpg"));
        let ours = decode_jpeg(&path).unwrap();
        let opencv = std::fs::read(dir.join(format!("{name}.bgr"))).unwrap();
        assert_eq!((ours.width, ours.height), (160, 120), "{name}");
        // Decoders differ by a few levels in IDCT rounding and chroma upsampling (the colour
        // file here too); a wrong channel order, an unconverted CMYK or a black remainder
        // would cost tens of dB.
        // A cut-off file is compared where its data reaches (the first third of its rows); the
        // remainder is filler, which differs between decoders.
        let compared = if name == "truncated" {
            160 * 40 * 3
        } else {
            opencv.len()
        };
        let quality = psnr(&ours.data[..compared], &opencv[..compared]);
        println!("{name}: {quality:.1} dB against cv2.imread");
        assert!(
            quality >= 40.0,
            "{name}: {quality:.1} dB against cv2.imread"
        );
        let header = read_jpeg_header(&path).unwrap();
        assert_eq!((header.width, header.height), (160, 120), "{name}");
        assert_eq!(header.truncated, name == "truncated", "{name}");
    }
}

#[test]
fn a_truncated_template_plays_with_one_warning_naming_it() {
    if without_set_up() {
        return;
    }
    let template = template_copy("truncated");
    let jpeg = template.join("full_body_img/3.jpg");
    let bytes = std::fs::read(&jpeg).unwrap();
    std::fs::write(&jpeg, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let d = data();
    let (samples, warnings) = collect_samples_and_warnings(&format!(
        "lipsyncsrc model={} template={} features={} num-buffers=4 ! appsink name=sink",
        d.model("ave").display(),
        template.display(),
        d.features("ave.npy").display()
    ))
    .unwrap();
    assert_eq!(samples.len(), 4);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("full_body_img/3.jpg") && warnings[0].contains("Premature end"),
        "{}",
        warnings[0]
    );
}

#[test]
fn a_broken_template_beyond_the_cache_fails_at_start() {
    if without_set_up() {
        return;
    }
    // With no templates cached, nothing but the headers is read at start: they must catch it.
    let template = template_copy("late-corrupt");
    std::fs::write(template.join("full_body_img/6.jpg"), b"not a jpeg at all").unwrap();
    let d = data();
    let err = start_error(&format!(
        "lipsyncsrc model={} template={} features={} max-cached-frames=0 ! fakesink",
        d.model("ave").display(),
        template.display(),
        d.features("ave.npy").display()
    ));
    assert!(
        err.contains("full_body_img/6.jpg") && err.contains("not a readable JPEG"),
        "{err}"
    );
}

#[test]
fn a_folder_for_features_and_a_file_for_the_template_are_named_as_such() {
    if without_set_up() {
        return;
    }
    let d = data();
    let err = features_error(&d.dir);
    assert!(err.contains("is a folder"), "{err}");
    let err = template_error(&d.features("ave.npy"));
    assert!(
        err.contains("ave.npy") && err.contains("is a file"),
        "{err}"
    );
}

#[test]
fn after_an_error_the_source_starts_again_with_good_input() {
    if without_set_up() {
        return;
    }
    let d = data();
    let pipeline = ave_pipeline("name=src num-buffers=2", "fakesink");
    let source = pipeline.by_name("src").unwrap();
    source.set_property("features", "/nonexistent/features.npy");
    let err = run_to_eos(&pipeline).unwrap_err();
    assert!(err.contains("/nonexistent/features.npy"), "{err}");
    pipeline.set_state(gst::State::Null).unwrap();
    source.set_property("features", d.features("ave.npy").to_str().unwrap());
    run_to_eos(&pipeline).expect("the same element plays once its features are good");
    pipeline.set_state(gst::State::Null).unwrap();
    let stats = source.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("frames").unwrap(), 2);
}

#[test]
fn a_start_that_fails_posts_one_error_naming_the_file() {
    if without_set_up() {
        return;
    }
    init();
    let pipeline = gst::parse::launch(
        "lipsyncsrc model=/nonexistent/unet.onnx template=/nonexistent features=/nonexistent/ave.npy \
         ! fakesink",
    )
    .unwrap();
    assert!(pipeline.set_state(gst::State::Paused).is_err());
    let bus = pipeline.bus().unwrap();
    let errors: Vec<String> = std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Error]))
        .filter_map(|message| match message.view() {
            gst::MessageView::Error(err) => Some(err.error().to_string()),
            _ => None,
        })
        .collect();
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("/nonexistent"), "{errors:?}");
}

#[test]
fn duration_is_known_and_a_flushing_seek_starts_at_its_frame() {
    if without_set_up() {
        return;
    }
    let d = data();
    init();
    let frames = |seek_to: Option<gst::ClockTime>| {
        let pipeline = gst::parse::launch(&format!(
            "lipsyncsrc model={} template={} features={} ! video/x-raw,format=BGR \
             ! appsink name=sink sync=false",
            d.model("ave").display(),
            d.template().display(),
            d.features("ave.npy").display()
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let sink = pipeline
            .by_name("sink")
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        pipeline.set_state(gst::State::Paused).unwrap();
        pipeline.state(gst::ClockTime::from_seconds(60)).0.unwrap();
        // 12 feature frames at 25 fps.
        assert_eq!(
            pipeline.query_duration::<gst::ClockTime>(),
            Some(gst::ClockTime::from_mseconds(480))
        );
        if let Some(position) = seek_to {
            pipeline
                .seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE, position)
                .unwrap();
            pipeline.state(gst::ClockTime::from_seconds(60)).0.unwrap();
        }
        pipeline.set_state(gst::State::Playing).unwrap();
        let mut out = Vec::new();
        while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(30)) {
            out.push((
                sample.buffer().unwrap().pts().unwrap(),
                packed_pixels(&sample).1,
            ));
        }
        pipeline.set_state(gst::State::Null).unwrap();
        out
    };
    let all = frames(None);
    assert_eq!(all.len(), FEATURE_FRAMES);
    // A seek into frame 5 (200..240 ms) starts there: the same frames from 5 on.
    let from_five = frames(Some(gst::ClockTime::from_mseconds(210)));
    assert_eq!(from_five.len(), FEATURE_FRAMES - 5);
    for ((pts, pixels), (expected_pts, expected)) in from_five.iter().zip(&all[5..]) {
        assert_eq!(pts, expected_pts);
        assert!(pixels == expected, "frame at {pts} differs after the seek");
    }
}

#[test]
fn both_talking_heads_declare_their_shared_properties_alike() {
    init();
    let source = gst::ElementFactory::make("lipsyncsrc").build().unwrap();
    let live = gst::ElementFactory::make("lipsync").build().unwrap();
    let shared = [
        "model",
        "template",
        "audio-encoder",
        "start-frame",
        "parsing",
        "max-cached-frames",
        "backend",
        "server",
        "endpoint",
    ];
    for name in shared {
        let (a, b) = (
            source.find_property(name).unwrap(),
            live.find_property(name).unwrap(),
        );
        assert_eq!(a.value_type(), b.value_type(), "{name}");
        assert_eq!(a.blurb(), b.blurb(), "{name}");
        assert_eq!(a.flags(), b.flags(), "{name}");
        assert_eq!(
            a.default_value().serialize().ok(),
            b.default_value().serialize().ok(),
            "{name}"
        );
    }
    let cache = |element: &gst::Element| {
        element
            .find_property("max-cached-frames")
            .unwrap()
            .downcast::<gst::glib::ParamSpecUInt>()
            .unwrap()
            .minimum()
    };
    assert_eq!(
        (cache(&source), cache(&live)),
        (0, 0),
        "0 keeps none in both"
    );
    // A talking head sends the U-Net's tensors: no payload to choose.
    assert!(source.find_property("payload").is_none() && live.find_property("payload").is_none());
}
