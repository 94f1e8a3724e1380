//! The live `lipsync` element: frames equal to lipsyncsrc's at the audio's times, audio it
//! refuses, its latency, muxing with its own audio, gaps in the audio (timestamps, GAP events,
//! live stalls), silence skipping, catching up in live pipelines and flushing seeks. What depends
//! on time in a live pipeline (stalls, frames within the latency) runs in a Harness on a
//! TestClock, so no verdict depends on how busy the machine is.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use common::talking_head::*;
use common::*;
use gst::prelude::*;

/// The pipeline tests here run one at a time: a live one is clocked by the system clock, and a
/// second pipeline sharing the cores would slow it. (Timing itself is checked on a TestClock.)
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The generated U-Net, templates and audio encoder, and `lipsync` set to use them.
struct Inputs {
    unet: PathBuf,
    template: PathBuf,
    encoder: PathBuf,
    /// `lipsync model=... template=... audio-encoder=...`, for pipeline descriptions.
    element: String,
}

/// The inputs every test reads and none changes (see [`shared_speech_inputs`]).
fn inputs() -> Inputs {
    let (encoder, template, unet) = shared_speech_inputs().clone();
    let element = format!(
        "lipsync model={} template={} audio-encoder={}",
        unet.display(),
        template.display(),
        encoder.display()
    );
    Inputs {
        unet,
        template,
        encoder,
        element,
    }
}

/// The live element on `audio` (any file decodebin takes), as BGR frames with their timestamps.
fn live_frames(audio: &Path, element: &str) -> Vec<gst::Sample> {
    collect_samples(&format!(
        "filesrc location={} ! decodebin ! audioconvert ! audioresample \
         ! audio/x-raw,rate=16000,channels=1 ! {} \
         ! video/x-raw,format=BGR ! appsink name=sink",
        audio.display(),
        element
    ))
    .unwrap()
}

#[test]
fn lipsync_turns_streamed_speech_into_lipsyncsrc_frames_at_the_audio_times() {
    if without_set_up() {
        return;
    }
    let _serial = one_at_a_time();
    let dir = temp_dir_of("speech-live", "");
    let wav = spoken(&dir, "Live speech in, the same talking head out.");
    let inputs = inputs();
    // Without a template cache (0 keeps none, as for lipsyncsrc): the frames do not change.
    let live = live_frames(&wav, &format!("{} max-cached-frames=0", inputs.element));
    let whole = collect_samples(&format!(
        "lipsyncsrc model={} template={} audio-location={} audio-encoder={} \
         ! video/x-raw,format=BGR ! appsink name=sink",
        inputs.unet.display(),
        inputs.template.display(),
        wav.display(),
        inputs.encoder.display()
    ))
    .unwrap();
    // The reference's frames, then at most two holding the last one until the speech ends.
    let holds = live.len() - whole.len();
    assert!(holds <= 2, "{} frames against {}", live.len(), whole.len());
    for (i, a) in live.iter().enumerate() {
        let pts = a.buffer().unwrap().pts().unwrap();
        assert_eq!(
            pts,
            gst::ClockTime::from_mseconds(40 * i as u64),
            "frame {i}"
        );
        let b = &whole[i.min(whole.len() - 1)];
        let quality = psnr(&packed_pixels(a).1, &packed_pixels(b).1);
        assert!(quality >= 50.0, "frame {i}: PSNR {quality:.1} dB");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn lipsync_refuses_audio_it_cannot_take_and_speech_too_short() {
    if without_set_up() {
        return;
    }
    let _serial = one_at_a_time();
    let inputs = inputs();
    let element = &inputs.element;
    // 44.1 kHz without audioresample: the pad template refuses it, so the link fails.
    init();
    let err = gst::parse::launch(&format!(
        "audiotestsrc num-buffers=5 ! audio/x-raw,rate=44100,channels=1 ! {element} ! fakesink"
    ))
    .expect_err("44.1 kHz refused")
    .to_string();
    assert!(
        err.contains("can't handle caps") && err.contains("44100"),
        "{err}"
    );
    // 0.1 s of speech, then EOS: less than one window.
    let err = start_error(&format!(
        "audiotestsrc num-buffers=1 samplesperbuffer=1600 ! audio/x-raw,rate=16000,channels=1 \
         ! {element} ! fakesink"
    ));
    assert!(
        err.contains("1600 samples") && err.contains("0.2 s"),
        "{err}"
    );
}

#[test]
fn lipsync_reports_its_lookahead_and_model_time_as_latency() {
    if without_set_up() {
        return;
    }
    let _serial = one_at_a_time();
    let inputs = inputs();
    init();
    let pipeline = gst::parse::launch(&format!(
        "audiotestsrc is-live=true wave=silence ! audio/x-raw,rate=16000,channels=1 \
         ! {} name=nf ! fakesink name=sink",
        inputs.element
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let (result, _, _) = pipeline.state(gst::ClockTime::from_seconds(60));
    result.unwrap();
    let mut query = gst::query::Latency::new();
    let element = pipeline.by_name("nf").unwrap();
    assert!(element.static_pad("src").unwrap().query(&mut query));
    let (live, min, _) = query.result();
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(live);
    // 0.505 s of audio ahead, plus the encoder's and the U-Net's time.
    assert!(min >= gst::ClockTime::from_mseconds(505), "{min}");
    assert!(min < gst::ClockTime::from_seconds(3), "{min}");
}

#[test]
fn lipsync_video_muxed_with_its_own_audio_lasts_as_long() {
    if without_set_up() {
        return;
    }
    let _serial = one_at_a_time();
    let dir = temp_dir_of("speech-live-mux", "");
    let wav = spoken(&dir, "The muxed audio and video end together.");
    let inputs = inputs();
    let output = dir.join("live.mp4");
    init();
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! wavparse ! tee name=t \
         t. ! queue ! audioconvert ! audioresample ! audio/x-raw,rate=16000,channels=1 \
            ! {} ! videoconvert \
            ! x264enc speed-preset=ultrafast ! h264parse ! queue ! mp4mux name=m \
            ! filesink location={} \
         t. ! queue ! audioconvert ! avenc_aac ! aacparse ! queue ! m.",
        wav.display(),
        inputs.element,
        output.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    run_to_eos(&pipeline).unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    let discoverer = gst_pbutils::Discoverer::new(gst::ClockTime::from_seconds(30)).unwrap();
    let info = discoverer
        .discover_uri(&gst::glib::filename_to_uri(&output, None).unwrap())
        .unwrap();
    assert_eq!(info.video_streams().len(), 1);
    assert_eq!(info.audio_streams().len(), 1);
    let video_end = {
        let frames = collect_samples(&format!(
            "filesrc location={} ! qtdemux ! h264parse ! avdec_h264 ! appsink name=sink",
            output.display()
        ))
        .unwrap();
        let last = frames.last().unwrap().buffer().unwrap();
        (last.pts().unwrap() + last.duration().unwrap()).mseconds() as i64
    };
    let speech = discoverer
        .discover_uri(&gst::glib::filename_to_uri(&wav, None).unwrap())
        .unwrap()
        .duration()
        .unwrap()
        .mseconds() as i64;
    // T = 1 + samples / 200 mel frames make int((T - 16) / 3.2) + 2 windows, plus the two
    // repeated rows: about 25 x seconds - 1 frames, as the offline reference makes, up to 68 ms
    // short; the last frame is held until the video ends within half a frame of the speech.
    println!("video ends at {video_end} ms, speech lasts {speech} ms");
    assert!(
        (speech - video_end).abs() <= 40,
        "video ends at {video_end} ms, speech lasts {speech} ms"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A piece of the audio an appsrc gives `lipsync`: 16 kHz F32 samples stamped `pts_ms`, or a
/// GAP event.
enum Piece {
    Audio { pts_ms: u64, samples: Vec<f32> },
    Gap { pts_ms: u64, duration_ms: u64 },
}

const APPSRC_AUDIO: &str = "appsrc name=src format=time \
    caps=audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved";

/// `description` (an appsrc named "src", an appsink named "sink") parsed, with its two ends.
fn appsrc_pipeline(description: &str) -> (gst::Pipeline, gst_app::AppSrc, gst_app::AppSink) {
    init();
    let pipeline = gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let source = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    (pipeline, source, sink)
}

fn audio_buffer(pts_ms: u64, samples: &[f32]) -> gst::Buffer {
    let bytes: Vec<u8> = samples.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut buffer = gst::Buffer::from_mut_slice(bytes);
    {
        let buffer = buffer.get_mut().unwrap();
        buffer.set_pts(gst::ClockTime::from_mseconds(pts_ms));
        buffer.set_duration(gst::ClockTime::from_nseconds(
            samples.len() as u64 * 1_000_000_000 / 16000,
        ));
    }
    buffer
}

/// Runs `appsrc ! lipsync <element> ! appsink` non-live over `pieces`; the frames and the
/// element's stats.
fn lipsync_on_pieces(element: &str, pieces: &[Piece]) -> (Vec<gst::Sample>, gst::Structure) {
    let (pipeline, source, sink) = appsrc_pipeline(&format!(
        "{APPSRC_AUDIO} ! {element} name=nf ! video/x-raw,format=BGR ! appsink name=sink sync=false"
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    for piece in pieces {
        match piece {
            Piece::Audio { pts_ms, samples } => {
                source.push_buffer(audio_buffer(*pts_ms, samples)).unwrap();
            }
            Piece::Gap {
                pts_ms,
                duration_ms,
            } => {
                assert!(
                    source.send_event(
                        gst::event::Gap::builder(gst::ClockTime::from_mseconds(*pts_ms))
                            .duration(gst::ClockTime::from_mseconds(*duration_ms))
                            .build()
                    )
                );
            }
        }
    }
    source.end_of_stream().unwrap();
    let mut frames = Vec::new();
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(120)) {
        frames.push(sample);
    }
    assert!(sink.is_eos(), "no EOS within two minutes of the last frame");
    let stats = pipeline
        .by_name("nf")
        .unwrap()
        .property::<gst::Structure>("stats");
    if let Some(message) = pipeline
        .bus()
        .unwrap()
        .pop_filtered(&[gst::MessageType::Error])
    {
        panic!("{message:?}");
    }
    pipeline.set_state(gst::State::Null).unwrap();
    (frames, stats)
}

/// 100 ms pieces of silence from `from_ms` to `to_ms` (audio time), with a click (one sample at
/// 0.9) at each of `clicks_ms` that falls inside.
fn pieces_with_clicks(from_ms: u64, to_ms: u64, clicks_ms: &[u64]) -> Vec<Piece> {
    (from_ms..to_ms)
        .step_by(100)
        .map(|pts_ms| {
            let mut samples = vec![0.0f32; 1600];
            for &click in clicks_ms {
                if (pts_ms..pts_ms + 100).contains(&click) {
                    samples[((click - pts_ms) * 16) as usize] = 0.9;
                }
            }
            Piece::Audio { pts_ms, samples }
        })
        .collect()
}

fn frame_bytes(frames: &[gst::Sample]) -> Vec<Vec<u8>> {
    frames.iter().map(|s| packed_pixels(s).1).collect()
}

/// The runs of consecutive frame indices in `frames`.
fn runs(frames: &[usize]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &f in frames {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == f => *end = f,
            _ => runs.push((f, f)),
        }
    }
    runs
}

#[test]
fn clicks_land_on_their_frames_across_gaps_in_timestamps_and_gap_events() {
    if without_set_up() {
        return;
    }
    let _serial = one_at_a_time();
    let inputs = inputs();
    let element = format!("{} skip-silence=true silence-level=-60", inputs.element);
    // Audio from 0.5 s to 6.5 s with nothing from 3.0 to 4.0 s; a click every second.
    let clicks = [1500, 2500, 4500, 5500];
    let mut jumped = pieces_with_clicks(500, 3000, &clicks);
    jumped.extend(pieces_with_clicks(4000, 6500, &clicks));
    let mut with_gap_event = pieces_with_clicks(500, 3000, &clicks);
    with_gap_event.push(Piece::Gap {
        pts_ms: 3000,
        duration_ms: 1000,
    });
    with_gap_event.extend(pieces_with_clicks(4000, 6500, &clicks));
    let mut silent = pieces_with_clicks(500, 3000, &[]);
    silent.extend(pieces_with_clicks(4000, 6500, &[]));

    let (jumped, jumped_stats) = lipsync_on_pieces(&element, &jumped);
    let (with_gap_event, _) = lipsync_on_pieces(&element, &with_gap_event);
    let (silent, silent_stats) = lipsync_on_pieces(&element, &silent);

    // Six seconds make SyncTalk_2D's 25 x 6 - 1 frames and one holding the last to the audio's
    // end, at 0.5 s + f x 40 ms, through the gap.
    assert_eq!(jumped.len(), 150);
    for (f, frame) in jumped.iter().enumerate() {
        let pts = frame.buffer().unwrap().pts().unwrap();
        assert_eq!(
            pts,
            gst::ClockTime::from_mseconds(500 + 40 * f as u64),
            "frame {f}"
        );
    }
    let jumped = frame_bytes(&jumped);
    assert!(
        jumped == frame_bytes(&with_gap_event),
        "a GAP event and a jump in timestamps make the same video"
    );
    // Silence only: every frame is its template, the U-Net never runs.
    assert_eq!(silent.len(), 150);
    assert_eq!(silent_stats.get::<u64>("model-runs").unwrap(), 0);
    assert_eq!(silent_stats.get::<u64>("silent-frames").unwrap(), 149);
    let silent = frame_bytes(&silent);
    // With clicks: the U-Net runs on the frames whose features read a click, around the click's
    // own frame (its time x 25 fps); the rest are the same templates as in silence.
    let moved: Vec<usize> = (0..150).filter(|&f| jumped[f] != silent[f]).collect();
    let found = runs(&moved);
    println!("frames with the U-Net: {found:?}");
    assert_eq!(found.len(), clicks.len(), "{found:?}");
    for (&(first, last), click) in found.iter().zip(clicks) {
        let frame = ((click - 500) / 40) as usize;
        assert!(
            first <= frame && frame <= last && frame - first <= 12 && last - frame <= 11,
            "click at {click} ms (frame {frame}): U-Net on frames {first}..={last}"
        );
    }
    assert_eq!(
        jumped_stats.get::<u64>("silent-frames").unwrap() as usize,
        149 - jumped_stats.get::<u64>("model-runs").unwrap() as usize
    );
}

#[test]
fn a_flushing_seek_restarts_the_frames_at_the_new_position() {
    if without_set_up() {
        return;
    }
    let _serial = one_at_a_time();
    let dir = temp_dir_of("lipsync-seek", "");
    let wav = spoken(
        &dir,
        "A flushing seek into the middle of a sentence, and the talking head goes on from there.",
    );
    let inputs = inputs();
    init();
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! wavparse ! audioconvert ! audioresample \
         ! audio/x-raw,rate=16000,channels=1 ! {} \
         ! video/x-raw,format=BGR ! appsink name=sink sync=false",
        wav.display(),
        inputs.element
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Paused).unwrap();
    pipeline
        .state(gst::ClockTime::from_seconds(60))
        .0
        .expect("prerolled");
    let duration = pipeline.query_duration::<gst::ClockTime>().unwrap();
    let target = gst::ClockTime::from_seconds(2);
    pipeline
        .seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE, target)
        .unwrap();
    pipeline
        .state(gst::ClockTime::from_seconds(60))
        .0
        .expect("prerolled after the seek");
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut frames = Vec::new();
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(60)) {
        frames.push(sample.buffer().unwrap().pts().unwrap());
    }
    assert!(sink.is_eos());
    pipeline.set_state(gst::State::Null).unwrap();
    println!(
        "{} frames from {} to {:?} (speech lasts {duration})",
        frames.len(),
        frames[0],
        frames.last()
    );
    // Nothing from before the seek; frames every 40 ms from the new position to the end.
    assert!(
        frames[0] >= target && frames[0] < target + gst::ClockTime::from_mseconds(40),
        "first frame at {}",
        frames[0]
    );
    for (f, pts) in frames.iter().enumerate() {
        assert_eq!(
            *pts,
            frames[0] + gst::ClockTime::from_mseconds(40 * f as u64)
        );
    }
    let expected = (duration - target).mseconds() as i64 / 40;
    assert!(
        (frames.len() as i64 - expected).abs() <= 3,
        "{} frames, about {expected} expected",
        frames.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_live_pipeline_without_a_queue_delivers_every_frame_without_warnings() {
    if without_set_up() {
        return;
    }
    let _serial = one_at_a_time();
    let inputs = inputs();
    init();
    // 6.4 s of live audio, the video synchronised to the clock at the sink, as a user's
    // `pulsesrc ! ... ! lipsync ! videoconvert ! autovideosink` runs.
    let pipeline = gst::parse::launch(&format!(
        "audiotestsrc is-live=true wave=sine num-buffers=100 ! audio/x-raw,rate=16000,channels=1 \
         ! {} name=nf ! videoconvert \
         ! fakesink name=sink sync=true qos=true",
        inputs.element
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let (mut warnings, mut dropped) = (Vec::new(), 0u64);
    for message in bus.iter_timed(gst::ClockTime::from_seconds(60)) {
        match message.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(err) => panic!("{}: {:?}", err.error(), err.debug()),
            // lipsync's own: a sink that drops many late frames warns that the machine is
            // too slow, which is the load's doing.
            gst::MessageView::Warning(warning)
                if warning.src().is_some_and(|src| src.name() == "nf") =>
            {
                warnings.push(warning.error().to_string())
            }
            // One QoS message per frame dropped for lateness, by videoconvert or the sink.
            gst::MessageView::Qos(_) => dropped += 1,
            _ => {}
        }
    }
    let stats = pipeline
        .by_name("nf")
        .unwrap()
        .property::<gst::Structure>("stats");
    let rendered: u64 = pipeline
        .by_name("sink")
        .unwrap()
        .property::<gst::Structure>("stats")
        .get("rendered")
        .unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    // Whether each frame made its time on this clock depends on how busy the machine is: it is
    // printed here, and checked on a TestClock by
    // live_frames_leave_within_the_latency_the_element_reports.
    println!("lipsync {stats}; sink rendered {rendered}, dropped {dropped} for lateness");
    assert!(warnings.is_empty(), "{warnings:?}");
    let frames: u64 = stats.get("frames").unwrap();
    // 6.4 s of audio: 159 frames and one held to the end, each reaching the sink.
    assert_eq!(frames, 160);
    assert_eq!(rendered + dropped, frames);
}

/// `lipsync` in a Harness that is live, on a TestClock: time moves only when the test says, so
/// what is checked is when the element acts, never how fast the machine is.
fn live_harness(inputs: &Inputs) -> gst_check::Harness {
    init();
    let element = gst::ElementFactory::make("lipsync")
        .property("model", inputs.unet.to_str().unwrap())
        .property("template", inputs.template.to_str().unwrap())
        .property("audio-encoder", inputs.encoder.to_str().unwrap())
        .build()
        .unwrap();
    let mut h = gst_check::Harness::with_element(&element, Some("sink"), Some("src"));
    h.use_testclock();
    h.set_src_caps_str("audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved");
    h.play();
    h
}

/// 100 ms of speech-like audio.
fn tone() -> Vec<f32> {
    (0..1600).map(|i| 0.3 * (i as f32 * 0.11).sin()).collect()
}

/// Pushes the 100 ms from `start_ms` as a capture device would, once the clock has passed
/// their end.
fn capture(h: &mut gst_check::Harness, start_ms: u64) {
    h.set_time(gst::ClockTime::from_mseconds(start_ms + 100))
        .unwrap();
    h.push(audio_buffer(start_ms, &tone())).unwrap();
}

/// Waits until the element's source pad task has pushed every frame it made and sleeps on the
/// clock for missing audio; gives the time it sleeps until.
fn settle(h: &gst_check::Harness) -> gst::ClockTime {
    let clock = h.testclock().unwrap();
    let id = clock.wait_for_next_pending_id();
    id.time()
}

/// Every frame the harness holds, as timestamps in ms.
fn pulled_pts(h: &mut gst_check::Harness) -> Vec<u64> {
    let mut pts = Vec::new();
    while let Some(frame) = h.try_pull() {
        pts.push(frame.pts().unwrap().mseconds());
    }
    pts
}

#[test]
fn a_live_stall_is_filled_once_the_clock_says_the_audio_is_overdue() {
    if without_set_up() {
        return;
    }
    let inputs = inputs();
    let mut h = live_harness(&inputs);
    for start in (0..2000).step_by(100) {
        capture(&mut h, start);
    }
    // No audio after 2.0 s: the task sleeps until it is overdue by the grace of 100 ms, plus
    // one frame, and not a moment before; no frame for the stall comes meanwhile.
    assert_eq!(settle(&h), gst::ClockTime::from_mseconds(2000 + 100 + 40));
    let before = pulled_pts(&mut h);
    let last_before = *before.last().expect("frames for the first 2 s");
    // The audio a frame waits for: what is missing at the end.
    let lookahead = 2000 - last_before;
    // Nothing new while the clock stands still.
    assert_eq!(settle(&h), gst::ClockTime::from_mseconds(2140));
    assert_eq!(h.buffers_in_queue(), 0);

    // The clock reaches 3.0 s with no audio: silence up to 2.9 s (now less the grace), and
    // its frames; the task then sleeps a frame further on.
    let clock = h.testclock().unwrap();
    clock.set_time(gst::ClockTime::from_mseconds(3000));
    clock.process_next_clock_id().unwrap();
    assert_eq!(settle(&h), gst::ClockTime::from_mseconds(3040));
    let during = pulled_pts(&mut h);
    let last_during = *during.last().expect("frames for the stall");
    println!(
        "{} frames for 0-2 s (lookahead {lookahead} ms), {} for the stall, the last at {last_during} ms",
        before.len(),
        during.len()
    );
    assert!(
        last_during + lookahead + 40 >= 2900 && last_during + lookahead <= 2900 + 40,
        "frames up to {last_during} ms for silence to 2.9 s (lookahead {lookahead} ms)"
    );

    // The audio comes back at 3.5 s and ends at 4.5 s.
    for start in (3500..4500).step_by(100) {
        capture(&mut h, start);
    }
    h.push_event(gst::event::Eos::new());
    let mut after = Vec::new();
    while let Ok(frame) = h.pull() {
        after.push(frame.pts().unwrap().mseconds());
        if after.last() >= Some(&4440) {
            break;
        }
    }
    let all: Vec<u64> = before.into_iter().chain(during).chain(after).collect();
    // Every 40 ms from the first frame to the last, through the stall.
    let expected: Vec<u64> = (0..all.len() as u64).map(|f| 40 * f).collect();
    assert_eq!(all, expected);
}

#[test]
fn live_frames_leave_within_the_latency_the_element_reports() {
    if without_set_up() {
        return;
    }
    let inputs = inputs();
    let mut h = live_harness(&inputs);
    let bus = gst::Bus::new();
    h.element().unwrap().set_bus(Some(&bus));
    let latency = h.query_latency().expect("a live latency");
    println!("reported latency {latency}");
    let mut frames = Vec::new();
    // 6.4 s in 100 ms captures: after each, the frames made must cover the audio up to the
    // clock less the latency reported, as a sink synchronised to this clock needs them.
    for start in (0..6400).step_by(100) {
        capture(&mut h, start);
        settle(&h);
        frames.extend(pulled_pts(&mut h));
        let now = gst::ClockTime::from_mseconds(start + 100);
        let due = now.saturating_sub(latency).mseconds();
        assert!(
            frames.last().is_some_and(|last| last + 40 > due) || due < 40,
            "at {now} (latency {latency}) the frames end at {:?}",
            frames.last()
        );
    }
    h.push_event(gst::event::Eos::new());
    while let Ok(frame) = h.pull() {
        frames.push(frame.pts().unwrap().mseconds());
        if frames.len() >= 160 {
            break;
        }
    }
    // 6.4 s of audio: 159 frames and one held to the end, in order, 40 ms apart.
    let expected: Vec<u64> = (0..160).map(|f| 40 * f).collect();
    assert_eq!(frames, expected);
    let warnings: Vec<_> =
        std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Warning])).collect();
    assert!(warnings.is_empty(), "{warnings:?}");
}
