//! Runs a [`Segmenter`] on a thread of its own, so that a live stream does not wait for the
//! model: the streaming thread hands over a copy of a frame and carries on with the newest mask
//! that has finished.
//!
//! One frame is in work at a time and at most one waits behind it: a newer frame replaces a
//! waiting one, because in live video only the newest frame is worth a model run.
//!
//! How long a frame waits for its own mask is a [`Deadline`]: the element's is an alarm on the
//! pipeline's clock, so a frame waits one frame of stream time whatever the machine does; the
//! model thread cancels it when a mask finishes, a flush when it flushes.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::imageops::{ImageRef, PixelLayout};
use crate::inference::requests::{Interrupted, Interruptible};

use super::mask::ModelMask;
use super::schedule::MaskCadence;
use super::{Segmenter, SegmenterError};

/// A finished model run: the mask of a `width` x `height` frame, or why it failed.
#[derive(Debug)]
pub struct FinishedMask {
    /// What the caller passed to [`MaskWorker::submit`] with the frame.
    pub tag: u64,
    pub width: usize,
    pub height: usize,
    pub result: Result<Vec<u8>, SegmenterError>,
    /// How long the model itself ran for it.
    pub model_time: Duration,
}

/// The end of a wait for a mask.
pub trait Deadline: Send + Sync + std::fmt::Debug {
    /// Blocks until the deadline, or until `cancel` is called (before the wait or during it).
    fn wait(&self);
    fn cancel(&self);
}

/// A deadline on the machine's own clock; `None`: only a cancel ends the wait.
#[derive(Debug)]
pub struct Timeout {
    until: Option<Instant>,
    cancelled: Mutex<bool>,
    changed: Condvar,
}

impl Timeout {
    pub fn after(timeout: Duration) -> Self {
        Self {
            until: Instant::now().checked_add(timeout),
            cancelled: Mutex::new(false),
            changed: Condvar::new(),
        }
    }
}

impl Deadline for Timeout {
    fn wait(&self) {
        let mut cancelled = self.cancelled.lock().unwrap_or_else(|e| e.into_inner());
        while !*cancelled {
            cancelled = match self.until {
                Some(until) => {
                    let Some(left) = until.checked_duration_since(Instant::now()) else {
                        return;
                    };
                    self.changed
                        .wait_timeout(cancelled, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self
                    .changed
                    .wait(cancelled)
                    .unwrap_or_else(|e| e.into_inner()),
            };
        }
    }

    fn cancel(&self) {
        *self.cancelled.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.changed.notify_all();
    }
}

/// Why [`MaskWorker::update`] gave a frame no mask.
#[derive(Debug, thiserror::Error)]
pub enum LiveMaskError {
    #[error(transparent)]
    Model(#[from] SegmenterError),
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
}

struct Job {
    tag: u64,
    pixels: Vec<u8>,
    width: usize,
    height: usize,
    layout: PixelLayout,
}

#[derive(Default)]
struct Slots {
    waiting: Option<Job>,
    running: bool,
    finished: Option<FinishedMask>,
    /// Frame and mask buffers handed back for reuse, so a 30 fps stream does not allocate
    /// two frame-sized buffers per frame.
    spare_frames: Vec<Vec<u8>>,
    spare_masks: Vec<Vec<u8>>,
    /// Set during a flush or a stop: waits return at once.
    interrupted: bool,
    stop: bool,
    /// The wait in progress for a mask, which the next finished mask or a flush cancels.
    deadline: Option<Arc<dyn Deadline>>,
}

struct Shared {
    slots: Mutex<Slots>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Interruptible for Shared {
    fn set_interrupted(&self, on: bool) {
        let mut slots = self.lock();
        slots.interrupted = on;
        if on && let Some(deadline) = slots.deadline.take() {
            deadline.cancel();
        }
        self.changed.notify_all();
    }
}

/// The model's own thread. Dropping it stops the thread once the run in progress ends, and
/// waits for that unless the model is a server's (whose request the element's stop cancels).
pub struct MaskWorker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MaskWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaskWorker").finish_non_exhaustive()
    }
}

impl MaskWorker {
    /// Starts the thread; it owns `segmenter` (give it a [`Segmenter::fresh_copy`]).
    pub fn spawn(name: &str, mut segmenter: Segmenter) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            slots: Mutex::new(Slots::default()),
            changed: Condvar::new(),
        });
        let worker_shared = shared.clone();
        let remote = segmenter.model.backend().is_remote();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || run(&worker_shared, &mut segmenter))?;
        Ok(Self {
            shared,
            thread: (!remote).then_some(thread),
        })
    }

    /// A handle that wakes (and keeps from waiting) whoever waits on this worker.
    pub fn interrupter(&self) -> Arc<dyn Interruptible> {
        self.shared.clone()
    }

    /// True when no frame is in work or waiting.
    pub fn is_idle(&self) -> bool {
        let slots = self.shared.lock();
        !slots.running && slots.waiting.is_none()
    }

    /// Queues a copy of `frame` for a model run, replacing a frame still waiting. `tag` comes
    /// back with its mask (the element uses it to tell masks from before a discontinuity).
    pub fn submit(&self, frame: &ImageRef<'_>, tag: u64) {
        let mut pixels = self.shared.lock().spare_frames.pop().unwrap_or_default();
        frame.copy_packed_into(&mut pixels);
        let job = Job {
            tag,
            pixels,
            width: frame.width,
            height: frame.height,
            layout: frame.layout,
        };
        let mut slots = self.shared.lock();
        if let Some(replaced) = slots.waiting.replace(job) {
            slots.spare_frames.push(replaced.pixels);
        }
        self.shared.changed.notify_all();
    }

    /// The newest finished mask, if one finished since the last call.
    pub fn take_finished(&self) -> Option<FinishedMask> {
        self.shared.lock().finished.take()
    }

    /// Waits up to `timeout` for a mask to finish; `None` when none did in that time, or when
    /// nothing is in work that could finish.
    pub fn wait_finished(&self, timeout: Duration) -> Result<Option<FinishedMask>, Interrupted> {
        self.wait_finished_until(Arc::new(Timeout::after(timeout)))
    }

    /// Waits until `deadline` for a mask to finish; `None` when none did by then, or when
    /// nothing is in work that could finish.
    pub fn wait_finished_until(
        &self,
        deadline: Arc<dyn Deadline>,
    ) -> Result<Option<FinishedMask>, Interrupted> {
        {
            let mut slots = self.shared.lock();
            if slots.interrupted {
                return Err(Interrupted);
            }
            if let Some(finished) = slots.finished.take() {
                return Ok(Some(finished));
            }
            if !slots.running && slots.waiting.is_none() {
                return Ok(None);
            }
            // Armed under the lock: a mask finishing from now on cancels this wait.
            slots.deadline = Some(deadline.clone());
        }
        deadline.wait();
        let mut slots = self.shared.lock();
        slots.deadline = None;
        if slots.interrupted {
            return Err(Interrupted);
        }
        Ok(slots.finished.take())
    }

    /// Hands a mask buffer back for a later run to fill.
    pub fn recycle_mask(&self, mask: Vec<u8>) {
        let mut slots = self.shared.lock();
        if slots.spare_masks.len() < 2 {
            slots.spare_masks.push(mask);
        }
    }

    /// Asynchronous mode, one frame: hands the frame to the model when `cadence` says it is due
    /// and the model is free, and leaves in `model_mask` the newest mask that has finished for
    /// this frame size and `history` (masks from before a flush or caps change are dropped).
    /// A frame that starts a run waits until `deadline` (one frame time) for it, so a model
    /// faster than the frame rate still gives every frame its own mask. Only a frame with no
    /// mask of its size at all waits as long as the model takes. `on_run` hears each finished
    /// run's model time.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &self,
        frame: &ImageRef<'_>,
        cadence: &mut MaskCadence,
        interval: u32,
        history: u64,
        model_mask: &mut ModelMask,
        deadline: Arc<dyn Deadline>,
        mut on_run: impl FnMut(Duration),
    ) -> Result<(), LiveMaskError> {
        let size = (frame.width, frame.height);
        let mut adopt = |finished: FinishedMask, model_mask: &mut ModelMask| {
            let mask = finished.result?;
            on_run(finished.model_time);
            if (finished.width, finished.height) == size && finished.tag == history {
                let old = model_mask.replace(mask, size.0, size.1);
                self.recycle_mask(old);
            } else {
                // Made for a frame before a caps change or another discontinuity.
                self.recycle_mask(mask);
            }
            Ok::<(), LiveMaskError>(())
        };
        let mut submitted = false;
        loop {
            if let Some(finished) = self.take_finished() {
                adopt(finished, model_mask)?;
                continue;
            }
            let have_mask = model_mask.fits(size.0, size.1);
            if (!have_mask || cadence.due(interval)) && !submitted && self.is_idle() {
                self.submit(frame, history);
                cadence.ran();
                submitted = true;
            }
            if have_mask {
                if submitted && let Some(finished) = self.wait_finished_until(deadline)? {
                    adopt(finished, model_mask)?;
                }
                // This frame counts towards the next run, submitted or not.
                cadence.advance();
                return Ok(());
            }
            // Nothing to show yet: wait for the run in work (perhaps of an older frame) and
            // look again. A flush or stop interrupts the wait.
            match self.wait_finished(Duration::MAX)? {
                Some(finished) => adopt(finished, model_mask)?,
                None => submitted = false,
            }
        }
    }
}

impl Drop for MaskWorker {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            // A panic on the model thread has already been reported by the panic hook.
            let _ = thread.join();
        }
    }
}

fn run(shared: &Shared, segmenter: &mut Segmenter) {
    loop {
        let (job, mut mask) = {
            let mut slots = shared.lock();
            loop {
                if slots.stop {
                    return;
                }
                if let Some(job) = slots.waiting.take() {
                    slots.running = true;
                    let mask = slots.spare_masks.pop().unwrap_or_default();
                    break (job, mask);
                }
                slots = shared
                    .changed
                    .wait(slots)
                    .unwrap_or_else(|e| e.into_inner());
            }
        };
        mask.resize(job.width * job.height, 0);
        let frame = ImageRef::packed(&job.pixels, job.width, job.height, job.layout);
        let (result, model_time) = match segmenter.compute_mask(&frame, &mut mask) {
            Ok(model_time) => (Ok(mask), model_time),
            Err(err) => (Err(err), Duration::ZERO),
        };
        let mut slots = shared.lock();
        slots.running = false;
        match slots.finished.take() {
            // An error not yet collected stays: it is what the element must report.
            Some(unread @ FinishedMask { result: Err(_), .. }) => slots.finished = Some(unread),
            unread => {
                if let Some(FinishedMask {
                    result: Ok(unused), ..
                }) = unread
                {
                    slots.spare_masks.push(unused);
                }
                slots.finished = Some(FinishedMask {
                    tag: job.tag,
                    width: job.width,
                    height: job.height,
                    result,
                    model_time,
                });
            }
        }
        slots.spare_frames.push(job.pixels);
        if let Some(deadline) = slots.deadline.take() {
            deadline.cancel();
        }
        shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::testing::ConstantMaskModel;
    use crate::segmentation::catalog::ModelProfile;

    fn segmenter(delay: Duration) -> Segmenter {
        let profile = ModelProfile {
            input_size: (8, 8),
            ..ModelProfile::SELFIE
        };
        Segmenter::new(Arc::new(ConstantMaskModel::with_delay(8, delay)), profile).unwrap()
    }

    fn worker(delay: Duration) -> MaskWorker {
        MaskWorker::spawn("test-model", segmenter(delay)).unwrap()
    }

    fn grey(level: u8) -> Vec<u8> {
        vec![level; 8 * 8 * 3]
    }

    fn submit_grey(worker: &MaskWorker, level: u8) {
        let pixels = grey(level);
        worker.submit(
            &ImageRef::packed(&pixels, 8, 8, PixelLayout::RGB),
            u64::from(level),
        );
    }

    fn level_of(finished: FinishedMask) -> u8 {
        assert_eq!((finished.width, finished.height), (8, 8));
        let tag = finished.tag;
        let mask = finished.result.unwrap();
        assert!(mask.iter().all(|&v| v == mask[0]), "a constant mask");
        assert_eq!(
            tag,
            u64::from(mask[0]),
            "the tag comes back with its frame's mask"
        );
        mask[0]
    }

    fn wait(worker: &MaskWorker) -> FinishedMask {
        worker
            .wait_finished(Duration::from_secs(10))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_fast_model_answers_within_the_wait() {
        let worker = worker(Duration::from_millis(1));
        assert!(worker.is_idle());
        submit_grey(&worker, 51);
        assert_eq!(level_of(wait(&worker)), 51);
        assert!(worker.is_idle());
        assert!(worker.take_finished().is_none());
        // Nothing in work: waiting returns at once instead of sleeping out the timeout.
        let started = Instant::now();
        assert!(
            worker
                .wait_finished(Duration::from_secs(10))
                .unwrap()
                .is_none()
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_slow_model_times_out_then_the_newest_waiting_frame_wins() {
        let worker = worker(Duration::from_millis(300));
        submit_grey(&worker, 51);
        // The stream does not wait for a slow model longer than it asked.
        assert!(
            worker
                .wait_finished(Duration::from_millis(20))
                .unwrap()
                .is_none()
        );
        assert!(!worker.is_idle());
        // Two more frames while the first is in work: the second replaces the first waiting.
        submit_grey(&worker, 102);
        submit_grey(&worker, 153);
        assert_eq!(level_of(wait(&worker)), 51);
        assert_eq!(level_of(wait(&worker)), 153);
        assert!(worker.is_idle());
    }

    #[test]
    fn dropping_the_worker_while_it_runs_returns() {
        let worker = worker(Duration::from_millis(200));
        submit_grey(&worker, 51);
        submit_grey(&worker, 102);
        let started = Instant::now();
        drop(worker);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn an_interrupt_wakes_a_frame_waiting_for_its_first_mask() {
        let worker = worker(Duration::from_secs(3));
        let interrupter = worker.interrupter();
        let pixels = grey(51);
        let frame = ImageRef::packed(&pixels, 8, 8, PixelLayout::RGB);
        let started = Instant::now();
        let result = std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(30));
                interrupter.set_interrupted(true);
            });
            worker.update(
                &frame,
                &mut MaskCadence::default(),
                1,
                0,
                &mut ModelMask::default(),
                Arc::new(Timeout::after(Duration::from_millis(33))),
                |_| {},
            )
        });
        assert!(matches!(result, Err(LiveMaskError::Interrupted(_))));
        assert!(started.elapsed() < Duration::from_millis(1500));
    }

    /// Feeds frames of rising grey levels through `update`, one every `frame_time`, and returns
    /// the level of the mask each frame carried and how many model runs finished.
    fn live_stream(
        model_delay: Duration,
        frame_time: Duration,
        interval: u32,
        frames: u8,
    ) -> (Vec<u8>, usize) {
        let worker = worker(model_delay);
        let (mut cadence, mut model_mask, mut runs) =
            (MaskCadence::default(), ModelMask::default(), 0);
        let mut carried = Vec::new();
        for i in 0..frames {
            let started = Instant::now();
            let pixels = grey(10 + i);
            let frame = ImageRef::packed(&pixels, 8, 8, PixelLayout::RGB);
            worker
                .update(
                    &frame,
                    &mut cadence,
                    interval,
                    0,
                    &mut model_mask,
                    Arc::new(Timeout::after(frame_time)),
                    |_| runs += 1,
                )
                .unwrap();
            assert!(model_mask.fits(8, 8), "every frame has a mask");
            carried.push(model_mask.pixels()[0]);
            std::thread::sleep(frame_time.saturating_sub(started.elapsed()));
        }
        (carried, runs)
    }

    #[test]
    fn a_model_faster_than_the_frames_gives_each_frame_its_own_mask() {
        let (carried, runs) =
            live_stream(Duration::from_millis(2), Duration::from_millis(40), 1, 6);
        assert_eq!(carried, [10, 11, 12, 13, 14, 15]);
        assert_eq!(runs, 6);
    }

    #[test]
    fn a_slow_model_lags_and_frames_carry_the_newest_finished_mask() {
        let (carried, runs) =
            live_stream(Duration::from_millis(90), Duration::from_millis(20), 1, 12);
        // The first frame waits for its own mask; later ones carry older masks, never newer.
        assert_eq!(carried[0], 10);
        for (i, &level) in carried.iter().enumerate() {
            assert!(level <= 10 + i as u8, "frame {i} carries {level}");
        }
        assert!(carried.windows(2).all(|w| w[0] <= w[1]), "{carried:?}");
        assert!(runs < 12, "fewer runs than frames: {runs}");
    }

    #[test]
    fn the_interval_spaces_runs_in_asynchronous_mode_too() {
        let (carried, runs) =
            live_stream(Duration::from_millis(1), Duration::from_millis(30), 3, 7);
        assert_eq!(carried, [10, 10, 10, 13, 13, 13, 16]);
        assert_eq!(runs, 3);
    }

    #[test]
    fn a_deadline_that_never_comes_gives_every_frame_its_own_mask() {
        // A model five times slower than the frames, and a clock that stands still (as a
        // TestClock does): each frame waits for its own run rather than taking an older mask.
        let worker = worker(Duration::from_millis(50));
        let (mut cadence, mut model_mask) = (MaskCadence::default(), ModelMask::default());
        for level in [51u8, 102, 153, 204] {
            let pixels = grey(level);
            let frame = ImageRef::packed(&pixels, 8, 8, PixelLayout::RGB);
            worker
                .update(
                    &frame,
                    &mut cadence,
                    1,
                    0,
                    &mut model_mask,
                    Arc::new(Timeout::after(Duration::MAX)),
                    |_| {},
                )
                .unwrap();
            assert_eq!(model_mask.pixels()[0], level);
        }
    }
}
