//! rembgfilter overlap=true: in a non-live pipeline the model's run on one frame overlaps the
//! work around its neighbours. The output must be the same frames, in the same order, with the
//! same timestamps, whatever the controls; held frames come out before EOS and before new caps.

mod common;

use common::*;
use gst::prelude::*;
use gst_check::Harness;

const WIDTH: usize = 160;
const HEIGHT: usize = 120;

fn photo(name: &str, width: usize, height: usize) -> Vec<u8> {
    scaled_photo(name, width, height)
}

fn harness(properties: &[(&str, glib::Value)], width: usize, height: usize) -> Harness {
    rembgfilter_harness(properties, width, height)
}

use gst::glib;

/// Every output (timestamp, bytes) of pushing `frames` then EOS.
fn run(
    properties: &[(&str, glib::Value)],
    frames: &[(&[u8], gst::BufferFlags)],
) -> Vec<(Option<gst::ClockTime>, Vec<u8>)> {
    let mut h = harness(properties, WIDTH, HEIGHT);
    for (index, (pixels, flags)) in frames.iter().enumerate() {
        h.push(frame_buffer(pixels, index as u64, *flags)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let mut outputs = Vec::new();
    while let Some(out) = h.try_pull() {
        outputs.push((out.pts(), out.map_readable().unwrap().to_vec()));
    }
    outputs
}

#[test]
fn overlap_gives_the_same_frames_as_without() {
    if without_set_up() {
        return;
    }
    let (astronaut, coffee, chelsea) = (
        photo("astronaut", WIDTH, HEIGHT),
        photo("coffee", WIDTH, HEIGHT),
        photo("chelsea", WIDTH, HEIGHT),
    );
    let none = gst::BufferFlags::empty();
    // Mask reuse, smoothing across frames, and a discontinuity that restarts both.
    let frames: Vec<(&[u8], gst::BufferFlags)> = vec![
        (&astronaut, none),
        (&coffee, none),
        (&coffee, none),
        (&chelsea, gst::BufferFlags::DISCONT),
        (&astronaut, none),
        (&chelsea, none),
        (&coffee, none),
    ];
    let controls = |overlap: bool| {
        vec![
            ("overlap", overlap.to_value()),
            ("mask-interval", 2u32.to_value()),
            ("temporal-smoothing", 0.5f64.to_value()),
        ]
    };
    let plain = run(&controls(false), &frames);
    let overlapped = run(&controls(true), &frames);
    assert_eq!(plain.len(), frames.len());
    assert_eq!(
        overlapped.len(),
        frames.len(),
        "every frame comes out, the last at EOS"
    );
    for (index, (a, b)) in plain.iter().zip(&overlapped).enumerate() {
        assert_eq!(a.0, b.0, "frame {index}: timestamp");
        assert!(a.1 == b.1, "frame {index}: pixels differ with overlap");
    }
    // The frames really differ from one another, so a mix-up of order would show.
    assert_ne!(plain[0].1, plain[1].1);
}

#[test]
fn a_held_frame_comes_out_when_the_next_one_or_eos_arrives() {
    if without_set_up() {
        return;
    }
    let astronaut = photo("astronaut", WIDTH, HEIGHT);
    let mut h = harness(&[("overlap", true.to_value())], WIDTH, HEIGHT);
    h.push(frame_buffer(&astronaut, 0, gst::BufferFlags::empty()))
        .unwrap();
    assert!(h.try_pull().is_none(), "the first frame is held back");
    h.push(frame_buffer(&astronaut, 1, gst::BufferFlags::empty()))
        .unwrap();
    h.push(frame_buffer(&astronaut, 2, gst::BufferFlags::empty()))
        .unwrap();
    let mut pts = Vec::new();
    while let Some(out) = h.try_pull() {
        pts.push(out.pts().unwrap().mseconds());
    }
    assert!(
        !pts.is_empty() && pts.len() < 3,
        "frames flow while the next ones arrive: {pts:?}"
    );
    h.push_event(gst::event::Eos::new());
    while let Some(out) = h.try_pull() {
        pts.push(out.pts().unwrap().mseconds());
    }
    assert_eq!(pts, vec![0, 40, 80], "all out, in order, at EOS");
}

#[test]
fn held_frames_go_out_before_new_caps() {
    if without_set_up() {
        return;
    }
    let (big, small) = (
        photo("astronaut", WIDTH, HEIGHT),
        photo("astronaut", 80, 60),
    );
    let mut h = harness(&[("overlap", true.to_value())], WIDTH, HEIGHT);
    h.push(frame_buffer(&big, 0, gst::BufferFlags::empty()))
        .unwrap();
    h.push(frame_buffer(&big, 1, gst::BufferFlags::empty()))
        .unwrap();
    h.set_src_caps_str("video/x-raw,format=RGB,width=80,height=60,framerate=25/1");
    h.push(frame_buffer(&small, 2, gst::BufferFlags::empty()))
        .unwrap();
    h.push_event(gst::event::Eos::new());
    let mut sizes = Vec::new();
    while let Some(out) = h.try_pull() {
        sizes.push(out.size());
    }
    assert_eq!(
        sizes,
        vec![WIDTH * HEIGHT * 4, WIDTH * HEIGHT * 4, 80 * 60 * 4]
    );
}

#[test]
fn a_file_pipeline_with_overlap_keeps_every_frame() {
    if without_set_up() {
        return;
    }
    let samples = collect_samples(
        "videotestsrc num-buffers=5 pattern=ball ! video/x-raw,format=RGB,width=96,height=72 \
         ! rembgfilter overlap=true mask-interval=2 ! appsink name=sink",
    )
    .unwrap();
    let pts: Vec<_> = samples
        .iter()
        .map(|s| s.buffer().unwrap().pts().unwrap())
        .collect();
    assert_eq!(pts.len(), 5);
    assert!(pts.windows(2).all(|w| w[0] < w[1]), "in order: {pts:?}");
}
