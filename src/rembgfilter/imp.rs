//! `rembgfilter`: removes the background of raw video with a segmentation model, computing what
//! Python rembg computes for the same model.
//!
//! Raw RGB-family video in; out the frame with the mask as alpha (RGBA/BGRA in the input's
//! channel order), the mask alone (GRAY8), or the foreground over a colour, a blurred copy of
//! the frame or a picture. Every input frame gives one output frame with its timestamps.
//!
//! ## Example pipelines
//! ```bash
//! gst-launch-1.0 filesrc location=photo.jpg ! decodebin ! videoconvert ! rembgfilter \
//!     ! videoconvert ! pngenc ! filesink location=cutout.png
//! gst-launch-1.0 v4l2src ! videoconvert ! rembgfilter model=selfie mode=blur \
//!     ! videoconvert ! autovideosink
//! ```
//!
//! This file is glue. The path of a frame: `generate_output()` takes the input BaseTransform
//! queued and pushes it into the stream's [`Scheduler`], which runs the model for it as the
//! stream's [`Strategy`] says (inline, on a model thread in live video, or behind requests in
//! flight) and hands frames back in order; each frame handed back is composed (mask chain,
//! matting, foreground, compositor) into an output buffer, one per call. Serialized events
//! drain the frames held first; a flush drops them. No lock is held across a model run by
//! anything but the streaming thread, and every wait for the model is woken by a flush or a
//! stop.

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
use crate::inference::element::BackendSettings;
use crate::inference::element::InferenceStats;
use crate::inference::requests::Interruptible;
use crate::location;
use crate::matting::closed_form::{self, TrimapParams};
use crate::matting::guided_filter::{GuidedFilter, GuidedFilterParams};
use crate::matting::{ForegroundEstimator, ForegroundMethod};
use crate::segmentation::catalog::{self, ModelProfile};
use crate::segmentation::compose::{self, Compositor, Output};
use crate::segmentation::download::DownloadEvent;
use crate::segmentation::mask::{MaskChain, MaskControls};
use crate::segmentation::schedule::SlowRefresh;
use crate::segmentation::scheduler::{
    Arrival, ScheduleError, Scheduled, Scheduler, Strategy, StreamPlan,
};
use crate::segmentation::{Segmenter, SegmenterError, locate};
use crate::video::{image_of, pixel_layout};

use super::background::Background;
use super::caps;
use super::{BackgroundFit, EdgeRefinement, ForegroundEstimation, RembgMode};

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
const DEFAULT_MASK_INTERVAL: u32 = 1;
const DEFAULT_KEEP_INPUT_ALPHA: bool = true;
/// Chosen on composites of the astronaut (see tests/edge_refinement.rs): radius 4, epsilon 1e-5.
const DEFAULT_GUIDED_FILTER: GuidedFilterParams = GuidedFilterParams {
    radius: 4,
    epsilon: 1e-5,
};
/// How long a frame waits for its own mask in asynchronous mode when the frame rate is unknown.
const FALLBACK_FRAME_DURATION: Duration = Duration::from_millis(33);

/// What the element outputs; changeable while playing (a mode change renegotiates).
#[derive(Debug, Clone, Copy, PartialEq)]
struct OutputSettings {
    mode: RembgMode,
    /// ARGB, as GStreamer's colour properties are.
    background_color: u32,
    blur_radius: u32,
    clear_transparent: bool,
    background_fit: BackgroundFit,
    /// How the colour of partly transparent pixels is estimated.
    foreground: ForegroundEstimation,
    /// rembg's alpha matting of the final mask.
    alpha_matting: bool,
    trimap: TrimapParams,
}

const DEFAULT_OUTPUT: OutputSettings = OutputSettings {
    mode: RembgMode::Alpha,
    background_color: 0xff00_ff00,
    blur_radius: 16,
    clear_transparent: false,
    background_fit: BackgroundFit::Fill,
    foreground: ForegroundEstimation::None,
    alpha_matting: false,
    trimap: TrimapParams {
        foreground_threshold: 240,
        background_threshold: 10,
        erode_size: 10,
    },
};

/// The settings a frame is made with, read once per buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
struct FrameSettings {
    /// Refinement of the model's mask against the frame, before the mask controls.
    edge_refinement: EdgeRefinement,
    guided_filter: GuidedFilterParams,
    mask: MaskControls,
    mask_interval: u32,
    output: OutputSettings,
    /// In a live pipeline, run the model on its own thread (see the property's blurb).
    asynchronous: bool,
    /// In a non-live pipeline, hold a frame back so that the model's run overlaps the work
    /// around its neighbours.
    overlap: bool,
    /// RGBA/BGRA input: the output's alpha is the mask times the input's alpha.
    keep_input_alpha: bool,
}

#[derive(Debug, Clone)]
struct Settings {
    model: String,
    download: bool,
    /// Where the model runs.
    backend: BackendSettings,
    input_mean: Option<String>,
    input_std: Option<String>,
    /// The picture of mode=replace.
    background_location: Option<String>,
    frame: FrameSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: DEFAULT_MODEL.to_string(),
            download: DEFAULT_DOWNLOAD,
            backend: BackendSettings::default(),
            input_mean: None,
            input_std: None,
            background_location: None,
            frame: FrameSettings {
                edge_refinement: EdgeRefinement::None,
                guided_filter: DEFAULT_GUIDED_FILTER,
                mask: MaskControls::default(),
                mask_interval: DEFAULT_MASK_INTERVAL,
                output: DEFAULT_OUTPUT,
                asynchronous: DEFAULT_ASYNCHRONOUS,
                overlap: DEFAULT_OVERLAP,
                keep_input_alpha: DEFAULT_KEEP_INPUT_ALPHA,
            },
        }
    }
}

/// Exists between `start()` and `stop()`; only the streaming thread holds it for long.
struct State {
    /// Runs the model for each frame as the stream's strategy says and hands frames back in
    /// order, the model's mask with each.
    scheduler: Scheduler<gst::Buffer>,
    chain: MaskChain,
    compositor: Compositor,
    /// The frame with its foreground colour estimated, for foreground-estimation.
    foreground: ForegroundEstimator,
    /// alpha-matting's matte of the last frame.
    matte: Vec<u8>,
    /// edge-refinement's filter and the refined model mask of the last frame.
    guided_filter: GuidedFilter,
    refined: Vec<u8>,
    /// A failed matting was reported on the bus (once).
    warned_matting: bool,
    /// Negotiated input and output, set by `set_info()`.
    video_info: Option<(gst_video::VideoInfo, gst_video::VideoInfo)>,
    /// The model has given NaN or infinite values since start (warned once).
    warned_non_finite: bool,
}

impl State {
    /// After new caps the last mask belongs to another size: no frame may reuse it, and
    /// smoothing across frames starts afresh.
    fn restart(&mut self) {
        self.chain.restart_smoothing();
        self.scheduler.restart();
    }

    /// A flush: frames held are dropped, and the stream restarts as after new caps.
    fn flush(&mut self) {
        self.chain.restart_smoothing();
        self.scheduler.flush();
    }
}

/// Lock order: `settings` then `background` (setting background-location); `state` then
/// `background` then `stats` (a frame in replace mode), or `state` then `interrupters`; never
/// the reverse. `settings`, `plan` and `state` are never held together: a frame copies its
/// settings and strategy out first, so a property set or a latency query while playing never
/// waits for a model run. `stats` is apart from `state` for the same reason.
#[derive(Default)]
pub struct RembgFilter {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    stats: Mutex<InferenceStats>,
    /// What runs the model (property 'active-backend'), set at start, emptied at stop.
    active_backend: Mutex<String>,
    /// Liveness, model and frame time, and the strategy the first frame fixed: what the
    /// latency query is answered from.
    plan: Mutex<StreamPlan>,
    /// Wake a streaming thread that waits for the model, on a flush or a stop.
    interrupters: Mutex<Vec<Arc<dyn Interruptible>>>,
    flushing: AtomicBool,
    /// The picture of mode=replace, decoded when the property is set.
    background: Mutex<Option<Background>>,
    start_settings: inference::element::StartSettingsGuard,
}

#[glib::object_subclass]
impl ObjectSubclass for RembgFilter {
    const NAME: &'static str = "GstRembgFilter";
    type Type = super::RembgFilter;
    type ParentType = gst_video::VideoFilter;
}

/// Reads a mean/std property: one value for all channels or one per channel, written `0.5`,
/// `0.5, 0.5, 0.5` or gst-launch's array syntax `<0.5, 0.5, 0.5>`.
fn per_channel(text: &str, property: &str, positive: bool) -> Result<[f32; 3], String> {
    let error = || {
        format!(
            "property '{property}' must hold 1 or 3 finite{} numbers (e.g. \"0.5\" or \"0.485, 0.456, 0.406\"), got '{text}'",
            if positive { " positive" } else { "" }
        )
    };
    let inner = text.trim().trim_start_matches('<').trim_end_matches('>');
    let values = inner
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|part| !part.is_empty())
        .map(|part| part.parse::<f64>().map_err(|_| error()))
        .collect::<Result<Vec<f64>, String>>()?;
    let valid = |v: &f64| v.is_finite() && (!positive || *v > 0.0);
    match values.as_slice() {
        [v] if valid(v) => Ok([*v as f32; 3]),
        [r, g, b] if [r, g, b].into_iter().all(valid) => Ok([*r as f32, *g as f32, *b as f32]),
        _ => Err(error()),
    }
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

/// What a frame of `format` shows in `mode`. Right after a mode change the new caps are not
/// negotiated yet: such a frame keeps the old output format and is written in that format's
/// own mode.
fn output_for<'a>(
    output: &OutputSettings,
    format: VideoFormat,
    layout: PixelLayout,
    background: Option<&'a [u8]>,
) -> Output<'a> {
    let alpha = Output::Alpha {
        clear_transparent: output.clear_transparent,
    };
    match (output.mode, format) {
        (_, VideoFormat::Gray8) => Output::Mask,
        (RembgMode::Composite, _) => {
            Output::OverColour(compose::colour_in_layout(output.background_color, layout))
        }
        (RembgMode::Blur, _) => Output::OverBlur(output.blur_radius as usize),
        (RembgMode::Replace, _) => background.map_or(alpha, Output::OverImage),
        (RembgMode::Alpha | RembgMode::Mask, _) => alpha,
    }
}

impl RembgFilter {
    fn load(&self, settings: &Settings) -> Result<State, gst::ErrorMessage> {
        // A served model of a catalog name takes that entry's processing, as a file does.
        let mut entry = catalog::find(&settings.model);
        let loaded = inference::element::load_backend(
            &*self.obj(),
            &settings.backend,
            &settings.model,
            || {
                let mut downloading = false;
                let resolved =
                    locate::resolve_reporting(&settings.model, settings.download, &mut |event| {
                        downloading = true;
                        self.post_download_progress(&settings.model, event)
                    })
                    .map_err(|e| {
                        if downloading {
                            // A started download ends in a progress message too.
                            let _ = self.obj().post_message(
                                gst::message::Progress::builder(
                                    gst::ProgressType::Error,
                                    "download",
                                    &format!("{}: download failed", settings.model),
                                )
                                .src(&*self.obj())
                                .build(),
                            );
                        }
                        gst::error_msg!(gst::ResourceError::NotFound, ("property 'model': {}", e))
                    })?;
                entry = resolved.entry;
                Ok(resolved.path)
            },
        )?;
        let backend = loaded.model;
        inference::element::set_active_backend(&*self.obj(), &self.active_backend, loaded.runs_on);
        let mut profile = entry
            .map(|entry| entry.profile)
            .unwrap_or(ModelProfile::U2NET);
        if settings.backend.sends_pictures() {
            // The endpoint does its own processing: it gets the frame, the element its mask.
            profile = ModelProfile::WHOLE_FRAME;
        } else {
            if let Some(mean) = &settings.input_mean {
                profile.mean = per_channel(mean, "input-mean", false)
                    .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ("{}", e)))?;
            }
            if let Some(std) = &settings.input_std {
                profile.std = per_channel(std, "input-std", true)
                    .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ("{}", e)))?;
            }
        }
        gst::info!(
            CAT,
            imp = self,
            "loaded {} (inputs {:?}, outputs {:?})",
            backend.model_name(),
            backend.inputs(),
            backend.outputs()
        );
        let mut segmenter = Segmenter::new(backend, profile).map_err(|e| {
            gst::error_msg!(gst::LibraryError::Settings, ("property 'model': {}", e))
        })?;
        // A server's failure names the server or endpoint itself; the model is not to blame.
        let blamed = if settings.backend.is_remote() {
            ""
        } else {
            "property 'model': "
        };
        let latency = Self::measure_latency(&mut segmenter)
            .map_err(|e| gst::error_msg!(gst::LibraryError::Failed, ("{}{}", blamed, e)))?;
        gst::info!(CAT, imp = self, "one model run takes {latency:?}");
        *self.plan.lock().unwrap() = StreamPlan::new(
            settings.backend.is_remote(),
            settings.frame.asynchronous,
            settings.frame.overlap,
            latency,
        );
        Ok(State {
            scheduler: Scheduler::new(
                segmenter,
                settings.backend.requests_in_flight(),
                "rembgfilter",
            ),
            chain: MaskChain::default(),
            compositor: Compositor::default(),
            foreground: ForegroundEstimator::default(),
            matte: Vec::new(),
            warned_matting: false,
            guided_filter: GuidedFilter::default(),
            refined: Vec::new(),
            video_info: None,
            warned_non_finite: false,
        })
    }

    /// Runs the model once on a grey frame: it warms the session up, shows a model that fails to
    /// run at start rather than on the first frame, and gives the latency to report.
    fn measure_latency(segmenter: &mut Segmenter) -> Result<Duration, SegmenterError> {
        let profile = segmenter.profile();
        // A whole-frame service takes any size: probe it with a small frame.
        let (width, height) = if profile.frame_sized {
            (320, 240)
        } else {
            profile.input_size
        };
        let frame = vec![128u8; width * height * 3];
        let mut mask = vec![0u8; width * height];
        let started = std::time::Instant::now();
        segmenter.compute_mask(
            &ImageRef::packed(&frame, width, height, PixelLayout::RGB),
            &mut mask,
        )?;
        Ok(started.elapsed())
    }

    /// A first-use model download as GStreamer `progress` messages (code "download"): start,
    /// bytes so far, complete; gst-launch and the scripts print them.
    fn post_download_progress(&self, model: &str, event: DownloadEvent) {
        let megabytes = |bytes: u64| bytes as f64 / 1e6;
        let (kind, text) = match event {
            DownloadEvent::Started { url, total } => (
                gst::ProgressType::Start,
                match total {
                    Some(total) => format!(
                        "downloading {model} ({:.1} MB) from {url}",
                        megabytes(total)
                    ),
                    None => format!("downloading {model} from {url}"),
                },
            ),
            DownloadEvent::Received { bytes, total } => (
                gst::ProgressType::Continue,
                match total {
                    Some(total) if total > 0 => format!(
                        "{model}: {:.1} of {:.1} MB ({:.0}%)",
                        megabytes(bytes),
                        megabytes(total),
                        bytes as f64 * 100.0 / total as f64
                    ),
                    _ => format!("{model}: {:.1} MB", megabytes(bytes)),
                },
            ),
            DownloadEvent::Finished { bytes } => (
                gst::ProgressType::Complete,
                format!(
                    "{model}: {:.1} MB downloaded and verified",
                    megabytes(bytes)
                ),
            ),
        };
        gst::info!(CAT, imp = self, "{text}");
        let _ = self.obj().post_message(
            gst::message::Progress::builder(kind, "download", &text)
                .src(&*self.obj())
                .build(),
        );
    }

    /// At start: mode=replace needs its picture, so a missing or broken one fails the state
    /// change; in other modes it is only decoded, ready for a switch to replace.
    fn check_background(&self, settings: &Settings) -> Result<(), gst::ErrorMessage> {
        let mut background = self.background.lock().unwrap();
        if let Some(location) = settings.background_location.as_deref()
            && background
                .as_ref()
                .is_none_or(|known| known.location() != location)
        {
            *background = Some(Background::decode_in_background(location));
        }
        if settings.frame.output.mode != RembgMode::Replace {
            return Ok(());
        }
        let error = |reason: String| {
            gst::error_msg!(
                gst::ResourceError::OpenRead,
                ("property 'background-location': {}", reason)
            )
        };
        match background.as_mut() {
            Some(background) => background.picture().map(|_| ()).map_err(error),
            None => Err(error(
                "mode=replace needs an image: set background-location".into(),
            )),
        }
    }

    fn count_model_run(&self, model_time: Duration) {
        self.stats.lock().unwrap().count_model_run(model_time);
    }

    fn report_schedule_error(&self, err: ScheduleError) -> gst::FlowError {
        match err {
            ScheduleError::Model(err) => self.report_model_error(err),
            ScheduleError::Interrupted(_) => gst::FlowError::Flushing,
            ScheduleError::Thread(err) => {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Thread,
                    ("cannot start the model thread: {}", err)
                );
                gst::FlowError::Error
            }
        }
    }

    fn report_model_error(&self, err: SegmenterError) -> gst::FlowError {
        let domain = match err {
            SegmenterError::Output { .. } => gst::StreamError::Format,
            _ => gst::StreamError::Failed,
        };
        gst::element_imp_error!(self, domain, ("{}", err));
        gst::FlowError::Error
    }

    /// The latency this element adds, as the stream's strategy makes it.
    fn own_latency(&self) -> gst::ClockTime {
        let latency = self.plan.lock().unwrap().latency();
        gst::ClockTime::from_nseconds(latency.as_nanos() as u64)
    }

    /// Registers a wait that a flush or stop must be able to wake; it starts woken when a flush
    /// is under way.
    fn register_interrupter(&self, interrupter: Arc<dyn Interruptible>) {
        let mut interrupters = self.interrupters.lock().unwrap();
        interrupter.set_interrupted(self.flushing.load(Ordering::SeqCst));
        interrupters.push(interrupter);
    }

    fn set_flushing(&self, flushing: bool) {
        let interrupters = self.interrupters.lock().unwrap();
        self.flushing.store(flushing, Ordering::SeqCst);
        for interrupter in interrupters.iter() {
            interrupter.set_interrupted(flushing);
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

    /// The stream's strategy, fixed by its first frame: a live source may produce before the
    /// pipeline's latency query reaches this element, so the first frame asks upstream itself.
    fn stream_strategy(&self) -> Strategy {
        if !self.plan.lock().unwrap().is_fixed() {
            let mut upstream = gst::query::Latency::new();
            if self.obj().sink_pad().peer_query(&mut upstream) {
                let (live, _, _) = upstream.result();
                self.plan.lock().unwrap().set_live(live);
            }
        }
        self.plan.lock().unwrap().fix_strategy()
    }

    /// One frame in: begins the stream's strategy with the first frame, then hands the frame
    /// to the scheduler.
    fn take_in(
        &self,
        state: &mut State,
        strategy: Strategy,
        input: gst::Buffer,
        settings: &FrameSettings,
    ) -> Result<(), gst::FlowError> {
        if state.scheduler.strategy().is_none() {
            gst::info!(CAT, imp = self, "frames are scheduled {strategy:?}");
            let interrupter = state
                .scheduler
                .begin(strategy)
                .map_err(|err| self.report_schedule_error(err))?;
            if let Some(interrupter) = interrupter {
                self.register_interrupter(interrupter);
            }
        }
        let frame = self.map_input(state, &input)?;
        let image = image_of(&frame).ok_or(gst::FlowError::NotNegotiated)?;
        let nanos = |time: gst::ClockTime| Duration::from_nanos(time.nseconds());
        let arrival = Arrival {
            timestamp: input.pts().map(nanos),
            duration: input.duration().map(nanos),
            discontinuity_flagged: input.flags().contains(gst::BufferFlags::DISCONT),
            frame_time: frame_duration(frame.info()),
            mask_interval: settings.mask_interval,
        };
        let slow = state
            .scheduler
            .push(input.clone(), &image, &arrival, &mut |model_time| {
                self.count_model_run(model_time)
            })
            .map_err(|err| self.report_schedule_error(err))?;
        if let Some(slow) = slow {
            self.warn_of_slow_refresh(state, slow);
        }
        Ok(())
    }

    /// The next frame the scheduler hands back (with `wait`, waiting for its model request),
    /// composed into an output buffer.
    // Maps frames itself rather than through VideoFilter's transform_frame(), which drops a
    // buffer that does not fit its caps with only a warning: here that is an error that says so.
    fn next_output(
        &self,
        state: &mut State,
        wait: bool,
        settings: &FrameSettings,
    ) -> Result<Option<gst::Buffer>, gst::FlowError> {
        let popped = state
            .scheduler
            .pop(wait, &mut |model_time| self.count_model_run(model_time))
            .map_err(|err| self.report_schedule_error(err))?;
        let Some(Scheduled {
            frame: input,
            discontinuity,
        }) = popped
        else {
            return Ok(None);
        };
        if discontinuity {
            gst::debug!(
                CAT,
                imp = self,
                "discontinuity at {:?}: smoothing starts afresh",
                input.pts()
            );
            state.chain.restart_smoothing();
        }
        let mut output =
            match self.parent_prepare_output_buffer(InputBuffer::Readable(input.as_ref()))? {
                PrepareOutputBufferSuccess::Buffer(buffer) => buffer,
                PrepareOutputBufferSuccess::InputBuffer => {
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Failed,
                        ("no output buffer for a frame")
                    );
                    return Err(gst::FlowError::Error);
                }
            };
        let frame = self.map_input(state, &input)?;
        let src = image_of(&frame).ok_or(gst::FlowError::NotNegotiated)?;
        self.compose_frame(state, &src, output.make_mut(), settings)?;
        Ok(Some(output))
    }

    /// A live stream whose masks come less often than asked gets a warning saying the two
    /// rates and what is faster: the video keeps its rate, so nothing else would show it.
    fn warn_of_slow_refresh(&self, state: &State, slow: SlowRefresh) {
        let asked = if slow.interval > 1 {
            format!(
                " (mask-interval={} asks for {:.1})",
                slow.interval,
                slow.frames_per_second / f64::from(slow.interval)
            )
        } else {
            String::new()
        };
        gst::element_imp_warning!(
            self,
            gst::CoreError::Clock,
            (
                "model {} refreshes the mask {:.1} times a second, below the video's {:.1} frames a \
                 second{asked}: the cutout trails movement. Faster: model=selfie (people), \
                 precision=bf16 or a server (backend=triton); mask-interval=N asks for a mask \
                 every Nth frame only (warned once)",
                state.scheduler.segmenter().model.backend().model_name(),
                slow.masks_per_second,
                slow.frames_per_second
            )
        );
    }

    /// Writes the output frame of `src` into `outbuf` from the model's mask, which must fit it.
    fn compose_frame(
        &self,
        state: &mut State,
        src: &ImageRef<'_>,
        outbuf: &mut gst::BufferRef,
        settings: &FrameSettings,
    ) -> Result<(), gst::FlowError> {
        let (width, height) = (src.width, src.height);
        state
            .scheduler
            .fit_mask(src, &mut |model_time| self.count_model_run(model_time))
            .map_err(|err| self.report_schedule_error(err))?;
        let out_info = state
            .video_info
            .as_ref()
            .expect("mapped the input")
            .1
            .clone();
        let mut out_frame = gst_video::VideoFrameRef::from_buffer_ref_writable(outbuf, &out_info)
            .map_err(|_| {
            gst::element_imp_error!(
                self,
                gst::CoreError::Failed,
                ("cannot map the output buffer")
            );
            gst::FlowError::Error
        })?;
        let out_format = out_frame.format();
        let dst_stride = out_frame.plane_stride()[0] as usize;
        let dst = out_frame
            .plane_data_mut(0)
            .map_err(|_| gst::FlowError::Error)?;
        self.warn_of_non_finite_values(state);
        let mut refinement_time = Duration::ZERO;
        let model_mask = match settings.edge_refinement {
            EdgeRefinement::None => state.scheduler.model_mask().pixels(),
            EdgeRefinement::GuidedFilter => {
                let started = std::time::Instant::now();
                state.refined.clear();
                state
                    .refined
                    .extend_from_slice(state.scheduler.model_mask().pixels());
                state
                    .guided_filter
                    .refine(src, &mut state.refined, &settings.guided_filter);
                refinement_time = started.elapsed();
                &state.refined
            }
        };
        state.chain.apply(model_mask, width, height, &settings.mask);
        let input_alpha = matches!(
            state.video_info.as_ref().map(|(input, _)| input.format()),
            Some(VideoFormat::Rgba | VideoFormat::Bgra)
        );
        // The mask output is the model's mask; pictures follow the input's transparency too.
        let mask = if input_alpha && settings.keep_input_alpha && out_format != VideoFormat::Gray8 {
            state.chain.multiply_by_alpha(src)
        } else {
            state.chain.result()
        };

        // Only replace mode takes the picture's lock: setting the property never waits for
        // another mode's frames.
        let mut background =
            (settings.output.mode == RembgMode::Replace).then(|| self.background.lock().unwrap());
        let picture = match (settings.output.mode, out_format) {
            (RembgMode::Replace, VideoFormat::Rgba | VideoFormat::Bgra) => {
                let scaled = match background.as_deref_mut().and_then(Option::as_mut) {
                    Some(background) => background.scaled_for(
                        width,
                        height,
                        src.layout,
                        settings.output.background_fit,
                        compose::colour_in_layout(settings.output.background_color, src.layout),
                    ),
                    None => Err("mode=replace needs an image: set background-location".into()),
                };
                Some(scaled.map_err(|reason| {
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::OpenRead,
                        ("property 'background-location': {}", reason)
                    );
                    gst::FlowError::Error
                })?)
            }
            _ => None,
        };
        let output = output_for(&settings.output, out_format, src.layout, picture);
        // rembg's alpha matting replaces the mask by its matte (not in mode=mask, as rembg's
        // only_mask ignores it too), and its cutout always carries the estimated foreground,
        // also when the trimap has nothing sure to start from and the mask stays.
        let matting = settings.output.alpha_matting && out_format != VideoFormat::Gray8;
        let mut matting_time = Duration::ZERO;
        let mut matted = false;
        if matting {
            let started = std::time::Instant::now();
            match closed_form::alpha_matting(src, mask, &settings.output.trimap) {
                Ok(Some((matte, unknown))) => {
                    gst::trace!(CAT, imp = self, "matted {unknown} unknown pixels");
                    state.matte = matte;
                    matted = true;
                }
                Ok(None) => gst::debug!(
                    CAT,
                    imp = self,
                    "no sure foreground or background in the trimap: the mask stays, as in rembg"
                ),
                Err(e) if !state.warned_matting => {
                    state.warned_matting = true;
                    gst::element_imp_warning!(
                        self,
                        gst::StreamError::Failed,
                        ("property 'alpha-matting': {e}; the frame keeps the model's mask (warned once)")
                    );
                }
                Err(_) => {}
            }
            matting_time = started.elapsed();
        }
        let mask = if matted { &state.matte[..] } else { mask };
        let method = match settings.output.foreground {
            ForegroundEstimation::None if matting => Some(ForegroundMethod::Multilevel),
            ForegroundEstimation::None => None,
            ForegroundEstimation::Multilevel => Some(ForegroundMethod::Multilevel),
            ForegroundEstimation::BlurFusion => Some(ForegroundMethod::BlurFusion),
        };
        let mut foreground_time = Duration::ZERO;
        let src = match method {
            Some(method) if out_format != VideoFormat::Gray8 => {
                let started = std::time::Instant::now();
                let estimated = state.foreground.estimate(src, mask, method);
                foreground_time = started.elapsed();
                estimated
            }
            _ => *src,
        };
        state.compositor.write(&src, mask, output, dst, dst_stride);
        let mut stats = self.stats.lock().unwrap();
        stats.frames += 1;
        stats.foreground_time += foreground_time;
        stats.matting_time += matting_time;
        stats.refinement_time += refinement_time;
        Ok(())
    }

    /// The first NaN or infinite value from the model gets a warning on the bus; those values
    /// count as background.
    fn warn_of_non_finite_values(&self, state: &mut State) {
        let segmenter = state.scheduler.segmenter();
        let count = segmenter.finisher.non_finite_values();
        if count > 0 && !state.warned_non_finite {
            state.warned_non_finite = true;
            let backend = segmenter.model.backend();
            gst::element_imp_warning!(
                self,
                gst::StreamError::Decode,
                (
                    "model {} gave {count} NaN or infinite mask values; they are shown as \
                     background (warned once)",
                    backend.model_name()
                )
            );
        }
    }

    /// Hands every frame held downstream (before an event that must not overtake them),
    /// waiting for their model requests.
    fn drain_held(&self) -> Result<(), gst::FlowError> {
        let settings = self.settings.lock().unwrap().frame;
        let mut finished = Vec::new();
        {
            let mut state_guard = self.state.lock().unwrap();
            let Some(state) = state_guard.as_mut() else {
                return Ok(());
            };
            while let Some(buffer) = self.next_output(state, true, &settings)? {
                finished.push(buffer);
            }
        }
        // Pushed without the state lock: downstream may query this element meanwhile.
        for buffer in finished {
            self.obj().src_pad().push(buffer)?;
        }
        Ok(())
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
            let mut properties = vec![
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb(&location::blurb("Catalog model (u2netp, selfie, isnet-general-use, birefnet-general, ...) or an .onnx file"))
                    .default_value(Some(DEFAULT_MODEL))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("download")
                    .nick("Download")
                    .blurb("Download a catalog model missing from the model folders on first use")
                    .default_value(DEFAULT_DOWNLOAD)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("input-mean")
                    .nick("Input mean")
                    .blurb("Mean '<r, g, b>' (or one value) taken from the 0..1 input, for custom models")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("input-std")
                    .nick("Input std")
                    .blurb("Standard deviation the input is divided by: one value or three, \
                            \"0.229, 0.224, 0.225\"; empty = the model's own")
                    .mutable_ready()
                    .build(),
            ];
            properties.extend(inference::element::param_specs());
            properties.extend([
                glib::ParamSpecEnum::builder_with_default("mode", DEFAULT_OUTPUT.mode)
                    .nick("Mode")
                    .blurb("What to output: alpha (RGBA/BGRA), mask (GRAY8), composite, blur or replace (alpha 255)")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("background-color")
                    .nick("Background colour")
                    .blurb("ARGB colour behind the foreground in mode=composite, and fit's bars")
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
                    .blurb(&location::blurb("Picture behind the foreground in mode=replace (any format GStreamer decodes)"))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("post-process-mask")
                    .nick("Post-process mask")
                    .blurb("rembg's post-processing: opening with a radius-1 disk, Gaussian blur (sigma 2), threshold at 127")
                    .default_value(false)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("threshold")
                    .nick("Threshold")
                    .blurb("0 keeps the soft mask; otherwise alpha is 255 from this level up and 0 below")
                    .maximum(255)
                    .default_value(0)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("feather")
                    .nick("Feather")
                    .blurb("Soften the mask's edge over about this many pixels (0 = off)")
                    .maximum(256)
                    .default_value(0)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("temporal-smoothing")
                    .nick("Temporal smoothing")
                    .blurb("Weight of the previous mask (0..1) against flicker; restarts at flushes and gaps")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(0.0)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("mask-interval")
                    .nick("Mask interval")
                    .blurb("Run the model on every Nth frame and reuse its mask in between (1 = every frame)")
                    .minimum(1)
                    .maximum(10000)
                    .default_value(DEFAULT_MASK_INTERVAL)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("asynchronous")
                    .nick("Asynchronous inference")
                    .blurb("Live pipelines: run the model on its own thread, frames carrying the newest finished mask")
                    .default_value(DEFAULT_ASYNCHRONOUS)
                    .mutable_ready()
                    .build(),
                inference::element::stats_param_spec(
                    "Read-only, since start: frames, model-runs, and nanoseconds in the model and each edge step",
                ),
                glib::ParamSpecBoolean::builder("keep-input-alpha")
                    .nick("Keep input alpha")
                    .blurb("RGBA input: multiply the mask by the input's alpha, as rembg's cutout does")
                    .default_value(DEFAULT_KEEP_INPUT_ALPHA)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("background-fit", DEFAULT_OUTPUT.background_fit)
                    .nick("Background fit")
                    .blurb("How mode=replace's picture covers a frame: fill (cropped), fit (bars) or stretch")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("clear-transparent")
                    .nick("Clear transparent colour")
                    .blurb("Give fully transparent pixels colour 0 in alpha output (PNGs the size of rembg's)")
                    .default_value(DEFAULT_OUTPUT.clear_transparent)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("foreground-estimation", DEFAULT_OUTPUT.foreground)
                    .nick("Foreground estimation")
                    .blurb("Colour of partly transparent pixels: the frame's own, or the foreground's, estimated")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("edge-refinement", EdgeRefinement::None)
                    .nick("Edge refinement")
                    .blurb("Refine the model's mask against the frame before the other mask controls")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("guided-filter-radius")
                    .nick("Guided filter radius")
                    .blurb("edge-refinement's window radius in pixels: how far the picture's edge may be")
                    .minimum(1)
                    .maximum(256)
                    .default_value(DEFAULT_GUIDED_FILTER.radius as u32)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("guided-filter-epsilon")
                    .nick("Guided filter epsilon")
                    .blurb("edge-refinement's regularisation: larger keeps more of the mask in flat colour")
                    .minimum(1e-8)
                    .maximum(1.0)
                    .default_value(DEFAULT_GUIDED_FILTER.epsilon)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("alpha-matting")
                    .nick("Alpha matting")
                    .blurb("rembg's alpha matting (-a): closed-form matting of the mask's edge; seconds a 1080p frame")
                    .default_value(DEFAULT_OUTPUT.alpha_matting)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("alpha-matting-foreground-threshold")
                    .nick("Alpha matting foreground threshold")
                    .blurb("Mask values above this are sure foreground in alpha matting's trimap (rembg -af)")
                    .maximum(255)
                    .default_value(u32::from(DEFAULT_OUTPUT.trimap.foreground_threshold))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("alpha-matting-background-threshold")
                    .nick("Alpha matting background threshold")
                    .blurb("Mask values below this are sure background in alpha matting's trimap (rembg -ab)")
                    .maximum(255)
                    .default_value(u32::from(DEFAULT_OUTPUT.trimap.background_threshold))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("alpha-matting-erode-size")
                    .nick("Alpha matting erode size")
                    .blurb("Side of the square the sure regions are eroded by (rembg -ae; 0: a one-pixel cross)")
                    .maximum(1000)
                    .default_value(DEFAULT_OUTPUT.trimap.erode_size as u32)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("overlap")
                    .nick("Overlap frames")
                    .blurb("Non-live: hold a frame back so the model overlaps its neighbours' work (same frames)")
                    .default_value(DEFAULT_OVERLAP)
                    .mutable_ready()
                    .build(),
            ]);
            properties
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if self
            .start_settings
            .refuses(&*self.obj(), pspec, || self.property(_id, pspec))
        {
            return;
        }
        let mut settings = self.settings.lock().unwrap();
        let text = |value: &glib::Value| -> Option<String> {
            value
                .get::<Option<String>>()
                .expect("type checked upstream")
                .filter(|s| !s.trim().is_empty())
        };
        if settings.backend.set(pspec.name(), value) {
            return;
        }
        let frame = &mut settings.frame;
        match pspec.name() {
            "model" => {
                let model = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_else(|| DEFAULT_MODEL.to_string());
                let model = location::model(Some(&model))
                    .map_or_else(|| DEFAULT_MODEL.to_string(), |m| m.display().to_string());
                gst::info!(CAT, imp = self, "model: {} -> {}", settings.model, model);
                settings.model = model;
            }
            "download" => settings.download = value.get().expect("type checked upstream"),
            "input-mean" => settings.input_mean = text(value),
            "input-std" => settings.input_std = text(value),
            "mode" => {
                let mode = value.get().expect("type checked upstream");
                if mode != frame.output.mode {
                    frame.output.mode = mode;
                    drop(settings);
                    // Output caps depend on the mode: negotiate them again before the next frame.
                    self.obj().reconfigure_src();
                }
            }
            "background-color" => {
                frame.output.background_color = value.get().expect("type checked upstream")
            }
            "blur-radius" => frame.output.blur_radius = value.get().expect("type checked upstream"),
            "background-location" => {
                let location = location::absolute(value.get().expect("type checked upstream"))
                    .map(|path| path.display().to_string());
                // Decoded now, on a thread of its own, so that no frame waits for it.
                *self.background.lock().unwrap() =
                    location.as_deref().map(Background::decode_in_background);
                settings.background_location = location;
            }
            "post-process-mask" => {
                frame.mask.post_process = value.get().expect("type checked upstream")
            }
            "threshold" => {
                let level: u32 = value.get().expect("type checked upstream");
                frame.mask.threshold = level.min(255) as u8;
            }
            "feather" => {
                let reach: u32 = value.get().expect("type checked upstream");
                frame.mask.feather = reach as usize;
            }
            "temporal-smoothing" => {
                frame.mask.temporal_smoothing = value.get().expect("type checked upstream")
            }
            "mask-interval" => frame.mask_interval = value.get().expect("type checked upstream"),
            "asynchronous" => frame.asynchronous = value.get().expect("type checked upstream"),
            "overlap" => frame.overlap = value.get().expect("type checked upstream"),
            "keep-input-alpha" => {
                frame.keep_input_alpha = value.get().expect("type checked upstream")
            }
            "clear-transparent" => {
                frame.output.clear_transparent = value.get().expect("type checked upstream")
            }
            "background-fit" => {
                frame.output.background_fit = value.get().expect("type checked upstream")
            }
            "foreground-estimation" => {
                frame.output.foreground = value.get().expect("type checked upstream")
            }
            "alpha-matting" => {
                frame.output.alpha_matting = value.get().expect("type checked upstream")
            }
            "edge-refinement" => {
                frame.edge_refinement = value.get().expect("type checked upstream")
            }
            "guided-filter-radius" => {
                let radius: u32 = value.get().expect("type checked upstream");
                frame.guided_filter.radius = radius as usize;
            }
            "guided-filter-epsilon" => {
                frame.guided_filter.epsilon = value.get().expect("type checked upstream")
            }
            "alpha-matting-foreground-threshold" => {
                let level: u32 = value.get().expect("type checked upstream");
                frame.output.trimap.foreground_threshold = level.min(255) as u8;
            }
            "alpha-matting-background-threshold" => {
                let level: u32 = value.get().expect("type checked upstream");
                frame.output.trimap.background_threshold = level.min(255) as u8;
            }
            "alpha-matting-erode-size" => {
                let size: u32 = value.get().expect("type checked upstream");
                frame.output.trimap.erode_size = size as usize;
            }
            other => unimplemented!("property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        if let Some(value) = settings.backend.get(pspec.name()) {
            return value;
        }
        let frame = &settings.frame;
        match pspec.name() {
            "model" => settings.model.to_value(),
            "download" => settings.download.to_value(),
            "input-mean" => settings.input_mean.to_value(),
            "input-std" => settings.input_std.to_value(),
            "mode" => frame.output.mode.to_value(),
            "background-color" => frame.output.background_color.to_value(),
            "blur-radius" => frame.output.blur_radius.to_value(),
            "background-location" => settings.background_location.to_value(),
            "post-process-mask" => frame.mask.post_process.to_value(),
            "threshold" => u32::from(frame.mask.threshold).to_value(),
            "feather" => (frame.mask.feather as u32).to_value(),
            "temporal-smoothing" => frame.mask.temporal_smoothing.to_value(),
            "mask-interval" => frame.mask_interval.to_value(),
            "asynchronous" => frame.asynchronous.to_value(),
            "overlap" => frame.overlap.to_value(),
            "keep-input-alpha" => frame.keep_input_alpha.to_value(),
            "clear-transparent" => frame.output.clear_transparent.to_value(),
            "background-fit" => frame.output.background_fit.to_value(),
            "foreground-estimation" => frame.output.foreground.to_value(),
            "alpha-matting" => frame.output.alpha_matting.to_value(),
            "edge-refinement" => frame.edge_refinement.to_value(),
            "guided-filter-radius" => (frame.guided_filter.radius as u32).to_value(),
            "guided-filter-epsilon" => frame.guided_filter.epsilon.to_value(),
            "alpha-matting-foreground-threshold" => {
                u32::from(frame.output.trimap.foreground_threshold).to_value()
            }
            "alpha-matting-background-threshold" => {
                u32::from(frame.output.trimap.background_threshold).to_value()
            }
            "alpha-matting-erode-size" => (frame.output.trimap.erode_size as u32).to_value(),
            "active-backend" => self.active_backend.lock().unwrap().to_value(),
            "stats" => {
                let stats = *self.stats.lock().unwrap();
                let mut structure = stats.to_structure("rembgfilter-stats");
                structure.set("foreground-time", stats.foreground_time.as_nanos() as u64);
                structure.set("matting-time", stats.matting_time.as_nanos() as u64);
                structure.set("refinement-time", stats.refinement_time.as_nanos() as u64);
                structure.to_value()
            }
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
                "Removes the background of video with a segmentation model (u2netp, u2net, silueta, \
                 isnet, bria-rmbg, BiRefNet, MediaPipe's selfie models for live video, or a custom \
                 ONNX model), computing \
                 what Python rembg computes, with OpenVINO or ONNX Runtime here or on a Triton server or SageMaker \
                 endpoint; outputs the mask as alpha, the mask alone, or the foreground over a \
                 colour, a blurred copy or a picture",
                "neuralfx developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let sink_caps = gst_video::VideoCapsBuilder::new()
                .format_list(caps::FORMAT_PAIRS.iter().map(|(input, _)| *input))
                .build();
            let src_caps = gst_video::VideoCapsBuilder::new()
                .format_list(caps::OUTPUT_FORMATS)
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

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::PausedToReady {
            // A streaming thread waiting for the model lets go now, before the pads stop.
            self.set_flushing(true);
        }
        let result = self.parent_change_state(transition);
        if transition == gst::StateChange::ReadyToPaused {
            self.set_flushing(false);
        }
        result
    }
}

impl BaseTransformImpl for RembgFilter {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::NeverInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        self.check_background(&settings)?;
        let state = self.load(&settings)?;
        *self.state.lock().unwrap() = Some(state);
        *self.stats.lock().unwrap() = InferenceStats::default();
        self.start_settings.set_running(true);
        gst::debug!(CAT, imp = self, "started with {}", settings.model);
        Ok(())
    }

    // Every frame comes through here (never through transform()): the scheduler may hold
    // frames, and hands them back one per call; BaseTransform calls again until no output.
    fn generate_output(&self) -> Result<GenerateOutputSuccess, gst::FlowError> {
        let settings = self.settings.lock().unwrap().frame;
        let strategy = self.stream_strategy();
        let mut state_guard = self.state.lock().unwrap();
        let state = self.started(&mut state_guard)?;
        // Frames held from earlier calls leave first, one per call.
        if let Some(buffer) = self.next_output(state, false, &settings)? {
            return Ok(GenerateOutputSuccess::Buffer(buffer));
        }
        let Some(input) = self.take_queued_buffer() else {
            return Ok(GenerateOutputSuccess::NoOutput);
        };
        self.take_in(state, strategy, input, &settings)?;
        Ok(self.next_output(state, false, &settings)?.map_or(
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
            self.plan.lock().unwrap().set_live(live);
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
        match event.view() {
            // Not serialized: the streaming thread may be waiting for the model.
            gst::EventView::FlushStart(_) => self.set_flushing(true),
            gst::EventView::FlushStop(_) => {
                if let Some(state) = self.state.lock().unwrap().as_mut() {
                    state.flush();
                }
                self.set_flushing(false);
            }
            _ if event.is_serialized() => {
                // Caps, EOS, gaps, tags: held frames go out first, so nothing overtakes them.
                if let Err(err) = self.drain_held() {
                    gst::warning!(CAT, imp = self, "frames held back not delivered: {err:?}");
                }
            }
            _ => {}
        }
        self.parent_sink_event(event)
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        // Dropping the state stops the model threads and drops this element's hold on the
        // shared session.
        self.start_settings.set_running(false);
        let state = self.state.lock().unwrap().take();
        self.active_backend.lock().unwrap().clear();
        drop(state);
        self.interrupters.lock().unwrap().clear();
        *self.plan.lock().unwrap() = StreamPlan::default();
        Ok(())
    }

    fn transform_caps(
        &self,
        direction: gst::PadDirection,
        caps: &gst::Caps,
        filter: Option<&gst::Caps>,
    ) -> Option<gst::Caps> {
        let mode = self.settings.lock().unwrap().frame.output.mode;
        let result = caps::transform_caps(mode, direction, caps);
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
        self.plan.lock().unwrap().frame_duration = frame_duration(in_info);
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            state.video_info = Some((in_info.clone(), out_info.clone()));
            // A new size or format breaks the run of frames.
            state.restart();
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
