//! `rembgfilter`: removes the background of raw video with an ONNX segmentation model.
//!
//! SECTION:element-rembgfilter
//!
//! Raw RGB-family video in; out, by `mode`: the frame with the model's mask as alpha (RGBA/BGRA),
//! the mask alone (GRAY8), or the foreground over a colour, a blurred copy or a picture. The mask
//! is what Python rembg computes for the same model (u2netp by default; any catalog name or
//! `.onnx` file). Mask controls, the edge colour (`foreground-estimation`), `edge-refinement` and
//! rembg's `alpha-matting` apply in every mode but `mask`. In a live pipeline the model runs on
//! its own thread (`asynchronous`) and a bus warning says when masks trail the frame rate.
//!
//! ## Example launch lines
//! ```sh
//! gst-launch-1.0 filesrc location=photo.png ! pngdec ! videoconvert \
//!     ! rembgfilter foreground-estimation=multilevel ! videoconvert ! pngenc ! filesink location=cutout.png
//! gst-launch-1.0 v4l2src ! videoconvert ! rembgfilter model=selfie mode=blur ! videoconvert ! autovideosink
//! gst-launch-1.0 filesrc location=talk.mp4 ! decodebin ! videoconvert \
//!     ! rembgfilter backend=triton server=10.0.0.5:8001 ! videoconvert ! autovideosink
//! ```
//!
//! Every property at length: docs/rembgfilter.md; servers: docs/remote.md.

use gst::glib;
use gst::prelude::*;

mod background;
mod caps;
mod imp;
mod settings;

glib::wrapper! {
    pub struct RembgFilter(ObjectSubclass<imp::RembgFilter>)
        @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "rembgfilter",
        gst::Rank::NONE,
        RembgFilter::static_type(),
    )
}

/// What rembgfilter outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstRembgFilterMode")]
pub enum RembgMode {
    #[default]
    #[enum_value(
        name = "RGBA/BGRA with the mask as alpha, colour untouched",
        nick = "alpha"
    )]
    Alpha,
    #[enum_value(name = "The mask alone, GRAY8", nick = "mask")]
    Mask,
    #[enum_value(
        name = "The foreground over background-color, alpha 255",
        nick = "composite"
    )]
    Composite,
    #[enum_value(
        name = "The foreground over a blurred copy of the frame (blur-radius), alpha 255",
        nick = "blur"
    )]
    Blur,
    #[enum_value(
        name = "The foreground over the image of background-location, placed as background-fit says, alpha 255",
        nick = "replace"
    )]
    Replace,
}

/// How `mode=replace`'s picture covers a frame of another shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstRembgFilterBackgroundFit")]
pub enum BackgroundFit {
    #[enum_value(name = "Stretched to the frame (its shape changes)", nick = "stretch")]
    Stretch,
    #[default]
    #[enum_value(
        name = "Scaled to cover the frame, the overflow cropped evenly (its shape kept)",
        nick = "fill"
    )]
    Fill,
    #[enum_value(
        name = "Scaled to fit inside the frame, bars of background-color around it (its shape kept)",
        nick = "fit"
    )]
    Fit,
}

/// How rembgfilter colours the pixels of partial alpha.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstRembgFilterForegroundEstimation")]
pub enum ForegroundEstimation {
    #[default]
    #[enum_value(
        name = "The frame's own colour (a blend with the old background)",
        nick = "none"
    )]
    None,
    #[enum_value(
        name = "Germer et al.'s multi-level estimate, as pymatting's estimate_foreground_ml and rembg's decontaminate",
        nick = "multilevel"
    )]
    Multilevel,
    #[enum_value(
        name = "Forte and Pitié's blur-fusion: an approximation in one pass over the frame, for live video",
        nick = "blur-fusion"
    )]
    BlurFusion,
}

/// How rembgfilter refines the model's mask against the frame before the other mask controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstRembgFilterEdgeRefinement")]
pub enum EdgeRefinement {
    #[default]
    #[enum_value(name = "The model's mask as it is", nick = "none")]
    None,
    #[enum_value(
        name = "The fast guided filter with the frame as guide: the mask's edge follows the picture's",
        nick = "guided-filter"
    )]
    GuidedFilter,
}
