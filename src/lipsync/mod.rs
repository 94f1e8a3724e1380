//! `lipsync`: a live talking head. Speech in (16 kHz mono raw audio), SyncTalk_2D video out at
//! 25 fps, the `ave` features computed as the audio arrives (`talking_head::speech::SpeechStream`),
//! each frame stamped with the audio time it shows, so muxing with the same audio stays in sync.

use gst::glib;
use gst::prelude::*;

mod imp;
mod output;

glib::wrapper! {
    pub struct Lipsync(ObjectSubclass<imp::Lipsync>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "lipsync",
        gst::Rank::NONE,
        Lipsync::static_type(),
    )
}
