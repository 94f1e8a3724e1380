//! The plugin as a user installs it: found by GStreamer with no environment set, and a clear
//! error when ONNX Runtime is nowhere to be found.

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

    let launch = clean_run(
        "gst-launch-1.0",
        &[
            "videotestsrc",
            "num-buffers=2",
            "!",
            "video/x-raw,width=64,height=48",
            "!",
            "rembgfilter",
            "!",
            "fakesink",
        ],
        &home,
        &[],
    );
    assert!(launch.status.success(), "{}", text(&launch));
}

#[test]
fn missing_onnxruntime_fails_listing_every_place_tried() {
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
