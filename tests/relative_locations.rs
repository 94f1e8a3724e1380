//! Location properties take paths relative to the working directory, as filesrc does: read back
//! absolute, and opened from gst-launch run in the files' folder.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::talking_head::*;
use common::*;
use gst::prelude::*;

/// Every property of the plugin that names a file or folder.
const LOCATIONS: [(&str, &str); 9] = [
    ("rembgfilter", "model"),
    ("rembgfilter", "background-location"),
    ("lipsyncsrc", "model"),
    ("lipsyncsrc", "template"),
    ("lipsyncsrc", "features"),
    ("lipsyncsrc", "audio-location"),
    ("lipsyncsrc", "audio-encoder"),
    ("lipsync", "model"),
    ("lipsync", "template"),
];

#[test]
fn every_location_property_reads_back_absolute_from_the_working_directory() {
    init();
    let here = std::env::current_dir().unwrap();
    let mut locations = LOCATIONS.to_vec();
    locations.push(("lipsync", "audio-encoder"));
    for (factory, property) in locations {
        let element = gst::ElementFactory::make(factory).build().unwrap();
        let pspec = element.find_property(property).unwrap();
        assert!(
            pspec.blurb().unwrap_or_default().contains("relative path"),
            "{factory}.{property}'s blurb does not say how relative paths are read"
        );
        element.set_property(property, "media/../files/input 1.onnx");
        assert_eq!(
            element.property::<Option<String>>(property),
            Some(
                here.join("media/../files/input 1.onnx")
                    .display()
                    .to_string()
            ),
            "{factory}.{property}"
        );
        element.set_property(property, "/srv/input.onnx");
        assert_eq!(
            element.property::<Option<String>>(property).as_deref(),
            Some("/srv/input.onnx"),
            "{factory}.{property}"
        );
    }
    // A catalog name, or a model's name on a server, is a name, not a file in the working
    // directory.
    for factory in ["rembgfilter", "lipsyncsrc", "lipsync"] {
        let element = gst::ElementFactory::make(factory).build().unwrap();
        for name in ["u2netp", "isnet-general-use", "my_served_model"] {
            element.set_property("model", name);
            assert_eq!(element.property::<Option<String>>("model").unwrap(), name);
        }
    }
}

/// Runs gst-launch-1.0 (with the installed plugin, as a user would) in `dir`.
fn launch_in(dir: &Path, description: &str) {
    let output = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(description.split_whitespace())
        .current_dir(dir)
        .output()
        .expect("gst-launch-1.0 (scripts/setup.sh installs it)");
    assert!(
        output.status.success(),
        "gst-launch-1.0 {description} in {}:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `path` relative to `dir`, which holds it.
fn relative(path: &Path, dir: &Path) -> PathBuf {
    path.strip_prefix(dir).unwrap().to_path_buf()
}

#[test]
fn the_elements_open_relative_locations_from_gst_launch() {
    if without_set_up() {
        return;
    }
    init();
    let dir = temp_dir_of("relative-locations", "");
    // rembgfilter: a model file and a background picture, both named from their folder.
    std::fs::copy(test_model("brightness.onnx"), dir.join("model.onnx")).unwrap();
    std::fs::copy(sample("astronaut"), dir.join("background.png")).unwrap();
    launch_in(
        &dir,
        "videotestsrc num-buffers=2 ! video/x-raw,width=64,height=48 ! videoconvert \
         ! rembgfilter model=model.onnx mode=replace background-location=background.png \
         ! fakesink",
    );

    // lipsyncsrc from features, then from speech through the audio encoder; lipsync from speech.
    let (template, unet) = lipsync_inputs(&dir);
    let encoder = encoder_model(&dir, "encoder.onnx", &[]);
    let speech = spoken(&dir, "Relative paths.");
    let (template, unet, encoder, speech) = (
        relative(&template, &dir),
        relative(&unet, &dir),
        relative(&encoder, &dir),
        relative(&speech, &dir),
    );
    let features = Path::new("data/features/ave.npy");
    assert!(dir.join(features).is_file());
    launch_in(
        &dir,
        &format!(
            "lipsyncsrc model={} template={} features={} ! fakesink",
            unet.display(),
            template.display(),
            features.display()
        ),
    );
    launch_in(
        &dir,
        &format!(
            "lipsyncsrc model={} template={} audio-location={} audio-encoder={} ! fakesink",
            unet.display(),
            template.display(),
            speech.display(),
            encoder.display()
        ),
    );
    launch_in(
        &dir,
        &format!(
            "filesrc location={} ! decodebin ! audioconvert ! audioresample \
             ! lipsync model={} template={} audio-encoder={} ! fakesink",
            speech.display(),
            unet.display(),
            template.display(),
            encoder.display()
        ),
    );
}
