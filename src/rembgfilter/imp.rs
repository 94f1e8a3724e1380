//! GStreamer glue of `rembgfilter`: properties, caps, model loading at start, one mask per frame.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_transform::{
    GenerateOutputSuccess, InputBuffer, PrepareOutputBufferSuccess,
};
use gst_base::subclass::prelude::*;
use gst_video::VideoFormat;
use gst_video::prelude::*;
use gst_video::subclass::prelude::*;

use crate::imageops::{ImageRef, PixelLayout};
use crate::inference;
use crate::inference::element::InferenceStats;
use crate::inference::onnx::{ExecutionProvider, SessionOptions};
use crate::inference::{Backend, Tensor, TensorView};
use crate::segmentation::catalog::{self, ModelProfile};
use crate::segmentation::compose::{self, Background};
use crate::segmentation::worker::{FinishedMask, MaskWorker};
use crate::segmentation::{Segmenter, SegmenterError, attach_alpha, locate, mask};

use super::RembgMode;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "rembgfilter",
        gst::DebugColorFlags::empty(),
        Some("Background removal filter"),
    )
});

const DEFAULT_MODEL: &str = "u2netp";
const DEFAULT_DOWNLOAD: bool = true;
const DEFAULT_ASYNCHRONOUS: bool = true;
const DEFAULT_OVERLAP: bool = false;
/// How long a frame waits for its own mask in asynchronous mode when the frame rate is unknown.
const FALLBACK_FRAME_DURATION: Duration = Duration::from_millis(33);

/// Input formats, each with the output format that keeps its channel order.
const FORMAT_PAIRS: [(VideoFormat, VideoFormat); 6] = [
    (VideoFormat::Rgb, VideoFormat::Rgba),
    (VideoFormat::Rgbx, VideoFormat::Rgba),
    (VideoFormat::Rgba, VideoFormat::Rgba),
    (VideoFormat::Bgr, VideoFormat::Bgra),
    (VideoFormat::Bgrx, VideoFormat::Bgra),
    (VideoFormat::Bgra, VideoFormat::Bgra),
];

/// Input formats with what each becomes in `mode`.
fn format_pairs(mode: RembgMode) -> Vec<(VideoFormat, VideoFormat)> {
    match mode {
        RembgMode::Mask => FORMAT_PAIRS
            .iter()
            .map(|(input, _)| (*input, VideoFormat::Gray8))
            .collect(),
        _ => FORMAT_PAIRS.to_vec(),
    }
}

fn pixel_layout(format: VideoFormat) -> Option<PixelLayout> {
    match format {
        VideoFormat::Rgb => Some(PixelLayout::RGB),
        VideoFormat::Bgr => Some(PixelLayout::BGR),
        VideoFormat::Rgbx | VideoFormat::Rgba => Some(PixelLayout::RGBX),
        VideoFormat::Bgrx | VideoFormat::Bgra => Some(PixelLayout::BGRX),
        _ => None,
    }
}

#[derive(Debug, Clone)]
struct Settings {
    model: String,
    download: bool,
    threads: u32,
    execution_provider: ExecutionProvider,
    input_mean: Option<Vec<f64>>,
    input_std: Option<Vec<f64>>,
    mask: MaskControls,
    output: OutputSettings,
    /// The picture of mode=replace.
    background_location: Option<String>,
    /// In a live pipeline, run the model on its own thread (see the property's blurb).
    asynchronous: bool,
    /// In a non-live pipeline, hold a frame back so that the model's run overlaps the work
    /// around its neighbours.
    overlap: bool,
}

/// What the element outputs; changeable while playing (a mode change renegotiates).
#[derive(Debug, Clone, Copy, PartialEq)]
struct OutputSettings {
    mode: RembgMode,
    /// ARGB, as GStreamer's colour properties are.
    background_color: u32,
    blur_radius: u32,
}

const DEFAULT_OUTPUT: OutputSettings = OutputSettings {
    mode: RembgMode::Alpha,
    background_color: 0xff00_ff00,
    blur_radius: 16,
};

/// What happens to the model's mask before it becomes alpha; all changeable while playing.
#[derive(Debug, Clone, Copy, PartialEq)]
struct MaskControls {
    post_process: bool,
    threshold: u32,
    feather: u32,
    temporal_smoothing: f64,
    interval: u32,
}

const DEFAULT_MASK_CONTROLS: MaskControls = MaskControls {
    post_process: false,
    threshold: 0,
    feather: 0,
    temporal_smoothing: 0.0,
    interval: 1,
};

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: DEFAULT_MODEL.to_string(),
            download: DEFAULT_DOWNLOAD,
            threads: inference::element::DEFAULT_THREADS,
            execution_provider: inference::element::DEFAULT_EXECUTION_PROVIDER,
            input_mean: None,
            input_std: None,
            mask: DEFAULT_MASK_CONTROLS,
            output: DEFAULT_OUTPUT,
            background_location: None,
            asynchronous: DEFAULT_ASYNCHRONOUS,
            overlap: DEFAULT_OVERLAP,
        }
    }
}

/// What a decoded mode=replace background was made for: location, width, height, BGR order.
/// Its pixels are packed 4-byte pixels in the frame's channel order.
type BackgroundKey = (String, usize, usize, bool);

/// Where a frame's model mask comes from when it is finished.
enum MaskStep {
    /// Decide by `mask-interval` and run the model now if due (in the streaming thread, or on the
    /// model thread in asynchronous mode).
    Decide,
    /// The model already ran on this frame (overlap mode): its raw outputs.
    Inferred(Vec<Tensor>),
    /// Reuse the last model mask (overlap mode, between model runs).
    Reuse,
}

/// What a frame held back in overlap mode still needs.
enum HeldStage {
    /// The model must run on this tensor.
    Prepared(Vec<f32>),
    /// The model is running on it.
    Running,
    Inferred(Vec<Tensor>),
    Reuse,
}

/// A frame held back in overlap mode, in arrival order.
struct HeldFrame {
    input: gst::Buffer,
    stage: HeldStage,
    /// It follows a discontinuity: temporal smoothing starts afresh with it.
    discontinuity: bool,
}

/// Exists between `start()` and `stop()`.
struct State {
    /// Shared with the model thread of asynchronous mode, which locks it while it runs.
    segmenter: Arc<Mutex<Segmenter>>,
    /// The model thread, started by the first frame of a live pipeline in asynchronous mode.
    worker: Option<MaskWorker>,
    mask: Vec<u8>,
    /// The model's last mask, reused between model runs when `mask-interval` > 1 (or, in
    /// asynchronous mode, while the model works on a newer frame), and the frame size it is for.
    model_mask: Vec<u8>,
    model_mask_size: (usize, usize),
    /// Counts flushes and caps changes: a mask from the model thread made before the latest one
    /// is not shown after it.
    history: u64,
    /// Blur mode's blurred copy of the frame, its buffers reused from frame to frame.
    blurred: compose::BlurredBackground,
    /// The decoded background of mode=replace, with what it was made for.
    background: Option<(BackgroundKey, Vec<u8>)>,
    /// Frames since the model last ran; `None` forces a run (start, flush, new caps).
    frames_since_model: Option<u32>,
    /// The last smoothed mask, for `temporal-smoothing`; cleared on a discontinuity.
    previous_mask: Option<Vec<u8>>,
    /// Where the previous buffer ended, to spot gaps in the timestamps.
    previous_end: Option<gst::ClockTime>,
    /// How long one model run took at start: the latency this element adds.
    latency: gst::ClockTime,
    /// Negotiated input and output, set by `set_info()`.
    video_info: Option<(gst_video::VideoInfo, gst_video::VideoInfo)>,
    /// Overlap mode: frames taken in but not yet output, oldest first (at most one of them
    /// waits for the model), and finished frames waiting to be handed downstream.
    held: VecDeque<HeldFrame>,
    finished: VecDeque<gst::Buffer>,
}

#[derive(Default)]
pub struct RembgFilter {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    stats: Mutex<InferenceStats>,
    /// Whether upstream is live, learnt from the latency query.
    live: AtomicBool,
}

#[glib::object_subclass]
impl ObjectSubclass for RembgFilter {
    const NAME: &'static str = "GstRembgFilter";
    type Type = super::RembgFilter;
    type ParentType = gst_video::VideoFilter;
}

/// Reads a mean/std property: one value for all channels or one per channel.
fn per_channel(values: &[f64], property: &str, positive: bool) -> Result<[f32; 3], String> {
    let valid = |v: &f64| v.is_finite() && (!positive || *v > 0.0);
    match values {
        [v] if valid(v) => Ok([*v as f32; 3]),
        [r, g, b] if [r, g, b].into_iter().all(valid) => Ok([*r as f32, *g as f32, *b as f32]),
        _ => Err(format!(
            "property '{property}' must hold 1 or 3 finite{} numbers, got {values:?}",
            if positive { " positive" } else { "" }
        )),
    }
}

impl RembgFilter {
    fn load(&self, settings: &Settings) -> Result<State, gst::ErrorMessage> {
        let resolved = locate::resolve(&settings.model, settings.download).map_err(|e| {
            gst::error_msg!(gst::ResourceError::NotFound, ("property 'model': {}", e))
        })?;
        let mut profile = resolved
            .entry
            .map(|entry| entry.profile)
            .unwrap_or(ModelProfile::U2NET);
        if let Some(mean) = &settings.input_mean {
            profile.mean = per_channel(mean, "input-mean", false)
                .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ("{}", e)))?;
        }
        if let Some(std) = &settings.input_std {
            profile.std = per_channel(std, "input-std", true)
                .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ("{}", e)))?;
        }
        let options = SessionOptions {
            threads: settings.threads as usize,
            execution_provider: settings.execution_provider,
        };
        let backend = inference::element::load_model(&*self.obj(), &resolved.path, options)?;
        gst::info!(
            CAT,
            imp = self,
            "loaded {} (inputs {:?}, outputs {:?})",
            resolved.path.display(),
            backend.inputs(),
            backend.outputs()
        );
        let backend: Arc<dyn Backend> = backend;
        let mut segmenter = Segmenter::new(backend, profile).map_err(|e| {
            gst::error_msg!(gst::LibraryError::Settings, ("property 'model': {}", e))
        })?;
        let latency = Self::measure_latency(&mut segmenter)
            .map_err(|e| gst::error_msg!(gst::LibraryError::Failed, ("property 'model': {}", e)))?;
        gst::info!(CAT, imp = self, "one model run takes {latency}");
        Ok(State {
            latency,
            segmenter: Arc::new(Mutex::new(segmenter)),
            worker: None,
            mask: Vec::new(),
            model_mask: Vec::new(),
            model_mask_size: (0, 0),
            history: 0,
            background: None,
            blurred: Default::default(),
            frames_since_model: None,
            previous_mask: None,
            previous_end: None,
            video_info: None,
            held: VecDeque::new(),
            finished: VecDeque::new(),
        })
    }
}

impl RembgFilter {
    /// Decodes the picture of mode=replace with GStreamer and scales it to the frame.
    fn load_background(
        &self,
        location: &str,
        width: usize,
        height: usize,
        bgr: bool,
    ) -> Result<Vec<u8>, String> {
        if location.is_empty() {
            return Err("mode=replace needs an image: set background-location".into());
        }
        if !std::path::Path::new(location).is_file() {
            return Err(format!("{location} does not exist"));
        }
        let format = if bgr { "BGRA" } else { "RGBA" };
        let pipeline = gst::parse::launch(&format!(
            "filesrc name=file ! decodebin ! imagefreeze num-buffers=1 ! videoconvert ! videoscale add-borders=false \
             ! video/x-raw,format={format},width={width},height={height} ! appsink name=sink"
        ))
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
        pipeline
            .by_name("file")
            .expect("named in the description")
            .set_property("location", location);
        let sink = pipeline.by_name("sink").expect("named in the description");
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| e.to_string())?;
        let sample = sink.emit_by_name::<Option<gst::Sample>>(
            "try-pull-sample",
            &[&gst::ClockTime::from_seconds(10)],
        );
        let error = pipeline
            .bus()
            .and_then(|bus| bus.pop_filtered(&[gst::MessageType::Error]));
        let _ = pipeline.set_state(gst::State::Null);
        let sample = sample.ok_or_else(|| match error.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Error(err)) => format!("{location}: {}", err.error()),
            _ => format!("{location}: not an image GStreamer can decode"),
        })?;
        let info = gst_video::VideoInfo::from_caps(sample.caps().ok_or("no caps")?)
            .map_err(|e| e.to_string())?;
        let buffer = sample.buffer().ok_or("no buffer")?;
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
            .map_err(|e| e.to_string())?;
        let image = Self::image_of(&frame).map_err(|_| format!("{location}: cannot map"))?;
        let mut pixels = Vec::new();
        image.copy_packed_into(&mut pixels);
        Ok(pixels)
    }
}

impl State {
    /// After a flush or new caps the last mask belongs to another scene or size: no frame may
    /// reuse it, nor a mask the model thread is still making. (A DISCONT flag or a timestamp gap
    /// only restarts smoothing: a live source marks frames it dropped that way, and the scene is
    /// the same.)
    fn forget_masks(&mut self) {
        self.restart_smoothing();
        self.frames_since_model = None;
        self.model_mask_size = (0, 0);
        self.history += 1;
    }

    /// Whether this frame's turn in `mask-interval` runs the model (every `interval`th frame, and
    /// the first after start, a flush or new caps); counts the frame.
    fn model_turn(&mut self, interval: u32) -> bool {
        let turn = self
            .frames_since_model
            .is_none_or(|frames| frames >= interval);
        self.frames_since_model = Some(match self.frames_since_model {
            Some(frames) if !turn => frames + 1,
            _ => 1,
        });
        turn
    }

    /// The next frame is not blended with the ones before it.
    fn restart_smoothing(&mut self) {
        self.previous_mask = None;
        self.previous_end = None;
    }
}

impl RembgFilter {
    /// Runs the model once on a grey frame: it warms the session up, shows a model that fails to
    /// run at start rather than on the first frame, and gives the latency to report.
    fn measure_latency(segmenter: &mut Segmenter) -> Result<gst::ClockTime, SegmenterError> {
        let (width, height) = segmenter.profile().input_size;
        let frame = vec![128u8; width * height * 3];
        let mut mask = vec![0u8; width * height];
        let started = std::time::Instant::now();
        segmenter.compute_mask(
            &ImageRef::packed(&frame, width, height, PixelLayout::RGB),
            &mut mask,
        )?;
        Ok(gst::ClockTime::from_nseconds(
            started.elapsed().as_nanos() as u64
        ))
    }

    /// A flagged discontinuity, or a timestamp jump of more than half a frame either way.
    fn is_discontinuity(state: &State, buffer: &gst::BufferRef) -> bool {
        if buffer.flags().contains(gst::BufferFlags::DISCONT) {
            return true;
        }
        let (Some(pts), Some(previous_end)) = (buffer.pts(), state.previous_end) else {
            return false;
        };
        let tolerance = buffer
            .duration()
            .map_or(gst::ClockTime::from_mseconds(20), |d| d / 2);
        pts > previous_end + tolerance || pts + tolerance < previous_end
    }

    fn count_model_run(&self, model_time: Duration) {
        self.stats.lock().unwrap().count_model_run(model_time);
    }

    fn report_model_error(&self, err: SegmenterError) -> gst::FlowError {
        let domain = match err {
            SegmenterError::Output { .. } => gst::StreamError::Format,
            _ => gst::StreamError::Failed,
        };
        gst::element_imp_error!(self, domain, ("{}", err));
        gst::FlowError::Error
    }

    /// One frame's time, from the caps' frame rate.
    fn frame_duration(info: &gst_video::VideoInfo) -> Duration {
        let fps = info.fps();
        if fps.numer() > 0 && fps.denom() > 0 {
            Duration::from_nanos(1_000_000_000u64 * fps.denom() as u64 / fps.numer() as u64)
        } else {
            FALLBACK_FRAME_DURATION
        }
    }

    /// The latency this element adds: one model run, or in asynchronous live mode at most the
    /// one frame time a frame waits for its mask.
    fn own_latency(&self) -> gst::ClockTime {
        let asynchronous =
            self.settings.lock().unwrap().asynchronous && self.live.load(Ordering::Relaxed);
        let state = self.state.lock().unwrap();
        let Some(state) = state.as_ref() else {
            return gst::ClockTime::ZERO;
        };
        match (&state.video_info, asynchronous) {
            (Some((in_info, _)), true) => {
                let frame = Self::frame_duration(in_info);
                state
                    .latency
                    .min(gst::ClockTime::from_nseconds(frame.as_nanos() as u64))
            }
            _ => state.latency,
        }
    }

    /// Takes a finished mask from the model thread: kept when it fits the frame size.
    fn adopt_mask(
        &self,
        state: &mut State,
        finished: FinishedMask,
        size: (usize, usize),
    ) -> Result<(), gst::FlowError> {
        let mask = finished
            .result
            .map_err(|err| self.report_model_error(err))?;
        self.count_model_run(finished.model_time);
        let worker = state
            .worker
            .as_ref()
            .expect("a finished mask comes from the worker");
        if (finished.width, finished.height) == size && finished.tag == state.history {
            let old = std::mem::replace(&mut state.model_mask, mask);
            state.model_mask_size = size;
            worker.recycle_mask(old);
        } else {
            // Made for a frame before a caps change or another discontinuity.
            worker.recycle_mask(mask);
        }
        Ok(())
    }

    /// Asynchronous mode: the model runs on its own thread and this frame carries the newest
    /// mask that has finished. A frame that starts a model run waits up to one frame time for
    /// it, so a model faster than the frame rate still gives every frame its own mask; a slower
    /// one leaves the frames in between with the mask before. Only a frame with no mask of its
    /// size at all (the first, or the first after a size change) waits as long as the model takes.
    fn update_mask_asynchronously(
        &self,
        state: &mut State,
        frame: &ImageRef<'_>,
        interval: u32,
        wait: Duration,
    ) -> Result<(), gst::FlowError> {
        if state.worker.is_none() {
            let worker =
                MaskWorker::spawn("rembgfilter-model", state.segmenter.clone()).map_err(|err| {
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Thread,
                        ("cannot start the model thread: {}", err)
                    );
                    gst::FlowError::Error
                })?;
            state.worker = Some(worker);
        }
        let size = (frame.width, frame.height);
        let mut submitted = false;
        loop {
            let worker = state.worker.as_ref().expect("started above");
            if let Some(finished) = worker.take_finished() {
                self.adopt_mask(state, finished, size)?;
                continue;
            }
            let have_mask = state.model_mask_size == size;
            let due = !have_mask
                || state
                    .frames_since_model
                    .is_none_or(|frames| frames >= interval);
            if due && !submitted && worker.is_idle() {
                worker.submit(frame, state.history);
                state.frames_since_model = Some(0);
                submitted = true;
            }
            if have_mask {
                if submitted && let Some(finished) = worker.wait_finished(wait) {
                    self.adopt_mask(state, finished, size)?;
                }
                // This frame counts towards the next run, submitted or not.
                state.frames_since_model = state.frames_since_model.map(|frames| frames + 1);
                return Ok(());
            }
            // Nothing to show yet: wait for the run in work (perhaps of an older frame) and look again.
            if let Some(finished) = worker.wait_finished(Duration::from_secs(24 * 3600)) {
                self.adopt_mask(state, finished, size)?;
            } else {
                submitted = false;
            }
        }
    }

    fn started<'a>(
        &self,
        guard: &'a mut std::sync::MutexGuard<'_, Option<State>>,
    ) -> Result<&'a mut State, gst::FlowError> {
        guard.as_mut().ok_or_else(|| {
            gst::element_imp_error!(self, gst::CoreError::Negotiation, ("Have no state yet"));
            gst::FlowError::NotNegotiated
        })
    }

    /// Overlap mode is on and the pipeline is not live (live pipelines have asynchronous mode).
    fn overlapping(&self) -> bool {
        self.settings.lock().unwrap().overlap && !self.live.load(Ordering::Relaxed)
    }

    /// Bookkeeping for a frame coming in: returns whether it follows a discontinuity.
    fn note_arrival(&self, state: &mut State, inbuf: &gst::BufferRef) -> bool {
        let discontinuity = Self::is_discontinuity(state, inbuf);
        if discontinuity {
            gst::debug!(
                CAT,
                imp = self,
                "discontinuity at {:?}: masks start afresh",
                inbuf.pts()
            );
        }
        state.previous_end = inbuf
            .pts()
            .map(|pts| pts + inbuf.duration().unwrap_or(gst::ClockTime::ZERO));
        discontinuity
    }

    /// Maps `inbuf` as a frame of the negotiated input; a buffer too short for it is an error
    /// that says so.
    fn map_input<'a>(
        &self,
        state: &State,
        inbuf: &'a gst::BufferRef,
    ) -> Result<gst_video::VideoFrameRef<&'a gst::BufferRef>, gst::FlowError> {
        let Some((in_info, _)) = state.video_info.as_ref() else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("Received a buffer before caps")
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        gst_video::VideoFrameRef::from_buffer_ref_readable(inbuf, in_info).map_err(|_| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                (
                    "input buffer of {} bytes does not hold a {}x{} {} frame ({} bytes)",
                    inbuf.size(),
                    in_info.width(),
                    in_info.height(),
                    in_info.format().to_str(),
                    in_info.size()
                )
            );
            gst::FlowError::Error
        })
    }

    /// The pixels of a mapped input frame.
    fn image_of<'a>(
        frame: &'a gst_video::VideoFrameRef<&gst::BufferRef>,
    ) -> Result<ImageRef<'a>, gst::FlowError> {
        Ok(ImageRef {
            data: frame.plane_data(0).map_err(|_| gst::FlowError::Error)?,
            width: frame.width() as usize,
            height: frame.height() as usize,
            stride: frame.plane_stride()[0] as usize,
            layout: pixel_layout(frame.format()).ok_or(gst::FlowError::NotNegotiated)?,
        })
    }

    /// Writes the output frame of `inbuf` into `outbuf`.
    fn finish_frame(
        &self,
        state: &mut State,
        inbuf: &gst::BufferRef,
        outbuf: &mut gst::BufferRef,
        step: MaskStep,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let in_frame = self.map_input(state, inbuf)?;
        let out_info = state.video_info.as_ref().expect("mapped above").1.clone();
        let mut out_frame = gst_video::VideoFrameRef::from_buffer_ref_writable(outbuf, &out_info)
            .map_err(|_| {
            gst::element_imp_error!(
                self,
                gst::CoreError::Failed,
                ("cannot map the output buffer")
            );
            gst::FlowError::Error
        })?;
        self.process(state, &in_frame, &mut out_frame, step)
    }

    /// Overlap mode, one step: takes `arrival` in (`None` when draining), runs the model on the
    /// held frame that waits for it and, at the same time, finishes the frames at the front
    /// whose masks are known and pre-processes the arrival. Finished frames, in order, go to
    /// `state.finished`. Only one frame waits for the model at a time.
    fn advance_overlap(
        &self,
        state: &mut State,
        arrival: Option<gst::Buffer>,
    ) -> Result<(), gst::FlowError> {
        let arrival = arrival.map(|buffer| {
            let discontinuity = self.note_arrival(state, &buffer);
            let interval = self.settings.lock().unwrap().mask.interval.max(1);
            (buffer, state.model_turn(interval), discontinuity)
        });
        // The one frame waiting for the model (if any) is marked running and hands its tensor over.
        let tensor = state
            .held
            .iter_mut()
            .find(|frame| matches!(frame.stage, HeldStage::Prepared(_)))
            .and_then(
                |frame| match std::mem::replace(&mut frame.stage, HeldStage::Running) {
                    HeldStage::Prepared(tensor) => Some(tensor),
                    _ => None,
                },
            );
        let (backend, shape) = {
            let segmenter = state.segmenter.lock().unwrap();
            (segmenter.backend().clone(), *segmenter.input_shape())
        };
        let (model_result, side_result) = rayon::join(
            || {
                tensor.map(|tensor| {
                    let started = std::time::Instant::now();
                    let outputs = backend.run(&[TensorView {
                        shape: &shape,
                        data: &tensor,
                    }]);
                    (outputs, started.elapsed())
                })
            },
            || self.finish_ready_and_prepare(state, arrival),
        );
        let arrived = side_result?;
        if let Some((result, model_time)) = model_result {
            let outputs = result.map_err(|err| self.report_model_error(err.into()))?;
            self.count_model_run(model_time);
            let running = state
                .held
                .iter_mut()
                .find(|frame| matches!(frame.stage, HeldStage::Running))
                .expect("the frame the model ran on is still held");
            running.stage = HeldStage::Inferred(outputs);
        }
        state.held.extend(arrived);
        Ok(())
    }

    /// The side of [`RembgFilter::advance_overlap`] that runs beside the model.
    fn finish_ready_and_prepare(
        &self,
        state: &mut State,
        arrival: Option<(gst::Buffer, bool, bool)>,
    ) -> Result<Option<HeldFrame>, gst::FlowError> {
        while let Some(frame) = state.held.pop_front() {
            let step = match frame.stage {
                HeldStage::Inferred(outputs) => MaskStep::Inferred(outputs),
                HeldStage::Reuse => MaskStep::Reuse,
                stage @ (HeldStage::Prepared(_) | HeldStage::Running) => {
                    state.held.push_front(HeldFrame { stage, ..frame });
                    break;
                }
            };
            if frame.discontinuity {
                state.previous_mask = None;
            }
            let mut output = match self
                .parent_prepare_output_buffer(InputBuffer::Readable(frame.input.as_ref()))?
            {
                PrepareOutputBufferSuccess::Buffer(buffer) => buffer,
                PrepareOutputBufferSuccess::InputBuffer => {
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Failed,
                        ("no output buffer for a held frame")
                    );
                    return Err(gst::FlowError::Error);
                }
            };
            self.finish_frame(state, &frame.input, output.make_mut(), step)?;
            state.finished.push_back(output);
        }
        let Some((input, runs_model, discontinuity)) = arrival else {
            return Ok(None);
        };
        let stage = if runs_model {
            let frame = self.map_input(state, &input)?;
            let image = Self::image_of(&frame)?;
            let mut segmenter = state.segmenter.lock().unwrap();
            let tensor = segmenter
                .preprocess(&image)
                .map_err(|err| self.report_model_error(err))?;
            HeldStage::Prepared(tensor.to_vec())
        } else {
            HeldStage::Reuse
        };
        Ok(Some(HeldFrame {
            input,
            stage,
            discontinuity,
        }))
    }

    /// Overlap mode: finishes every held frame and pushes them downstream (before an event that
    /// must not overtake them).
    fn drain_held(&self) -> Result<(), gst::FlowError> {
        let finished: Vec<gst::Buffer> = {
            let mut state_guard = self.state.lock().unwrap();
            let Some(state) = state_guard.as_mut() else {
                return Ok(());
            };
            while !state.held.is_empty() {
                self.advance_overlap(state, None)?;
            }
            state.finished.drain(..).collect()
        };
        // Pushed without the state lock: downstream may query this element meanwhile.
        for buffer in finished {
            self.obj().src_pad().push(buffer)?;
        }
        Ok(())
    }

    /// One frame: the model's mask becomes the output's alpha, colour copied as it is.
    fn process(
        &self,
        state: &mut State,
        in_frame: &gst_video::VideoFrameRef<&gst::BufferRef>,
        out_frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
        step: MaskStep,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let src = Self::image_of(in_frame)?;
        let (width, height, layout) = (src.width, src.height, src.layout);
        let (controls, asynchronous) = {
            let settings = self.settings.lock().unwrap();
            (settings.mask, settings.asynchronous)
        };
        let interval = controls.interval.max(1);
        match step {
            MaskStep::Inferred(outputs) => {
                state.model_mask.resize(width * height, 0);
                let result = state.segmenter.lock().unwrap().postprocess(
                    &outputs,
                    width,
                    height,
                    &mut state.model_mask,
                );
                if let Err(err) = result {
                    return Err(self.report_model_error(err));
                }
                state.model_mask_size = (width, height);
            }
            // Overlap mode decided at arrival; the mask of the frame before is still here.
            MaskStep::Reuse => {}
            MaskStep::Decide if asynchronous && self.live.load(Ordering::Relaxed) => {
                let wait = Self::frame_duration(in_frame.info());
                self.update_mask_asynchronously(state, &src, interval, wait)?;
            }
            MaskStep::Decide => {
                let turn = state.model_turn(interval);
                if turn || state.model_mask_size != (width, height) {
                    state.model_mask.resize(width * height, 0);
                    let (result, model_time) = {
                        let mut segmenter = state.segmenter.lock().unwrap();
                        let result = segmenter.compute_mask(&src, &mut state.model_mask);
                        (result, segmenter.last_run_time())
                    };
                    if let Err(err) = result {
                        return Err(self.report_model_error(err));
                    }
                    self.count_model_run(model_time);
                    state.model_mask_size = (width, height);
                    // The count restarts with a run, also one the frame size forced.
                    state.frames_since_model = Some(1);
                }
            }
        }
        state.mask.clear();
        state.mask.extend_from_slice(&state.model_mask);
        if controls.post_process {
            mask::rembg_post_process(&mut state.mask, width, height);
        }
        if controls.temporal_smoothing > 0.0 {
            if let Some(previous) = state
                .previous_mask
                .as_ref()
                .filter(|p| p.len() == state.mask.len())
            {
                mask::smooth_temporally(&mut state.mask, previous, controls.temporal_smoothing);
            }
            // The buffer is reused from frame to frame rather than allocated anew.
            let previous = state.previous_mask.get_or_insert_with(Vec::new);
            previous.clear();
            previous.extend_from_slice(&state.mask);
        } else {
            state.previous_mask = None;
        }
        mask::threshold(&mut state.mask, controls.threshold.min(255) as u8);
        mask::feather(&mut state.mask, width, height, controls.feather as usize);
        let out_format = out_frame.format();
        let dst_stride = out_frame.plane_stride()[0] as usize;
        let dst = out_frame
            .plane_data_mut(0)
            .map_err(|_| gst::FlowError::Error)?;
        let output = self.settings.lock().unwrap().output;
        // The output keeps the input's channel order, so colours are given in that order.
        let [_, r, g, b] = output.background_color.to_be_bytes();
        let colour = if layout.red == 0 {
            [r, g, b]
        } else {
            [b, g, r]
        };
        match (output.mode, out_format) {
            (RembgMode::Mask, VideoFormat::Gray8) => {
                compose::write_mask(&state.mask, width, height, dst, dst_stride)
            }
            (RembgMode::Alpha, VideoFormat::Rgba | VideoFormat::Bgra) => {
                attach_alpha(&src, &state.mask, dst, dst_stride)
            }
            (RembgMode::Composite, VideoFormat::Rgba | VideoFormat::Bgra) => {
                compose::composite_over(
                    &src,
                    &state.mask,
                    Background::Colour(colour),
                    dst,
                    dst_stride,
                )
            }
            (RembgMode::Blur, VideoFormat::Rgba | VideoFormat::Bgra) => {
                let blurred = state.blurred.blur(&src, output.blur_radius as usize);
                compose::composite_over(
                    &src,
                    &state.mask,
                    Background::Image(blurred),
                    dst,
                    dst_stride,
                )
            }
            (RembgMode::Replace, VideoFormat::Rgba | VideoFormat::Bgra) => {
                let location = self.settings.lock().unwrap().background_location.clone();
                let key = (location.unwrap_or_default(), width, height, layout.red != 0);
                if state
                    .background
                    .as_ref()
                    .is_none_or(|(made_for, _)| *made_for != key)
                {
                    let pixels =
                        self.load_background(&key.0, width, height, key.3)
                            .map_err(|e| {
                                gst::element_imp_error!(
                                    self,
                                    gst::ResourceError::OpenRead,
                                    ("property 'background-location': {}", e)
                                );
                                gst::FlowError::Error
                            })?;
                    state.background = Some((key, pixels));
                }
                let background = &state.background.as_ref().expect("just loaded").1;
                compose::composite_over(
                    &src,
                    &state.mask,
                    Background::Image(background),
                    dst,
                    dst_stride,
                )
            }
            (mode, format) => {
                // The mode changed and the new caps are not negotiated yet: this frame keeps the
                // old output format, so it is written in that format's own mode.
                gst::debug!(
                    CAT,
                    imp = self,
                    "mode {mode:?} waits for renegotiation from {format:?}"
                );
                match format {
                    VideoFormat::Gray8 => {
                        compose::write_mask(&state.mask, width, height, dst, dst_stride)
                    }
                    _ => attach_alpha(&src, &state.mask, dst, dst_stride),
                }
            }
        }
        self.stats.lock().unwrap().frames += 1;
        Ok(gst::FlowSuccess::Ok)
    }
}

impl ObjectImpl for RembgFilter {
    fn constructed(&self) {
        self.parent_constructed();
        // Dropping late frames is for live pipelines only; the latency query turns it on there.
        self.obj().set_qos(false);
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let channel_value = glib::ParamSpecDouble::builder("value").build();
            let mut properties = vec![
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb(&format!(
                        "Catalog model ({}), looked for in $U2NET_HOME or ~/.u2net, or a path to an .onnx file",
                        catalog::names().join(", ")
                    ))
                    .default_value(Some(DEFAULT_MODEL))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("download")
                    .nick("Download")
                    .blurb("Download a catalog model missing from the model folder on first use \
                            (checksum-verified; $NEURALFX_MODEL_BASE_URL replaces the source)")
                    .default_value(DEFAULT_DOWNLOAD)
                    .mutable_ready()
                    .build(),
                gst::ParamSpecArray::builder("input-mean")
                    .nick("Input mean")
                    .blurb("Mean subtracted from the 0..1 input, one value or <r, g, b>; empty = the model's own")
                    .element_spec(&channel_value)
                    .mutable_ready()
                    .build(),
                gst::ParamSpecArray::builder("input-std")
                    .nick("Input std")
                    .blurb("Standard deviation the input is divided by, one value or <r, g, b>; empty = the model's own")
                    .element_spec(&channel_value)
                    .mutable_ready()
                    .build(),
            ];
            properties.extend(inference::element::param_specs());
            properties.extend([
                glib::ParamSpecEnum::builder_with_default("mode", DEFAULT_OUTPUT.mode)
                    .nick("Mode")
                    .blurb("What to output: alpha (RGBA/BGRA), mask (GRAY8), composite or blur (alpha 255)")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("background-color")
                    .nick("Background colour")
                    .blurb("Background of mode=composite, as 0xAARRGGBB (alpha ignored)")
                    .default_value(DEFAULT_OUTPUT.background_color)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("blur-radius")
                    .nick("Blur radius")
                    .blurb("Radius in pixels of the background blur of mode=blur")
                    .maximum(512)
                    .default_value(DEFAULT_OUTPUT.blur_radius)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("background-location")
                    .nick("Background location")
                    .blurb("Image shown behind the foreground in mode=replace (any format GStreamer decodes), scaled to the frame")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("post-process-mask")
                    .nick("Post-process mask")
                    .blurb("rembg's post-processing: opening with a radius-1 disk, Gaussian blur (sigma 2), threshold at 127")
                    .default_value(DEFAULT_MASK_CONTROLS.post_process)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("threshold")
                    .nick("Threshold")
                    .blurb("0 keeps the soft mask; otherwise alpha is 255 from this level up and 0 below")
                    .maximum(255)
                    .default_value(DEFAULT_MASK_CONTROLS.threshold)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("feather")
                    .nick("Feather")
                    .blurb("Soften the mask's edge over about this many pixels (0 = off)")
                    .maximum(256)
                    .default_value(DEFAULT_MASK_CONTROLS.feather)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("temporal-smoothing")
                    .nick("Temporal smoothing")
                    .blurb("Weight of the previous frame's mask in this frame's (0 = off), against flicker; \
                            reset on flush, caps change or a gap in timestamps")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_MASK_CONTROLS.temporal_smoothing)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("mask-interval")
                    .nick("Mask interval")
                    .blurb("Run the model on every Nth frame and reuse its mask in between (1 = every frame)")
                    .minimum(1)
                    .maximum(10000)
                    .default_value(DEFAULT_MASK_CONTROLS.interval)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("asynchronous")
                    .nick("Asynchronous inference")
                    .blurb("In a live pipeline, run the model on its own thread: a frame waits at most one \
                            frame time for its own mask, then goes out with the newest finished one, so a \
                            model slower than the camera lags the video instead of dropping frames. \
                            Off, or in a non-live pipeline, every frame that runs the model waits for it")
                    .default_value(DEFAULT_ASYNCHRONOUS)
                    .mutable_ready()
                    .build(),
                inference::element::stats_param_spec(
                    "Since start: frames output (\"frames\"), model runs (\"model-runs\", fewer with \
                     mask-interval or asynchronous mode) and nanoseconds inside the model (\"model-time\")",
                ),
                glib::ParamSpecBoolean::builder("overlap")
                    .nick("Overlap frames")
                    .blurb("In a non-live pipeline, hold one frame back so that the model's run on it \
                            overlaps resizing and compositing of the frames around it: more throughput on \
                            few cores, the same output, but a frame comes out only when the next one (or \
                            EOS) comes in")
                    .default_value(DEFAULT_OVERLAP)
                    .mutable_ready()
                    .build(),
            ]);
            properties
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock().unwrap();
        let doubles = |value: &glib::Value| -> Option<Vec<f64>> {
            let array = value.get::<gst::Array>().ok()?;
            let values: Vec<f64> = array.iter().filter_map(|v| v.get::<f64>().ok()).collect();
            (!values.is_empty()).then_some(values)
        };
        match pspec.name() {
            "model" => {
                let model = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_else(|| DEFAULT_MODEL.to_string());
                gst::info!(CAT, imp = self, "model: {} -> {}", settings.model, model);
                settings.model = model;
            }
            "threads" => settings.threads = value.get().expect("type checked upstream"),
            "download" => settings.download = value.get().expect("type checked upstream"),
            "execution-provider" => {
                settings.execution_provider = value.get().expect("type checked upstream")
            }
            "input-mean" => settings.input_mean = doubles(value),
            "mode" => {
                let mode = value.get().expect("type checked upstream");
                if mode != settings.output.mode {
                    settings.output.mode = mode;
                    drop(settings);
                    // Output caps depend on the mode: negotiate them again before the next frame.
                    self.obj().reconfigure_src();
                }
            }
            "background-color" => {
                settings.output.background_color = value.get().expect("type checked upstream")
            }
            "blur-radius" => {
                settings.output.blur_radius = value.get().expect("type checked upstream")
            }
            "background-location" => {
                settings.background_location = value.get().expect("type checked upstream")
            }
            "post-process-mask" => {
                settings.mask.post_process = value.get().expect("type checked upstream")
            }
            "threshold" => settings.mask.threshold = value.get().expect("type checked upstream"),
            "feather" => settings.mask.feather = value.get().expect("type checked upstream"),
            "temporal-smoothing" => {
                settings.mask.temporal_smoothing = value.get().expect("type checked upstream")
            }
            "mask-interval" => settings.mask.interval = value.get().expect("type checked upstream"),
            "asynchronous" => settings.asynchronous = value.get().expect("type checked upstream"),
            "overlap" => settings.overlap = value.get().expect("type checked upstream"),
            "input-std" => settings.input_std = doubles(value),
            other => unimplemented!("property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        let array = |values: &Option<Vec<f64>>| {
            gst::Array::new(values.iter().flatten().copied()).to_value()
        };
        match pspec.name() {
            "model" => settings.model.to_value(),
            "threads" => settings.threads.to_value(),
            "download" => settings.download.to_value(),
            "execution-provider" => settings.execution_provider.to_value(),
            "input-mean" => array(&settings.input_mean),
            "mode" => settings.output.mode.to_value(),
            "background-color" => settings.output.background_color.to_value(),
            "blur-radius" => settings.output.blur_radius.to_value(),
            "background-location" => settings.background_location.to_value(),
            "post-process-mask" => settings.mask.post_process.to_value(),
            "threshold" => settings.mask.threshold.to_value(),
            "feather" => settings.mask.feather.to_value(),
            "temporal-smoothing" => settings.mask.temporal_smoothing.to_value(),
            "mask-interval" => settings.mask.interval.to_value(),
            "asynchronous" => settings.asynchronous.to_value(),
            "overlap" => settings.overlap.to_value(),
            "stats" => self
                .stats
                .lock()
                .unwrap()
                .to_structure("rembgfilter-stats")
                .to_value(),
            "input-std" => array(&settings.input_std),
            other => unimplemented!("property {other}"),
        }
    }
}

impl GstObjectImpl for RembgFilter {}

impl ElementImpl for RembgFilter {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Background removal",
                "Filter/Effect/Video",
                "Removes the background of video with an ONNX segmentation model (u2netp, u2net, silueta, \
                 isnet or custom), computing what Python rembg computes; outputs the mask as alpha",
                "neuralfx developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let sink_caps = gst_video::VideoCapsBuilder::new()
                .format_list(FORMAT_PAIRS.iter().map(|(input, _)| *input))
                .build();
            let src_caps = gst_video::VideoCapsBuilder::new()
                .format_list([VideoFormat::Rgba, VideoFormat::Bgra, VideoFormat::Gray8])
                .build();
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &src_caps,
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &sink_caps,
                )
                .unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }
}

/// Whether a caps structure names only grey formats.
fn outputs_gray(structure: &gst::StructureRef) -> bool {
    allowed_formats(structure, &[VideoFormat::Gray8]) == [VideoFormat::Gray8]
}

/// The formats a caps structure allows; all of `candidates` when it names none.
fn allowed_formats(structure: &gst::StructureRef, candidates: &[VideoFormat]) -> Vec<VideoFormat> {
    let Ok(value) = structure.value("format") else {
        return candidates.to_vec();
    };
    let names: Vec<String> = if let Ok(name) = value.get::<String>() {
        vec![name]
    } else if let Ok(list) = value.get::<gst::List>() {
        list.iter().filter_map(|v| v.get::<String>().ok()).collect()
    } else {
        return Vec::new();
    };
    names
        .iter()
        .map(|name| VideoFormat::from_string(name))
        .filter(|format| candidates.contains(format))
        .collect()
}

impl BaseTransformImpl for RembgFilter {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::NeverInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let state = self.load(&settings)?;
        *self.state.lock().unwrap() = Some(state);
        *self.stats.lock().unwrap() = InferenceStats::default();
        gst::debug!(CAT, imp = self, "started with {}", settings.model);
        Ok(())
    }

    // Maps frames itself rather than through VideoFilter's transform_frame(), which drops a
    // buffer that does not fit its caps with only a warning: here that is an error that says so.
    fn transform(
        &self,
        inbuf: &gst::Buffer,
        outbuf: &mut gst::BufferRef,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut state_guard = self.state.lock().unwrap();
        let state = self.started(&mut state_guard)?;
        if self.note_arrival(state, inbuf) {
            state.restart_smoothing();
        }
        self.finish_frame(state, inbuf, outbuf, MaskStep::Decide)
    }

    // Overlap mode takes frames in here and hands finished ones out one by one; otherwise
    // BaseTransform's own generate_output() calls transform() above.
    fn generate_output(&self) -> Result<GenerateOutputSuccess, gst::FlowError> {
        let overlap = self.overlapping();
        let mut state_guard = self.state.lock().unwrap();
        let state = self.started(&mut state_guard)?;
        if !overlap && !state.held.is_empty() {
            // Overlap ended (the pipeline turned out live): let the held frames out first.
            while !state.held.is_empty() {
                self.advance_overlap(state, None)?;
            }
        }
        if let Some(buffer) = state.finished.pop_front() {
            return Ok(GenerateOutputSuccess::Buffer(buffer));
        }
        if !overlap {
            drop(state_guard);
            return self.parent_generate_output();
        }
        let Some(arrival) = self.take_queued_buffer() else {
            return Ok(GenerateOutputSuccess::NoOutput);
        };
        self.advance_overlap(state, Some(arrival))?;
        Ok(state.finished.pop_front().map_or(
            GenerateOutputSuccess::NoOutput,
            GenerateOutputSuccess::Buffer,
        ))
    }

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if direction == gst::PadDirection::Src
            && let gst::QueryViewMut::Latency(latency_query) = query.view_mut()
        {
            let mut upstream = gst::query::Latency::new();
            if !self.obj().sink_pad().peer_query(&mut upstream) {
                return false;
            }
            let (live, min, max) = upstream.result();
            self.live.store(live, Ordering::Relaxed);
            let ours = self.own_latency();
            // In a live pipeline a frame that is already late is dropped (with a QoS message)
            // rather than making the pipeline fall further behind; otherwise every frame counts.
            self.obj().set_qos(live);
            gst::debug!(
                CAT,
                imp = self,
                "live {live}, upstream latency {min}, ours {ours}"
            );
            latency_query.set(live, min + ours, max.map(|max| max + ours));
            return true;
        }
        BaseTransformImplExt::parent_query(self, direction, query)
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        if let gst::EventView::FlushStop(_) = event.view() {
            if let Some(state) = self.state.lock().unwrap().as_mut() {
                state.forget_masks();
                state.held.clear();
                state.finished.clear();
            }
        } else if event.is_serialized() {
            // Caps, EOS, gaps, tags: held frames go out first, so nothing overtakes them.
            if let Err(err) = self.drain_held() {
                gst::warning!(CAT, imp = self, "frames held back not delivered: {err:?}");
            }
        }
        self.parent_sink_event(event)
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        // Dropping the state stops the model thread and drops this element's hold on the
        // shared session.
        let state = self.state.lock().unwrap().take();
        drop(state);
        self.live.store(false, Ordering::Relaxed);
        Ok(())
    }

    fn transform_caps(
        &self,
        direction: gst::PadDirection,
        caps: &gst::Caps,
        filter: Option<&gst::Caps>,
    ) -> Option<gst::Caps> {
        let mut result = gst::Caps::new_empty();
        {
            let result = result.get_mut().expect("new caps are writable");
            for (structure, features) in caps.iter_with_features() {
                let pairs = format_pairs(self.settings.lock().unwrap().output.mode);
                let (inputs, outputs): (Vec<_>, Vec<_>) = pairs.iter().copied().unzip();
                let mut targets: Vec<VideoFormat> = Vec::new();
                match direction {
                    gst::PadDirection::Sink => {
                        for format in allowed_formats(structure, &inputs) {
                            let (_, out) = pairs
                                .iter()
                                .find(|(i, _)| *i == format)
                                .expect("from the list");
                            if !targets.contains(out) {
                                targets.push(*out);
                            }
                        }
                    }
                    _ => {
                        for format in allowed_formats(structure, &outputs) {
                            targets.extend(
                                pairs.iter().filter(|(_, o)| *o == format).map(|(i, _)| *i),
                            );
                        }
                    }
                }
                if targets.is_empty() {
                    continue;
                }
                let mut transformed = structure.to_owned();
                if targets.contains(&VideoFormat::Gray8) != outputs_gray(structure) {
                    // RGB colorimetry does not describe grey frames, and the other way round.
                    transformed.remove_fields(["colorimetry", "chroma-site"]);
                }
                if targets.len() == 1 {
                    transformed.set("format", targets[0].to_str());
                } else {
                    transformed.set("format", gst::List::new(targets.iter().map(|f| f.to_str())));
                }
                result.append_structure_full(transformed, Some(features.to_owned()));
            }
        }
        gst::debug!(
            CAT,
            imp = self,
            "transformed {caps} ({direction:?}) into {result}"
        );
        match filter {
            Some(filter) => {
                Some(filter.intersect_with_mode(&result, gst::CapsIntersectMode::First))
            }
            None => Some(result),
        }
    }
}

impl VideoFilterImpl for RembgFilter {
    fn set_info(
        &self,
        incaps: &gst::Caps,
        in_info: &gst_video::VideoInfo,
        outcaps: &gst::Caps,
        out_info: &gst_video::VideoInfo,
    ) -> Result<(), gst::LoggableError> {
        if pixel_layout(in_info.format()).is_none() {
            return Err(gst::loggable_error!(CAT, "unsupported input caps {incaps}"));
        }
        if in_info.width() != out_info.width() || in_info.height() != out_info.height() {
            return Err(gst::loggable_error!(
                CAT,
                "input {incaps} and output {outcaps} differ in size"
            ));
        }
        gst::debug!(CAT, imp = self, "configured {incaps} -> {outcaps}");
        let latency_before = self.own_latency();
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            state.video_info = Some((in_info.clone(), out_info.clone()));
            // A new size or format breaks the run of frames.
            state.forget_masks();
        }
        // In asynchronous mode the latency depends on the frame rate: ask for a new query.
        if self.own_latency() != latency_before {
            let _ = self
                .obj()
                .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
        }
        Ok(())
    }
}
