//! rembgfilter in live and non-live pipelines: latency reported, late frames dropped with QoS
//! messages only when live, every frame kept otherwise.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use gst::prelude::*;

/// Plays a pipeline whose sink is named "sink"; returns (buffers at the sink, QoS messages,
/// the pipeline's latency query answer).
fn play(description: &str) -> (usize, usize, Option<(bool, gst::ClockTime)>) {
    init();
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    pipeline
        .by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            counter.fetch_add(1, Ordering::SeqCst);
            gst::PadProbeReturn::Ok
        });
    pipeline.set_state(gst::State::Playing).unwrap();
    let (mut qos, mut latency) = (0, None);
    for message in pipeline
        .bus()
        .unwrap()
        .iter_timed(gst::ClockTime::from_seconds(120))
    {
        match message.view() {
            gst::MessageView::Qos(..) => qos += 1,
            gst::MessageView::AsyncDone(..) => {
                let mut query = gst::query::Latency::new();
                if pipeline.query(&mut query) {
                    let (live, min, _) = query.result();
                    latency = Some((live, min));
                }
            }
            gst::MessageView::Eos(..) => break,
            gst::MessageView::Error(err) => panic!("{}", err.error()),
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    (count.load(Ordering::SeqCst), qos, latency)
}

#[test]
fn live_pipeline_reports_latency_and_drops_late_frames_with_qos() {
    // u2netp takes far longer than a 30 fps frame here, so frames fall behind.
    let (delivered, qos, latency) = play(
        "videotestsrc is-live=true num-buffers=45 ! video/x-raw,format=RGB,width=160,height=120,framerate=30/1 \
         ! rembgfilter ! fakesink name=sink sync=true qos=true",
    );
    let (live, min) = latency.expect("the pipeline answers the latency query");
    assert!(live);
    // videotestsrc alone reports one frame (33 ms); the model's run time comes on top.
    assert!(
        min >= gst::ClockTime::from_mseconds(60),
        "the model's run time is part of the latency: {min}"
    );
    assert!(qos > 0, "late frames are dropped with QoS messages");
    assert!(
        delivered < 45,
        "frames that were already late were dropped ({delivered} delivered)"
    );
}

#[test]
fn non_live_pipeline_never_drops_a_frame() {
    let (delivered, qos, _) = play(
        "videotestsrc num-buffers=12 ! video/x-raw,format=RGB,width=160,height=120,framerate=30/1 \
         ! rembgfilter ! fakesink name=sink sync=true qos=true",
    );
    assert_eq!(delivered, 12);
    assert_eq!(qos, 0);
}
