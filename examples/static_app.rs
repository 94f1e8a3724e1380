//! The smallest application that links neuralfx itself instead of loading the plugin: it
//! registers the elements with `plugin_register_static()` and cuts out a test pattern.
//!
//! Such a program has no plugin folder for ONNX Runtime to sit in, so it needs ORT_DYLIB_PATH:
//! `ORT_DYLIB_PATH=/path/to/libonnxruntime.so cargo run --release --example static_app`
//! (scripts/env.sh sets it to the library the set-up installs).

use gst::prelude::*;

pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    gst::init()?;
    gstneuralfx::plugin_register_static()?;
    let pipeline = gst::parse::launch(
        "videotestsrc num-buffers=3 ! video/x-raw,format=RGB,width=160,height=120 \
         ! rembgfilter model=u2netp ! fakesink name=sink",
    )?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline")?;
    // A failed start posts its reason on the bus, read below.
    let _ = pipeline.set_state(gst::State::Playing);
    let bus = pipeline.bus().ok_or("no bus")?;
    let result = bus
        .iter_timed(gst::ClockTime::from_seconds(120))
        .find_map(|message| match message.view() {
            gst::MessageView::Eos(..) => Some(Ok(())),
            gst::MessageView::Error(err) => Some(Err(format!(
                "{}\n{}",
                err.error(),
                err.debug().unwrap_or_default()
            ))),
            _ => None,
        })
        .unwrap_or_else(|| Err("no EOS within 120 s".into()));
    pipeline.set_state(gst::State::Null)?;
    result?;
    println!("3 frames cut out by a statically registered rembgfilter");
    Ok(())
}
