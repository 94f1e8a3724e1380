//! Applications in Python: every property of every element set and read back through PyGObject
//! (tests/reference/set_every_property.py, run by the system Python with python3-gi), with the
//! installed plugin.

mod common;

use std::process::Command;

#[test]
fn every_property_of_every_element_can_be_set_from_python() {
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
