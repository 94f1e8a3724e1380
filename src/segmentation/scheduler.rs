//! The frame scheduler of background removal: which thread runs the model for a frame, and when
//! each frame leaves with its mask. One [`Strategy`] is chosen per stream, by the first frame,
//! from the settings and whether upstream is live ([`StreamPlan`]); the [`Scheduler`] then owns
//! every frame it holds until it hands it back, in arrival order, with the model's mask made for
//! it.
//!
//! The path of a frame, whatever the strategy:
//! ```text
//! push(frame) --> [Inline: model on this thread | ModelThread: newest finished mask
//!                  | Queued: tensor prepared, request in flight, frame held]
//! pop()       --> the oldest frame whose mask is ready, with model_mask() set for it
//! ```
//! A caller composes each popped frame before popping the next: the mask is shared. No
//! GStreamer types here; a flush or stop wakes any wait through the interrupter that
//! [`Scheduler::begin`] returns.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::imageops::ImageRef;
use crate::inference::InferenceError;
use crate::inference::requests::{Interrupted, Interruptible, RequestPool};

use super::mask::ModelMask;
use super::schedule::{self, FrameQueue, MaskCadence, Ready, RefreshWatch, SlowRefresh};
use super::worker::{Deadline, LiveMaskError, MaskWorker, Timeout};
use super::{ModelInput, ModelRun, Segmenter, SegmenterError};

/// How the model's runs fit between the frames of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The model runs on the streaming thread; each frame leaves as soon as it came.
    Inline,
    /// Live video: the model runs on a thread of its own and each frame carries the newest
    /// mask finished, waiting at most one frame time for one (`asynchronous`).
    ModelThread,
    /// Frames wait in arrival order while their model requests are in flight (one for a local
    /// model: `overlap`; `requests-in-flight` for a server).
    Queued,
}

/// What decides the strategy: the settings (fixed while the element runs) and whether upstream
/// is live, as the latency query says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamFacts {
    pub live: bool,
    /// The model runs on a server.
    pub remote: bool,
    pub asynchronous: bool,
    pub overlap: bool,
}

impl Strategy {
    /// Live video with `asynchronous` never waits for the model; otherwise frames queue behind
    /// requests in flight when overlap is asked in a non-live stream, or the model is a
    /// server's (live only with `asynchronous` off: every frame then gets its own mask);
    /// everything else runs the model inline.
    pub fn choose(facts: StreamFacts) -> Self {
        let StreamFacts {
            live,
            remote,
            asynchronous,
            overlap,
        } = facts;
        if live && asynchronous {
            Strategy::ModelThread
        } else if remote || (overlap && !live) {
            Strategy::Queued
        } else {
            Strategy::Inline
        }
    }

    /// The latency it adds: one model run; on the model thread at most the frame time a frame
    /// waits for its mask; with requests queued in a live stream, one request plus the frame
    /// time until the next arrival lets it out. A zero `frame` means no frame rate yet.
    pub fn latency(self, live: bool, model: Duration, frame: Duration) -> Duration {
        match self {
            Strategy::ModelThread if !frame.is_zero() => model.min(frame),
            Strategy::Queued if live => model + frame,
            _ => model,
        }
    }
}

/// What the latency query and the streaming thread share about one stream, apart from the
/// scheduler so that the query is answered without waiting for a model run.
#[derive(Debug, Clone, Default)]
pub struct StreamPlan {
    facts: StreamFacts,
    chosen: Option<Strategy>,
    /// One model run, measured once the stream is known to be live: a stream that is not live
    /// reports no latency, so it never pays a run for the measure.
    pub model_latency: Option<Duration>,
    /// One frame at the negotiated rate; zero before caps.
    pub frame_duration: Duration,
}

impl StreamPlan {
    /// A stream of a started element; live until a latency query says otherwise is `false`.
    pub fn new(remote: bool, asynchronous: bool, overlap: bool) -> Self {
        Self {
            facts: StreamFacts {
                live: false,
                remote,
                asynchronous,
                overlap,
            },
            chosen: None,
            model_latency: None,
            frame_duration: Duration::ZERO,
        }
    }

    /// Upstream's answer to a latency query (the element asks at the first frame, and hears
    /// the pipeline's queries); once chosen, the strategy stays.
    pub fn set_live(&mut self, live: bool) {
        self.facts.live = live;
    }

    /// Whether the stream is live and one model run has not been measured yet.
    pub fn needs_model_latency(&self) -> bool {
        self.facts.live && self.model_latency.is_none()
    }

    /// Whether the model runs on a server, whose errors name the server rather than the model.
    pub fn is_remote(&self) -> bool {
        self.facts.remote
    }

    /// Whether a frame has fixed the strategy.
    pub fn is_fixed(&self) -> bool {
        self.chosen.is_some()
    }

    /// The strategy of this stream: chosen by the first call, kept until the element stops.
    pub fn fix_strategy(&mut self) -> Strategy {
        *self
            .chosen
            .get_or_insert_with(|| Strategy::choose(self.facts))
    }

    /// The strategy chosen, or the one the next frame would choose.
    pub fn strategy(&self) -> Strategy {
        self.chosen.unwrap_or_else(|| Strategy::choose(self.facts))
    }

    /// The latency this stream's strategy adds.
    pub fn latency(&self) -> Duration {
        self.strategy().latency(
            self.facts.live,
            self.model_latency.unwrap_or_default(),
            self.frame_duration,
        )
    }
}

/// Measures one model run once the stream is known to be live (the latency to report, and a
/// warm-up before the first live frame) on a copy of the stream's segmenter (the same model,
/// buffers of its own): apart from the scheduler, so that a latency query never waits for a
/// frame's model run. A stream that is not live never pays for it, so a still costs one model
/// run, not two.
#[derive(Debug, Default)]
pub struct LatencyProbe(Mutex<Option<Segmenter>>);

impl LatencyProbe {
    /// At start: the stream's segmenter, copied.
    pub fn arm(&self, segmenter: &Segmenter) {
        *self.0.lock().unwrap() = Some(segmenter.fresh_copy());
    }

    /// At stop.
    pub fn disarm(&self) {
        *self.0.lock().unwrap() = None;
    }

    /// Runs the model once if `plan` says the stream is live and has no measure yet, and stores
    /// the measure there; `Some` when this call measured. With `wait` false (a latency query)
    /// it leaves the measure to a thread already at it rather than wait for the model.
    pub fn measure_if_needed(
        &self,
        plan: &Mutex<StreamPlan>,
        wait: bool,
    ) -> Result<Option<Duration>, SegmenterError> {
        if !plan.lock().unwrap().needs_model_latency() {
            return Ok(None);
        }
        let mut segmenter = if wait {
            self.0.lock().unwrap()
        } else {
            match self.0.try_lock() {
                Ok(segmenter) => segmenter,
                Err(_) => return Ok(None),
            }
        };
        // Another thread may have measured it while this one waited; a stopped element has
        // nothing to measure with.
        let Some(segmenter) = segmenter.as_mut() else {
            return Ok(None);
        };
        if !plan.lock().unwrap().needs_model_latency() {
            return Ok(None);
        }
        let latency = segmenter.measure_latency()?;
        plan.lock().unwrap().model_latency = Some(latency);
        Ok(Some(latency))
    }
}

/// One frame coming in, as its buffer says.
#[derive(Debug, Clone, Default)]
pub struct Arrival {
    pub timestamp: Option<Duration>,
    pub duration: Option<Duration>,
    /// The buffer is flagged as following a discontinuity.
    pub discontinuity_flagged: bool,
    /// One frame's time at the negotiated rate: how long a frame waits for the model thread.
    pub frame_time: Duration,
    /// The end of that wait on the pipeline's clock; without one, `frame_time` on the
    /// machine's clock.
    pub deadline: Option<Arc<dyn Deadline>>,
    /// `mask-interval` for this frame.
    pub mask_interval: u32,
}

/// A frame handed back, its mask in [`Scheduler::model_mask`].
#[derive(Debug, PartialEq, Eq)]
pub struct Scheduled<F> {
    pub frame: F,
    /// It follows a discontinuity: smoothing across frames starts afresh with it.
    pub discontinuity: bool,
}

/// Why a frame got no mask.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Model(#[from] SegmenterError),
    /// A flush or a stop woke a wait for the model.
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
    #[error("cannot start the model thread: {0}")]
    Thread(#[source] std::io::Error),
}

impl From<LiveMaskError> for ScheduleError {
    fn from(err: LiveMaskError) -> Self {
        match err {
            LiveMaskError::Model(err) => err.into(),
            LiveMaskError::Interrupted(err) => err.into(),
        }
    }
}

/// A frame waiting for its request, with the size its mask is made at.
struct Held<F> {
    scheduled: Scheduled<F>,
    width: usize,
    height: usize,
}

/// A model request: the tensor goes to the request thread and comes back with the run, to be
/// filled again.
type ModelAnswer = (ModelInput, Result<ModelRun, InferenceError>);

/// The strategy in force and what it runs on.
enum Running<F> {
    /// Not begun: frames run inline.
    NotChosen,
    Inline,
    ModelThread(MaskWorker),
    Queued(FrameQueue<Held<F>, ModelInput, ModelAnswer>),
}

/// Takes frames in, runs the model for them as the stream's strategy says, and hands them back
/// in arrival order with their masks. `F` is whatever the caller holds a frame by.
pub struct Scheduler<F: Send + 'static> {
    segmenter: Segmenter,
    running: Running<F>,
    /// Inline and model-thread frames leave right after they came: the one between push and pop.
    current: Option<Scheduled<F>>,
    /// Tensors back from requests, filled again for the next.
    spare_tensors: Vec<ModelInput>,
    cadence: MaskCadence,
    /// Model thread: whether fresh masks keep up with the frames.
    refresh: RefreshWatch,
    model_mask: ModelMask,
    /// Counts flushes and caps changes: a mask from the model thread made before the latest one
    /// is not shown after it.
    history: u64,
    /// Where the previous frame ended, to spot gaps in the timestamps.
    previous_end: Option<Duration>,
    /// How many requests a queue keeps in flight.
    requests_in_flight: usize,
    /// Names the threads it starts (`<name>-model`, `<name>-request`).
    name: String,
}

impl<F: Send + 'static> std::fmt::Debug for Scheduler<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("strategy", &self.strategy())
            .field("history", &self.history)
            .finish_non_exhaustive()
    }
}

impl<F: Send + 'static> Scheduler<F> {
    /// A scheduler for `segmenter`'s model; `requests_in_flight` bounds a queue (1 for a local
    /// model). Nothing starts before [`Scheduler::begin`].
    pub fn new(segmenter: Segmenter, requests_in_flight: usize, name: &str) -> Self {
        Self {
            segmenter,
            running: Running::NotChosen,
            current: None,
            spare_tensors: Vec::new(),
            cadence: MaskCadence::default(),
            refresh: RefreshWatch::default(),
            model_mask: ModelMask::default(),
            history: 0,
            previous_end: None,
            requests_in_flight: requests_in_flight.max(1),
            name: name.to_string(),
        }
    }

    /// The strategy begun, if any.
    pub fn strategy(&self) -> Option<Strategy> {
        match self.running {
            Running::NotChosen => None,
            Running::Inline => Some(Strategy::Inline),
            Running::ModelThread(_) => Some(Strategy::ModelThread),
            Running::Queued(_) => Some(Strategy::Queued),
        }
    }

    /// Starts `strategy`'s threads. Returns what a flush or stop must call to wake a wait for
    /// them (none for inline). Does nothing once begun.
    pub fn begin(
        &mut self,
        strategy: Strategy,
    ) -> Result<Option<Arc<dyn Interruptible>>, ScheduleError> {
        if !matches!(self.running, Running::NotChosen) {
            return Ok(None);
        }
        let (running, interrupter) = match strategy {
            Strategy::Inline => (Running::Inline, None),
            Strategy::ModelThread => {
                let worker =
                    MaskWorker::spawn(&format!("{}-model", self.name), self.segmenter.fresh_copy())
                        .map_err(ScheduleError::Thread)?;
                let interrupter = worker.interrupter();
                (Running::ModelThread(worker), Some(interrupter))
            }
            Strategy::Queued => {
                let model = self.segmenter.model.clone();
                let remote = model.backend().is_remote();
                let mut pool = RequestPool::new(
                    &format!("{}-request", self.name),
                    self.requests_in_flight,
                    move |tensor: ModelInput| {
                        let run = model.run(&tensor);
                        (tensor, run)
                    },
                )
                .map_err(ScheduleError::Thread)?;
                // A server's requests are cancelled by a flush or a stop, not waited for.
                if remote {
                    pool = pool.abandoning_running_jobs();
                }
                let queue = FrameQueue::new(pool);
                let interrupter = queue.interrupter();
                (Running::Queued(queue), Some(interrupter))
            }
        };
        self.running = running;
        Ok(interrupter)
    }

    /// Takes `frame` in, whose pixels `image` shows for this call. `on_model_run` hears each
    /// model run that finished. On the model thread, returns the rates the first time the masks
    /// come too seldom for the frames (once per element).
    pub fn push(
        &mut self,
        frame: F,
        image: &ImageRef<'_>,
        arrival: &Arrival,
        on_model_run: &mut dyn FnMut(Duration),
    ) -> Result<Option<SlowRefresh>, ScheduleError> {
        let scheduled = Scheduled {
            frame,
            discontinuity: self.note_arrival(arrival),
        };
        // A recurrent model sees every frame, and starts afresh after a discontinuity.
        let interval = if self.segmenter.is_recurrent() {
            if scheduled.discontinuity {
                self.segmenter.restart_state();
            }
            1
        } else {
            arrival.mask_interval
        };
        match &mut self.running {
            Running::NotChosen | Running::Inline => {
                let ran = schedule::update_in_place(
                    &mut self.segmenter,
                    &mut self.cadence,
                    &mut self.model_mask,
                    image,
                    interval,
                )?;
                if let Some(model_time) = ran {
                    on_model_run(model_time);
                }
                self.current = Some(scheduled);
                Ok(None)
            }
            Running::ModelThread(worker) => {
                let deadline = arrival
                    .deadline
                    .clone()
                    .unwrap_or_else(|| Arc::new(Timeout::after(arrival.frame_time)));
                let mut fresh_masks = 0;
                worker.update(
                    image,
                    &mut self.cadence,
                    interval,
                    self.history,
                    &mut self.model_mask,
                    deadline,
                    |model_time| {
                        fresh_masks += 1;
                        on_model_run(model_time);
                    },
                )?;
                self.current = Some(scheduled);
                Ok(arrival
                    .timestamp
                    .and_then(|timestamp| self.refresh.frame(timestamp, fresh_masks, interval)))
            }
            Running::Queued(queue) => {
                let job = if self.cadence.next_frame(interval) {
                    let mut tensor = self.spare_tensors.pop().unwrap_or_default();
                    self.segmenter.preparer.prepare(image, &mut tensor)?;
                    Some(tensor)
                } else {
                    None
                };
                let held = Held {
                    scheduled,
                    width: image.width,
                    height: image.height,
                };
                queue.push(held, job)?;
                Ok(None)
            }
        }
    }

    /// The oldest frame whose mask is ready, with [`Scheduler::model_mask`] now its mask; with
    /// `wait`, waits for its request (a drain). `None` when no frame is ready.
    pub fn pop(
        &mut self,
        wait: bool,
        on_model_run: &mut dyn FnMut(Duration),
    ) -> Result<Option<Scheduled<F>>, ScheduleError> {
        if let Some(current) = self.current.take() {
            return Ok(Some(current));
        }
        let Running::Queued(queue) = &mut self.running else {
            return Ok(None);
        };
        let Some((held, ready)) = queue.pop(wait)? else {
            return Ok(None);
        };
        if let Ready::Inferred((tensor, run)) = ready {
            self.spare_tensors.push(tensor);
            let run = run.map_err(SegmenterError::from)?;
            on_model_run(run.time);
            let finisher = &mut self.segmenter.finisher;
            let (width, height) = (held.width, held.height);
            self.model_mask.remake(width, height, |mask| {
                finisher.finish(&run.outputs, width, height, mask)
            })?;
        }
        Ok(Some(held.scheduled))
    }

    /// Makes sure the mask fits `image`, the frame just popped, running the model on this
    /// thread if it does not (a frame of a size no model run has seen yet).
    pub fn fit_mask(
        &mut self,
        image: &ImageRef<'_>,
        on_model_run: &mut dyn FnMut(Duration),
    ) -> Result<(), ScheduleError> {
        if self.model_mask.fits(image.width, image.height) {
            return Ok(());
        }
        let segmenter = &mut self.segmenter;
        self.model_mask.remake(image.width, image.height, |mask| {
            on_model_run(segmenter.compute_mask(image, mask)?);
            Ok::<(), SegmenterError>(())
        })?;
        Ok(())
    }

    /// The model's mask of the frame last popped.
    pub fn model_mask(&self) -> &ModelMask {
        &self.model_mask
    }

    pub fn segmenter(&self) -> &Segmenter {
        &self.segmenter
    }

    /// New caps: the last mask belongs to another size or format and no frame may reuse it,
    /// nor a mask the model thread is still making. (Frames held were handed back before.)
    pub fn restart(&mut self) {
        self.segmenter.restart_state();
        self.previous_end = None;
        self.cadence.restart();
        self.refresh.restart();
        self.model_mask.forget();
        self.history += 1;
    }

    /// A flush: every frame held is dropped, and the stream restarts as after new caps.
    pub fn flush(&mut self) {
        self.current = None;
        if let Running::Queued(queue) = &mut self.running {
            queue.clear();
        }
        self.restart();
    }

    /// A flagged discontinuity, or a timestamp jump of more than half a frame either way. (A
    /// discontinuity only restarts smoothing: a live source marks frames it dropped that way,
    /// and the scene is the same.)
    fn note_arrival(&mut self, arrival: &Arrival) -> bool {
        let mut discontinuity = arrival.discontinuity_flagged;
        if let (Some(timestamp), Some(previous_end)) = (arrival.timestamp, self.previous_end) {
            let tolerance = arrival
                .duration
                .map_or(Duration::from_millis(20), |duration| duration / 2);
            discontinuity |=
                timestamp > previous_end + tolerance || timestamp + tolerance < previous_end;
        }
        self.previous_end = arrival
            .timestamp
            .map(|timestamp| timestamp + arrival.duration.unwrap_or_default());
        discontinuity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imageops::PixelLayout;
    use crate::inference::testing::ConstantMaskModel;
    use crate::segmentation::catalog::ModelProfile;

    const SIDE: usize = 8;

    fn scheduler(delay: Duration, requests: usize) -> Scheduler<u32> {
        let profile = ModelProfile {
            input_size: (SIDE, SIDE),
            ..ModelProfile::SELFIE
        };
        let model = Arc::new(ConstantMaskModel::with_delay(SIDE, delay));
        Scheduler::new(Segmenter::new(model, profile).unwrap(), requests, "test")
    }

    #[test]
    fn only_a_live_stream_measures_the_model_and_only_once() {
        let probe = LatencyProbe::default();
        let plan = Mutex::new(StreamPlan::new(false, true, false));
        plan.lock().unwrap().set_live(true);
        assert_eq!(
            probe.measure_if_needed(&plan, true).unwrap(),
            None,
            "not armed"
        );
        probe.arm(scheduler(Duration::from_millis(5), 1).segmenter());
        plan.lock().unwrap().set_live(false);
        assert_eq!(
            probe.measure_if_needed(&plan, true).unwrap(),
            None,
            "not live"
        );
        assert_eq!(plan.lock().unwrap().model_latency, None);
        plan.lock().unwrap().set_live(true);
        let measured = probe.measure_if_needed(&plan, true).unwrap();
        assert!(measured >= Some(Duration::from_millis(5)), "{measured:?}");
        assert_eq!(plan.lock().unwrap().model_latency, measured);
        assert_eq!(
            probe.measure_if_needed(&plan, true).unwrap(),
            None,
            "measured once"
        );
        probe.disarm();
        assert_eq!(probe.0.lock().unwrap().as_ref().map(|_| ()), None);
    }

    #[test]
    fn a_latency_query_leaves_the_measure_to_the_thread_at_it() {
        let probe = LatencyProbe::default();
        probe.arm(scheduler(Duration::ZERO, 1).segmenter());
        let plan = Mutex::new(StreamPlan::new(false, true, false));
        plan.lock().unwrap().set_live(true);
        let measuring = probe.0.lock().unwrap();
        assert_eq!(probe.measure_if_needed(&plan, false).unwrap(), None);
        drop(measuring);
        assert!(probe.measure_if_needed(&plan, false).unwrap().is_some());
    }

    fn facts(live: bool, remote: bool, asynchronous: bool, overlap: bool) -> StreamFacts {
        StreamFacts {
            live,
            remote,
            asynchronous,
            overlap,
        }
    }

    /// Frame `index` of a 40 ms stream: a grey of level `10 * index + 10`, so each mask says
    /// which frame it was made from.
    fn arrival(index: u32, interval: u32) -> Arrival {
        Arrival {
            timestamp: Some(Duration::from_millis(u64::from(index) * 40)),
            duration: Some(Duration::from_millis(40)),
            discontinuity_flagged: false,
            frame_time: Duration::from_millis(40),
            deadline: None,
            mask_interval: interval,
        }
    }

    fn grey(index: u32) -> Vec<u8> {
        vec![(10 * index + 10) as u8; SIDE * SIDE * 3]
    }

    /// Pushes frames 0..count and pops what is ready after each, then drains: (frame, the mask
    /// level it left with, discontinuity) in the order they left, and the model runs heard.
    fn run(
        scheduler: &mut Scheduler<u32>,
        count: u32,
        interval: u32,
        flagged: &[u32],
    ) -> (Vec<(u32, u8, bool)>, usize) {
        let mut runs = 0;
        let mut out = Vec::new();
        let mut leave = |scheduler: &mut Scheduler<u32>, wait: bool, runs: &mut usize| {
            while let Some(done) = scheduler.pop(wait, &mut |_| *runs += 1).unwrap() {
                let level = scheduler.model_mask().pixels()[0];
                out.push((done.frame, level, done.discontinuity));
            }
        };
        for index in 0..count {
            let pixels = grey(index);
            let image = ImageRef::packed(&pixels, SIDE, SIDE, PixelLayout::RGB);
            let mut arrival = arrival(index, interval);
            arrival.discontinuity_flagged = flagged.contains(&index);
            scheduler
                .push(index, &image, &arrival, &mut |_| runs += 1)
                .unwrap();
            leave(scheduler, false, &mut runs);
        }
        leave(scheduler, true, &mut runs);
        (out, runs)
    }

    #[test]
    fn the_strategy_follows_liveness_backend_and_settings() {
        use Strategy::*;
        // (live, remote, asynchronous, overlap) -> strategy
        let table = [
            ((false, false, true, false), Inline),
            ((false, false, true, true), Queued),
            ((false, true, true, false), Queued),
            ((true, false, true, true), ModelThread),
            ((true, false, false, false), Inline),
            ((true, false, false, true), Inline),
            ((true, true, true, false), ModelThread),
            ((true, true, false, false), Queued),
        ];
        for ((live, remote, asynchronous, overlap), expected) in table {
            let facts = facts(live, remote, asynchronous, overlap);
            assert_eq!(Strategy::choose(facts), expected, "{facts:?}");
        }
    }

    #[test]
    fn latency_is_one_model_run_or_what_the_strategy_adds() {
        let (model, frame) = (Duration::from_millis(100), Duration::from_millis(40));
        assert_eq!(Strategy::Inline.latency(true, model, frame), model);
        assert_eq!(Strategy::ModelThread.latency(true, model, frame), frame);
        assert_eq!(
            Strategy::ModelThread.latency(true, model, Duration::ZERO),
            model,
            "no frame rate yet"
        );
        assert_eq!(Strategy::Queued.latency(true, model, frame), model + frame);
        assert_eq!(Strategy::Queued.latency(false, model, frame), model);
    }

    #[test]
    fn the_first_frame_fixes_the_strategy_for_the_stream() {
        let mut plan = StreamPlan::new(false, true, true);
        plan.frame_duration = Duration::from_millis(40);
        // Nothing known of liveness yet: overlap would queue, and no model run is needed.
        assert_eq!(plan.strategy(), Strategy::Queued);
        assert!(!plan.needs_model_latency());
        plan.set_live(true);
        assert!(plan.needs_model_latency());
        plan.model_latency = Some(Duration::from_millis(100));
        assert!(!plan.needs_model_latency());
        assert_eq!(plan.strategy(), Strategy::ModelThread);
        assert_eq!(plan.fix_strategy(), Strategy::ModelThread);
        assert_eq!(plan.latency(), Duration::from_millis(40));
        // A later query cannot change it under the frames.
        plan.set_live(false);
        assert_eq!(plan.fix_strategy(), Strategy::ModelThread);
        assert_eq!(plan.strategy(), Strategy::ModelThread);
    }

    #[test]
    fn inline_hands_each_frame_back_with_its_own_mask() {
        let mut scheduler = scheduler(Duration::ZERO, 1);
        assert!(scheduler.begin(Strategy::Inline).unwrap().is_none());
        let (out, runs) = run(&mut scheduler, 4, 1, &[]);
        let levels: Vec<_> = out
            .iter()
            .map(|(frame, level, _)| (*frame, *level))
            .collect();
        assert_eq!(levels, [(0, 10), (1, 20), (2, 30), (3, 40)]);
        assert_eq!(runs, 4);
    }

    #[test]
    fn a_queue_gives_the_same_frames_and_masks_as_inline() {
        for interval in [1, 2, 3] {
            let mut inline = scheduler(Duration::ZERO, 1);
            inline.begin(Strategy::Inline).unwrap();
            let mut queued = scheduler(Duration::from_millis(5), 2);
            let interrupter = queued.begin(Strategy::Queued).unwrap();
            assert!(interrupter.is_some(), "a queue's waits can be woken");
            let expected = run(&mut inline, 7, interval, &[4]);
            assert_eq!(run(&mut queued, 7, interval, &[4]), expected, "{interval}");
            // Reused masks come from the last frame that ran the model.
            if interval == 2 {
                let levels: Vec<_> = expected.0.iter().map(|(_, level, _)| *level).collect();
                assert_eq!(levels, [10, 10, 30, 30, 50, 50, 70]);
            }
        }
    }

    #[test]
    fn flagged_frames_and_timestamp_gaps_are_discontinuities() {
        let mut scheduler = scheduler(Duration::ZERO, 1);
        scheduler.begin(Strategy::Inline).unwrap();
        let (out, _) = run(&mut scheduler, 3, 1, &[1]);
        let flags: Vec<_> = out.iter().map(|(_, _, discont)| *discont).collect();
        assert_eq!(flags, [false, true, false]);
        // A jump of a second between frames.
        let pixels = grey(0);
        let image = ImageRef::packed(&pixels, SIDE, SIDE, PixelLayout::RGB);
        let mut late = arrival(30, 1);
        late.timestamp = Some(Duration::from_secs(2));
        scheduler.push(9, &image, &late, &mut |_| {}).unwrap();
        assert!(
            scheduler
                .pop(false, &mut |_| {})
                .unwrap()
                .unwrap()
                .discontinuity
        );
    }

    #[test]
    fn a_flush_drops_held_frames_and_forgets_the_mask() {
        let mut scheduler = scheduler(Duration::from_millis(20), 1);
        scheduler.begin(Strategy::Queued).unwrap();
        for index in 0..2 {
            let pixels = grey(index);
            let image = ImageRef::packed(&pixels, SIDE, SIDE, PixelLayout::RGB);
            scheduler
                .push(index, &image, &arrival(index, 1), &mut |_| {})
                .unwrap();
        }
        scheduler.flush();
        assert!(scheduler.pop(true, &mut |_| {}).unwrap().is_none());
        assert!(!scheduler.model_mask().fits(SIDE, SIDE));
        // After the flush the next frame runs the model whatever the interval.
        let (out, runs) = run(&mut scheduler, 2, 5, &[]);
        assert_eq!(
            out.iter().map(|(frame, _, _)| *frame).collect::<Vec<_>>(),
            [0, 1]
        );
        assert_eq!(runs, 1);
    }

    #[test]
    fn the_model_thread_gives_every_frame_a_mask_without_holding_any() {
        let mut scheduler = scheduler(Duration::from_millis(1), 1);
        let interrupter = scheduler.begin(Strategy::ModelThread).unwrap();
        assert!(interrupter.is_some());
        let mut runs = 0;
        for index in 0..5 {
            let pixels = grey(index);
            let image = ImageRef::packed(&pixels, SIDE, SIDE, PixelLayout::RGB);
            scheduler
                .push(index, &image, &arrival(index, 1), &mut |_| runs += 1)
                .unwrap();
            let out = scheduler.pop(false, &mut |_| {}).unwrap().unwrap();
            assert_eq!(out.frame, index, "each frame leaves before the next comes");
            assert!(scheduler.model_mask().fits(SIDE, SIDE));
            assert!(scheduler.pop(false, &mut |_| {}).unwrap().is_none());
        }
        assert!(runs >= 1);
    }

    #[test]
    fn a_flush_wakes_a_wait_for_the_queue() {
        let mut scheduler = scheduler(Duration::from_millis(300), 1);
        let interrupter = scheduler.begin(Strategy::Queued).unwrap().unwrap();
        let pixels = grey(0);
        let image = ImageRef::packed(&pixels, SIDE, SIDE, PixelLayout::RGB);
        scheduler
            .push(0, &image, &arrival(0, 1), &mut |_| {})
            .unwrap();
        interrupter.set_interrupted(true);
        assert!(matches!(
            scheduler.pop(true, &mut |_| {}),
            Err(ScheduleError::Interrupted(_))
        ));
    }
}
