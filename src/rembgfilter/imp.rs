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

use crate::imageops::ImageRef;
use crate::inference;
use crate::inference::InferenceError;
use crate::inference::requests::Interrupters;
use crate::segmentation::SegmenterError;
use crate::segmentation::catalog::{self, ModelProfile};
use crate::segmentation::compose;
use crate::segmentation::cutout::{Cutout, CutoutReport, ModelResult};
use crate::segmentation::scheduler::{
    Arrival, LatencyProbe, ScheduleError, Scheduled, Scheduler, Strategy, StreamPlan,
};
use crate::segmentation::worker::Deadline;
use crate::video::{frame_duration, image_of, map_frame, pixel_layout};

use super::RembgMode;
use super::background::BackgroundSlot;
use super::caps;
use super::settings::{self, FrameSettings, Settings, Stats, output_for};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "rembgfilter",
        gst::DebugColorFlags::empty(),
        Some("Background removal filter"),
    )
});

/// A live frame's wait for its mask, on the pipeline's clock: one frame of stream time.
#[derive(Debug)]
struct ClockDeadline(gst::SingleShotClockId);

impl ClockDeadline {
    fn one_frame_from_now(clock: &gst::Clock, frame_time: Duration) -> Arc<dyn Deadline> {
        let at = clock.time() + gst::ClockTime::from_nseconds(frame_time.as_nanos() as u64);
        Arc::new(Self(clock.new_single_shot_id(at)))
    }
}

impl Deadline for ClockDeadline {
    fn wait(&self) {
        let _ = self.0.wait();
    }

    fn cancel(&self) {
        self.0.unschedule();
    }
}

/// Exists between `start()` and `stop()`; only the streaming thread holds it for long.
struct State {
    /// Runs the model for each frame as the stream's strategy says and hands frames back in
    /// order, the model's mask with each.
    scheduler: Scheduler<gst::Buffer>,
    /// Mask controls, edge steps and composition, from the model's mask to the output frame.
    cutout: Cutout,
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
        self.cutout.restart_smoothing();
        self.scheduler.restart();
    }

    /// A flush: frames held are dropped, and the stream restarts as after new caps.
    fn flush(&mut self) {
        self.cutout.restart_smoothing();
        self.scheduler.flush();
    }
}

/// Lock order: `settings` then `background` (setting background-location); `state` then
/// `background` then `stats` (a frame in replace mode), or `state` then `interrupters`'s own lock;
/// never the reverse; `latency_probe` then `plan` (the one measured run of a live stream).
/// `settings`, `plan` and `state` are never held together: a frame copies its settings and
/// strategy out first, so a property set or a latency query while playing never waits for a
/// frame's model run (the first query of a live stream runs the model once itself). `stats` is
/// apart from `state` for the same reason.
#[derive(Default)]
pub struct RembgFilter {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    stats: Mutex<Stats>,
    /// What runs the model (property 'active-backend'), set at start, emptied at stop.
    active_backend: Mutex<String>,
    /// Liveness, model and frame time, and the strategy the first frame fixed: what the
    /// latency query is answered from.
    plan: Mutex<StreamPlan>,
    /// Measures one model run once the stream is known to be live.
    latency_probe: LatencyProbe,
    /// Wake a streaming thread that waits for the model, on a flush or a stop.
    interrupters: Interrupters,
    /// The picture of mode=replace, decoded when the property is set.
    background: Mutex<BackgroundSlot>,
    start_settings: inference::element::StartSettingsGuard,
}

#[glib::object_subclass]
impl ObjectSubclass for RembgFilter {
    const NAME: &'static str = "GstRembgFilter";
    type Type = super::RembgFilter;
    type ParentType = gst_video::VideoFilter;
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
                let resolved = inference::element::locate_model(
                    &*self.obj(),
                    *CAT,
                    &settings.model,
                    settings.download,
                )?;
                entry = resolved.entry;
                Ok(resolved.path)
            },
        )?;
        let backend = loaded.model;
        if let Some(cancellation) = loaded.cancellation {
            // A flush or a stop gives up on the server's requests under way.
            self.interrupters.register(cancellation);
        }
        inference::element::set_active_backend(&*self.obj(), &self.active_backend, loaded.runs_on);
        gst::info!(
            CAT,
            imp = self,
            "loaded {} (inputs {:?}, outputs {:?})",
            backend.model_name(),
            backend.inputs(),
            backend.outputs()
        );
        let segmenter = settings
            .segmenter(
                backend,
                entry.map_or(ModelProfile::U2NET, |entry| entry.profile),
            )
            .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ("{}", e)))?;
        // A recurrent model's state feeds the next frame: it runs every frame in order on the
        // streaming thread, whatever asynchronous and overlap say.
        let in_order = segmenter.is_recurrent();
        if in_order {
            gst::info!(
                CAT,
                imp = self,
                "recurrent model: every frame runs in order on the streaming thread \
                 (asynchronous, overlap and mask-interval do not apply)"
            );
        }
        self.latency_probe.arm(&segmenter);
        *self.plan.lock().unwrap() = StreamPlan::new(
            settings.backend.is_remote(),
            settings.frame.asynchronous && !in_order,
            settings.frame.overlap && !in_order,
        );
        if let Some((live, ..)) = self.upstream_latency() {
            self.plan.lock().unwrap().set_live(live);
        }
        self.measure_model_latency_if_live(true)?;
        Ok(State {
            scheduler: Scheduler::new(
                segmenter,
                settings.backend.requests_in_flight(),
                "rembgfilter",
            ),
            cutout: Cutout::default(),
            warned_matting: false,
            video_info: None,
            warned_non_finite: false,
        })
    }

    fn count_model_run(&self, model_time: Duration) {
        (self.stats.lock().unwrap().inference).count_model_run(model_time);
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
        if matches!(err, SegmenterError::Inference(InferenceError::Cancelled)) {
            return gst::FlowError::Flushing;
        }
        let domain = match err {
            SegmenterError::Output { .. } => gst::StreamError::Format,
            _ => gst::StreamError::Failed,
        };
        gst::element_imp_error!(self, domain, ("{}", err));
        gst::FlowError::Error
    }

    /// Measures one model run the first time the stream is known to be live: at start when
    /// upstream can already say so (a source linked directly answers in READY), else at the
    /// first frame or latency query that finds it live; true when this call measured.
    fn measure_model_latency_if_live(&self, wait: bool) -> Result<bool, gst::ErrorMessage> {
        let measured = self
            .latency_probe
            .measure_if_needed(&self.plan, wait)
            .map_err(|e| {
                // A server's failure names the server or endpoint itself, not the model.
                let blamed = if self.plan.lock().unwrap().is_remote() {
                    ""
                } else {
                    "property 'model': "
                };
                gst::error_msg!(gst::LibraryError::Failed, ("{}{}", blamed, e))
            })?;
        if let Some(latency) = measured {
            gst::info!(CAT, imp = self, "one model run takes {latency:?}");
        }
        Ok(measured.is_some())
    }

    /// Upstream's answer to a latency query (live, minimum, maximum), if it can answer now.
    fn upstream_latency(&self) -> Option<(bool, gst::ClockTime, Option<gst::ClockTime>)> {
        let mut upstream = gst::query::Latency::new();
        self.obj()
            .sink_pad()
            .peer_query(&mut upstream)
            .then(|| upstream.result())
    }

    /// The latency this element adds, as the stream's strategy makes it.
    fn own_latency(&self) -> gst::ClockTime {
        let latency = self.plan.lock().unwrap().latency();
        gst::ClockTime::from_nseconds(latency.as_nanos() as u64)
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
        map_frame(inbuf, in_info).map_err(|reason| {
            gst::element_imp_error!(self, gst::StreamError::Format, ("{}", reason));
            gst::FlowError::Error
        })
    }

    /// The stream's strategy, fixed by its first frame: a live source may produce before the
    /// pipeline's latency query reaches this element, so the first frame asks upstream itself.
    /// Late frames are dropped (QoS) in live streams only.
    fn stream_strategy(&self) -> Result<Strategy, gst::FlowError> {
        if !self.plan.lock().unwrap().is_fixed() {
            if let Some((live, ..)) = self.upstream_latency() {
                self.plan.lock().unwrap().set_live(live);
                self.obj().set_qos(live);
            }
            let measured = self.measure_model_latency_if_live(true).map_err(|err| {
                self.post_error_message(err);
                gst::FlowError::Error
            })?;
            // The pipeline may have asked before the model was measured: ask it to ask again.
            if measured {
                let _ = self.obj().post_message(gst::message::Latency::new());
            }
        }
        Ok(self.plan.lock().unwrap().fix_strategy())
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
                self.interrupters.register(interrupter);
            }
        }
        let frame = self.map_input(state, &input)?;
        let image = image_of(&frame).ok_or(gst::FlowError::NotNegotiated)?;
        let nanos = |time: gst::ClockTime| Duration::from_nanos(time.nseconds());
        let frame_time = frame_duration(frame.info());
        let arrival = Arrival {
            timestamp: input.pts().map(nanos),
            duration: input.duration().map(nanos),
            discontinuity_flagged: input.flags().contains(gst::BufferFlags::DISCONT),
            frame_time,
            deadline: (strategy == Strategy::ModelThread)
                .then(|| self.obj().clock())
                .flatten()
                .map(|clock| ClockDeadline::one_frame_from_now(&clock, frame_time)),
            mask_interval: settings.mask_interval,
        };
        let slow = state
            .scheduler
            .push(input.clone(), &image, &arrival, &mut |model_time| {
                self.count_model_run(model_time)
            })
            .map_err(|err| self.report_schedule_error(err))?;
        // Masks coming less often than asked: the video keeps its rate, so nothing else would
        // show it. The warning says both rates and what is faster.
        if let Some(slow) = slow {
            let model = state.scheduler.segmenter().model.backend().model_name();
            gst::element_imp_warning!(self, gst::CoreError::Clock, ("{}", slow.describe(model)));
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
            state.cutout.restart_smoothing();
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
        let input_alpha = matches!(
            state.video_info.as_ref().map(|(input, _)| input.format()),
            Some(VideoFormat::Rgba | VideoFormat::Bgra)
        );
        let output_settings = &settings.output;
        let cutout = settings.cutout(input_alpha);
        // Only replace mode takes the picture's lock: setting the property never waits for
        // another mode's frames.
        let mut background =
            (output_settings.mode == RembgMode::Replace).then(|| self.background.lock().unwrap());
        let picture = match (background.as_deref_mut(), out_format) {
            (Some(slot), VideoFormat::Rgba | VideoFormat::Bgra) => {
                let bars = compose::colour_in_layout(output_settings.background_color, src.layout);
                let fit = output_settings.background_fit;
                let scaled = (slot.background())
                    .and_then(|picture| picture.scaled_for(width, height, src.layout, fit, bars));
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
        let output = output_for(output_settings, out_format, src.layout, picture);
        let model_mask = state.scheduler.model_mask();
        let model = ModelResult {
            mask: model_mask.pixels(),
            foreground: model_mask.foreground(),
        };
        let report = state
            .cutout
            .write(src, model, &cutout, output, dst, dst_stride);
        if let Some(unknown) = report.matted_unknown {
            gst::trace!(CAT, imp = self, "matted {unknown} unknown pixels");
        }
        self.warn_once(state, &report);
        self.stats.lock().unwrap().count_frame(&report);
        Ok(())
    }

    /// The model's first NaN or infinite mask value (counted as background) and the first
    /// failed matting (the frame keeps the model's mask) get a warning each on the bus.
    fn warn_once(&self, state: &mut State, report: &CutoutReport) {
        let segmenter = state.scheduler.segmenter();
        let count = segmenter.finisher.non_finite_values();
        if count > 0 && !state.warned_non_finite {
            state.warned_non_finite = true;
            let model = segmenter.model.backend().model_name();
            gst::element_imp_warning!(
                self,
                gst::StreamError::Decode,
                ("model {model} gave {count} NaN or infinite mask values; they are shown as background (warned once)")
            );
        }
        if let Some(err) = &report.matting_error
            && !state.warned_matting
        {
            state.warned_matting = true;
            gst::element_imp_warning!(
                self,
                gst::StreamError::Failed,
                ("property 'alpha-matting': {err}; the frame keeps the model's mask (warned once)")
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
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(settings::param_specs);
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if self
            .start_settings
            .refuses(&*self.obj(), pspec, || self.property(_id, pspec))
        {
            return;
        }
        let (name, mut settings) = (pspec.name(), self.settings.lock().unwrap());
        let mode_before = settings.frame.output.mode;
        settings.set(name, value);
        // As it reads back: a server's password and header values stay out of the log.
        gst::debug!(CAT, imp = self, "{name} set to {:?}", settings.get(name));
        if name == "background-location" {
            // Decoded now, on a thread of its own, so that no frame waits for it.
            (self.background.lock().unwrap()).set_location(settings.background_location.as_deref());
        }
        let mode_changed = settings.frame.output.mode != mode_before;
        drop(settings);
        if mode_changed {
            // Output caps depend on the mode: negotiate them again before the next frame.
            self.obj().reconfigure_src();
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "active-backend" => self.active_backend.lock().unwrap().to_value(),
            "stats" => self.stats.lock().unwrap().to_structure().to_value(),
            name => self.settings.lock().unwrap().get(name),
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
                "Removes the background of video with a segmentation model, computing what \
                 Python rembg computes, here or on a server; outputs the mask as alpha, the mask \
                 alone, or the foreground over a colour, a blurred copy or a picture",
                "neuralfx developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(caps::pad_templates);
        PAD_TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        match transition {
            // A streaming thread waiting for the model lets go now, before the pads stop.
            gst::StateChange::PausedToReady => self.interrupters.set_flushing(true),
            // Before start(), whose latency probe may already ask a server.
            gst::StateChange::ReadyToPaused => self.interrupters.set_flushing(false),
            _ => {}
        }
        self.parent_change_state(transition)
    }
}

impl BaseTransformImpl for RembgFilter {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::NeverInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        // mode=replace needs its picture: a missing or broken one fails the state change.
        let needed = settings.frame.output.mode == RembgMode::Replace;
        (self.background.lock().unwrap())
            .prepare(settings.background_location.as_deref(), needed)
            .map_err(|reason| {
                gst::error_msg!(
                    gst::ResourceError::OpenRead,
                    ("property 'background-location': {}", reason)
                )
            })?;
        let state = self.load(&settings)?;
        *self.state.lock().unwrap() = Some(state);
        *self.stats.lock().unwrap() = Stats::default();
        self.start_settings.set_running(true);
        gst::debug!(CAT, imp = self, "started with {}", settings.model);
        Ok(())
    }

    // Every frame comes through here (never through transform()): the scheduler may hold
    // frames, and hands them back one per call; BaseTransform calls again until no output.
    fn generate_output(&self) -> Result<GenerateOutputSuccess, gst::FlowError> {
        let settings = self.settings.lock().unwrap().frame;
        let strategy = self.stream_strategy()?;
        let mut state_guard = self.state.lock().unwrap();
        let state = state_guard.as_mut().ok_or_else(|| {
            gst::element_imp_error!(self, gst::CoreError::Negotiation, ("Have no state yet"));
            gst::FlowError::NotNegotiated
        })?;
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
            let Some((live, min, max)) = self.upstream_latency() else {
                return false;
            };
            self.plan.lock().unwrap().set_live(live);
            if let Err(err) = self.measure_model_latency_if_live(false) {
                self.post_error_message(err);
                return false;
            }
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
            gst::EventView::FlushStart(_) => self.interrupters.set_flushing(true),
            gst::EventView::FlushStop(_) => {
                if let Some(state) = self.state.lock().unwrap().as_mut() {
                    state.flush();
                }
                self.interrupters.set_flushing(false);
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
        self.interrupters.clear();
        *self.plan.lock().unwrap() = StreamPlan::default();
        self.latency_probe.disarm();
        Ok(())
    }

    fn transform_caps(
        &self,
        direction: gst::PadDirection,
        caps: &gst::Caps,
        filter: Option<&gst::Caps>,
    ) -> Option<gst::Caps> {
        let mode = self.settings.lock().unwrap().frame.output.mode;
        let result = caps::transform_caps(mode, direction, caps, filter);
        gst::debug!(
            CAT,
            imp = self,
            "transformed {caps} ({direction:?}) into {result}"
        );
        Some(result)
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
