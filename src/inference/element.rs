//! What every inference element shares: the `threads` and `execution-provider` properties and
//! loading a model at start with errors and warnings a GStreamer user can act on.

use std::path::Path;
use std::sync::Arc;

use gst::glib;
use gst::prelude::*;

use super::InferenceError;
use super::onnx::{ExecutionProvider, OnnxBackend, SessionOptions};

pub const DEFAULT_THREADS: u32 = 0;
pub const DEFAULT_EXECUTION_PROVIDER: ExecutionProvider = ExecutionProvider::Cpu;

/// `threads` and `execution-provider`, changeable up to READY.
pub fn param_specs() -> [glib::ParamSpec; 2] {
    [
        glib::ParamSpecUInt::builder("threads")
            .nick("Threads")
            .blurb("Intra-op threads of ONNX Runtime (0 = its default, one per core)")
            .maximum(1024)
            .default_value(DEFAULT_THREADS)
            .mutable_ready()
            .build(),
        glib::ParamSpecEnum::builder_with_default("execution-provider", DEFAULT_EXECUTION_PROVIDER)
            .nick("Execution provider")
            .blurb(
                "Where the model runs; cuda falls back to the CPU with a warning if it cannot load",
            )
            .mutable_ready()
            .build(),
    ]
}

/// Loads (or shares) the session for `path`; a CUDA fallback becomes a warning on the bus.
pub fn load_model(
    element: &impl IsA<gst::Element>,
    path: &Path,
    options: SessionOptions,
) -> Result<Arc<OnnxBackend>, gst::ErrorMessage> {
    let backend = OnnxBackend::load(path, options).map_err(|e| match e {
        InferenceError::Runtime(_) => gst::error_msg!(gst::LibraryError::Init, ("{}", e)),
        _ => gst::error_msg!(gst::ResourceError::OpenRead, ("property 'model': {}", e)),
    })?;
    if let Some(warning) = backend.fallback_warning() {
        gst::element_warning!(element, gst::LibraryError::Init, ("{}", warning));
    }
    Ok(backend)
}
