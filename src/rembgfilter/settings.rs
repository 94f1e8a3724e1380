//! rembgfilter's properties: declared, stored and read back in one place. `Settings` is what
//! they hold; a frame copies its [`FrameSettings`] out once, so a property set while playing
//! never waits for a frame.

use std::sync::Arc;
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst_video::VideoFormat;

use crate::imageops::PixelLayout;
use crate::inference;
use crate::inference::element::{BackendSettings, InferenceStats};
use crate::location;
use crate::matting::ForegroundMethod;
use crate::matting::closed_form::TrimapParams;
use crate::matting::guided_filter::GuidedFilterParams;
use crate::segmentation::catalog::ModelProfile;
use crate::segmentation::compose::{self, Output};
use crate::segmentation::cutout::{CutoutReport, CutoutSettings};
use crate::segmentation::mask::MaskControls;
use crate::segmentation::{Segmenter, recurrent};

use super::{BackgroundFit, EdgeRefinement, ForegroundEstimation, RembgMode};

const DEFAULT_MODEL: &str = "u2netp";
const DEFAULT_DOWNLOAD: bool = true;
const DEFAULT_ASYNCHRONOUS: bool = true;
const DEFAULT_OVERLAP: bool = false;
const DEFAULT_MASK_INTERVAL: u32 = 1;
const DEFAULT_KEEP_INPUT_ALPHA: bool = true;
/// Chosen on composites of the astronaut (see tests/edge_refinement.rs): radius 4, epsilon 1e-5.
const DEFAULT_GUIDED_FILTER: GuidedFilterParams = GuidedFilterParams {
    radius: 4,
    epsilon: 1e-5,
};
/// What the element outputs; changeable while playing (a mode change renegotiates).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutputSettings {
    pub mode: RembgMode,
    /// ARGB, as GStreamer's colour properties are.
    pub background_color: u32,
    pub blur_radius: u32,
    pub clear_transparent: bool,
    pub background_fit: BackgroundFit,
    /// How the colour of partly transparent pixels is estimated.
    pub foreground: ForegroundEstimation,
    /// rembg's alpha matting of the final mask.
    pub alpha_matting: bool,
    pub trimap: TrimapParams,
}

pub const DEFAULT_OUTPUT: OutputSettings = OutputSettings {
    mode: RembgMode::Alpha,
    background_color: 0xff00_ff00,
    blur_radius: 16,
    clear_transparent: false,
    background_fit: BackgroundFit::Fill,
    foreground: ForegroundEstimation::None,
    alpha_matting: false,
    trimap: TrimapParams {
        foreground_threshold: 240,
        background_threshold: 10,
        erode_size: 10,
    },
};

/// The settings a frame is made with, read once per buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameSettings {
    /// Refinement of the model's mask against the frame, before the mask controls.
    pub edge_refinement: EdgeRefinement,
    pub guided_filter: GuidedFilterParams,
    pub mask: MaskControls,
    pub mask_interval: u32,
    pub output: OutputSettings,
    /// In a live pipeline, run the model on its own thread (see the property's blurb).
    pub asynchronous: bool,
    /// In a non-live pipeline, hold a frame back so that the model's run overlaps the work
    /// around its neighbours.
    pub overlap: bool,
    /// RGBA/BGRA input: the output's alpha is the mask times the input's alpha.
    pub keep_input_alpha: bool,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub model: String,
    pub download: bool,
    /// Where the model runs.
    pub backend: BackendSettings,
    pub input_mean: Option<String>,
    pub input_std: Option<String>,
    /// A recurrent model's state pairs, `input:output,...`, where its names do not say them.
    pub recurrent_state: Option<String>,
    /// A recurrent model's `downsample_ratio`: 0 for RVM's advice by frame size.
    pub downsample_ratio: f64,
    /// The picture of mode=replace.
    pub background_location: Option<String>,
    pub frame: FrameSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: DEFAULT_MODEL.to_string(),
            download: DEFAULT_DOWNLOAD,
            backend: BackendSettings::default(),
            input_mean: None,
            input_std: None,
            recurrent_state: None,
            downsample_ratio: 0.0,
            background_location: None,
            frame: FrameSettings {
                edge_refinement: EdgeRefinement::None,
                guided_filter: DEFAULT_GUIDED_FILTER,
                mask: MaskControls::default(),
                mask_interval: DEFAULT_MASK_INTERVAL,
                output: DEFAULT_OUTPUT,
                asynchronous: DEFAULT_ASYNCHRONOUS,
                overlap: DEFAULT_OVERLAP,
                keep_input_alpha: DEFAULT_KEEP_INPUT_ALPHA,
            },
        }
    }
}

/// Reads a mean/std property: one value for all channels or one per channel, written `0.5`,
/// `0.5, 0.5, 0.5` or gst-launch's array syntax `<0.5, 0.5, 0.5>`.
pub fn per_channel(text: &str, property: &str, positive: bool) -> Result<[f32; 3], String> {
    let error = || {
        format!(
            "property '{property}' must hold 1 or 3 finite{} numbers (e.g. \"0.5\" or \"0.485, 0.456, 0.406\"), got '{text}'",
            if positive { " positive" } else { "" }
        )
    };
    let inner = text.trim().trim_start_matches('<').trim_end_matches('>');
    let values = inner
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|part| !part.is_empty())
        .map(|part| part.parse::<f64>().map_err(|_| error()))
        .collect::<Result<Vec<f64>, String>>()?;
    let valid = |v: &f64| v.is_finite() && (!positive || *v > 0.0);
    match values.as_slice() {
        [v] if valid(v) => Ok([*v as f32; 3]),
        [r, g, b] if [r, g, b].into_iter().all(valid) => Ok([*r as f32, *g as f32, *b as f32]),
        _ => Err(error()),
    }
}

/// What a frame of `format` shows in `mode`. Right after a mode change the new caps are not
/// negotiated yet: such a frame keeps the old output format and is written in that format's
/// own mode.
pub fn output_for<'a>(
    output: &OutputSettings,
    format: VideoFormat,
    layout: PixelLayout,
    background: Option<&'a [u8]>,
) -> Output<'a> {
    let alpha = Output::Alpha {
        clear_transparent: output.clear_transparent,
    };
    match (output.mode, format) {
        (_, VideoFormat::Gray8) => Output::Mask,
        (RembgMode::Composite, _) => {
            Output::OverColour(compose::colour_in_layout(output.background_color, layout))
        }
        (RembgMode::Blur, _) => Output::OverBlur(output.blur_radius as usize),
        (RembgMode::Replace, _) => background.map_or(alpha, Output::OverImage),
        (RembgMode::Alpha | RembgMode::Mask, _) => alpha,
    }
}

/// What the `stats` property reports: the model's runs, and the time of the edge steps.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub inference: InferenceStats,
    /// Foreground colour estimation (foreground-estimation).
    pub foreground_time: Duration,
    /// Alpha matting (alpha-matting).
    pub matting_time: Duration,
    /// Refining the model's mask (edge-refinement).
    pub refinement_time: Duration,
}

impl Stats {
    /// One frame made, as its cutout reports it.
    pub fn count_frame(&mut self, report: &CutoutReport) {
        self.inference.frames += 1;
        self.foreground_time += report.foreground_time;
        self.matting_time += report.matting_time;
        self.refinement_time += report.refinement_time;
    }

    /// The property's value: the model's figures and the edge steps' times (nanoseconds).
    pub fn to_structure(self) -> gst::Structure {
        let mut structure = self.inference.to_structure("rembgfilter-stats");
        structure.set("foreground-time", self.foreground_time.as_nanos() as u64);
        structure.set("matting-time", self.matting_time.as_nanos() as u64);
        structure.set("refinement-time", self.refinement_time.as_nanos() as u64);
        structure
    }
}

/// Every property of rembgfilter, the backend's among them.
pub fn param_specs() -> Vec<glib::ParamSpec> {
    let mut properties = vec![
        glib::ParamSpecString::builder("model")
            .nick("Model")
            .blurb(&location::blurb("Catalog model (u2netp, selfie, isnet-general-use, birefnet-general, ...) or an .onnx file"))
            .default_value(Some(DEFAULT_MODEL))
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder("download")
            .nick("Download")
            .blurb("Download a catalog model missing from the model folders on first use")
            .default_value(DEFAULT_DOWNLOAD)
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("input-mean")
            .nick("Input mean")
            .blurb("Mean '<r, g, b>' (or one value) taken from the 0..1 input, for custom models")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("input-std")
            .nick("Input std")
            .blurb("Standard deviation the input is divided by: one value or three, \
                    \"0.229, 0.224, 0.225\"; empty = the model's own")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("recurrent-state")
            .nick("Recurrent state")
            .blurb("Recurrent models: input:output state pairs where names do not say (r1i:r1o,...)")
            .mutable_ready()
            .build(),
        glib::ParamSpecDouble::builder("downsample-ratio")
            .nick("Downsample ratio")
            .blurb("Recurrent models (RVM): downsample_ratio in (0, 1]; 0 = auto by frame size")
            .minimum(0.0)
            .maximum(1.0)
            .default_value(0.0)
            .mutable_ready()
            .build(),
    ];
    properties.extend(inference::element::param_specs());
    properties.extend([
        glib::ParamSpecEnum::builder_with_default("mode", DEFAULT_OUTPUT.mode)
            .nick("Mode")
            .blurb("What to output: alpha (RGBA/BGRA), mask (GRAY8), composite, blur or replace (alpha 255)")
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("background-color")
            .nick("Background colour")
            .blurb("ARGB colour behind the foreground in mode=composite, and fit's bars")
            .default_value(DEFAULT_OUTPUT.background_color)
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("blur-radius")
            .nick("Blur radius")
            .blurb("Radius in pixels of the background blur of mode=blur")
            .maximum(512)
            .default_value(DEFAULT_OUTPUT.blur_radius)
            .mutable_playing()
            .build(),
        glib::ParamSpecString::builder("background-location")
            .nick("Background location")
            .blurb(&location::blurb("Picture behind the foreground in mode=replace (any format GStreamer decodes)"))
            .mutable_playing()
            .build(),
        glib::ParamSpecBoolean::builder("post-process-mask")
            .nick("Post-process mask")
            .blurb("rembg's post-processing: opening with a radius-1 disk, Gaussian blur (sigma 2), threshold at 127")
            .default_value(false)
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("threshold")
            .nick("Threshold")
            .blurb("0 keeps the soft mask; otherwise alpha is 255 from this level up and 0 below")
            .maximum(255)
            .default_value(0)
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("feather")
            .nick("Feather")
            .blurb("Soften the mask's edge over about this many pixels (0 = off)")
            .maximum(256)
            .default_value(0)
            .mutable_playing()
            .build(),
        glib::ParamSpecDouble::builder("temporal-smoothing")
            .nick("Temporal smoothing")
            .blurb("Weight of the previous mask (0..1) against flicker; restarts at flushes and gaps")
            .minimum(0.0)
            .maximum(1.0)
            .default_value(0.0)
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("mask-interval")
            .nick("Mask interval")
            .blurb("Run the model on every Nth frame and reuse its mask in between (1 = every frame)")
            .minimum(1)
            .maximum(10000)
            .default_value(DEFAULT_MASK_INTERVAL)
            .mutable_playing()
            .build(),
        glib::ParamSpecBoolean::builder("asynchronous")
            .nick("Asynchronous inference")
            .blurb("Live pipelines: run the model on its own thread, frames carrying the newest finished mask")
            .default_value(DEFAULT_ASYNCHRONOUS)
            .mutable_ready()
            .build(),
        inference::element::stats_param_spec(
            "Read-only, since start: frames, model-runs, and nanoseconds in the model and each edge step",
        ),
        glib::ParamSpecBoolean::builder("keep-input-alpha")
            .nick("Keep input alpha")
            .blurb("RGBA input: multiply the mask by the input's alpha, as rembg's cutout does")
            .default_value(DEFAULT_KEEP_INPUT_ALPHA)
            .mutable_playing()
            .build(),
        glib::ParamSpecEnum::builder_with_default("background-fit", DEFAULT_OUTPUT.background_fit)
            .nick("Background fit")
            .blurb("How mode=replace's picture covers a frame: fill (cropped), fit (bars) or stretch")
            .mutable_playing()
            .build(),
        glib::ParamSpecBoolean::builder("clear-transparent")
            .nick("Clear transparent colour")
            .blurb("Give fully transparent pixels colour 0 in alpha output (PNGs the size of rembg's)")
            .default_value(DEFAULT_OUTPUT.clear_transparent)
            .mutable_playing()
            .build(),
        glib::ParamSpecEnum::builder_with_default("foreground-estimation", DEFAULT_OUTPUT.foreground)
            .nick("Foreground estimation")
            .blurb("Colour of partly transparent pixels: the frame's own, or the foreground's, estimated")
            .mutable_playing()
            .build(),
        glib::ParamSpecEnum::builder_with_default("edge-refinement", EdgeRefinement::None)
            .nick("Edge refinement")
            .blurb("Refine the model's mask against the frame before the other mask controls")
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("guided-filter-radius")
            .nick("Guided filter radius")
            .blurb("edge-refinement's window radius in pixels: how far the picture's edge may be")
            .minimum(1)
            .maximum(256)
            .default_value(DEFAULT_GUIDED_FILTER.radius as u32)
            .mutable_playing()
            .build(),
        glib::ParamSpecDouble::builder("guided-filter-epsilon")
            .nick("Guided filter epsilon")
            .blurb("edge-refinement's regularisation: larger keeps more of the mask in flat colour")
            .minimum(1e-8)
            .maximum(1.0)
            .default_value(DEFAULT_GUIDED_FILTER.epsilon)
            .mutable_playing()
            .build(),
        glib::ParamSpecBoolean::builder("alpha-matting")
            .nick("Alpha matting")
            .blurb("rembg's alpha matting (-a): closed-form matting of the mask's edge; seconds a 1080p frame")
            .default_value(DEFAULT_OUTPUT.alpha_matting)
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("alpha-matting-foreground-threshold")
            .nick("Alpha matting foreground threshold")
            .blurb("Mask values above this are sure foreground in alpha matting's trimap (rembg -af)")
            .maximum(255)
            .default_value(u32::from(DEFAULT_OUTPUT.trimap.foreground_threshold))
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("alpha-matting-background-threshold")
            .nick("Alpha matting background threshold")
            .blurb("Mask values below this are sure background in alpha matting's trimap (rembg -ab)")
            .maximum(255)
            .default_value(u32::from(DEFAULT_OUTPUT.trimap.background_threshold))
            .mutable_playing()
            .build(),
        glib::ParamSpecUInt::builder("alpha-matting-erode-size")
            .nick("Alpha matting erode size")
            .blurb("Side of the square the sure regions are eroded by (rembg -ae; 0: a one-pixel cross)")
            .maximum(1000)
            .default_value(DEFAULT_OUTPUT.trimap.erode_size as u32)
            .mutable_playing()
            .build(),
        glib::ParamSpecBoolean::builder("overlap")
            .nick("Overlap frames")
            .blurb("Non-live: hold a frame back so the model overlaps its neighbours' work (same frames)")
            .default_value(DEFAULT_OVERLAP)
            .mutable_ready()
            .build(),
    ]);
    properties
}

impl FrameSettings {
    /// How the cutout of a frame is made; `input_alpha`: the input carries alpha.
    pub fn cutout(&self, input_alpha: bool) -> CutoutSettings {
        let output = &self.output;
        CutoutSettings {
            refinement: (self.edge_refinement == EdgeRefinement::GuidedFilter)
                .then_some(self.guided_filter),
            mask: self.mask,
            input_alpha: input_alpha && self.keep_input_alpha,
            matting: output.alpha_matting.then_some(output.trimap),
            foreground: match output.foreground {
                ForegroundEstimation::None => None,
                ForegroundEstimation::Multilevel => Some(ForegroundMethod::Multilevel),
                ForegroundEstimation::BlurFusion => Some(ForegroundMethod::BlurFusion),
            },
        }
    }
}

impl Settings {
    /// The model's processing: `catalog`'s (the catalog entry's, or U2Net's for a file) with
    /// input-mean and input-std over it; an endpoint that takes pictures does its own.
    fn profile(&self, catalog: ModelProfile) -> Result<ModelProfile, String> {
        if self.backend.sends_pictures() {
            return Ok(ModelProfile::WHOLE_FRAME);
        }
        let mut profile = catalog;
        if let Some(mean) = &self.input_mean {
            profile.mean = per_channel(mean, "input-mean", false)?;
        }
        if let Some(std) = &self.input_std {
            profile.std = per_channel(std, "input-std", true)?;
        }
        Ok(profile)
    }

    /// The segmenter of `backend` with the model's `catalog` profile as [`Self::profile`] sets it:
    /// a recurrent model when its signature or `recurrent-state` says so, refused on a server
    /// (its state would have to travel with every request).
    pub fn segmenter(
        &self,
        backend: Arc<dyn inference::Backend>,
        catalog: ModelProfile,
    ) -> Result<Segmenter, String> {
        let profile = self.profile(catalog)?;
        let pairs = recurrent::parse_pairs(self.recurrent_state.as_deref().unwrap_or(""))
            .map_err(|e| format!("property 'recurrent-state': {e}"))?;
        let mut segmenter = if pairs.is_empty() {
            Segmenter::new(backend, profile)
        } else {
            Segmenter::new_recurrent(backend, &pairs)
        }
        .map_err(|e| format!("property 'model': {e}"))?;
        if segmenter.is_recurrent() {
            if self.backend.is_remote() {
                return Err(format!(
                    "property 'backend': {} is a recurrent model (each frame's state feeds the \
                     next), which runs on the local runtimes only (onnxruntime, openvino)",
                    segmenter.model.backend().model_name()
                ));
            }
            segmenter.set_downsample_ratio(self.downsample_ratio);
        }
        Ok(segmenter)
    }

    /// Stores property `name`'s `value` (its type checked by GObject). A location is made
    /// absolute against the working directory, as filesrc does.
    pub fn set(&mut self, name: &str, value: &glib::Value) {
        let text = |value: &glib::Value| -> Option<String> {
            value
                .get::<Option<String>>()
                .expect("type checked upstream")
                .filter(|s| !s.trim().is_empty())
        };
        if self.backend.set(name, value) {
            return;
        }
        let frame = &mut self.frame;
        match name {
            "model" => {
                let model = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_else(|| DEFAULT_MODEL.to_string());
                let model = location::model(Some(&model))
                    .map_or_else(|| DEFAULT_MODEL.to_string(), |m| m.display().to_string());
                self.model = model;
            }
            "download" => self.download = value.get().expect("type checked upstream"),
            "input-mean" => self.input_mean = text(value),
            "input-std" => self.input_std = text(value),
            "recurrent-state" => self.recurrent_state = text(value),
            "downsample-ratio" => {
                self.downsample_ratio = value.get().expect("type checked upstream")
            }
            "mode" => frame.output.mode = value.get().expect("type checked upstream"),
            "background-color" => {
                frame.output.background_color = value.get().expect("type checked upstream")
            }
            "blur-radius" => frame.output.blur_radius = value.get().expect("type checked upstream"),
            "background-location" => {
                self.background_location =
                    location::absolute(value.get().expect("type checked upstream"))
                        .map(|path| path.display().to_string())
            }
            "post-process-mask" => {
                frame.mask.post_process = value.get().expect("type checked upstream")
            }
            "threshold" => {
                let level: u32 = value.get().expect("type checked upstream");
                frame.mask.threshold = level.min(255) as u8;
            }
            "feather" => {
                let reach: u32 = value.get().expect("type checked upstream");
                frame.mask.feather = reach as usize;
            }
            "temporal-smoothing" => {
                frame.mask.temporal_smoothing = value.get().expect("type checked upstream")
            }
            "mask-interval" => frame.mask_interval = value.get().expect("type checked upstream"),
            "asynchronous" => frame.asynchronous = value.get().expect("type checked upstream"),
            "overlap" => frame.overlap = value.get().expect("type checked upstream"),
            "keep-input-alpha" => {
                frame.keep_input_alpha = value.get().expect("type checked upstream")
            }
            "clear-transparent" => {
                frame.output.clear_transparent = value.get().expect("type checked upstream")
            }
            "background-fit" => {
                frame.output.background_fit = value.get().expect("type checked upstream")
            }
            "foreground-estimation" => {
                frame.output.foreground = value.get().expect("type checked upstream")
            }
            "alpha-matting" => {
                frame.output.alpha_matting = value.get().expect("type checked upstream")
            }
            "edge-refinement" => {
                frame.edge_refinement = value.get().expect("type checked upstream")
            }
            "guided-filter-radius" => {
                let radius: u32 = value.get().expect("type checked upstream");
                frame.guided_filter.radius = radius as usize;
            }
            "guided-filter-epsilon" => {
                frame.guided_filter.epsilon = value.get().expect("type checked upstream")
            }
            "alpha-matting-foreground-threshold" => {
                let level: u32 = value.get().expect("type checked upstream");
                frame.output.trimap.foreground_threshold = level.min(255) as u8;
            }
            "alpha-matting-background-threshold" => {
                let level: u32 = value.get().expect("type checked upstream");
                frame.output.trimap.background_threshold = level.min(255) as u8;
            }
            "alpha-matting-erode-size" => {
                let size: u32 = value.get().expect("type checked upstream");
                frame.output.trimap.erode_size = size as usize;
            }
            other => unimplemented!("property {other}"),
        }
    }

    /// The value of property `name` as set (or its default).
    pub fn get(&self, name: &str) -> glib::Value {
        if let Some(value) = self.backend.get(name) {
            return value;
        }
        let frame = &self.frame;
        match name {
            "model" => self.model.to_value(),
            "download" => self.download.to_value(),
            "input-mean" => self.input_mean.to_value(),
            "input-std" => self.input_std.to_value(),
            "recurrent-state" => self.recurrent_state.to_value(),
            "downsample-ratio" => self.downsample_ratio.to_value(),
            "mode" => frame.output.mode.to_value(),
            "background-color" => frame.output.background_color.to_value(),
            "blur-radius" => frame.output.blur_radius.to_value(),
            "background-location" => self.background_location.to_value(),
            "post-process-mask" => frame.mask.post_process.to_value(),
            "threshold" => u32::from(frame.mask.threshold).to_value(),
            "feather" => (frame.mask.feather as u32).to_value(),
            "temporal-smoothing" => frame.mask.temporal_smoothing.to_value(),
            "mask-interval" => frame.mask_interval.to_value(),
            "asynchronous" => frame.asynchronous.to_value(),
            "overlap" => frame.overlap.to_value(),
            "keep-input-alpha" => frame.keep_input_alpha.to_value(),
            "clear-transparent" => frame.output.clear_transparent.to_value(),
            "background-fit" => frame.output.background_fit.to_value(),
            "foreground-estimation" => frame.output.foreground.to_value(),
            "alpha-matting" => frame.output.alpha_matting.to_value(),
            "edge-refinement" => frame.edge_refinement.to_value(),
            "guided-filter-radius" => (frame.guided_filter.radius as u32).to_value(),
            "guided-filter-epsilon" => frame.guided_filter.epsilon.to_value(),
            "alpha-matting-foreground-threshold" => {
                u32::from(frame.output.trimap.foreground_threshold).to_value()
            }
            "alpha-matting-background-threshold" => {
                u32::from(frame.output.trimap.background_threshold).to_value()
            }
            "alpha-matting-erode-size" => (frame.output.trimap.erode_size as u32).to_value(),
            other => unimplemented!("property {other}"),
        }
    }
}
