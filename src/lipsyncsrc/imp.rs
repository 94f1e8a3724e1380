//! `lipsyncsrc`: talking-head video in the manner of SyncTalk_2D. Template frames with their
//! landmarks and one row of audio features per output frame go in; the person's U-Net (328)
//! runs once per frame and the face it draws is pasted back into the template.
//!
//! ## Example pipeline
//! ```bash
//! gst-launch-1.0 lipsyncsrc model=unet_328.onnx template=dataset/May features=aud_ave.npy \
//!     ! videoconvert ! video/x-raw,format=I420 ! x264enc ! mp4mux name=m ! filesink location=out.mp4 \
//!     filesrc location=speech.wav ! wavparse ! audioconvert ! avenc_aac ! m.
//! ```
//!
//! This file is glue: properties, caps from the templates, one frame per `create()`, the next
//! frame prepared while the model runs on this one (all in `lipsync`). In a live pipeline each
//! frame waits for its running time on the clock; a flush or stop ends that wait, also one that
//! has not begun yet.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;
use gst_video::VideoFormat;

use super::LipsyncMode;
use super::speech_file;
use crate::inference;
use crate::inference::InferenceError;
use crate::inference::element::InferenceStats;
use crate::inference::requests::Interrupters;
use crate::location;
use crate::talking_head::{self, AudioFeatures, FaceCrop, LipsyncModel, TemplateSet};
use crate::talking_head_settings::{self, TalkingHeadSettings};
use crate::video::pixel_layout;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "lipsyncsrc",
        gst::DebugColorFlags::empty(),
        Some("Talking-head synthesis source"),
    )
});

const DEFAULT_MODE: LipsyncMode = LipsyncMode::Ave;
const DEFAULT_IS_LIVE: bool = false;

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
    features: Option<PathBuf>,
    audio_location: Option<PathBuf>,
    mode: LipsyncMode,
    is_live: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            head: TalkingHeadSettings::default(),
            features: None,
            audio_location: None,
            mode: DEFAULT_MODE,
            is_live: DEFAULT_IS_LIVE,
        }
    }
}

/// Exists between `start()` and `stop()`.
struct State {
    templates: Arc<TemplateSet>,
    faces: Arc<talking_head::FaceCache>,
    features: Arc<AudioFeatures>,
    model: LipsyncModel,
    fps: u32,
    next_frame: usize,
    /// The next frame's crop and inputs, prepared while the model ran on the previous one.
    prepared: Option<(usize, FaceCrop)>,
    /// The model has given NaN or infinite values in this stream (warned once).
    warned_non_finite: bool,
    video_info: Option<gst_video::VideoInfo>,
}

/// The clock wait of a live source, as gst-plugins-rs' sinesrc keeps it: `unlock()` sets
/// `flushing` and unschedules the wait in progress, so an unlock that comes while a frame is
/// still being made is not lost; `unlock_stop()` clears it.
#[derive(Debug, Default)]
struct ClockWait {
    clock_id: Option<gst::SingleShotClockId>,
    flushing: bool,
}

#[derive(Default)]
/// Lock order: `state` may be held while `settings` (start) or `stats` (a frame's counts) is
/// taken, never the reverse; `clock_wait` and `active_backend` are taken with nothing else held,
/// so `unlock()` can always reach a frame waiting on the clock.
pub struct LipsyncSrc {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    stats: Mutex<InferenceStats>,
    /// What runs the model (property 'active-backend'), set at start, emptied at stop.
    active_backend: Mutex<String>,
    clock_wait: Mutex<ClockWait>,
    /// Frames per second of the running mode (0 when stopped): the latency query is answered
    /// from it without waiting for a frame in the making.
    fps: AtomicU32,
    /// Frames the features make (0 when stopped), for duration queries and seeks.
    frame_count: AtomicU64,
    start_settings: inference::element::StartSettingsGuard,
    /// A server's requests, which unlock() gives up on so that a seek or a stop never waits.
    interrupters: Interrupters,
}

#[glib::object_subclass]
impl ObjectSubclass for LipsyncSrc {
    const NAME: &'static str = "GstLipsyncSrc";
    type Type = super::LipsyncSrc;
    type ParentType = gst_base::PushSrc;
}

impl LipsyncSrc {
    /// The `ave` features of the sound file `audio`, computed with `audio-encoder` (on this
    /// machine: with a server backend the encoder still runs locally, on `auto`).
    fn speech_features(
        &self,
        settings: &Settings,
        audio: &std::path::Path,
        mode: talking_head::Mode,
    ) -> Result<AudioFeatures, gst::ErrorMessage> {
        if mode != talking_head::Mode::Ave {
            return Err(gst::error_msg!(
                gst::LibraryError::Settings,
                (
                    "property 'audio-location' computes ave features; mode={} needs them precomputed in 'features'",
                    mode.name()
                )
            ));
        }
        let Some(encoder_path) = settings.head.audio_encoder.clone() else {
            return Err(gst::error_msg!(
                gst::ResourceError::NotFound,
                ("property 'audio-encoder' is not set: 'audio-location' needs SyncTalk_2D's audio encoder in ONNX (models/export_audio_encoder.py makes it from your checkpoint)")
            ));
        };
        let progress = |kind: gst::ProgressType, text: &str| {
            inference::element::post_progress(&*self.obj(), kind, "audio-features", text)
        };
        progress(
            gst::ProgressType::Start,
            &format!("decoding {}", audio.display()),
        );
        let fail = |text: String| {
            progress(gst::ProgressType::Error, &text);
            gst::error_msg!(gst::ResourceError::OpenRead, ("{}", text))
        };
        let samples = speech_file::decode_speech(audio).map_err(|e| {
            fail(format!(
                "property 'audio-location': {}: {e}",
                audio.display()
            ))
        })?;
        let local = settings.head.backend.in_this_process();
        let loaded = inference::element::load_backend(
            &*self.obj(),
            &local,
            &encoder_path.to_string_lossy(),
            || Ok(encoder_path.clone()),
        )
        .inspect_err(|_| progress(gst::ProgressType::Error, "the audio encoder did not load"))?;
        let encoder = talking_head::speech::AudioEncoder::new(loaded.model)
            .map_err(|e| fail(format!("property 'audio-encoder': {e}")))?;
        progress(
            gst::ProgressType::Continue,
            &format!(
                "{:.1} s of speech: computing features",
                samples.len() as f64 / f64::from(talking_head::speech::SAMPLE_RATE)
            ),
        );
        let features = talking_head::speech::speech_features(&samples, &encoder).map_err(|e| {
            fail(format!(
                "property 'audio-location': {}: {e}",
                audio.display()
            ))
        })?;
        progress(
            gst::ProgressType::Complete,
            &format!("{} frames of features", features.frames()),
        );
        Ok(features)
    }

    fn load(&self, settings: &Settings) -> Result<State, gst::ErrorMessage> {
        let required = TalkingHeadSettings::required;
        let (model_path, template_path) = (
            required(&settings.head.model, "model")?,
            required(&settings.head.template, "template")?,
        );
        let mode: talking_head::Mode = settings.mode.into();
        let features = match (&settings.features, &settings.audio_location) {
            (Some(_), Some(_)) => {
                return Err(gst::error_msg!(
                    gst::LibraryError::Settings,
                    ("properties 'features' and 'audio-location' are both set: the features come from one or the other")
                ));
            }
            (Some(features_path), None) => {
                AudioFeatures::load(features_path, mode).map_err(|e| {
                    gst::error_msg!(gst::ResourceError::OpenRead, ("property 'features': {}", e))
                })?
            }
            (None, Some(audio)) => self.speech_features(settings, audio, mode)?,
            (None, None) => {
                return Err(gst::error_msg!(
                    gst::ResourceError::NotFound,
                    ("property 'features' is not set (nor 'audio-location' with 'audio-encoder')")
                ));
            }
        };
        let templates = crate::video::open_templates(
            &*self.obj(),
            &template_path,
            settings.head.start_frame,
            settings.head.parsing,
            settings.head.max_cached_frames,
        )?;
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
        let model = LipsyncModel::new(loaded.model, mode).map_err(|e| {
            gst::error_msg!(gst::LibraryError::Settings, ("property 'model': {}", e))
        })?;
        gst::info!(
            CAT,
            imp = self,
            "{} templates of {:?}, {} feature frames ({}), mode {}",
            templates.count(),
            templates.size(),
            features.frames(),
            if features.is_windowed() {
                "windowed"
            } else {
                "per frame"
            },
            mode.name()
        );
        let faces = talking_head::face_cache(&templates);
        talking_head::warm_cache(&templates, &faces).map_err(|e| {
            gst::error_msg!(gst::ResourceError::OpenRead, ("property 'template': {}", e))
        })?;
        Ok(State {
            faces: Arc::new(faces),
            templates: Arc::new(templates),
            features: Arc::new(features),
            model,
            fps: mode.fps(),
            next_frame: 0,
            prepared: None,
            warned_non_finite: false,
            video_info: None,
        })
    }

    /// In a live pipeline, waits until the frame's running time comes.
    fn wait_for_running_time(&self, running_time: gst::ClockTime) -> Result<(), gst::FlowError> {
        let obj = self.obj();
        let (Some(clock), Some(base_time)) = (obj.clock(), obj.base_time()) else {
            return Ok(());
        };
        let id = {
            let mut clock_wait = self.clock_wait.lock().unwrap();
            if clock_wait.flushing {
                return Err(gst::FlowError::Flushing);
            }
            let id = clock.new_single_shot_id(base_time + running_time);
            clock_wait.clock_id = Some(id.clone());
            id
        };
        let (result, _) = id.wait();
        self.clock_wait.lock().unwrap().clock_id = None;
        match result {
            Err(gst::ClockError::Unscheduled) => Err(gst::FlowError::Flushing),
            _ => Ok(()),
        }
    }

    fn frame_error(&self, err: talking_head::FrameError) -> gst::FlowError {
        if matches!(
            err,
            talking_head::FrameError::Inference(InferenceError::Cancelled)
        ) {
            return gst::FlowError::Flushing;
        }
        gst::element_imp_error!(self, gst::StreamError::Failed, ("{}", err));
        gst::FlowError::Error
    }
}

impl ObjectImpl for LipsyncSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut properties = talking_head_settings::param_specs();
            properties.extend([
                glib::ParamSpecString::builder("features")
                    .nick("Audio features")
                    .blurb(&location::blurb("Audio features, a row per frame: float32 .npy, or raw .bin with .bin.json"))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("audio-location")
                    .nick("Speech")
                    .blurb(&location::blurb("Sound file whose ave features audio-encoder computes at start (instead of features)"))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("mode", DEFAULT_MODE)
                    .nick("Mode")
                    .blurb("Audio encoder of the features and the model")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("is-live")
                    .nick("Is live")
                    .blurb("Act as a live source: deliver each frame at its time")
                    .default_value(DEFAULT_IS_LIVE)
                    .mutable_ready()
                    .build(),
                inference::element::stats_param_spec(
                    "Read-only, since start: frames, model-runs, and nanoseconds in the model (model-time)",
                ),
            ]);
            properties
        });
        PROPERTIES.as_ref()
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.set_format(gst::Format::Time);
        obj.set_live(DEFAULT_IS_LIVE);
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if self
            .start_settings
            .refuses(&*self.obj(), pspec, || self.property(_id, pspec))
        {
            return;
        }
        let mut settings = self.settings.lock().unwrap();
        if settings.head.set(pspec.name(), value) {
            return;
        }
        let path = |value: &glib::Value| {
            location::absolute(value.get::<Option<&str>>().expect("type checked upstream"))
        };
        match pspec.name() {
            "features" => settings.features = path(value),
            "audio-location" => settings.audio_location = path(value),
            "mode" => settings.mode = value.get().expect("type checked upstream"),
            "is-live" => {
                settings.is_live = value.get().expect("type checked upstream");
                let is_live = settings.is_live;
                drop(settings);
                self.obj().set_live(is_live);
            }
            other => unimplemented!("property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        if let Some(value) = settings.head.get(pspec.name()) {
            return value;
        }
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string()).to_value();
        match pspec.name() {
            "features" => path(&settings.features),
            "audio-location" => path(&settings.audio_location),
            "mode" => settings.mode.to_value(),
            "is-live" => settings.is_live.to_value(),
            "active-backend" => self.active_backend.lock().unwrap().to_value(),
            "stats" => self
                .stats
                .lock()
                .unwrap()
                .to_structure("lipsyncsrc-stats")
                .to_value(),
            other => unimplemented!("property {other}"),
        }
    }
}

impl GstObjectImpl for LipsyncSrc {}

impl ElementImpl for LipsyncSrc {
    // Loading happens before BaseSrc's own READY -> PAUSED: a failure posts the element's
    // error once, where BaseSrc would add a second, generic "Failed to start" after a start()
    // that failed.
    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::ReadyToPaused {
            let settings = self.settings.lock().unwrap().clone();
            match self.load(&settings) {
                Ok(state) => *self.state.lock().unwrap() = Some(state),
                Err(err) => {
                    self.post_error_message(err);
                    return Err(gst::StateChangeError);
                }
            }
        }
        self.parent_change_state(transition)
    }

    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Talking-head synthesis",
                "Source/Video",
                "Synthesises talking-head video from SyncTalk_2D template frames, landmarks and audio features \
                 with the person's U-Net (328) in ONNX (run here, or on a Triton server or SageMaker \
                 endpoint), one frame per audio-feature row",
                "neuralfx developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst_video::VideoCapsBuilder::new()
                .format_list(FORMATS)
                .build();
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseSrcImpl for LipsyncSrc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        // change_state() has loaded everything already; load here only if it has not.
        let mut state = self.state.lock().unwrap();
        if state.is_none() {
            let settings = self.settings.lock().unwrap().clone();
            *state = Some(self.load(&settings)?);
        }
        let fps = state.as_ref().map_or(0, |state| state.fps);
        let frames = state.as_ref().map_or(0, |state| state.features.frames());
        drop(state);
        self.fps.store(fps, Ordering::Relaxed);
        self.frame_count.store(frames as u64, Ordering::Relaxed);
        *self.stats.lock().unwrap() = InferenceStats::default();
        self.clock_wait.lock().unwrap().flushing = false;
        self.start_settings.set_running(true);
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.start_settings.set_running(false);
        self.clock_wait.lock().unwrap().flushing = true;
        self.interrupters.stop_all();
        self.fps.store(0, Ordering::Relaxed);
        self.frame_count.store(0, Ordering::Relaxed);
        *self.state.lock().unwrap() = None;
        self.active_backend.lock().unwrap().clear();
        Ok(())
    }

    fn caps(&self, filter: Option<&gst::Caps>) -> Option<gst::Caps> {
        let state = self.state.lock().unwrap();
        let caps = match state.as_ref() {
            Some(state) => {
                let (width, height) = state.templates.size();
                gst_video::VideoCapsBuilder::new()
                    .format_list(FORMATS)
                    .width(width as i32)
                    .height(height as i32)
                    .framerate(gst::Fraction::new(state.fps as i32, 1))
                    .pixel_aspect_ratio(gst::Fraction::new(1, 1))
                    .build()
            }
            None => self.obj().src_pad().pad_template_caps(),
        };
        Some(match filter {
            Some(filter) => filter.intersect_with_mode(&caps, gst::CapsIntersectMode::First),
            None => caps,
        })
    }

    fn set_caps(&self, caps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(caps)
            .map_err(|_| gst::loggable_error!(CAT, "invalid caps {caps}"))?;
        if pixel_layout(info.format()).is_none() {
            return Err(gst::loggable_error!(CAT, "unsupported caps {caps}"));
        }
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            state.video_info = Some(info);
        }
        gst::debug!(CAT, imp = self, "negotiated {caps}");
        Ok(())
    }

    // A file-like source: players and progressreport can seek it, to a frame.
    fn is_seekable(&self) -> bool {
        !self.settings.lock().unwrap().is_live
    }

    fn do_seek(&self, segment: &mut gst::Segment) -> bool {
        let Some(segment) = segment.downcast_mut::<gst::ClockTime>() else {
            return false;
        };
        let fps = u64::from(self.fps.load(Ordering::Relaxed));
        if fps == 0 {
            return false;
        }
        let start = segment.start().unwrap_or(gst::ClockTime::ZERO);
        // The frame showing at `start`: its first PTS is at or before it.
        let frame = start
            .nseconds()
            .mul_div_floor(fps, gst::ClockTime::SECOND.nseconds())
            .unwrap_or(u64::MAX)
            .min(self.frame_count.load(Ordering::Relaxed));
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            state.next_frame = frame as usize;
            state.prepared = None;
        }
        gst::debug!(CAT, imp = self, "seek to {start}: frame {frame}");
        true
    }

    fn query(&self, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Duration(q) = query.view_mut() {
            let (fps, frames) = (
                u64::from(self.fps.load(Ordering::Relaxed)),
                self.frame_count.load(Ordering::Relaxed),
            );
            if fps > 0 {
                match q.format() {
                    gst::Format::Time => {
                        q.set(gst::ClockTime::SECOND.mul_div_floor(frames, fps));
                        return true;
                    }
                    gst::Format::Default => {
                        q.set(gst::format::Default::from_u64(frames));
                        return true;
                    }
                    _ => {}
                }
            }
        }
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            let fps = self.fps.load(Ordering::Relaxed);
            if fps > 0 {
                // A live source delivers a frame one frame duration after it starts making it.
                let frame = gst::ClockTime::SECOND / u64::from(fps);
                let live = self.settings.lock().unwrap().is_live;
                q.set(
                    live,
                    if live { frame } else { gst::ClockTime::ZERO },
                    gst::ClockTime::NONE,
                );
                return true;
            }
        }
        BaseSrcImplExt::parent_query(self, query)
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        let mut clock_wait = self.clock_wait.lock().unwrap();
        clock_wait.flushing = true;
        if let Some(id) = clock_wait.clock_id.take() {
            id.unschedule();
        }
        self.interrupters.set_flushing(true);
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        self.clock_wait.lock().unwrap().flushing = false;
        self.interrupters.set_flushing(false);
        Ok(())
    }
}

impl PushSrcImpl for LipsyncSrc {
    fn create(
        &self,
        _buffer: Option<&mut gst::BufferRef>,
    ) -> Result<CreateSuccess, gst::FlowError> {
        let is_live = self.settings.lock().unwrap().is_live;
        if is_live && self.clock_wait.lock().unwrap().flushing {
            // Unlocked before this frame began: make nothing.
            return Err(gst::FlowError::Flushing);
        }
        let mut state_guard = self.state.lock().unwrap();
        let state = state_guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let frame = state.next_frame;
        if frame >= state.features.frames() {
            gst::debug!(CAT, imp = self, "all {frame} feature frames rendered");
            return Err(gst::FlowError::Eos);
        }
        let info = state
            .video_info
            .clone()
            .ok_or(gst::FlowError::NotNegotiated)?;
        let fps = state.fps as u64;
        let pts = gst::ClockTime::SECOND
            .mul_div_floor(frame as u64, fps)
            .unwrap();
        let end = gst::ClockTime::SECOND
            .mul_div_floor(frame as u64 + 1, fps)
            .unwrap();

        let face = match state.prepared.take() {
            Some((prepared_frame, face)) if prepared_frame == frame => face,
            _ => talking_head::prepare(&state.templates, &state.faces, &state.features, frame)
                .map_err(|e| self.frame_error(e))?,
        };
        // The model runs on this frame while the next frame's template is decoded and cropped.
        let (templates, faces, features) = (
            state.templates.clone(),
            state.faces.clone(),
            state.features.clone(),
        );
        let next = frame + 1;
        let (output, prepared_next) = rayon::join(
            || {
                let started = std::time::Instant::now();
                let output = state.model.run(&face.face.image_input, &face.audio_input);
                (output, started.elapsed())
            },
            || {
                (next < features.frames())
                    .then(|| talking_head::prepare(&templates, &faces, &features, next))
            },
        );
        let (output, model_time) = output;
        let output = output.map_err(|e| self.frame_error(e))?;
        {
            let mut stats = self.stats.lock().unwrap();
            stats.frames += 1;
            stats.count_model_run(model_time);
        }
        state.prepared = match prepared_next {
            Some(Ok(face)) => Some((next, face)),
            Some(Err(e)) => return Err(self.frame_error(e)),
            None => None,
        };
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
                        frame as u64
                    )
                )
            );
        }
        let buffer = crate::video::talking_head_buffer(
            self.obj().buffer_pool().as_ref(),
            &info,
            &face,
            Some(&pasted.square),
            crate::video::FramePlacement {
                index: frame as u64,
                pts,
                end,
            },
        )?;
        state.next_frame += 1;
        drop(state_guard);
        if is_live {
            self.wait_for_running_time(pts)?;
        }
        Ok(CreateSuccess::NewBuffer(buffer))
    }
}
