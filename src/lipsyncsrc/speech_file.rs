//! Decodes a sound file for lipsyncsrc's `audio-location`: any format GStreamer decodes, its first
//! audio stream mixed to mono and resampled to 16 kHz float32 by audioconvert and audioresample, in
//! a pipeline of its own that runs to the end of the file.

use std::path::Path;

use gst::prelude::*;

use crate::decoded_streams::StreamWatch;
use crate::talking_head::speech::SAMPLE_RATE;

/// Longest sound file taken: an hour of speech is 230 MB of float32 samples.
const MAX_SECONDS: u64 = 3600;
/// Decoding that gives nothing for this long has stalled.
const STALL: std::time::Duration = std::time::Duration::from_secs(20);

/// The samples of `path`, or why not (naming nothing: the caller names the property and file).
pub fn decode_speech(path: &Path) -> Result<Vec<f32>, String> {
    if path.is_dir() {
        return Err("is a folder; expected a sound file".into());
    }
    if !path.is_file() {
        return Err("does not exist".into());
    }
    let uri = gst::glib::filename_to_uri(path, None).map_err(|e| e.to_string())?;
    let pipeline = gst::Pipeline::new();
    let make = |factory: &str| {
        gst::ElementFactory::make(factory)
            .build()
            .map_err(|_| format!("GStreamer element {factory} is missing"))
    };
    let decode = make("uridecodebin")?;
    decode.set_property("uri", uri.as_str());
    let convert = make("audioconvert")?;
    let resample = make("audioresample")?;
    let sink = gst_app::AppSink::builder()
        .caps(
            &gst_audio_caps()
                .field("rate", SAMPLE_RATE as i32)
                .field("channels", 1)
                .build(),
        )
        .sync(false)
        .build();
    pipeline
        .add_many([&decode, &convert, &resample, sink.upcast_ref()])
        .map_err(|e| e.to_string())?;
    gst::Element::link_many([&convert, &resample, sink.upcast_ref()]).map_err(|e| e.to_string())?;
    let convert_weak = convert.downgrade();
    let streams = StreamWatch::new(&decode, "audio/", move |pad| {
        let Some(convert) = convert_weak.upgrade() else {
            return;
        };
        let sink_pad = convert
            .static_pad("sink")
            .expect("audioconvert has a sink pad");
        // The first audio stream only.
        if !sink_pad.is_linked() {
            let _ = pad.link(&sink_pad);
        }
    });
    let result = collect(&pipeline, &sink, &streams).map_err(|error| {
        if streams.found_wanted() {
            error
        } else if streams.found_only_others() {
            no_audio(&streams)
        } else {
            format!("has no audio stream GStreamer can decode ({error})")
        }
    });
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn no_audio(streams: &StreamWatch) -> String {
    format!("has no audio stream: {}", streams.found_only())
}

fn gst_audio_caps() -> gst::caps::Builder<gst::caps::NoFeature> {
    gst::Caps::builder("audio/x-raw")
        .field("format", "F32LE")
        .field("layout", "interleaved")
}

fn collect(
    pipeline: &gst::Pipeline,
    sink: &gst_app::AppSink,
    streams: &StreamWatch,
) -> Result<Vec<f32>, String> {
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| "cannot be played (not a sound file GStreamer decodes?)".to_string())?;
    let limit = (MAX_SECONDS * u64::from(SAMPLE_RATE)) as usize;
    let mut samples = Vec::new();
    let bus = pipeline.bus().expect("a pipeline has a bus");
    let mut last_sample = std::time::Instant::now();
    loop {
        if streams.settled_without_wanted() {
            return Err(no_audio(streams));
        }
        if last_sample.elapsed() > STALL {
            return Err(format!("gave no audio for {} s", STALL.as_secs()));
        }
        if let Some(message) = bus.pop_filtered(&[gst::MessageType::Error])
            && let gst::MessageView::Error(error) = message.view()
        {
            return Err(error.error().to_string());
        }
        match sink.try_pull_sample(gst::ClockTime::from_mseconds(200)) {
            Some(sample) => {
                last_sample = std::time::Instant::now();
                let buffer = sample.buffer().ok_or("a sample without a buffer")?;
                let map = buffer.map_readable().map_err(|e| e.to_string())?;
                samples.extend(
                    map.chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                );
                if samples.len() > limit {
                    return Err(format!("is longer than {MAX_SECONDS} s"));
                }
            }
            None if sink.is_eos() => break,
            None => {}
        }
    }
    if samples.is_empty() {
        return Err("has no audio stream".into());
    }
    Ok(samples)
}
