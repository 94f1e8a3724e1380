//! The shell commands the README and docs/ show, as a user would copy them (every line of a
//! ```sh block, continuation lines joined and comments dropped), and how the tests run them: in a
//! folder of stand-ins for the files they name, devices made test sources, outputs checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use gst::prelude::*;

use super::talking_head::*;
use super::*;

/// One command and where it is written.
#[derive(Debug, Clone)]
pub struct DocCommand {
    /// `README.md:123`, for messages.
    pub place: String,
    pub text: String,
}

/// The Markdown files whose commands must run: the README and every page of docs/.
pub fn documents() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    files.extend(pages);
    files
}

/// A line without its comment: `#` at its start or after a space, outside quotes.
fn without_comment(line: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (at, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') if previous.is_whitespace() => return &line[..at],
            _ => {}
        }
        previous = c;
    }
    line
}

/// Every command of every ```sh block of `path`.
pub fn commands_in(path: &Path) -> Vec<DocCommand> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(path).unwrap();
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut pending: Option<DocCommand> = None;
    for (number, line) in text.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        if fence {
            in_block = !in_block && line.trim() == "```sh";
            continue;
        }
        if !in_block {
            continue;
        }
        let code = without_comment(line).trim_end();
        let (code, continues) = match code.strip_suffix('\\') {
            Some(code) => (code.trim_end(), true),
            None => (code, false),
        };
        let command = pending.get_or_insert_with(|| DocCommand {
            place: format!("{name}:{}", number + 1),
            text: String::new(),
        });
        if !code.trim().is_empty() {
            if !command.text.is_empty() {
                command.text.push(' ');
            }
            command.text.push_str(code.trim());
        }
        if !continues {
            let command = pending.take().unwrap();
            if !command.text.is_empty() {
                commands.push(command);
            }
        }
    }
    commands
}

/// Every command of the README and docs/.
pub fn commands() -> Vec<DocCommand> {
    documents()
        .iter()
        .flat_map(|path| commands_in(path))
        .collect()
}

/// The commands that name `text` (an example server or endpoint), with each `(from, to)` of
/// `replacements` made: the docs' example names become a test server's.
pub fn commands_naming(text: &str, replacements: &[(&str, &str)]) -> Vec<DocCommand> {
    commands()
        .into_iter()
        .filter(|command| command.text.contains(text))
        .map(|mut command| {
            for (from, to) in replacements {
                command.text = command.text.replace(from, to);
            }
            command
        })
        .collect()
}

/// Writes `description`'s output (a pipeline ending in a filesink) to its file.
fn write_with(description: &str) {
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let result = run_to_eos(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();
    result.unwrap_or_else(|e| panic!("{description}: {e}"));
}

/// The folder the commands run in, `neuralfx-<kind>-<pid>`, with a stand-in for every file they
/// name: pictures and clips, and with `talking_head` speech, templates and models.
pub fn workspace(kind: &str, talking_head: bool) -> PathBuf {
    init();
    let dir = temp_dir_of(kind, "");
    let astronaut = sample("astronaut");
    std::fs::copy(&astronaut, dir.join("photo.png")).unwrap();
    write_with(&format!(
        "filesrc location={} ! pngdec ! videoconvert ! jpegenc ! filesink location={}",
        astronaut.display(),
        dir.join("photo.jpg").display()
    ));
    std::fs::create_dir_all(dir.join("photos")).unwrap();
    for name in ["chelsea", "coffee"] {
        std::fs::copy(sample(name), dir.join("photos").join(format!("{name}.png"))).unwrap();
    }
    // Ten frames of video with a second of sound, as a phone's clip would have.
    write_with(&format!(
        "videotestsrc num-buffers=10 pattern=ball ! video/x-raw,width=320,height=240,framerate=25/1 \
         ! videoconvert ! video/x-raw,format=I420 ! x264enc ! h264parse ! mp4mux name=m \
         ! filesink location={} \
         audiotestsrc num-buffers=43 ! audioconvert ! avenc_aac ! m.",
        dir.join("in.mp4").display()
    ));
    std::fs::copy(dir.join("in.mp4"), dir.join("talk.mp4")).unwrap();
    if !talking_head {
        return dir;
    }

    let wav = spoken(&dir, "Every command of the read me.");
    std::fs::rename(&wav, dir.join("speech.wav")).unwrap();
    write_with(&format!(
        "filesrc location={} ! wavparse ! audioconvert ! lamemp3enc ! filesink location={}",
        dir.join("speech.wav").display(),
        dir.join("speech.mp3").display()
    ));
    // Templates, and features as long as the speech (25 a second), as SyncTalk_2D makes them.
    let frames = samples_of(&dir.join("speech.wav")).len() * 25 / 16000;
    let template = template_set(&dir.join("data"), frames);
    std::fs::create_dir_all(dir.join("dataset")).unwrap();
    std::fs::rename(template, dir.join("dataset/May")).unwrap();
    for unet in ["unet_328.onnx", "unet_328_May.onnx"] {
        run_reference(
            "make_unet328.py",
            &["ave", dir.join(unet).to_str().unwrap(), "--narrow"],
        );
    }
    for features in ["aud_ave.npy", "speech_ave.npy"] {
        std::fs::copy(dir.join("data/features/ave.npy"), dir.join(features)).unwrap();
    }
    encoder_model(&dir, "ave_encoder.onnx", &[]);
    dir
}

/// `command` as it runs here: the neuralfx checkout where the docs say /path/to/neuralfx, test
/// sources for devices, fakesink for windows.
pub fn as_run_here(command: &str) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    // The README's own scripts and examples, named from the checkout's root.
    let text = command
        .replace("/path/to/neuralfx", root)
        .split(' ')
        .map(|word| {
            if word.starts_with("pipelines/") || word.starts_with("examples/") {
                format!("{root}/{word}")
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    text.replace("v4l2src", "videotestsrc is-live=true num-buffers=30")
        .replace("pulsesrc", "audiotestsrc is-live=true num-buffers=60")
        .replace("autovideosink", "fakesink")
}

/// Every file under `dir` with its modification time.
fn files(dir: &Path) -> BTreeMap<PathBuf, SystemTime> {
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path));
        } else if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
            found.insert(path, modified);
        }
    }
    found
}

/// What the discoverer finds in `path`: its video and audio streams.
fn streams(path: &Path) -> (Vec<gst::Caps>, usize) {
    let discoverer = gst_pbutils::Discoverer::new(gst::ClockTime::from_seconds(30)).unwrap();
    let info = discoverer
        .discover_uri(&format!("file://{}", path.display()))
        .unwrap_or_else(|e| panic!("{} is not a media file: {e}", path.display()));
    let video = info
        .video_streams()
        .iter()
        .filter_map(gst_pbutils::prelude::DiscovererStreamInfoExt::caps)
        .collect();
    (video, info.audio_streams().len())
}

/// Checks what `command` wrote to `path`.
fn check_output(command: &DocCommand, path: &Path) {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let (video, audio) = match extension {
        "png" | "mp4" | "mkv" => streams(path),
        _ => return,
    };
    let place = &command.place;
    assert_eq!(video.len(), 1, "{place}: {} has no picture", path.display());
    if extension == "png" {
        return;
    }
    let with_sound = ["in.mp4", "talk.mp4", "speech", "avenc_aac"]
        .iter()
        .any(|input| command.text.contains(input));
    assert_eq!(
        audio,
        usize::from(with_sound),
        "{place}: audio streams of {}",
        path.display()
    );
    let structure = video[0].structure(0).unwrap();
    if structure.name() == "video/x-h264" {
        assert_eq!(
            structure.get::<String>("chroma-format").unwrap_or_default(),
            "4:2:0",
            "{place}: {} is H.264 but not 4:2:0 ({})",
            path.display(),
            video[0]
        );
    }
}

/// Runs `command` in `dir` and checks it and what it wrote.
pub fn run_command(command: &DocCommand, dir: &Path) {
    run_command_with(command, dir, &[]);
}

/// [`run_command`] with more environment variables.
pub fn run_command_with(command: &DocCommand, dir: &Path, environment: &[(&str, &str)]) {
    let text = as_run_here(&command.text);
    let before = files(dir);
    let started = std::time::Instant::now();
    let output = Command::new("timeout")
        .args(["600", "bash", "-o", "pipefail", "-c", &text])
        .current_dir(dir)
        // The webcam scripts' camera and window, as tests/pipelines.rs gives them.
        .env("SOURCE", "videotestsrc is-live=true num-buffers=30")
        .env("SINK", "fakesink sync=true")
        .envs(environment.iter().copied())
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && !printed.contains("ERROR"),
        "{}: `{text}` failed ({}):\n{printed}",
        command.place,
        output.status
    );
    let written: Vec<PathBuf> = files(dir)
        .into_iter()
        .filter(|(path, modified)| before.get(path) != Some(modified))
        .map(|(path, _)| path)
        .collect();
    for path in &written {
        check_output(command, path);
    }
    let took = started.elapsed();
    println!(
        "ran {} in {:.1} s: {text} (wrote {})",
        command.place,
        took.as_secs_f64(),
        written
            .iter()
            .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
}
