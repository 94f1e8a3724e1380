//! neuralfx: neural video effects for GStreamer (background removal, talking heads).

use gst::glib;

pub mod decoded_streams;
pub mod imageops;
pub mod inference;
pub mod lipsync;
pub mod lipsyncsrc;
pub mod location;
pub mod matting;
pub mod rembgfilter;
pub mod segmentation;
pub mod talking_head;
pub mod talking_head_settings;
pub mod video;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    // ONNX Runtime is looked for beside the plugin's own file, so remember where that is.
    if let Some(filename) = plugin.filename() {
        inference::runtime::set_plugin_path(filename);
    }
    rembgfilter::register(plugin)?;
    lipsyncsrc::register(plugin)?;
    lipsync::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    neuralfx,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
