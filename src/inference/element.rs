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

/// The largest `threads` accepted: four per core of this machine. More only adds contention,
/// and a typo such as 1024 would start a thousand threads.
pub fn max_threads() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    u32::try_from(cores.saturating_mul(4)).unwrap_or(u32::MAX)
}

/// `threads` and `execution-provider`, changeable up to READY.
pub fn param_specs() -> [glib::ParamSpec; 2] {
    [
        glib::ParamSpecUInt::builder("threads")
            .nick("Threads")
            .blurb("Intra-op threads of ONNX Runtime (0 = its default, one per core); at most four per core")
            .maximum(max_threads())
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

/// What an inference element's read-only `stats` property reports, counted from `start()`:
/// frames output, model runs, and the time inside the model's runs (not the work around them),
/// so that users and benchmarks can tell the two apart.
#[derive(Debug, Default, Clone, Copy)]
pub struct InferenceStats {
    pub frames: u64,
    pub model_runs: u64,
    pub model_time: std::time::Duration,
}

impl InferenceStats {
    pub fn count_model_run(&mut self, model_time: std::time::Duration) {
        self.model_runs += 1;
        self.model_time += model_time;
    }

    /// The property's value: a structure named `name` with `frames`, `model-runs` and
    /// `model-time` (nanoseconds), all guint64.
    pub fn to_structure(self, name: &str) -> gst::Structure {
        gst::Structure::builder(name)
            .field("frames", self.frames)
            .field("model-runs", self.model_runs)
            .field("model-time", self.model_time.as_nanos() as u64)
            .build()
    }
}

/// The read-only `stats` property; `blurb` says what the element's figures mean.
pub fn stats_param_spec(blurb: &str) -> glib::ParamSpec {
    glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
        .nick("Statistics")
        .blurb(blurb)
        .read_only()
        .build()
}
