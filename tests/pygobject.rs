//! Applications in Python: every property of every element set and read back through PyGObject
//! (tests/reference/set_every_property.py, run by the system Python with python3-gi), with the
//! installed plugin.

mod common;

use std::path::PathBuf;
use std::process::Command;

#[test]
fn every_property_of_every_element_can_be_set_from_python() {
    if common::without_set_up() {
        return;
    }
    let output = Command::new("/usr/bin/python3")
        .arg(common::reference_script("set_every_property.py"))
        .output()
        .expect("run /usr/bin/python3 (python3-gi is installed by scripts/setup.sh)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for property in [
        "rembgfilter.input-mean",
        "rembgfilter.payload",
        "lipsyncsrc.backend",
        "lipsync.audio-encoder",
        "lipsync.silence-level",
        "lipsync.catch-up",
    ] {
        assert!(stdout.contains(property), "{property} not set: {stdout}");
    }
    assert!(
        stdout.contains("input-mean/input-std set from Python: EOS"),
        "{stdout}"
    );
}

/// Runs examples/cutout_app.py with the system Python.
fn cutout_app(args: &[&std::path::Path]) -> (Option<i32>, String, String) {
    let output = Command::new("/usr/bin/python3")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/cutout_app.py"))
        .args(args)
        .output()
        .expect("run /usr/bin/python3 (python3-gi is installed by scripts/setup.sh)");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_python_example_cuts_out_a_picture_and_reports_what_ran() {
    if common::without_set_up() {
        return;
    }
    let dir = common::temp_dir_of("python-app", "");
    let output = dir.join("cutout.png");
    let photo = common::sample("chelsea");
    let (status, stdout, stderr) = cutout_app(&[&photo, &output]);
    assert_eq!(status, Some(0), "{stdout}{stderr}");
    // What ran (the info message and active-backend agree) and the stats structure's fields.
    assert!(stdout.contains("u2netp.onnx runs on "), "{stdout}");
    let runs_on = stdout
        .lines()
        .find_map(|line| line.strip_prefix("model u2netp ran on "))
        .expect("active-backend printed");
    assert!(
        !runs_on.is_empty() && stdout.contains(&format!("runs on {runs_on}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("stats: 1 frame(s), 1 model run(s)"),
        "{stdout}"
    );
    // The picture is the element's cutout: transparent somewhere, opaque somewhere.
    let samples = common::collect_samples(&format!(
        "filesrc location={} ! pngdec ! videoconvert ! video/x-raw,format=RGBA ! appsink name=sink",
        output.display()
    ))
    .unwrap();
    let alpha = common::alpha_of(&common::packed_pixels(&samples[0]).1);
    assert!(alpha.contains(&0) && alpha.contains(&255));
}

#[test]
fn the_python_example_reports_an_error_from_the_bus_and_leaves_no_file() {
    if common::without_set_up() {
        return;
    }
    let dir = common::temp_dir_of("python-app-error", "");
    let output = dir.join("cutout.png");
    let missing = dir.join("no-such-model.onnx");
    let (status, stdout, stderr) = cutout_app(&[&common::sample("chelsea"), &output, &missing]);
    assert_eq!(status, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("error from cutout: property 'model'")
            && stderr.contains(&missing.display().to_string())
            && !stderr.contains("Traceback"),
        "{stderr}"
    );
    assert!(!output.exists() && !dir.join("cutout.png.part").exists());
}
