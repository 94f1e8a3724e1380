//! rembgfilter with a model far slower than the frame rate (isnet-fp16, about a second a run): the
//! latency query and a stop do not wait behind a frame that waits for its mask; a live stream
//! whose masks trail the frame rate gets one warning saying both rates. In a file of its own so
//! that its model runs do not load the other live tests, which measure timing.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use gst::prelude::*;

#[test]
fn latency_is_answered_and_the_pipeline_stops_while_a_frame_waits_for_a_slow_model() {
    if without_set_up() {
        return;
    }
    // isnet-fp16 takes about a second a run here: the first frame of an asynchronous live stream
    // waits that long for its mask. The latency query must not wait behind it, and a stop wakes
    // the waiting streaming thread instead of leaving it to the model.
    init();
    let pipeline = gst::parse::launch(
        "videotestsrc is-live=true pattern=ball ! video/x-raw,format=RGB,width=96,height=64,framerate=30/1 \
         ! rembgfilter name=filter model=isnet-fp16 ! fakesink sync=true",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let filter = pipeline.by_name("filter").unwrap();
    let count_buffers = |pad: &str| {
        let count = Arc::new(AtomicUsize::new(0));
        let counter = count.clone();
        filter
            .static_pad(pad)
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                counter.fetch_add(1, Ordering::SeqCst);
                gst::PadProbeReturn::Ok
            });
        count
    };
    let (entered, left) = (count_buffers("sink"), count_buffers("src"));
    pipeline.set_state(gst::State::Playing).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut queries_while_waiting = 0;
    while left.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
        if entered.load(Ordering::SeqCst) > 0 {
            let mut query = gst::query::Latency::new();
            let asked = std::time::Instant::now();
            assert!(filter.static_pad("src").unwrap().query(&mut query));
            let took = asked.elapsed();
            assert!(
                took < std::time::Duration::from_millis(200),
                "a latency query took {took:?} while a frame waited for the model"
            );
            queries_while_waiting += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(
        queries_while_waiting >= 3,
        "only {queries_while_waiting} queries while the first frame waited"
    );
    let stats = filter.property::<gst::Structure>("stats");
    let runs = stats.get::<u64>("model-runs").unwrap().max(1);
    let one_run = std::time::Duration::from_nanos(stats.get::<u64>("model-time").unwrap() / runs);
    let stopping = std::time::Instant::now();
    pipeline.set_state(gst::State::Null).unwrap();
    // At most the model's run in progress (its thread is joined), never a hang; the bound
    // follows the runs measured here, since a loaded machine runs the model slower.
    let bound = one_run * 3 + std::time::Duration::from_secs(2);
    assert!(
        stopping.elapsed() < bound,
        "stopping took {:?}, one model run {one_run:?}",
        stopping.elapsed()
    );
}

#[test]
fn a_live_stream_whose_masks_trail_the_frame_rate_gets_one_warning_with_both_rates() {
    if without_set_up() {
        return;
    }
    // u2netp takes 0.1-0.25 s a run on two cores (a busier machine only makes it slower): far
    // fewer than the 30 masks a second that four seconds of live 30 fps video ask for.
    let (samples, warnings) = collect_samples_and_warnings(
        "videotestsrc is-live=true num-buffers=120 pattern=ball \
         ! video/x-raw,format=RGB,width=96,height=64,framerate=30/1 \
         ! rembgfilter model=u2netp ! appsink name=sink sync=true",
    )
    .unwrap();
    assert_eq!(samples.len(), 120, "every frame comes out");
    let slow: Vec<&String> = warnings
        .iter()
        .filter(|w| w.contains("refreshes the mask"))
        .collect();
    assert_eq!(slow.len(), 1, "{warnings:?}");
    assert!(
        slow[0].contains("u2netp") && slow[0].contains("below the video's 30.0 frames a second"),
        "{}",
        slow[0]
    );
    let rate: f64 = slow[0]
        .split("refreshes the mask ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|number| number.parse().ok())
        .expect("the refresh rate in the text");
    assert!(rate < 22.5, "{}", slow[0]);
}
