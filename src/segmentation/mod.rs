//! Foreground segmentation: model catalog, model lookup, and the rembg-compatible pre- and
//! post-processing around a [`Backend`](crate::inference::Backend). No GStreamer types here.

pub mod catalog;
pub mod compose;
pub mod cutout;
pub mod download;
pub mod locate;
pub mod mask;
mod processing;
pub mod recurrent;
pub mod schedule;
pub mod scheduler;
pub mod worker;
mod zip_member;

pub use processing::{
    Finisher, ModelInput, ModelRun, Preparer, SegmentationModel, Segmenter, SegmenterError,
    attach_alpha,
};
