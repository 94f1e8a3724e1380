//! Shared set-up for the integration tests: GStreamer with the plugin registered, the paths
//! scripts/setup.sh fills, the Python reference venv, and pipeline helpers.
#![allow(dead_code)]

pub mod foreground_oracles;
pub mod forkserver;
pub mod held_out;
pub mod held_request;
pub mod readme;
pub mod talking_head;
pub mod tcp_proxy;
pub mod triton_server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use gst::prelude::*;
use gst_video::prelude::*;

/// True when this machine lacks scripts/test.sh's set-up (its environment, scripts/env.sh), after
/// saying on the terminal that the calling test is skipped and what to run: `cargo test` on a bare
/// clone then runs the unit tests and the tests that need no set-up, and panics nowhere.
pub fn without_set_up() -> bool {
    if std::env::var_os("NEURALFX_SAMPLES").is_some() {
        return false;
    }
    tell(
        "skipped ",
        "it needs the models, samples and oracles of ./scripts/test.sh (which runs it)",
    );
    true
}

/// Prints "`before`TEST: `what`" for the calling test, straight to stderr: the test harness
/// captures print!, and these lines tell the user what a test left out.
pub fn tell(before: &str, what: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{before}{test}: {what}");
}

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstneuralfx::plugin_register_static().expect("register the neuralfx plugin");
    });
}

fn env_path(name: &str) -> PathBuf {
    let value = std::env::var_os(name).unwrap_or_else(|| {
        panic!("{name} is not set: run the tests with scripts/test.sh, which sets up everything")
    });
    PathBuf::from(value)
}

/// The sample PNG `name` (without its extension).
pub fn sample(name: &str) -> PathBuf {
    sample_file(&format!("{name}.png"))
}

/// The sample file `file` (with its extension).
pub fn sample_file(file: &str) -> PathBuf {
    let path = env_path("NEURALFX_SAMPLES").join(file);
    assert!(
        path.is_file(),
        "{} missing: run scripts/test.sh",
        path.display()
    );
    path
}

/// The reference oracles' Python (rembg, OpenCV, ONNX Runtime).
pub fn venv_python() -> PathBuf {
    python_in("NEURALFX_VENV")
}

/// The Python of the venv that environment variable `venv` (set by scripts/env.sh) names.
pub fn python_in(venv: &str) -> PathBuf {
    let python = env_path(venv).join("bin/python");
    assert!(
        python.is_file(),
        "{} missing: run scripts/test.sh",
        python.display()
    );
    python
}

pub fn reference_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/reference")
        .join(name)
}

/// Runs a Python reference script in the venv and returns its stdout.
pub fn run_reference(script: &str, args: &[&str]) -> String {
    run_reference_with(&venv_python(), script, args)
}

/// Runs a Python reference script with `python` and returns its stdout; it must succeed. It runs
/// in a fork of the binary's Python server for that venv (see [`forkserver`]) where one runs.
pub fn run_reference_with(python: &std::path::Path, script: &str, args: &[&str]) -> String {
    let path = reference_script(script);
    let ran = forkserver::run(python, &path, args).unwrap_or_else(|| {
        let output = Command::new(python)
            .arg(&path)
            .args(args)
            .output()
            .expect("start the Python reference");
        forkserver::Ran {
            status: output.status.code().or_else(|| {
                std::os::unix::process::ExitStatusExt::signal(&output.status).map(|signal| -signal)
            }),
            stdout: output.stdout,
            stderr: output.stderr,
        }
    });
    assert!(
        ran.status == Some(0),
        "{script} {args:?} failed ({}):\n{}",
        match ran.status {
            Some(code) if code < 0 => format!("killed by signal {}", -code),
            Some(code) => format!("exit status {code}"),
            None => "no answer from its forkserver".to_string(),
        },
        String::from_utf8_lossy(&ran.stderr)
    );
    String::from_utf8(ran.stdout).unwrap()
}

/// Where the small ONNX models of tests/reference/make_test_models.py are committed (a few
/// hundred bytes each; `committed_test_models_are_what_the_script_makes` keeps them in step).
pub fn test_models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models")
}

/// One of the committed test models.
pub fn test_model(name: &str) -> PathBuf {
    test_models_dir().join(name)
}

/// Runs `description` (which must end in an appsink named "sink") to EOS and returns every sample.
pub fn collect_samples(description: &str) -> Result<Vec<gst::Sample>, String> {
    collect_samples_and_warnings(description).map(|(samples, _)| samples)
}

/// [`collect_samples`], with the text of every warning posted on the bus.
pub fn collect_samples_and_warnings(
    description: &str,
) -> Result<(Vec<gst::Sample>, Vec<String>), String> {
    let (pipeline, sink) = with_sink(description)?;
    let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let collected = samples.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                collected
                    .lock()
                    .unwrap()
                    .push(sink.pull_sample().map_err(|_| gst::FlowError::Eos)?);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    let result = run_to_eos_noting_warnings(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();
    let warnings = result?;
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    Ok((samples, warnings))
}

/// Brings a pipeline to PAUSED and returns `active-backend` of the element named `nf` and the
/// text and debug string of every info message posted on the way; checks that stopping empties
/// `active-backend`.
pub fn active_backend_and_infos(description: &str) -> (String, Vec<(String, String)>) {
    init();
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let paused = pipeline
        .set_state(gst::State::Paused)
        .and_then(|_| pipeline.state(gst::ClockTime::from_seconds(120)).0);
    if paused.is_err() {
        let error = pipeline
            .bus()
            .unwrap()
            .pop_filtered(&[gst::MessageType::Error])
            .and_then(|message| match message.view() {
                gst::MessageView::Error(err) => Some(err.error().to_string()),
                _ => None,
            });
        panic!("the pipeline should reach PAUSED: {error:?}");
    }
    let element = pipeline.by_name("nf").unwrap();
    let runs_on = element.property::<Option<String>>("active-backend");
    let infos = std::iter::from_fn(|| {
        pipeline
            .bus()
            .unwrap()
            .pop_filtered(&[gst::MessageType::Info])
    })
    .map(|message| match message.view() {
        gst::MessageView::Info(info) => (
            info.error().to_string(),
            info.debug().map(|d| d.to_string()).unwrap_or_default(),
        ),
        _ => unreachable!("filtered"),
    })
    .collect();
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(
        element.property::<Option<String>>("active-backend"),
        Some(String::new()),
        "emptied at stop"
    );
    (runs_on.unwrap_or_default(), infos)
}

/// `description` (with an appsink named "sink", which stops syncing to the clock) and that
/// sink; the parser's error if it is no pipeline.
fn with_sink(description: &str) -> Result<(gst::Pipeline, gst_app::AppSink), String> {
    init();
    let pipeline = gst::parse::launch(description)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .expect("an appsink named sink")
        .downcast::<gst_app::AppSink>()
        .unwrap();
    sink.set_property("sync", false);
    Ok((pipeline, sink))
}

/// [`with_sink`], playing.
pub fn playing(description: &str) -> (gst::Pipeline, gst_app::AppSink) {
    let (pipeline, sink) = with_sink(description).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    (pipeline, sink)
}

/// Runs `gst-launch-1.0` with `words` (a description split at whitespace, options first) and
/// `env` added to its environment: whether it succeeded, and all it printed (stdout, stderr).
pub fn gst_launch(words: &str, env: &[(&str, &std::ffi::OsStr)]) -> (bool, String) {
    let output = Command::new("gst-launch-1.0")
        .args(words.split_whitespace())
        .envs(env.iter().copied())
        .output()
        .expect("gst-launch-1.0 (scripts/setup.sh installs it)");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), printed)
}

/// Plays a pipeline until EOS; an error message becomes `Err` with its text and debug info.
pub fn run_to_eos(pipeline: &gst::Pipeline) -> Result<(), String> {
    run_to_eos_noting_warnings(pipeline).map(|_| ())
}

/// [`run_to_eos`], returning the text of every warning posted on the way.
pub fn run_to_eos_noting_warnings(pipeline: &gst::Pipeline) -> Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    if pipeline.set_state(gst::State::Playing).is_err() {
        // The element's error message says why; fall through to read it from the bus.
    }
    let bus = pipeline.bus().unwrap();
    for message in bus.iter_timed(gst::ClockTime::from_seconds(300)) {
        match message.view() {
            gst::MessageView::Eos(..) => return Ok(warnings),
            gst::MessageView::Warning(warning) => warnings.push(warning.error().to_string()),
            gst::MessageView::Error(err) => {
                return Err(format!(
                    "{} ({})",
                    err.error(),
                    err.debug().unwrap_or_default()
                ));
            }
            _ => {}
        }
    }
    Err("timed out waiting for EOS".into())
}

/// The pixels of one output sample, rows packed (stride removed).
pub fn packed_pixels(sample: &gst::Sample) -> (gst_video::VideoInfo, Vec<u8>) {
    let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
    let buffer = sample.buffer().unwrap();
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).unwrap();
    let row_bytes = info.width() as usize * info.format_info().pixel_stride()[0] as usize;
    let stride = frame.plane_stride()[0] as usize;
    let data = frame.plane_data(0).unwrap();
    let mut packed = Vec::with_capacity(row_bytes * info.height() as usize);
    for y in 0..info.height() as usize {
        packed.extend_from_slice(&data[y * stride..y * stride + row_bytes]);
    }
    (info, packed)
}

/// The alpha channel of a packed RGBA/BGRA image.
pub fn alpha_of(rgba: &[u8]) -> Vec<u8> {
    rgba.chunks_exact(4).map(|p| p[3]).collect()
}

/// The largest difference between two images of the same size, in levels.
pub fn largest_difference(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len(), "images of different sizes");
    a.iter()
        .zip(b)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(0)
}

/// Mean absolute difference (in 0..255 units) and foreground IoU (value > 127) of two masks.
pub fn compare_masks(ours: &[u8], reference: &[u8]) -> (f64, f64) {
    assert_eq!(ours.len(), reference.len(), "mask sizes differ");
    let total: u64 = ours
        .iter()
        .zip(reference)
        .map(|(&a, &b)| u64::from(a.abs_diff(b)))
        .sum();
    let (mut both, mut either) = (0u64, 0u64);
    for (&a, &b) in ours.iter().zip(reference) {
        let (a, b) = (a > 127, b > 127);
        both += u64::from(a && b);
        either += u64::from(a || b);
    }
    let iou = if either == 0 {
        1.0
    } else {
        both as f64 / either as f64
    };
    (total as f64 / ours.len() as f64, iou)
}

/// Starts a pipeline and returns the message (not the debug text) of the error it stops with;
/// panics if it plays to the end.
pub fn start_error(description: &str) -> String {
    init();
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let _ = pipeline.set_state(gst::State::Playing);
    let bus = pipeline.bus().unwrap();
    let mut message = None;
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(120)) {
        match msg.view() {
            gst::MessageView::Error(err) => {
                message = Some(err.error().to_string());
                break;
            }
            gst::MessageView::Eos(..) => break,
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    message.expect("the pipeline should have failed with an error message")
}

/// A sample photo scaled to `width` x `height`, as packed RGB.
pub fn scaled_photo(name: &str, width: usize, height: usize) -> Vec<u8> {
    let samples = collect_samples(&format!(
        "filesrc location={} ! pngdec ! videoconvert ! videoscale ! \
         video/x-raw,format=RGB,width={width},height={height} ! appsink name=sink",
        sample(name).display()
    ))
    .unwrap();
    packed_pixels(&samples[0]).1
}

/// Frame `index` of a 25 fps stream: `pixels` stamped `index` x 40 ms, 40 ms long, with `flags`.
pub fn frame_buffer(pixels: &[u8], index: u64, flags: gst::BufferFlags) -> gst::Buffer {
    let mut buffer = gst::Buffer::from_mut_slice(pixels.to_vec());
    {
        let buffer = buffer.get_mut().unwrap();
        buffer.set_pts(gst::ClockTime::from_mseconds(index * 40));
        buffer.set_duration(gst::ClockTime::from_mseconds(40));
        buffer.set_flags(flags);
    }
    buffer
}

/// A Harness around a rembgfilter with `properties`, fed RGB frames of `width` x `height` at 25 fps
/// from a source that is not live.
pub fn rembgfilter_harness(
    properties: &[(&str, gst::glib::Value)],
    width: usize,
    height: usize,
) -> gst_check::Harness {
    init();
    let mut builder = gst::ElementFactory::make("rembgfilter");
    for (name, value) in properties {
        builder = builder.property(name, value.clone());
    }
    let mut h =
        gst_check::Harness::with_element(&builder.build().unwrap(), Some("sink"), Some("src"));
    // A harness says it is live unless told: these frames stand for a file, every one kept.
    h.set_live(false);
    h.set_src_caps_str(&format!(
        "video/x-raw,format=RGB,width={width},height={height},framerate=25/1"
    ));
    h
}

/// `neuralfx-<kind>-<this process>` in the temp folder (with `suffix` after it), created;
/// folders of the same kind that test processes now gone left behind are removed first.
pub fn temp_dir_of(kind: &str, suffix: &str) -> PathBuf {
    let prefix = format!("neuralfx-{kind}-");
    for entry in std::fs::read_dir(std::env::temp_dir()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !pid.is_empty() && !std::path::Path::new("/proc").join(&pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = std::env::temp_dir().join(format!("{prefix}{}{suffix}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Peak signal-to-noise ratio of two 8-bit images, in dB (infinite when equal).
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// Writes `frames` frames of the astronaut photo at `size` x `size`, 10 fps, as lossless
/// FFV1 in Matroska: an input video for the file pipelines.
pub fn write_astronaut_video(path: &std::path::Path, frames: usize, size: usize) {
    init();
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! pngdec ! imagefreeze num-buffers={frames} ! videoconvert ! videoscale \
         ! video/x-raw,format=I420,width={size},height={size},framerate=10/1 ! avenc_ffv1 ! matroskamux \
         ! filesink location={}",
        sample("astronaut").display(),
        path.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    run_to_eos(&pipeline).unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
}

/// The H.264 profile and chroma format of the first video stream of a file, as GStreamer's
/// discoverer reads them: what decides whether common players take it (4:4:4 they refuse).
pub fn h264_profile(path: &std::path::Path) -> (String, String) {
    init();
    let discoverer = gst_pbutils::Discoverer::new(gst::ClockTime::from_seconds(30)).unwrap();
    let info = discoverer
        .discover_uri(&format!("file://{}", path.display()))
        .unwrap();
    let video = info
        .video_streams()
        .into_iter()
        .next()
        .expect("a video stream");
    let caps = gst_pbutils::prelude::DiscovererStreamInfoExt::caps(&video).expect("video caps");
    let structure = caps.structure(0).unwrap();
    let field = |name: &str| structure.get::<String>(name).unwrap_or_default();
    assert_eq!(structure.name(), "video/x-h264", "{caps}");
    (field("profile"), field("chroma-format"))
}

/// The error a small rembgfilter pipeline with `properties` stops with, and how long it took.
pub fn rembgfilter_error(properties: &str) -> (String, std::time::Duration) {
    let started = std::time::Instant::now();
    let err = start_error(&format!(
        "videotestsrc num-buffers=2 ! video/x-raw,format=RGB,width=64,height=48 \
         ! rembgfilter {properties} ! fakesink"
    ));
    (err, started.elapsed())
}

/// Writes `frames` 400x300 astronaut templates with landmarks and `ave` features for as many
/// frames into `dir` (tests/reference/make_lipsync_data.py) and returns a function giving the
/// BGR frames of lipsyncsrc on them with the extra `properties`.
pub fn lipsync_frames_on_test_data(
    dir: &std::path::Path,
    frames: usize,
) -> impl Fn(&str) -> Vec<Vec<u8>> + use<> {
    let count = frames.to_string();
    run_reference(
        "make_lipsync_data.py",
        &[
            sample("astronaut").to_str().unwrap(),
            dir.to_str().unwrap(),
            "--templates",
            &count,
            "--width",
            "400",
            "--height",
            "300",
            "--feature-frames",
            &count,
        ],
    );
    let dir = dir.to_path_buf();
    move |properties: &str| {
        collect_samples(&format!(
            "lipsyncsrc {properties} template={} features={} ! video/x-raw,format=BGR \
             ! appsink name=sink",
            dir.join("template").display(),
            dir.join("features/ave.npy").display()
        ))
        .unwrap()
        .iter()
        .map(|s| packed_pixels(s).1)
        .collect()
    }
}

/// A server or proxy of tests/reference running; it stops when dropped.
pub struct ReferenceServer {
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    process: std::process::Child,
}

impl Drop for ReferenceServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Starts tests/reference/`script` with `python`, its first argument a ready file in `dir` where
/// it writes its port once listening, then `args`; its output goes to `dir`/`name`.log.
pub fn start_reference_server(
    python: &Path,
    script: &str,
    args: &[&std::ffi::OsStr],
    dir: &Path,
    name: &str,
) -> ReferenceServer {
    let ready = dir.join(format!("{name}.ready"));
    let _ = std::fs::remove_file(&ready);
    let log_path = dir.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(python)
        .arg(reference_script(script))
        .arg(&ready)
        .args(args)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start tests/reference/{script}: {e}"));
    let mut server = ReferenceServer {
        port: 0,
        process: child,
    };
    let port = wait_until_ready(
        &mut server.process,
        &ready,
        &log_path,
        std::time::Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("tests/reference/{script} {e}"));
    server.port = port.trim().parse().unwrap();
    server
}

/// What `process` wrote to its ready file `ready` once it listens, within `limit`; or why not:
/// it ended first (with its log `log`) or it did not start in time.
pub fn wait_until_ready(
    process: &mut std::process::Child,
    ready: &Path,
    log: &Path,
    limit: std::time::Duration,
) -> Result<String, String> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Ok(said) = std::fs::read_to_string(ready) {
            return Ok(said);
        }
        if let Ok(Some(status)) = process.try_wait() {
            return Err(format!(
                "ended ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            ));
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("did not start in {} s", limit.as_secs()));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
