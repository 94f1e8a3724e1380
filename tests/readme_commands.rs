//! Every command the README and docs/ show, run as written in a folder holding stand-ins of the
//! files they name (photo.jpg, in.mp4, speech.wav, unet_328.onnx, dataset/May, ...: the sample
//! photos, generated clips, espeak-ng speech and the generated talking-head models the other tests
//! use). Devices become test sources (v4l2src, pulsesrc) and windows fakesink; nothing else is
//! changed. Each must exit 0 within its bound without an error, and what it writes is checked with
//! GStreamer's discoverer: a picture, or the streams a video should have, H.264 in 4:2:0.
//! Commands that cannot run here are listed with the reason and where they are tested instead.

mod common;

use common::readme::{commands, run_command, workspace};

/// Commands not run here, by a text they hold, and why.
const NOT_RUN_HERE: [(&str, &str); 8] = [
    (
        "./scripts/test.sh",
        "the test command itself: .ci/run runs it",
    ),
    (
        "./scripts/demo.sh",
        "the quick start: .ci/run's set-up is the same steps, and installing the plugin again \
         would replace the file the running tests load",
    ),
    (
        "./scripts/setup.sh --cuda",
        "downloads 2.5 GB of CUDA runtimes; tests/cuda.rs covers them where a GPU is lent",
    ),
    ("./scripts/bench.sh", "benchmarks, minutes long"),
    (
        "cd SyncTalk_2D",
        "in a SyncTalk_2D checkout: tests/export_unet328.rs walks docs/synctalk2d.md there",
    ),
    (
        "python /path/to/neuralfx/models/export_",
        "needs PyTorch and a SyncTalk_2D checkout: tests/export_unet328.rs runs it in a stand-in",
    ),
    (
        "my-u2netp",
        "needs a SageMaker endpoint: tests/sagemaker.rs runs it against its stand-in",
    ),
    (
        "10.0.0.5",
        "needs a Triton server: tests/triton.rs runs these lines against its own",
    ),
];

fn why_not_run(command: &str) -> Option<&'static str> {
    NOT_RUN_HERE
        .iter()
        .find(|(pattern, _)| command.contains(pattern))
        .map(|(_, why)| *why)
}

#[test]
fn every_command_in_the_readme_and_docs_runs_as_written() {
    if common::without_set_up() {
        return;
    }
    let commands = commands();
    assert!(commands.len() > 30, "{commands:?}");
    // Every reason to skip is still used, so none outlives its command.
    for (pattern, _) in NOT_RUN_HERE {
        assert!(
            commands
                .iter()
                .any(|c| why_not_run(&c.text).is_some() && c.text.contains(pattern)),
            "no command matches '{pattern}' any more: remove it from NOT_RUN_HERE"
        );
    }
    let dir = workspace("readme", true);
    let mut ran = 0;
    // The README's examples reappear in docs/; a command written the same way twice runs once.
    let mut first_place: std::collections::HashMap<&str, &str> = Default::default();
    for command in &commands {
        if let Some(why) = why_not_run(&command.text) {
            println!("not run {}: {} ({why})", command.place, command.text);
            continue;
        }
        if let Some(first) = first_place.get(command.text.as_str()) {
            println!("ran {} as {first}: {}", command.place, command.text);
            continue;
        }
        first_place.insert(&command.text, &command.place);
        run_command(command, &dir);
        ran += 1;
    }
    println!("{ran} of {} commands ran", commands.len());
}
