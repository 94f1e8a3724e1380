//! `rembgfilter`: removes the background of raw video with an ONNX segmentation model.

use gst::glib;
use gst::prelude::*;

mod imp;

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
