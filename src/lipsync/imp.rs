//! GStreamer glue of `lipsync`: properties, caps, the audio entry point, events and queries. The
//! features come from `talking_head::speech`, the frames from `talking_head`.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_video::VideoFormat;
use gst_video::prelude::*;

use crate::inference;
use crate::inference::element::{BackendSettings, InferenceStats, StartSettingsGuard};
use crate::talking_head::speech::{AudioEncoder, SAMPLE_RATE, SpeechError, SpeechStream};
use crate::talking_head::{self, LipsyncModel, TemplateSet};
use crate::video::pixel_layout;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "lipsync",
        gst::DebugColorFlags::empty(),
        Some("Live talking head from speech"),
    )
});

const FPS: u64 = 25;
const DEFAULT_START_FRAME: u32 = 0;
const DEFAULT_PARSING: bool = false;
const DEFAULT_MAX_CACHED_FRAMES: u32 = 32;
const FORMATS: [VideoFormat; 4] = [
    VideoFormat::Bgr,
    VideoFormat::Rgb,
    VideoFormat::Bgrx,
    VideoFormat::Rgbx,
];

#[derive(Debug, Clone)]
struct Settings {
    model: Option<PathBuf>,
    template: Option<PathBuf>,
    audio_encoder: Option<PathBuf>,
    start_frame: u32,
    parsing: bool,
    max_cached_frames: u32,
    backend: BackendSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: None,
            template: None,
            audio_encoder: None,
            start_frame: DEFAULT_START_FRAME,
            parsing: DEFAULT_PARSING,
            max_cached_frames: DEFAULT_MAX_CACHED_FRAMES,
            backend: BackendSettings::default(),
        }
    }
}

/// Exists from READY to PAUSED until PAUSED to READY.
struct State {
    templates: Arc<TemplateSet>,
    faces: Arc<talking_head::FaceCache>,
    model: LipsyncModel,
    encoder: AudioEncoder,
    stream: SpeechStream,
    /// The timestamp of the first audio since start or the last flush: frame f shows the audio
    /// at this plus f x 40 ms.
    first_sample_pts: Option<gst::ClockTime>,
    video_info: Option<gst_video::VideoInfo>,
    /// One U-Net run at start, for the latency query.
    model_latency: std::time::Duration,
}

pub struct Lipsync {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    stats: Mutex<InferenceStats>,
    active_backend: Mutex<String>,
    start_settings: StartSettingsGuard,
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
            .build();
        Self {
            sinkpad,
            srcpad,
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(None),
            stats: Mutex::new(InferenceStats::default()),
            active_backend: Mutex::new(String::new()),
            start_settings: StartSettingsGuard::default(),
        }
    }
}

impl Lipsync {
    fn load(&self, settings: &Settings) -> Result<State, gst::ErrorMessage> {
        let required = |value: &Option<PathBuf>, name: &str| {
            value.clone().ok_or_else(|| {
                gst::error_msg!(
                    gst::ResourceError::NotFound,
                    ("property '{}' is not set", name)
                )
            })
        };
        let model_path = required(&settings.model, "model")?;
        let template_path = required(&settings.template, "template")?;
        let encoder_path = required(&settings.audio_encoder, "audio-encoder")?;
        let templates = TemplateSet::open(
            &template_path,
            settings.start_frame as usize,
            settings.parsing,
            settings.max_cached_frames as usize,
        )
        .map_err(|e| {
            gst::error_msg!(gst::ResourceError::OpenRead, ("property 'template': {}", e))
        })?;
        let local = settings.backend.in_this_process();
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
            &settings.backend,
            &model_path.to_string_lossy(),
            || Ok(model_path.clone()),
        )?;
        *self.active_backend.lock().unwrap() = loaded.runs_on;
        let model = LipsyncModel::new(loaded.model, talking_head::Mode::Ave).map_err(|e| {
            gst::error_msg!(gst::LibraryError::Settings, ("property 'model': {}", e))
        })?;
        for warning in templates.warnings() {
            gst::element_imp_warning!(
                self,
                gst::StreamError::Decode,
                ("property 'template': {}", warning)
            );
        }
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
        let started = std::time::Instant::now();
        model
            .run(&face.face.image_input, &face.audio_input)
            .map_err(|e| gst::error_msg!(gst::LibraryError::Failed, ("property 'model': {}", e)))?;
        Ok(State {
            templates,
            faces,
            model,
            encoder,
            stream: SpeechStream::new(),
            first_sample_pts: None,
            video_info: None,
            model_latency: started.elapsed(),
        })
    }

    /// Video caps for the templates' size: the format downstream prefers of [`FORMATS`].
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
        if !self.srcpad.push_event(gst::event::Caps::new(&caps)) {
            return Err(gst::FlowError::NotNegotiated);
        }
        state.video_info = Some(info);
        Ok(())
    }

    fn chain(
        &self,
        _pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let samples = {
            let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
            let caps = self
                .sinkpad
                .current_caps()
                .ok_or(gst::FlowError::NotNegotiated)?;
            let format = caps
                .structure(0)
                .and_then(|s| s.get::<String>("format").ok())
                .unwrap_or_default();
            if format == "S16LE" {
                map.chunks_exact(2)
                    .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
                    .collect::<Vec<f32>>()
            } else {
                map.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            }
        };
        let frames = {
            let mut guard = self.state.lock().unwrap();
            let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
            if state.first_sample_pts.is_none() {
                state.first_sample_pts = Some(buffer.pts().unwrap_or(gst::ClockTime::ZERO));
            }
            state.stream.push(&samples);
            self.render_ready(state)?
        };
        for frame in frames {
            self.srcpad.push(frame)?;
        }
        Ok(gst::FlowSuccess::Ok)
    }

    /// Encodes what the stream can and renders every frame whose features are complete.
    fn render_ready(&self, state: &mut State) -> Result<Vec<gst::Buffer>, gst::FlowError> {
        state
            .stream
            .encode_ready(&state.encoder)
            .map_err(|e| self.speech_error(e))?;
        let mut buffers = Vec::new();
        let mut window = Vec::new();
        while let Some(frame) = state.stream.next_frame_window(&mut window) {
            self.negotiate(state)?;
            buffers.push(self.render(state, frame.index, std::mem::take(&mut window))?);
        }
        Ok(buffers)
    }

    fn speech_error(&self, error: SpeechError) -> gst::FlowError {
        gst::element_imp_error!(self, gst::StreamError::Decode, ("{}", error));
        gst::FlowError::Error
    }

    fn render(
        &self,
        state: &mut State,
        frame: usize,
        window: Vec<f32>,
    ) -> Result<gst::Buffer, gst::FlowError> {
        let info = state
            .video_info
            .clone()
            .ok_or(gst::FlowError::NotNegotiated)?;
        let layout = pixel_layout(info.format()).ok_or(gst::FlowError::NotNegotiated)?;
        let frame_error = |e: &dyn std::fmt::Display| {
            gst::element_imp_error!(self, gst::StreamError::Failed, ("frame {}: {}", frame, e));
            gst::FlowError::Error
        };
        let face = talking_head::prepare_with_window(&state.templates, &state.faces, frame, window)
            .map_err(|e| frame_error(&e))?;
        let started = std::time::Instant::now();
        let output = state
            .model
            .run(&face.face.image_input, &face.audio_input)
            .map_err(|e| frame_error(&e))?;
        {
            let mut stats = self.stats.lock().unwrap();
            stats.frames += 1;
            stats.count_model_run(started.elapsed());
        }
        let pasted = talking_head::paste_face(&face, &output);
        let base = state.first_sample_pts.unwrap_or(gst::ClockTime::ZERO);
        let pts = base
            + gst::ClockTime::SECOND
                .mul_div_floor(frame as u64, FPS)
                .unwrap();
        let end = base
            + gst::ClockTime::SECOND
                .mul_div_floor(frame as u64 + 1, FPS)
                .unwrap();
        let mut buffer = gst::Buffer::with_size(info.size()).map_err(|_| gst::FlowError::Error)?;
        {
            let buffer = buffer.get_mut().unwrap();
            buffer.set_pts(pts);
            buffer.set_duration(end - pts);
            buffer.set_offset(frame as u64);
            buffer.set_offset_end(frame as u64 + 1);
            let mut video_frame = gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, &info)
                .map_err(|_| gst::FlowError::Error)?;
            let stride = video_frame.plane_stride()[0] as usize;
            let data = video_frame
                .plane_data_mut(0)
                .map_err(|_| gst::FlowError::Error)?;
            talking_head::write_frame(&face, &pasted.square, data, stride, layout);
        }
        Ok(buffer)
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        match event.view() {
            // The audio caps stay here: the video caps (the templates' size, 25 fps) go out in
            // their place, before the segment that follows.
            EventView::Caps(_) => {
                let mut guard = self.state.lock().unwrap();
                match guard.as_mut() {
                    Some(state) => self.negotiate(state).is_ok(),
                    None => false,
                }
            }
            EventView::FlushStop(_) => {
                if let Some(state) = self.state.lock().unwrap().as_mut() {
                    state.stream = SpeechStream::new();
                    state.first_sample_pts = None;
                }
                gst::Pad::event_default(pad, Some(&*self.obj()), event)
            }
            EventView::Eos(_) => {
                let frames = {
                    let mut guard = self.state.lock().unwrap();
                    let Some(state) = guard.as_mut() else {
                        return gst::Pad::event_default(pad, Some(&*self.obj()), event);
                    };
                    if state.first_sample_pts.is_none() {
                        // No audio at all: nothing to flush.
                        Ok(Vec::new())
                    } else {
                        match state.stream.finish() {
                            Ok(()) => self.render_ready(state),
                            Err(e) => Err(self.speech_error(e)),
                        }
                    }
                };
                match frames {
                    Ok(frames) => {
                        for frame in frames {
                            if self.srcpad.push(frame).is_err() {
                                break;
                            }
                        }
                        gst::Pad::event_default(pad, Some(&*self.obj()), event)
                    }
                    Err(_) => false,
                }
            }
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        }
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
                    .map_or(std::time::Duration::ZERO, |s| s.model_latency);
                // A frame waits for the audio after it (its mel window and seven feature rows),
                // then for the encoder and the U-Net.
                let own = gst::ClockTime::from_nseconds(
                    (SpeechStream::lookahead() + model * 2).as_nanos() as u64,
                );
                gst::debug!(CAT, imp = self, "latency: upstream {min} + own {own}");
                q.set(live, min + own, max.map(|max| max + own));
                true
            }
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
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
            let mut properties = vec![
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb("The person's SyncTalk_2D U-Net (328, ave) exported to ONNX")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("template")
                    .nick("Template")
                    .blurb("Folder with full_body_img/<i>.jpg and landmarks/<i>.lms (optionally parsing/<i>.png)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("audio-encoder")
                    .nick("Audio encoder")
                    .blurb("SyncTalk_2D's audio encoder in ONNX ([batch,1,80,16] in, 512 values each out; models/export_audio_encoder.py)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("start-frame")
                    .nick("Start frame")
                    .blurb("First template of the ping-pong cycle")
                    .default_value(DEFAULT_START_FRAME)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("parsing")
                    .nick("Parsing")
                    .blurb("Keep template pixels whose parsing colour is (0,0,255) or (255,255,255)")
                    .default_value(DEFAULT_PARSING)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-cached-frames")
                    .nick("Cached templates")
                    .blurb("Decoded templates kept, with their prepared face crops")
                    .minimum(1)
                    .default_value(DEFAULT_MAX_CACHED_FRAMES)
                    .mutable_ready()
                    .build(),
                inference::element::stats_param_spec(
                    "Since start: frames made, model runs and nanoseconds inside the U-Net",
                ),
            ];
            properties.extend(inference::element::param_specs());
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
        if settings.backend.set(pspec.name(), value) {
            return;
        }
        let path = |value: &glib::Value| {
            value
                .get::<Option<String>>()
                .expect("type checked upstream")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        };
        match pspec.name() {
            "model" => settings.model = path(value),
            "template" => settings.template = path(value),
            "audio-encoder" => settings.audio_encoder = path(value),
            "start-frame" => settings.start_frame = value.get().expect("type checked upstream"),
            "parsing" => settings.parsing = value.get().expect("type checked upstream"),
            "max-cached-frames" => {
                settings.max_cached_frames = value.get().expect("type checked upstream")
            }
            other => unimplemented!("property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        if let Some(value) = settings.backend.get(pspec.name()) {
            return value;
        }
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string()).to_value();
        match pspec.name() {
            "model" => path(&settings.model),
            "template" => path(&settings.template),
            "audio-encoder" => path(&settings.audio_encoder),
            "start-frame" => settings.start_frame.to_value(),
            "parsing" => settings.parsing.to_value(),
            "max-cached-frames" => settings.max_cached_frames.to_value(),
            "active-backend" => self.active_backend.lock().unwrap().to_value(),
            "stats" => self
                .stats
                .lock()
                .unwrap()
                .to_structure("lipsync-stats")
                .to_value(),
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
                self.start_settings.set_running(true);
            }
            gst::StateChange::PausedToReady => {
                *self.state.lock().unwrap() = None;
                self.active_backend.lock().unwrap().clear();
                self.start_settings.set_running(false);
            }
            _ => {}
        }
        self.parent_change_state(transition)
    }
}
