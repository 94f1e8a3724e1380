//! The plugin as a user installs it: found by GStreamer with no environment set, and a clear
//! error when ONNX Runtime is nowhere to be found.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

fn user_plugin_dir() -> PathBuf {
    let home = std::env::var("HOME").expect("HOME");
    PathBuf::from(home).join(".local/share/gstreamer-1.0/plugins")
}

/// The cdylib scripts/setup.sh built from this checkout.
fn built_plugin() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/libgstneuralfx.so");
    assert!(
        path.is_file(),
        "{} missing: run scripts/test.sh",
        path.display()
    );
    path
}

/// Runs a GStreamer tool with nothing in the environment but HOME and PATH (and `extra`).
fn clean_run(program: &str, args: &[&str], home: &str, extra: &[(&str, &str)]) -> Output {
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("HOME", home)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .args(args);
    for (key, value) in extra {
        command.env(key, value);
    }
    command.output().expect("run a GStreamer tool")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn installed_plugin_works_without_any_environment() {
    if common::without_set_up() {
        return;
    }
    let installed = user_plugin_dir().join("libgstneuralfx.so");
    assert!(
        installed.is_file(),
        "{} missing: run scripts/setup.sh",
        installed.display()
    );
    assert!(
        std::fs::read_dir(user_plugin_dir())
            .unwrap()
            .flatten()
            .any(|e| e
                .file_name()
                .to_string_lossy()
                .starts_with("libonnxruntime.so")),
        "ONNX Runtime should be installed beside the plugin"
    );
    let home = std::env::var("HOME").unwrap();
    let inspect = clean_run("gst-inspect-1.0", &["rembgfilter"], &home, &[]);
    assert!(inspect.status.success(), "{}", text(&inspect));
    assert!(
        text(&inspect).contains("execution-provider"),
        "{}",
        text(&inspect)
    );

    for backend in ["backend=onnxruntime", "backend=openvino"] {
        let launch = clean_run(
            "gst-launch-1.0",
            &[
                "videotestsrc",
                "num-buffers=2",
                "!",
                "video/x-raw,width=64,height=48",
                "!",
                "rembgfilter",
                backend,
                "!",
                "fakesink",
            ],
            &home,
            &[],
        );
        assert!(launch.status.success(), "{backend}: {}", text(&launch));
    }
}

#[test]
fn openvino_beside_the_plugin_is_not_mistaken_for_plugins() {
    if common::without_set_up() {
        return;
    }
    let openvino = user_plugin_dir().join("openvino");
    assert!(
        openvino.join("plugins.xml").is_file(),
        "{} should hold OpenVINO (scripts/setup.sh)",
        openvino.display()
    );
    // GStreamer's registry loads every file ending in .so under a plugin folder, its
    // subfolders too; none of OpenVINO's may (they would be listed as blacklisted).
    for entry in std::fs::read_dir(&openvino).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            !name.ends_with(".so"),
            "{name} would be scanned as a plugin"
        );
    }
    let home = std::env::var("HOME").unwrap();
    let blacklist = clean_run("gst-inspect-1.0", &["-b"], &home, &[]);
    assert!(
        !text(&blacklist).contains("openvino"),
        "{}",
        text(&blacklist)
    );
}

/// Plays `videotestsrc num-buffers=1 ! rembgfilter ARGV[1] ! fakesink`, printing the text of
/// every info and error message; exits 1 on an error.
const PRINT_MESSAGES: &str = r#"
import sys
import gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
Gst.init(None)
pipeline = Gst.parse_launch("videotestsrc num-buffers=1 ! rembgfilter %s ! fakesink" % sys.argv[1])
pipeline.set_state(Gst.State.PLAYING)
failed = False
while True:
    message = pipeline.get_bus().timed_pop_filtered(
        60 * Gst.SECOND, Gst.MessageType.INFO | Gst.MessageType.ERROR | Gst.MessageType.EOS)
    if message is None or message.type == Gst.MessageType.EOS:
        break
    if message.type == Gst.MessageType.INFO:
        print("INFO:", message.parse_info()[0].message)
    else:
        print("ERROR:", message.parse_error()[0].message)
        failed = True
        break
pipeline.set_state(Gst.State.NULL)
sys.exit(1 if failed else 0)
"#;

#[test]
fn missing_openvino_fails_named_and_auto_falls_back_to_onnxruntime() {
    if common::without_set_up() {
        return;
    }
    // Only the plugin and ONNX Runtime: no OpenVINO folder beside the plugin.
    let home = std::env::temp_dir().join(format!("neuralfx-no-ov-{}", std::process::id()));
    let plugins = home.join(".local/share/gstreamer-1.0/plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(built_plugin(), plugins.join("libgstneuralfx.so")).unwrap();
    let ort = std::env::var("ORT_DYLIB_PATH").expect("scripts/env.sh sets ORT_DYLIB_PATH");
    let models = std::env::var("U2NET_HOME")
        .unwrap_or_else(|_| format!("{}/.u2net", std::env::var("HOME").unwrap()));
    // gst-launch does not print an info message's text: a few lines of PyGObject print it,
    // and the element's error.
    let run = |backend: &str| {
        clean_run(
            "/usr/bin/python3",
            &["-c", PRINT_MESSAGES, backend],
            home.to_str().unwrap(),
            &[
                ("OPENVINO_DYLIB_PATH", "/nonexistent/libopenvino_c.so.2640"),
                ("ORT_DYLIB_PATH", &ort),
                ("U2NET_HOME", &models),
            ],
        )
    };
    let named = run("backend=openvino");
    let auto = run("backend=auto");
    std::fs::remove_dir_all(&home).unwrap();
    let log = text(&named);
    assert!(!named.status.success(), "{log}");
    assert!(log.contains("could not load the OpenVINO runtime"), "{log}");
    for tried in ["/nonexistent/libopenvino_c.so.2640", "libopenvino_c.so:"] {
        assert!(log.contains(tried), "should list {tried}: {log}");
    }
    assert!(!log.contains("panicked"), "{log}");
    let log = text(&auto);
    assert!(auto.status.success(), "{log}");
    assert!(
        log.contains("runs on ONNX Runtime's CPUExecutionProvider")
            && log.contains("not OpenVINO, as could not load the OpenVINO runtime"),
        "{log}"
    );
}

#[test]
fn missing_onnxruntime_fails_listing_every_place_tried() {
    if common::without_set_up() {
        return;
    }
    // A home with only the plugin in its plugin folder: nothing beside it, no ORT_DYLIB_PATH
    // that works, and Debian has no system libonnxruntime.
    let home = std::env::temp_dir().join(format!("neuralfx-no-ort-{}", std::process::id()));
    let plugins = home.join(".local/share/gstreamer-1.0/plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(built_plugin(), plugins.join("libgstneuralfx.so")).unwrap();
    let models = std::env::var("U2NET_HOME")
        .unwrap_or_else(|_| format!("{}/.u2net", std::env::var("HOME").unwrap()));
    let output = clean_run(
        "gst-launch-1.0",
        &[
            "videotestsrc",
            "num-buffers=1",
            "!",
            "rembgfilter",
            "!",
            "fakesink",
        ],
        home.to_str().unwrap(),
        &[
            ("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so.1.31.1"),
            ("U2NET_HOME", &models),
        ],
    );
    std::fs::remove_dir_all(&home).unwrap();
    let log = text(&output);
    assert!(!output.status.success(), "{log}");
    assert!(
        log.contains("could not load the ONNX Runtime library"),
        "{log}"
    );
    for tried in [
        "/nonexistent/libonnxruntime.so.1.31.1",
        "libonnxruntime.so.1:",
        "libonnxruntime.so:",
    ] {
        assert!(log.contains(tried), "should list {tried}: {log}");
    }
    assert!(!log.contains("panicked"), "{log}");
}

/// A model that models/fetch.py derives here (as u2netp-int8 from u2netp), with a stand-in
/// manifest and converter: made once, kept on the next run although its md5 is not the
/// manifest's (another CPU's arithmetic), made again when what it is made from changes.
#[test]
fn a_derived_model_with_this_cpus_own_bytes_is_made_once_per_recipe() {
    if Command::new("python3").arg("--version").output().is_err() {
        println!("skipped: needs python3 (scripts/setup.sh installs it)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("neuralfx-derive-{}", std::process::id()));
    let (models, cache) = (dir.join("models"), dir.join("cache"));
    std::fs::create_dir_all(&models).unwrap();
    std::fs::create_dir_all(cache.join("calibration")).unwrap();
    std::fs::write(models.join("base.onnx"), b"base model").unwrap();
    std::fs::write(cache.join("calibration/a.png"), b"picture one").unwrap();
    let log = dir.join("conversions.log");
    // The converter appends a line per run and writes the base with the pictures' paths.
    std::fs::write(
        dir.join("derive.py"),
        format!(
            "import os, sys\n\
             open({log:?}, 'a').write('converted\\n')\n\
             data = open(sys.argv[1], 'rb').read()\n\
             open(sys.argv[2], 'wb').write(data + os.environ['NEURALFX_CALIBRATION_PHOTOS'].encode())\n"
        ),
    )
    .unwrap();
    let manifest = serde_json::json!({"models": [
        {"name": "base", "file": "base.onnx", "md5": null, "url": null},
        {"name": "derived", "file": "derived.onnx", "size": null,
         "md5": "00000000000000000000000000000000", "url": null,
         "source": {"derive": "base", "convert": "derive.py",
                    "calibration": ["calibration/a.png"]}}
    ]});
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    let fetch = || {
        let output = Command::new("python3")
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/fetch.py"))
            .args([&models, &cache])
            .arg("derived")
            .env("NEURALFX_MANIFEST", dir.join("manifest.json"))
            .env_remove("NEURALFX_CONVERT_PYTHON")
            .output()
            .expect("python3");
        assert!(output.status.success(), "{}", text(&output));
        let conversions = std::fs::read_to_string(&log).unwrap_or_default();
        (conversions.lines().count(), text(&output))
    };
    let (conversions, printed) = fetch();
    assert_eq!(conversions, 1, "{printed}");
    assert!(printed.contains("made here has md5"), "{printed}");
    let made = std::fs::read(models.join("derived.onnx")).unwrap();
    assert!(made.starts_with(b"base model"), "{made:?}");

    let (conversions, printed) = fetch();
    assert_eq!(conversions, 1, "kept, not made again: {printed}");
    assert!(printed.contains("same recipe; kept"), "{printed}");

    // A calibration picture changed: made again.
    std::fs::write(cache.join("calibration/a.png"), b"picture two").unwrap();
    assert_eq!(fetch().0, 2);
    assert_eq!(fetch().0, 2);
    // The file replaced by something else: made again.
    std::fs::write(models.join("derived.onnx"), b"something else").unwrap();
    assert_eq!(fetch().0, 3);
    assert_eq!(
        std::fs::read(models.join("derived.onnx")).unwrap(),
        made,
        "the same recipe makes the same bytes here"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
