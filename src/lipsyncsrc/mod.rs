//! `lipsyncsrc`: synthesises talking-head video from template frames and audio features with a
//! SyncTalk_2D U-Net (328) exported to ONNX.
//!
//! SECTION:element-lipsyncsrc
//!
//! A source of one frame per feature row (25 fps for ave and hubert, 20 for wenet), as
//! SyncTalk_2D's `inference_328.py` makes them: ping-pong template order, the face cropped from
//! landmarks 1, 31 and 52, the U-Net's mouth pasted back. The features come from `features`, or
//! are computed at start from `audio-location` with `audio-encoder`. Duration queries and
//! flushing seeks are answered; `is-live` delivers each frame at its time.
//!
//! ## Example launch lines
//! ```sh
//! gst-launch-1.0 lipsyncsrc model=unet_328.onnx template=dataset/May audio-location=speech.wav \
//!     audio-encoder=ave_encoder.onnx ! videoconvert ! autovideosink
//! gst-launch-1.0 lipsyncsrc model=unet_328.onnx template=dataset/May features=aud_ave.npy \
//!     ! videoconvert ! video/x-raw,format=I420 ! x264enc ! mp4mux ! filesink location=out.mp4
//! ```
//!
//! Every property at length: docs/lipsync.md; from a SyncTalk_2D checkpoint: docs/synctalk2d.md.

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
