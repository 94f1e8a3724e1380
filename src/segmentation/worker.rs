//! Runs a [`Segmenter`] on a thread of its own, so that a live stream does not wait for the
//! model: the streaming thread hands over a copy of a frame and carries on with the newest mask
//! that has finished.
//!
//! One frame is in work at a time and at most one waits behind it: a newer frame replaces a
//! waiting one, because in live video only the newest frame is worth a model run.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::imageops::{ImageRef, PixelLayout};

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
    stop: bool,
}

struct Shared {
    slots: Mutex<Slots>,
    changed: Condvar,
}

/// The model's own thread. Dropping it stops the thread once the run in progress ends.
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
    pub fn spawn(name: &str, segmenter: Arc<Mutex<Segmenter>>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            slots: Mutex::new(Slots::default()),
            changed: Condvar::new(),
        });
        let worker_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || run(&worker_shared, &segmenter))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// True when no frame is in work or waiting.
    pub fn is_idle(&self) -> bool {
        let slots = self.shared.slots.lock().unwrap();
        !slots.running && slots.waiting.is_none()
    }

    /// Queues a copy of `frame` for a model run, replacing a frame still waiting. `tag` comes
    /// back with its mask (the element uses it to tell masks from before a discontinuity).
    pub fn submit(&self, frame: &ImageRef<'_>, tag: u64) {
        let mut pixels = self
            .shared
            .slots
            .lock()
            .unwrap()
            .spare_frames
            .pop()
            .unwrap_or_default();
        frame.copy_packed_into(&mut pixels);
        let job = Job {
            tag,
            pixels,
            width: frame.width,
            height: frame.height,
            layout: frame.layout,
        };
        let mut slots = self.shared.slots.lock().unwrap();
        if let Some(replaced) = slots.waiting.replace(job) {
            slots.spare_frames.push(replaced.pixels);
        }
        self.shared.changed.notify_all();
    }

    /// The newest finished mask, if one finished since the last call.
    pub fn take_finished(&self) -> Option<FinishedMask> {
        self.shared.slots.lock().unwrap().finished.take()
    }

    /// Waits up to `timeout` for a mask to finish; `None` when none did in that time, or when
    /// nothing is in work that could finish.
    pub fn wait_finished(&self, timeout: Duration) -> Option<FinishedMask> {
        let deadline = Instant::now() + timeout;
        let mut slots = self.shared.slots.lock().unwrap();
        loop {
            if let Some(finished) = slots.finished.take() {
                return Some(finished);
            }
            if !slots.running && slots.waiting.is_none() {
                return None;
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            slots = self.shared.changed.wait_timeout(slots, left).unwrap().0;
        }
    }

    /// Hands a mask buffer back for a later run to fill.
    pub fn recycle_mask(&self, mask: Vec<u8>) {
        let mut slots = self.shared.slots.lock().unwrap();
        if slots.spare_masks.len() < 2 {
            slots.spare_masks.push(mask);
        }
    }
}

impl Drop for MaskWorker {
    fn drop(&mut self) {
        self.shared.slots.lock().unwrap().stop = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            // A panic on the model thread has already been reported by the panic hook.
            let _ = thread.join();
        }
    }
}

fn run(shared: &Shared, segmenter: &Mutex<Segmenter>) {
    loop {
        let (job, mut mask) = {
            let mut slots = shared.slots.lock().unwrap();
            loop {
                if slots.stop {
                    return;
                }
                if let Some(job) = slots.waiting.take() {
                    slots.running = true;
                    let mask = slots.spare_masks.pop().unwrap_or_default();
                    break (job, mask);
                }
                slots = shared.changed.wait(slots).unwrap();
            }
        };
        mask.resize(job.width * job.height, 0);
        let frame = ImageRef::packed(&job.pixels, job.width, job.height, job.layout);
        let (result, model_time) = {
            let mut segmenter = segmenter.lock().unwrap();
            let result = segmenter.compute_mask(&frame, &mut mask).map(|()| mask);
            (result, segmenter.last_run_time())
        };
        let mut slots = shared.slots.lock().unwrap();
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
        shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::{Backend, ElementType, InferenceError, Tensor, TensorSpec, TensorView};
    use crate::segmentation::catalog::ModelProfile;

    /// A model that takes `delay` and answers with a constant mask equal to the input's mean,
    /// so each mask says which frame it was made from.
    struct SlowMeanModel {
        delay: Duration,
        inputs: Vec<TensorSpec>,
        outputs: Vec<TensorSpec>,
    }

    impl Backend for SlowMeanModel {
        fn model_name(&self) -> &str {
            "slow-mean"
        }
        fn inputs(&self) -> &[TensorSpec] {
            &self.inputs
        }
        fn outputs(&self) -> &[TensorSpec] {
            &self.outputs
        }
        fn run(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>, InferenceError> {
            std::thread::sleep(self.delay);
            let mean = inputs[0].data.iter().sum::<f32>() / inputs[0].data.len() as f32;
            Ok(vec![Tensor {
                shape: vec![1, 8, 8, 1],
                data: vec![mean; 64],
            }])
        }
    }

    fn worker(delay: Duration) -> MaskWorker {
        let spec = |name: &str, channels| TensorSpec {
            name: name.into(),
            element_type: ElementType::Float32,
            shape: vec![Some(1), Some(8), Some(8), Some(channels)],
        };
        let model = SlowMeanModel {
            delay,
            inputs: vec![spec("image", 3)],
            outputs: vec![spec("mask", 1)],
        };
        let profile = ModelProfile {
            input_size: (8, 8),
            ..ModelProfile::SELFIE
        };
        let segmenter = Segmenter::new(Arc::new(model), profile).unwrap();
        MaskWorker::spawn("test-model", Arc::new(Mutex::new(segmenter))).unwrap()
    }

    fn submit_grey(worker: &MaskWorker, level: u8) {
        let pixels = vec![level; 8 * 8 * 3];
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

    #[test]
    fn a_fast_model_answers_within_the_wait() {
        let worker = worker(Duration::from_millis(1));
        assert!(worker.is_idle());
        submit_grey(&worker, 51);
        let finished = worker.wait_finished(Duration::from_secs(10)).unwrap();
        assert_eq!(level_of(finished), 51);
        assert!(worker.is_idle());
        assert!(worker.take_finished().is_none());
        // Nothing in work: waiting returns at once instead of sleeping out the timeout.
        let started = Instant::now();
        assert!(worker.wait_finished(Duration::from_secs(10)).is_none());
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_slow_model_times_out_then_the_newest_waiting_frame_wins() {
        let worker = worker(Duration::from_millis(300));
        submit_grey(&worker, 51);
        // The stream does not wait for a slow model longer than it asked.
        assert!(worker.wait_finished(Duration::from_millis(20)).is_none());
        assert!(!worker.is_idle());
        // Two more frames while the first is in work: the second replaces the first waiting.
        submit_grey(&worker, 102);
        submit_grey(&worker, 153);
        assert_eq!(
            level_of(worker.wait_finished(Duration::from_secs(10)).unwrap()),
            51
        );
        assert_eq!(
            level_of(worker.wait_finished(Duration::from_secs(10)).unwrap()),
            153
        );
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
}
