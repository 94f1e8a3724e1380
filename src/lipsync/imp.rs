//! GStreamer glue of `lipsync`: properties, caps, the audio entry point, events and queries, and
//! in live pipelines a source pad task that pushes the frames and fills stalls in the audio with
//! silence so the video keeps coming. The features come from `talking_head::speech`, time and
//! frame choices from `talking_head::live`, the frames from `talking_head`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_video::VideoFormat;

use crate::inference;
use crate::inference::InferenceError;
use crate::inference::element::{InferenceStats, StartSettingsGuard};
use crate::inference::requests::Interrupters;
use crate::talking_head::live::{self, AudioTimeline, FrameConditions, FrameSource};
use crate::talking_head::speech::{AudioEncoder, SAMPLE_RATE, SpeechError, SpeechStream};
use crate::talking_head::{self, LipsyncModel, TemplateSet};
use crate::talking_head_settings::{self, TalkingHeadSettings};
use crate::video::{FramePlacement, talking_head_buffer};

use super::output::{Item, OutputQueue};

mod live_only;
use live_only::StallWatch;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "lipsync",
        gst::DebugColorFlags::empty(),
        Some("Live talking head from speech"),
    )
});

const FPS: u64 = 25;
const FRAME_DURATION: gst::ClockTime = gst::ClockTime::from_nseconds(1_000_000_000 / FPS);
const DEFAULT_SKIP_SILENCE: bool = false;
const DEFAULT_SILENCE_LEVEL: f64 = -50.0;
const DEFAULT_CATCH_UP: bool = true;
/// In a live pipeline, audio this long overdue (beyond upstream's latency) is taken as missing
/// and replaced by silence; it is part of the latency the element reports.
const STALL_GRACE: gst::ClockTime = gst::ClockTime::from_mseconds(100);
/// Silence for a gap is pushed and rendered this many samples at a time, so a long gap never
/// holds more than a second of audio or a frame at once.
const SILENCE_CHUNK: usize = SAMPLE_RATE as usize;
/// Frames (and events) waiting for the source pad task in a live pipeline: two seconds.
const OUTPUT_CAPACITY: usize = 50;
const FORMATS: [VideoFormat; 4] = [
    VideoFormat::Bgr,
    VideoFormat::Rgb,
    VideoFormat::Bgrx,
    VideoFormat::Rgbx,
];

#[derive(Debug, Clone)]
struct Settings {
    /// Model, templates, encoder, template cycle and cache, backend: shared with the other
    /// talking-head element.
    head: TalkingHeadSettings,
    skip_silence: bool,
    silence_level: f64,
    catch_up: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            head: TalkingHeadSettings::default(),
            skip_silence: DEFAULT_SKIP_SILENCE,
            silence_level: DEFAULT_SILENCE_LEVEL,
            catch_up: DEFAULT_CATCH_UP,
        }
    }
}

/// Frames made each way since start, for the `stats` property.
#[derive(Debug, Default, Clone, Copy)]
struct SourceCounts {
    silent: u64,
    late: u64,
}

/// Exists from READY to PAUSED until PAUSED to READY.
struct State {
    templates: Arc<TemplateSet>,
    faces: Arc<talking_head::FaceCache>,
    model: LipsyncModel,
    encoder: AudioEncoder,
    stream: SpeechStream,
    /// Where the audio since start or the last flush sits: frame f shows the audio at its
    /// origin + f x 40 ms.
    timeline: AudioTimeline,
    segment: gst::FormattedSegment<gst::ClockTime>,
    /// Whether upstream is live, asked at the first buffer.
    live: Option<bool>,
    upstream_latency: gst::ClockTime,
    /// EOS came: no more audio, and no silence is added.
    ended: bool,
    video_info: Option<gst_video::VideoInfo>,
    /// Whether the audio is S16LE (else F32LE), from the CAPS event; `None` before it.
    input_is_s16: Option<bool>,
    pool: Option<gst::BufferPool>,
    window: Vec<f32>,
    /// The last U-Net output, pasted again into frames that would be late.
    last_mouth: Option<Vec<f32>>,
    /// The last frame made, held at the end to cover the rest of the audio.
    last_frame: Option<gst::Buffer>,
    warned_non_finite: bool,
    /// One U-Net run at start, for the latency query.
    model_latency: Duration,
    /// A running estimate of the U-Net's time, to tell whether a frame would be late.
    model_estimate: Duration,
}

/// Audio for the speech stream: samples, or silence of some length.
enum Audio {
    Samples(Vec<f32>),
    Silence(u64),
}

/// Lock order: `push_lock`, then `state`, then any one of `settings`, `stats` and `counts`
/// (leaves); never the reverse. `pipeline_latency`, `active_backend`, the stall watch's and the
/// output queue's own locks are taken with nothing else held, so the source pad task and a flush
/// never wait behind a frame in the making. The source pad task only ever tries `push_lock`
/// (to fill a stall): the streaming thread may hold it while waiting for the task.
pub struct Lipsync {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// Held while audio goes into the stream and its frames go out, so the streaming thread and
    /// the stall filler (the source pad task) push frames in order.
    push_lock: Mutex<()>,
    stall_watch: StallWatch,
    /// Live: frames go out from the source pad's task through this queue.
    output: Arc<OutputQueue>,
    live_output: AtomicBool,
    /// The pipeline's latency (the LATENCY event from downstream): a frame is due at its running
    /// time plus this.
    pipeline_latency: Mutex<Option<gst::ClockTime>>,
    stats: Mutex<InferenceStats>,
    counts: Mutex<SourceCounts>,
    active_backend: Mutex<String>,
    start_settings: StartSettingsGuard,
    /// A server's requests, which a flush or a stop gives up on.
    interrupters: Interrupters,
}

#[glib::object_subclass]
impl ObjectSubclass for Lipsync {
    const NAME: &'static str = "GstLipsync";
    type Type = super::Lipsync;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let sinkpad = gst::Pad::builder_from_template(&klass.pad_template("sink").unwrap())
            .chain_function(|pad, parent, buffer| {
                Lipsync::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |this| this.chain(pad, buffer),
                )
            })
            .event_function(|pad, parent, event| {
                Lipsync::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.sink_event(pad, event),
                )
            })
            .build();
        let srcpad = gst::Pad::builder_from_template(&klass.pad_template("src").unwrap())
            .query_function(|pad, parent, query| {
                Lipsync::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.src_query(pad, query),
                )
            })
            .event_function(|pad, parent, event| {
                Lipsync::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.src_event(pad, event),
                )
            })
            .build();
        Self {
            sinkpad,
            srcpad,
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(None),
            push_lock: Mutex::new(()),
            stall_watch: StallWatch::default(),
            output: Arc::new(OutputQueue::new(OUTPUT_CAPACITY)),
            live_output: AtomicBool::new(false),
            pipeline_latency: Mutex::new(None),
            stats: Mutex::new(InferenceStats::default()),
            counts: Mutex::new(SourceCounts::default()),
            active_backend: Mutex::new(String::new()),
            start_settings: StartSettingsGuard::default(),
            interrupters: Interrupters::default(),
        }
    }
}

impl Lipsync {
    fn load(&self, settings: &Settings) -> Result<State, gst::ErrorMessage> {
        let required = TalkingHeadSettings::required;
        let model_path = required(&settings.head.model, "model")?;
        let template_path = required(&settings.head.template, "template")?;
        let encoder_path = required(&settings.head.audio_encoder, "audio-encoder")?;
        let templates = crate::video::open_templates(
            &*self.obj(),
            &template_path,
            settings.head.start_frame,
            settings.head.parsing,
            settings.head.max_cached_frames,
        )?;
        let local = settings.head.backend.in_this_process();
        let encoder = inference::element::load_backend(
            &*self.obj(),
            &local,
            &encoder_path.to_string_lossy(),
            || Ok(encoder_path.clone()),
        )?;
        let encoder = AudioEncoder::new(encoder.model).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenRead,
                ("property 'audio-encoder': {}", e)
            )
        })?;
        let loaded = inference::element::load_backend(
            &*self.obj(),
            &settings.head.backend,
            &model_path.to_string_lossy(),
            || Ok(model_path.clone()),
        )?;
        inference::element::set_active_backend(&*self.obj(), &self.active_backend, loaded.runs_on);
        if let Some(cancellation) = loaded.cancellation {
            self.interrupters.register(cancellation);
        }
        let model = LipsyncModel::new(loaded.model, talking_head::Mode::Ave).map_err(|e| {
            gst::error_msg!(gst::LibraryError::Settings, ("property 'model': {}", e))
        })?;
        let faces = Arc::new(talking_head::face_cache(&templates));
        let templates = Arc::new(templates);
        // One run on the first template and a silent window: a model that cannot run fails
        // here, and the latency query has its time.
        let face = talking_head::prepare_with_window(
            &templates,
            &faces,
            0,
            vec![0.0; talking_head::Mode::Ave.window_len()],
        )
        .map_err(|e| {
            gst::error_msg!(gst::ResourceError::OpenRead, ("property 'template': {}", e))
        })?;
        // Twice: the first run of a runtime is slow (allocations, kernel choices); the second is
        // what a frame costs.
        let mut model_latency = Duration::ZERO;
        for _ in 0..2 {
            let started = std::time::Instant::now();
            model
                .run(&face.face.image_input, &face.audio_input)
                .map_err(|e| {
                    gst::error_msg!(gst::LibraryError::Failed, ("property 'model': {}", e))
                })?;
            model_latency = started.elapsed();
        }
        Ok(State {
            templates,
            faces,
            model,
            encoder,
            stream: SpeechStream::new(),
            timeline: AudioTimeline::default(),
            segment: gst::FormattedSegment::new(),
            live: None,
            upstream_latency: gst::ClockTime::ZERO,
            ended: false,
            video_info: None,
            input_is_s16: None,
            pool: None,
            window: Vec::new(),
            last_mouth: None,
            last_frame: None,
            warned_non_finite: false,
            model_latency,
            model_estimate: model_latency,
        })
    }

    /// Video caps for the templates' size: the format downstream prefers of [`FORMATS`], and a
    /// buffer pool of that size.
    fn negotiate(&self, state: &mut State) -> Result<(), gst::FlowError> {
        if state.video_info.is_some() {
            return Ok(());
        }
        let (width, height) = state.templates.size();
        let template = gst_video::VideoCapsBuilder::new()
            .format_list(FORMATS)
            .width(width as i32)
            .height(height as i32)
            .framerate(gst::Fraction::new(FPS as i32, 1))
            .build();
        let caps = self
            .srcpad
            .peer_query_caps(Some(&template))
            .intersect(&template);
        if caps.is_empty() {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                (
                    "downstream takes none of BGR, RGB, BGRx, RGBx at {}x{} 25 fps",
                    width,
                    height
                )
            );
            return Err(gst::FlowError::NotNegotiated);
        }
        let mut caps = caps;
        caps.fixate();
        let info =
            gst_video::VideoInfo::from_caps(&caps).map_err(|_| gst::FlowError::NotNegotiated)?;
        if self
            .send(Item::Event(gst::event::Caps::new(&caps)))
            .is_err()
        {
            return Err(gst::FlowError::NotNegotiated);
        }
        let pool = gst_video::VideoBufferPool::new();
        let mut config = pool.config();
        config.set_params(Some(&caps), info.size() as u32, 2, 0);
        state.pool = match pool.set_config(config).and_then(|_| pool.set_active(true)) {
            Ok(()) => Some(pool.upcast()),
            // Frames are then allocated one by one: slower, not wrong.
            Err(err) => {
                gst::warning!(CAT, imp = self, "no buffer pool: {err}");
                None
            }
        };
        state.video_info = Some(info);
        Ok(())
    }

    fn chain(
        &self,
        _pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let input_is_s16 = match self.state.lock().unwrap().as_ref() {
            Some(state) => state.input_is_s16.ok_or(gst::FlowError::NotNegotiated)?,
            None => return Err(gst::FlowError::Flushing),
        };
        let samples = {
            let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
            if input_is_s16 {
                map.chunks_exact(2)
                    .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
                    .collect::<Vec<f32>>()
            } else {
                map.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            }
        };
        *self.stall_watch.chain_idle_since.lock().unwrap() = None;
        let result = self.place_and_feed(buffer, samples);
        *self.stall_watch.chain_idle_since.lock().unwrap() =
            self.obj().clock().map(|clock| clock.time());
        // The source pad task may sleep until the audio is overdue: it is not now.
        self.output.wake();
        result
    }

    fn place_and_feed(
        &self,
        buffer: gst::Buffer,
        samples: Vec<f32>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let _push = self.push_lock.lock().unwrap();
        let (placement, start_output_task) = {
            let mut guard = self.state.lock().unwrap();
            let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
            let first = state.live.is_none();
            if first {
                let mut query = gst::query::Latency::new();
                let (live, min) = if self.sinkpad.peer_query(&mut query) {
                    let (live, min, _) = query.result();
                    (live, min)
                } else {
                    (false, gst::ClockTime::ZERO)
                };
                gst::debug!(CAT, imp = self, "upstream live: {live}, latency {min}");
                state.live = Some(live);
                state.upstream_latency = min;
            }
            let placement = state
                .timeline
                .place(buffer.pts().map(|pts| pts.nseconds()), samples.len())
                .map_err(|e| {
                    gst::element_imp_error!(self, gst::StreamError::Format, ("{}", e));
                    gst::FlowError::Error
                })?;
            (placement, first && state.live == Some(true))
        };
        if placement.silence_before > 0 || placement.skip > 0 {
            gst::debug!(
                CAT,
                imp = self,
                "buffer at {:?}: {} samples of silence before it, {} repeated samples cut",
                buffer.pts(),
                placement.silence_before,
                placement.skip
            );
        }
        if start_output_task {
            self.start_output_task();
        }
        if placement.silence_before > 0 {
            self.feed(Audio::Silence(placement.silence_before))?;
        }
        let mut samples = samples;
        samples.drain(..placement.skip);
        self.feed(Audio::Samples(samples))
    }

    /// Puts audio into the speech stream (silence a second at a time) and pushes every frame it
    /// completes, one at a time as each is made. The caller holds `push_lock`.
    fn feed(&self, audio: Audio) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut silence_left = match &audio {
            Audio::Silence(samples) => *samples,
            Audio::Samples(_) => 0,
        };
        let mut samples = match audio {
            Audio::Samples(samples) => Some(samples),
            Audio::Silence(_) => None,
        };
        let zeros = vec![0.0f32; SILENCE_CHUNK.min(silence_left as usize)];
        loop {
            {
                let mut guard = self.state.lock().unwrap();
                let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
                if let Some(samples) = samples.take() {
                    state.stream.push(&samples);
                } else if silence_left > 0 {
                    let chunk = silence_left.min(SILENCE_CHUNK as u64) as usize;
                    state.stream.push(&zeros[..chunk]);
                    silence_left -= chunk as u64;
                } else {
                    break;
                }
                state
                    .stream
                    .encode_ready(&state.encoder)
                    .map_err(|e| self.speech_error(e))?;
            }
            self.push_ready_frames()?;
        }
        Ok(gst::FlowSuccess::Ok)
    }

    /// Renders and pushes every frame whose features are complete, each as soon as it is made.
    fn push_ready_frames(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
        loop {
            let frame = {
                let mut guard = self.state.lock().unwrap();
                let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
                self.render_next(state)?
            };
            match frame {
                Some(frame) => self.send(Item::Buffer(frame))?,
                None => return Ok(gst::FlowSuccess::Ok),
            };
        }
    }

    /// At the end: SyncTalk_2D's count of frames (about 25 x seconds - 1) stops up to 68 ms
    /// before the audio does, so the last frame is repeated, 40 ms at a time, until the video
    /// ends within half a frame of the audio: muxed with the same audio, the two end together
    /// whatever the encoder does with durations.
    fn push_hold_frames(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
        let holds = {
            let guard = self.state.lock().unwrap();
            let state = guard.as_ref().ok_or(gst::FlowError::Flushing)?;
            let (Some(last), Some(audio_end)) = (&state.last_frame, state.timeline.end()) else {
                return Ok(gst::FlowSuccess::Ok);
            };
            let frame = FRAME_DURATION;
            let (mut pts, mut index) = (last.pts().unwrap_or_default(), last.offset());
            let mut holds = Vec::new();
            while pts + frame + frame / 2 < gst::ClockTime::from_nseconds(audio_end) {
                pts += frame;
                index += 1;
                let mut hold = last.copy();
                let hold_ref = hold.make_mut();
                hold_ref.set_pts(pts);
                hold_ref.set_duration(frame);
                hold_ref.set_offset(index);
                hold_ref.set_offset_end(index + 1);
                holds.push(hold);
            }
            holds
        };
        for hold in holds {
            self.stats.lock().unwrap().frames += 1;
            self.send(Item::Buffer(hold))?;
        }
        Ok(gst::FlowSuccess::Ok)
    }

    fn speech_error(&self, error: SpeechError) -> gst::FlowError {
        gst::element_imp_error!(self, gst::StreamError::Decode, ("{}", error));
        gst::FlowError::Error
    }

    /// The next frame whose features are complete, made the way [`live::frame_source`] picks.
    fn render_next(&self, state: &mut State) -> Result<Option<gst::Buffer>, gst::FlowError> {
        let mut window = std::mem::take(&mut state.window);
        let Some(ready) = state.stream.next_frame_window(&mut window) else {
            state.window = window;
            return Ok(None);
        };
        self.negotiate(state)?;
        let index = ready.index as u64;
        let origin = state.timeline.origin().unwrap_or(0);
        let at = |frame: u64| {
            gst::ClockTime::from_nseconds(origin)
                + gst::ClockTime::SECOND.mul_div_floor(frame, FPS).unwrap()
        };
        let placement = FramePlacement {
            index,
            pts: at(index),
            end: at(index + 1),
        };
        let (skip_silence, silence_level, catch_up) = {
            let settings = self.settings.lock().unwrap();
            (
                settings.skip_silence,
                settings.silence_level,
                settings.catch_up,
            )
        };
        let source = live::frame_source(FrameConditions {
            peak: ready.peak,
            silence_below: skip_silence.then(|| live::db_to_linear(silence_level)),
            late: catch_up && self.would_be_late(state, placement.pts),
            has_last_mouth: state.last_mouth.is_some(),
        });
        let frame_error = |e: &dyn std::fmt::Display| {
            gst::element_imp_error!(self, gst::StreamError::Failed, ("frame {}: {}", index, e));
            gst::FlowError::Error
        };
        let face =
            talking_head::prepare_with_window(&state.templates, &state.faces, ready.index, window)
                .map_err(|e| frame_error(&e))?;
        let info = state
            .video_info
            .clone()
            .ok_or(gst::FlowError::NotNegotiated)?;
        let square = match source {
            FrameSource::Template => None,
            FrameSource::LastMouth => {
                // The estimate shrinks while the U-Net rests, so a slow run that made every
                // frame look late is tried again (and measured) soon.
                state.model_estimate = state.model_estimate * 9 / 10;
                let mouth = state.last_mouth.as_ref().expect("chosen only when there");
                Some(talking_head::paste_face(&face, mouth).square)
            }
            FrameSource::Model => {
                let started = std::time::Instant::now();
                let output = state
                    .model
                    .run(&face.face.image_input, &face.audio_input)
                    .map_err(|e| match e {
                        talking_head::FrameError::Inference(InferenceError::Cancelled) => {
                            gst::FlowError::Flushing
                        }
                        e => frame_error(&e),
                    })?;
                let took = started.elapsed();
                self.stats.lock().unwrap().count_model_run(took);
                // A slow start or a slow run moves the estimate by a fifth of the difference.
                state.model_estimate = (state.model_estimate * 4 + took) / 5;
                let pasted = talking_head::paste_face(&face, &output);
                if pasted.non_finite > 0 && !state.warned_non_finite {
                    state.warned_non_finite = true;
                    gst::element_imp_warning!(
                        self,
                        gst::StreamError::Decode,
                        (
                            "{}",
                            talking_head::non_finite_warning(
                                state.model.backend().model_name(),
                                pasted.non_finite,
                                output.len(),
                                index
                            )
                        )
                    );
                }
                state.last_mouth = Some(output);
                Some(pasted.square)
            }
        };
        {
            let mut counts = self.counts.lock().unwrap();
            match source {
                FrameSource::Template => counts.silent += 1,
                FrameSource::LastMouth => counts.late += 1,
                FrameSource::Model => {}
            }
        }
        self.stats.lock().unwrap().frames += 1;
        gst::log!(
            CAT,
            imp = self,
            "frame {index} at {}: {source:?}",
            placement.pts
        );
        let buffer = talking_head_buffer(
            state.pool.as_ref(),
            &info,
            &face,
            square.as_deref(),
            placement,
        )?;
        state.window = face.audio_input;
        state.last_frame = Some(buffer.clone());
        Ok(Some(buffer))
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        match event.view() {
            // The audio caps stay here: the video caps (the templates' size, 25 fps) go out in
            // their place, before the segment that follows.
            EventView::Caps(caps) => {
                let mut guard = self.state.lock().unwrap();
                match guard.as_mut() {
                    Some(state) => {
                        // Read once here rather than from the pad's caps at every buffer.
                        state.input_is_s16 = Some(
                            caps.caps()
                                .structure(0)
                                .and_then(|s| s.get::<&str>("format").ok())
                                == Some("S16LE"),
                        );
                        self.negotiate(state).is_ok()
                    }
                    None => false,
                }
            }
            EventView::Segment(segment) => {
                if let Some(state) = self.state.lock().unwrap().as_mut() {
                    match segment.segment().downcast_ref::<gst::ClockTime>() {
                        Some(segment) => state.segment = segment.clone(),
                        None => {
                            gst::element_imp_error!(
                                self,
                                gst::StreamError::Format,
                                (
                                    "audio segment in {:?}, expected time",
                                    segment.segment().format()
                                )
                            );
                            return false;
                        }
                    }
                }
                self.forward(pad, event)
            }
            // A stretch without audio: silence up to its end, and frames for it.
            EventView::Gap(gap) => {
                let (start, duration) = gap.get();
                let _push = self.push_lock.lock().unwrap();
                let silence = match self.state.lock().unwrap().as_mut() {
                    Some(state) if state.timeline.origin().is_some() => {
                        let end = start + duration.unwrap_or(gst::ClockTime::ZERO);
                        state.timeline.silence_until(end.nseconds())
                    }
                    _ => 0,
                };
                silence == 0 || self.feed(Audio::Silence(silence)).is_ok()
            }
            EventView::FlushStart(_) => {
                let forwarded = gst::Pad::event_default(pad, Some(&*self.obj()), event);
                self.interrupters.set_flushing(true);
                self.output.set_flushing(true);
                let _ = self.srcpad.pause_task();
                forwarded
            }
            EventView::FlushStop(_) => {
                let _push = self.push_lock.lock().unwrap();
                if let Some(state) = self.state.lock().unwrap().as_mut() {
                    state.stream = SpeechStream::new();
                    state.timeline = AudioTimeline::default();
                    state.last_mouth = None;
                    state.last_frame = None;
                    state.ended = false;
                }
                self.output.set_flushing(false);
                self.interrupters.set_flushing(false);
                let forwarded = gst::Pad::event_default(pad, Some(&*self.obj()), event);
                if self.live_output.load(Ordering::SeqCst) {
                    self.start_output_task();
                }
                forwarded
            }
            EventView::Eos(_) => {
                let _push = self.push_lock.lock().unwrap();
                let finished = {
                    let mut guard = self.state.lock().unwrap();
                    let Some(state) = guard.as_mut() else {
                        return self.forward(pad, event);
                    };
                    state.ended = true;
                    if state.timeline.origin().is_none() {
                        // No audio at all: nothing to flush.
                        Ok(false)
                    } else {
                        state
                            .stream
                            .finish()
                            .and_then(|()| state.stream.encode_ready(&state.encoder))
                            .map(|()| true)
                    }
                };
                match finished {
                    Ok(true) => {
                        // Downstream flushing or gone: EOS goes on all the same.
                        let _ = self
                            .push_ready_frames()
                            .and_then(|_| self.push_hold_frames());
                        self.forward(pad, event)
                    }
                    Ok(false) => self.forward(pad, event),
                    Err(e) => {
                        let _ = self.speech_error(e);
                        false
                    }
                }
            }
            _ => self.forward(pad, event),
        }
    }

    /// A serialized event goes out behind the frames before it; others at once.
    fn forward(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        if event.is_serialized() && self.live_output.load(Ordering::SeqCst) {
            self.send(Item::Event(event)).is_ok()
        } else {
            gst::Pad::event_default(pad, Some(&*self.obj()), event)
        }
    }

    fn src_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        if let gst::EventView::Latency(latency) = event.view() {
            gst::debug!(CAT, imp = self, "pipeline latency {}", latency.latency());
            *self.pipeline_latency.lock().unwrap() = Some(latency.latency());
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        use gst::QueryViewMut;
        match query.view_mut() {
            QueryViewMut::Latency(q) => {
                let mut upstream = gst::query::Latency::new();
                if !self.sinkpad.peer_query(&mut upstream) {
                    return false;
                }
                let (live, min, max) = upstream.result();
                let model = self
                    .state
                    .lock()
                    .unwrap()
                    .as_ref()
                    .map_or(Duration::ZERO, |s| s.model_latency);
                let own = own_latency(model, live);
                gst::debug!(CAT, imp = self, "latency: upstream {min} + own {own}");
                q.set(live, min + own, max.map(|max| max + own));
                true
            }
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }
}

/// What the element adds to upstream's latency: a frame waits for the audio after it (its mel
/// window and seven feature rows), then for the encoder and the U-Net (`model` a run); live,
/// audio overdue by [`STALL_GRACE`] is replaced by silence and the frames it makes are still on
/// time.
fn own_latency(model: Duration, live: bool) -> gst::ClockTime {
    let own = SpeechStream::lookahead() + model * 2;
    gst::ClockTime::from_nseconds(own.as_nanos() as u64)
        + if live {
            STALL_GRACE
        } else {
            gst::ClockTime::ZERO
        }
}

impl ObjectImpl for Lipsync {
    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).unwrap();
        obj.add_pad(&self.srcpad).unwrap();
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut properties = talking_head_settings::param_specs();
            properties.extend([
                glib::ParamSpecBoolean::builder("skip-silence")
                    .nick("Skip silence")
                    .blurb("Show the template itself, without the U-Net, for frames whose audio is below silence-level")
                    .default_value(DEFAULT_SKIP_SILENCE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("silence-level")
                    .nick("Silence level")
                    .blurb("skip-silence's threshold: the peak level in dBFS below which audio is silence")
                    .minimum(-150.0)
                    .maximum(0.0)
                    .default_value(DEFAULT_SILENCE_LEVEL)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("catch-up")
                    .nick("Catch up")
                    .blurb("Live: a frame that would be late reuses the last mouth instead of running the U-Net")
                    .default_value(DEFAULT_CATCH_UP)
                    .mutable_playing()
                    .build(),
                inference::element::stats_param_spec(
                    "Read-only, since start: frames, model-runs, model-time, silent-frames and late-frames",
                ),
            ]);
            properties
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if self
            .start_settings
            .refuses(&*self.obj(), pspec, || self.property(0, pspec))
        {
            return;
        }
        let mut settings = self.settings.lock().unwrap();
        if settings.head.set(pspec.name(), value) {
            return;
        }
        match pspec.name() {
            "skip-silence" => settings.skip_silence = value.get().expect("type checked upstream"),
            "silence-level" => settings.silence_level = value.get().expect("type checked upstream"),
            "catch-up" => settings.catch_up = value.get().expect("type checked upstream"),
            other => unimplemented!("property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        if let Some(value) = settings.head.get(pspec.name()) {
            return value;
        }
        match pspec.name() {
            "skip-silence" => settings.skip_silence.to_value(),
            "silence-level" => settings.silence_level.to_value(),
            "catch-up" => settings.catch_up.to_value(),
            "active-backend" => self.active_backend.lock().unwrap().to_value(),
            "stats" => {
                let counts = *self.counts.lock().unwrap();
                let mut stats = self.stats.lock().unwrap().to_structure("lipsync-stats");
                stats.set("silent-frames", counts.silent);
                stats.set("late-frames", counts.late);
                stats.to_value()
            }
            other => unimplemented!("property {other}"),
        }
    }
}

impl GstObjectImpl for Lipsync {}

impl ElementImpl for Lipsync {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Live talking head",
                "Filter/Converter/Audio/Video",
                "Turns speech (16 kHz mono audio) into talking-head video at 25 fps as it arrives, \
                 with SyncTalk_2D's ave audio encoder and the person's U-Net (328) in ONNX; frames \
                 carry the audio's timestamps",
                "neuralfx developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let audio = gst::Caps::builder("audio/x-raw")
                .field("format", gst::List::new(["F32LE", "S16LE"]))
                .field("rate", SAMPLE_RATE as i32)
                .field("channels", 1)
                .field("layout", "interleaved")
                .build();
            let video = gst_video::VideoCapsBuilder::new()
                .format_list(FORMATS)
                .framerate(gst::Fraction::new(FPS as i32, 1))
                .build();
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &audio,
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &video,
                )
                .unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        match transition {
            gst::StateChange::ReadyToPaused => {
                let settings = self.settings.lock().unwrap().clone();
                match self.load(&settings) {
                    Ok(state) => *self.state.lock().unwrap() = Some(state),
                    Err(err) => {
                        self.post_error_message(err);
                        return Err(gst::StateChangeError);
                    }
                }
                *self.stats.lock().unwrap() = InferenceStats::default();
                *self.counts.lock().unwrap() = SourceCounts::default();
                *self.pipeline_latency.lock().unwrap() = None;
                self.output.set_flushing(false);
                self.live_output.store(false, Ordering::SeqCst);
                self.start_settings.set_running(true);
            }
            gst::StateChange::PausedToReady => {
                self.interrupters.stop_all();
                self.output.set_flushing(true);
                let _ = self.srcpad.stop_task();
                let result = self.parent_change_state(transition);
                if let Some(pool) = self.state.lock().unwrap().take().and_then(|s| s.pool) {
                    let _ = pool.set_active(false);
                }
                self.active_backend.lock().unwrap().clear();
                self.start_settings.set_running(false);
                return result;
            }
            // The source pad task fills stalls only while playing; it looks again now.
            gst::StateChange::PausedToPlaying | gst::StateChange::PlayingToPaused => {
                self.stall_watch.playing.store(
                    transition == gst::StateChange::PausedToPlaying,
                    Ordering::SeqCst,
                );
                self.output.wake();
            }
            _ => {}
        }
        self.parent_change_state(transition)
    }
}
