//! `lipsyncsrc`: synthesises talking-head video from template frames and audio features with a
//! SyncTalk_2D U-Net (328) exported to ONNX.

use gst::glib;
use gst::prelude::*;

use crate::talking_head;

mod imp;
mod speech_file;

glib::wrapper! {
    pub struct LipsyncSrc(ObjectSubclass<imp::LipsyncSrc>)
        @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

/// The audio encoder the features and the U-Net were made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstLipsyncMode")]
pub enum LipsyncMode {
    #[default]
    #[enum_value(
        name = "AVE: 512 values per frame, audio input [1,32,16,16], 25 fps",
        nick = "ave"
    )]
    Ave,
    #[enum_value(
        name = "HuBERT: 2x1024 values per frame, audio input [1,32,32,32], 25 fps",
        nick = "hubert"
    )]
    Hubert,
    #[enum_value(
        name = "WeNet: 8192 values per frame, audio input [1,256,16,32], 20 fps",
        nick = "wenet"
    )]
    Wenet,
}

impl From<LipsyncMode> for talking_head::Mode {
    fn from(mode: LipsyncMode) -> Self {
        match mode {
            LipsyncMode::Ave => talking_head::Mode::Ave,
            LipsyncMode::Hubert => talking_head::Mode::Hubert,
            LipsyncMode::Wenet => talking_head::Mode::Wenet,
        }
    }
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "lipsyncsrc",
        gst::Rank::NONE,
        LipsyncSrc::static_type(),
    )
}
