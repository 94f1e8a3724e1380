//! `lipsync`: a live talking head. Speech in (16 kHz mono raw audio), SyncTalk_2D video out at
//! 25 fps, the `ave` features computed as the audio arrives (`talking_head::speech::SpeechStream`),
//! each frame stamped with the audio time it shows, so muxing with the same audio stays in sync.
//!
//! SECTION:element-lipsync
//!
//! A frame needs 0.505 s of audio after its own time; the latency query reports that plus the
//! encoder's and the U-Net's time. Gaps in the timestamps and GAP events become silence; in a
//! live pipeline audio overdue past its latency is taken as silence and `catch-up` reuses the
//! last mouth for frames that would be late. `skip-silence` shows the templates themselves
//! while nobody speaks.
//!
//! ## Example launch lines
//! ```sh
//! gst-launch-1.0 pulsesrc ! audioconvert ! audioresample ! lipsync model=unet_328.onnx \
//!     template=dataset/May audio-encoder=ave_encoder.onnx ! videoconvert ! autovideosink
//! ```
//!
//! Every property at length: docs/lipsync.md.

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
