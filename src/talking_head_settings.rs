//! The properties lipsyncsrc and lipsync share: the person's U-Net, template folder and audio
//! encoder, the template cycle and cache, and where the U-Net runs. Declared, stored and read
//! back in one place, so the two elements cannot drift apart.

use std::path::PathBuf;

use gst::glib;
use gst::prelude::*;

use crate::inference;
use crate::location;

pub const DEFAULT_START_FRAME: u32 = 0;
pub const DEFAULT_PARSING: bool = false;
pub const DEFAULT_MAX_CACHED_FRAMES: u32 = 32;

/// What the shared properties hold.
#[derive(Debug, Clone)]
pub struct TalkingHeadSettings {
    pub model: Option<PathBuf>,
    pub template: Option<PathBuf>,
    pub audio_encoder: Option<PathBuf>,
    pub start_frame: u32,
    pub parsing: bool,
    pub max_cached_frames: u32,
    /// Where the U-Net runs.
    pub backend: inference::element::BackendSettings,
}

impl Default for TalkingHeadSettings {
    fn default() -> Self {
        Self {
            model: None,
            template: None,
            audio_encoder: None,
            start_frame: DEFAULT_START_FRAME,
            parsing: DEFAULT_PARSING,
            max_cached_frames: DEFAULT_MAX_CACHED_FRAMES,
            backend: Default::default(),
        }
    }
}

/// The shared properties, the backend's among them: all but `payload`, since a talking head
/// always sends the U-Net's tensors.
pub fn param_specs() -> Vec<glib::ParamSpec> {
    let location = |name: &str, nick: &str, what: &str| {
        glib::ParamSpecString::builder(name)
            .nick(nick)
            .blurb(&location::blurb(what))
            .mutable_ready()
            .build()
    };
    let mut specs = vec![
        location(
            "model",
            "Model",
            "The person's SyncTalk_2D U-Net (328) in ONNX, or its name on a server",
        ),
        location(
            "template",
            "Template folder",
            "SyncTalk_2D dataset folder (full_body_img/, landmarks/, optionally parsing/)",
        ),
        location(
            "audio-encoder",
            "Audio encoder",
            "SyncTalk_2D's ave audio encoder in ONNX (models/export_audio_encoder.py)",
        ),
        glib::ParamSpecUInt::builder("start-frame")
            .nick("Start frame")
            .blurb("First template of the ping-pong cycle")
            .default_value(DEFAULT_START_FRAME)
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder("parsing")
            .nick("Parsing")
            .blurb("Keep template pixels whose parsing/<i>.png is (0,0,255) or (255,255,255) in BGR")
            .default_value(DEFAULT_PARSING)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("max-cached-frames")
            .nick("Cached templates")
            .blurb("Templates kept decoded with their face crops (w x h x 3 + 2.8 MB each); 0 keeps none")
            .default_value(DEFAULT_MAX_CACHED_FRAMES)
            .mutable_ready()
            .build(),
    ];
    specs.extend(
        inference::element::param_specs()
            .into_iter()
            .filter(|spec| spec.name() != "payload"),
    );
    specs
}

impl TalkingHeadSettings {
    /// Stores a shared property; false for a property that is not one of them.
    pub fn set(&mut self, name: &str, value: &glib::Value) -> bool {
        if self.backend.set(name, value) {
            return true;
        }
        let text = || value.get::<Option<&str>>().expect("type checked upstream");
        match name {
            "model" => self.model = location::model(text()),
            "template" => self.template = location::absolute(text()),
            "audio-encoder" => self.audio_encoder = location::absolute(text()),
            "start-frame" => self.start_frame = value.get().expect("type checked upstream"),
            "parsing" => self.parsing = value.get().expect("type checked upstream"),
            "max-cached-frames" => {
                self.max_cached_frames = value.get().expect("type checked upstream")
            }
            _ => return false,
        }
        true
    }

    /// A shared property's value; `None` for a property that is not one of them.
    pub fn get(&self, name: &str) -> Option<glib::Value> {
        if let Some(value) = self.backend.get(name) {
            return Some(value);
        }
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string()).to_value();
        Some(match name {
            "model" => path(&self.model),
            "template" => path(&self.template),
            "audio-encoder" => path(&self.audio_encoder),
            "start-frame" => self.start_frame.to_value(),
            "parsing" => self.parsing.to_value(),
            "max-cached-frames" => self.max_cached_frames.to_value(),
            _ => return None,
        })
    }

    /// The file or folder of a location property that must be set, or the error naming it.
    pub fn required(
        location: &Option<PathBuf>,
        property: &str,
    ) -> Result<PathBuf, gst::ErrorMessage> {
        location.clone().ok_or_else(|| {
            gst::error_msg!(
                gst::ResourceError::NotFound,
                ("property '{}' is not set", property)
            )
        })
    }
}
