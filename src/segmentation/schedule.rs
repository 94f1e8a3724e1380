//! When the model runs and in what order frames leave: the `mask-interval` cadence that every
//! mode shares, and the queue of frames whose model requests are in flight (overlap mode is the
//! one-request case), which hands frames back in arrival order.

use std::collections::VecDeque;
use std::time::Duration;

use crate::imageops::ImageRef;
use crate::inference::requests::{Interrupted, RequestPool, Ticket};

use super::mask::ModelMask;
use super::{Segmenter, SegmenterError};

/// `mask-interval`: the model runs on the first frame after a restart and then every
/// `interval`th frame; the frames between reuse the last mask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaskCadence {
    /// Frames since the model last ran; `None` until it first runs (start, flush, new caps).
    since_run: Option<u32>,
}

impl MaskCadence {
    /// Whether the model is due on the next frame.
    pub fn due(&self, interval: u32) -> bool {
        self.since_run
            .is_none_or(|frames| frames >= interval.max(1))
    }

    /// The model runs (or was handed) the next frame.
    pub fn ran(&mut self) {
        self.since_run = Some(0);
    }

    /// One frame has gone by, whether it ran the model or not.
    pub fn advance(&mut self) {
        self.since_run = self.since_run.map(|frames| frames.saturating_add(1));
    }

    /// Decides for one frame: runs the model when due, and counts the frame.
    pub fn next_frame(&mut self, interval: u32) -> bool {
        let due = self.due(interval);
        if due {
            self.ran();
        }
        self.advance();
        due
    }

    /// The next frame runs the model whatever the interval (after a flush or new caps).
    pub fn restart(&mut self) {
        self.since_run = None;
    }
}

/// A mask refresh rate below what `mask-interval` asks of the frame rate, as measured over one
/// span of stream time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowRefresh {
    pub masks_per_second: f64,
    pub frames_per_second: f64,
    pub interval: u32,
}

impl SlowRefresh {
    /// The warning for the user: both rates, and what is faster.
    pub fn describe(&self, model: &str) -> String {
        let asked = if self.interval > 1 {
            format!(
                " (mask-interval={} asks for {:.1})",
                self.interval,
                self.frames_per_second / f64::from(self.interval)
            )
        } else {
            String::new()
        };
        format!(
            "model {model} refreshes the mask {:.1} times a second, below the video's {:.1} \
             frames a second{asked}: the cutout trails movement. Faster: model=selfie (people), \
             precision=bf16 (CPUs with bfloat16) or a server (backend=triton); mask-interval=N \
             asks for a mask every Nth frame only (warned once)",
            self.masks_per_second, self.frames_per_second
        )
    }
}

/// Watches whether asynchronous mode's masks come as often as `mask-interval` asks: over each
/// [`RefreshWatch::SPAN`] of the frames' timestamps, the fresh masks against the frames. The
/// timestamps, not the wall clock, measure it, so a recorded stream always gives the same verdict.
/// Says so once; a restart (a flush, new caps) begins a new span.
#[derive(Debug, Default)]
pub struct RefreshWatch {
    start: Option<Duration>,
    frames: u32,
    masks: u32,
    warned: bool,
}

impl RefreshWatch {
    pub const SPAN: Duration = Duration::from_secs(3);
    /// Below this share of the asked rate the mask visibly trails the picture; above it the gap
    /// is a model run that straddles two frames now and then.
    const SHORTFALL: f64 = 0.75;

    /// A frame at `timestamp` shown with `fresh_masks` masks finished since the previous one.
    /// Returns the rates the first time a span ends too slow.
    pub fn frame(
        &mut self,
        timestamp: Duration,
        fresh_masks: u32,
        interval: u32,
    ) -> Option<SlowRefresh> {
        if self.warned {
            return None;
        }
        let start = match self.start {
            Some(start) if timestamp >= start => start,
            // The first frame, or timestamps that went back: a new span from here.
            _ => {
                *self = Self {
                    start: Some(timestamp),
                    ..Self::default()
                };
                return None;
            }
        };
        self.frames += 1;
        self.masks += fresh_masks;
        let span = timestamp - start;
        if span < Self::SPAN {
            return None;
        }
        let seconds = span.as_secs_f64();
        let refresh = SlowRefresh {
            masks_per_second: f64::from(self.masks) / seconds,
            frames_per_second: f64::from(self.frames) / seconds,
            interval: interval.max(1),
        };
        *self = Self {
            start: Some(timestamp),
            ..Self::default()
        };
        let asked = refresh.frames_per_second / f64::from(refresh.interval);
        if refresh.masks_per_second < Self::SHORTFALL * asked {
            self.warned = true;
            return Some(refresh);
        }
        None
    }

    /// A flush or new caps: the next frame begins a new span (a warning given stays given).
    pub fn restart(&mut self) {
        *self = Self {
            warned: self.warned,
            ..Self::default()
        };
    }
}

/// One frame whose model, if any, runs on the calling thread: it runs when `cadence` says so or
/// when `model_mask` holds no mask of this frame's size (the first frame of a size always gets
/// its own). Returns the model's time when it ran.
pub fn update_in_place(
    segmenter: &mut Segmenter,
    cadence: &mut MaskCadence,
    model_mask: &mut ModelMask,
    frame: &ImageRef<'_>,
    interval: u32,
) -> Result<Option<Duration>, SegmenterError> {
    let mut ran = None;
    if cadence.due(interval) || !model_mask.fits(frame.width, frame.height) {
        model_mask.remake(frame.width, frame.height, |mask| {
            ran = Some(segmenter.compute_mask(frame, mask)?);
            Ok::<(), SegmenterError>(())
        })?;
        segmenter.swap_model_foreground(model_mask.foreground_buffer());
        cadence.ran();
    }
    cadence.advance();
    Ok(ran)
}

/// Where a queued frame's mask will come from.
enum MaskSource<R> {
    Requested(Ticket),
    Arrived(R),
    /// The mask of the frame before it, which must leave first.
    Reuse,
}

/// A frame leaving the queue, with what its mask needs.
#[derive(Debug, PartialEq, Eq)]
pub enum Ready<R> {
    /// The model's result for this frame.
    Inferred(R),
    /// Reuse the mask of the frame before.
    Reuse,
}

/// Frames in arrival order with model requests in flight for some of them. At most `depth`
/// requests run at once and at most about `depth` frames wait ahead of a new one, so upstream
/// buffer pools are not drained; frames leave in the order they came.
pub struct FrameQueue<F, J: Send + 'static, R: Send + 'static> {
    entries: VecDeque<(F, MaskSource<R>)>,
    requests: RequestPool<J, R>,
}

impl<F, J: Send + 'static, R: Send + 'static> std::fmt::Debug for FrameQueue<F, J, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameQueue")
            .field("frames", &self.entries.len())
            .field("depth", &self.depth())
            .finish()
    }
}

impl<F, J: Send + 'static, R: Send + 'static> FrameQueue<F, J, R> {
    /// A queue whose requests run on `requests`; its thread count is the depth.
    pub fn new(requests: RequestPool<J, R>) -> Self {
        Self {
            entries: VecDeque::new(),
            requests,
        }
    }

    /// How many requests may be in flight.
    pub fn depth(&self) -> usize {
        self.requests.threads()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Takes `frame` in, with the model `job` for it or `None` to reuse the mask of the frame
    /// before. First waits, if the queue is full, for the oldest request in flight.
    pub fn push(&mut self, frame: F, job: Option<J>) -> Result<(), Interrupted> {
        let depth = self.depth();
        while (job.is_some() && self.requested() >= depth) || self.entries.len() > depth {
            if !self.wait_oldest()? {
                break;
            }
        }
        let source = match job {
            Some(job) => MaskSource::Requested(self.requests.submit(job)),
            None => MaskSource::Reuse,
        };
        self.entries.push_back((frame, source));
        Ok(())
    }

    /// The oldest frame, if its mask can be made now; with `wait`, waits for its request.
    pub fn pop(&mut self, wait: bool) -> Result<Option<(F, Ready<R>)>, Interrupted> {
        let Some((_, source)) = self.entries.front_mut() else {
            return Ok(None);
        };
        if let MaskSource::Requested(ticket) = *source {
            let result = if wait {
                self.requests.wait(ticket)?
            } else {
                match self.requests.take(ticket) {
                    Some(result) => result,
                    None => return Ok(None),
                }
            };
            *source = MaskSource::Arrived(result);
        }
        let (frame, source) = self.entries.pop_front().expect("looked at above");
        let ready = match source {
            MaskSource::Arrived(result) => Ready::Inferred(result),
            MaskSource::Reuse => Ready::Reuse,
            MaskSource::Requested(_) => unreachable!("replaced above"),
        };
        Ok(Some((frame, ready)))
    }

    /// Drops every frame (a flush); requests in flight end unread.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.requests.forget_all();
    }

    /// A handle that wakes a streaming thread waiting in `push` or `pop`.
    pub fn interrupter(&self) -> std::sync::Arc<dyn crate::inference::requests::Interruptible> {
        self.requests.interrupter()
    }

    fn requested(&self) -> usize {
        self.entries
            .iter()
            .filter(|(_, source)| matches!(source, MaskSource::Requested(_)))
            .count()
    }

    /// Waits for the oldest request in flight; false when none is.
    fn wait_oldest(&mut self) -> Result<bool, Interrupted> {
        let Some(source) = self
            .entries
            .iter_mut()
            .map(|(_, source)| source)
            .find(|source| matches!(source, MaskSource::Requested(_)))
        else {
            return Ok(false);
        };
        let MaskSource::Requested(ticket) = *source else {
            unreachable!("found above");
        };
        *source = MaskSource::Arrived(self.requests.wait(ticket)?);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::imageops::{ImageRef, PixelLayout};
    use crate::inference::testing::ConstantMaskModel;
    use crate::segmentation::ModelInput;
    use crate::segmentation::Segmenter;
    use crate::segmentation::catalog::ModelProfile;

    /// Frames at `fps` for `seconds` with a mask every `every`th frame, through a watch.
    fn watch(
        watch: &mut RefreshWatch,
        fps: u32,
        seconds: u32,
        every: u32,
        interval: u32,
    ) -> Vec<SlowRefresh> {
        (0..fps * seconds)
            .filter_map(|i| {
                let timestamp = Duration::from_secs(u64::from(i)) / fps;
                watch.frame(timestamp, u32::from(i % every == 0), interval)
            })
            .collect()
    }

    #[test]
    fn a_mask_every_frame_keeps_up_and_says_nothing() {
        assert!(watch(&mut RefreshWatch::default(), 30, 20, 1, 1).is_empty());
        // Every other frame is what mask-interval=2 asks.
        assert!(watch(&mut RefreshWatch::default(), 30, 20, 2, 2).is_empty());
    }

    #[test]
    fn a_slow_model_is_reported_once_with_its_rate_and_the_frame_rate() {
        let mut refresh = RefreshWatch::default();
        // A mask every 25th frame at 30 fps: 1.2 a second.
        let reports = watch(&mut refresh, 30, 20, 25, 1);
        assert_eq!(reports.len(), 1, "{reports:?}");
        let report = reports[0];
        // Three seconds hold three or four of them.
        assert!((report.masks_per_second - 1.2).abs() <= 0.25, "{report:?}");
        assert!((report.frames_per_second - 30.0).abs() < 0.5, "{report:?}");
        // Said once, even after a restart.
        refresh.restart();
        assert!(watch(&mut refresh, 30, 10, 25, 1).is_empty());
    }

    #[test]
    fn mask_interval_lowers_what_is_asked() {
        // A mask every 3rd frame: too slow for mask-interval=1 or 2, what 3 asks for.
        assert_eq!(watch(&mut RefreshWatch::default(), 30, 10, 3, 1).len(), 1);
        assert_eq!(watch(&mut RefreshWatch::default(), 30, 10, 3, 2).len(), 1);
        assert!(watch(&mut RefreshWatch::default(), 30, 10, 3, 3).is_empty());
    }

    #[test]
    fn timestamps_going_back_start_a_new_span() {
        let mut refresh = RefreshWatch::default();
        for i in 0..60u32 {
            // Two seconds, then a seek back to zero, twice: no span lasts three seconds.
            let timestamp = Duration::from_millis(u64::from(i % 60) * 1000 / 30);
            assert_eq!(refresh.frame(timestamp, 0, 1), None);
        }
        assert_eq!(watch(&mut refresh, 30, 2, 30, 1), vec![]);
    }

    #[test]
    fn cadence_runs_the_first_frame_then_every_interval() {
        let mut cadence = MaskCadence::default();
        let runs: Vec<bool> = (0..7).map(|_| cadence.next_frame(3)).collect();
        assert_eq!(runs, [true, false, false, true, false, false, true]);
        cadence.restart();
        assert!(cadence.next_frame(3), "a restart runs the next frame");
        assert!(!cadence.next_frame(3));
        let mut every = MaskCadence::default();
        assert!((0..4).all(|_| every.next_frame(1)));
        // Interval 0 is read as 1 rather than never running.
        assert!((0..4).all(|_| every.next_frame(0)));
    }

    #[test]
    fn cadence_counts_frames_that_could_not_hand_over_a_run() {
        // Asynchronous mode: the model was due but busy, so the frame only advances.
        let mut cadence = MaskCadence::default();
        assert!(cadence.next_frame(2));
        cadence.advance();
        assert!(cadence.due(2));
        cadence.advance();
        assert!(cadence.due(2), "stays due until a run is handed over");
        cadence.ran();
        cadence.advance();
        assert!(!cadence.due(2));
    }

    /// A queue of numbered frames whose "model" multiplies by ten after `delay`, counting the
    /// most jobs that ran at once.
    fn queue(depth: usize, delay: Duration) -> (FrameQueue<u32, u32, u32>, Arc<AtomicUsize>) {
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let most_seen = most.clone();
        let pool = RequestPool::new("test", depth, move |job: u32| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(delay);
            running.fetch_sub(1, Ordering::SeqCst);
            job * 10
        })
        .unwrap();
        (FrameQueue::new(pool), most_seen)
    }

    /// Pushes frames 0..count (every `interval`th with a job) and collects what leaves, in order.
    fn run_frames(
        queue: &mut FrameQueue<u32, u32, u32>,
        count: u32,
        interval: u32,
    ) -> Vec<(u32, Ready<u32>)> {
        let mut out = Vec::new();
        let mut cadence = MaskCadence::default();
        for frame in 0..count {
            let job = cadence.next_frame(interval).then_some(frame);
            queue.push(frame, job).unwrap();
            assert!(queue.len() <= 2 * queue.depth() + 1, "queue bounded");
            while let Some(done) = queue.pop(false).unwrap() {
                out.push(done);
            }
        }
        while let Some(done) = queue.pop(true).unwrap() {
            out.push(done);
        }
        out
    }

    #[test]
    fn frames_leave_in_order_with_their_own_results() {
        for depth in [1, 2, 4] {
            let (mut queue, most) = queue(depth, Duration::from_millis(5));
            let out = run_frames(&mut queue, 12, 1);
            let expected: Vec<_> = (0..12).map(|f| (f, Ready::Inferred(f * 10))).collect();
            assert_eq!(out, expected, "depth {depth}");
            assert!(most.load(Ordering::SeqCst) <= depth);
            assert!(queue.is_empty());
        }
    }

    #[test]
    fn several_requests_are_in_flight_at_once_up_to_the_depth() {
        let (mut queue, most) = queue(3, Duration::from_millis(30));
        run_frames(&mut queue, 9, 1);
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn reused_masks_leave_after_the_frame_that_made_them() {
        let (mut queue, _) = queue(1, Duration::from_millis(10));
        let out = run_frames(&mut queue, 7, 3);
        let expected = vec![
            (0, Ready::Inferred(0)),
            (1, Ready::Reuse),
            (2, Ready::Reuse),
            (3, Ready::Inferred(30)),
            (4, Ready::Reuse),
            (5, Ready::Reuse),
            (6, Ready::Inferred(60)),
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn clear_drops_frames_and_their_requests() {
        let (mut queue, _) = queue(2, Duration::from_millis(20));
        queue.push(1, Some(1)).unwrap();
        queue.push(2, Some(2)).unwrap();
        queue.clear();
        assert!(queue.is_empty());
        assert_eq!(queue.pop(true).unwrap(), None);
        queue.push(3, Some(3)).unwrap();
        assert_eq!(queue.pop(true).unwrap(), Some((3, Ready::Inferred(30))));
    }

    #[test]
    fn an_interrupted_queue_does_not_wait() {
        // A model run of 3 s, so a queue that waited for it is told from one that did not
        // even on a loaded machine.
        let (mut queue, _) = queue(1, Duration::from_secs(3));
        queue.push(1, Some(1)).unwrap();
        queue.interrupter().set_interrupted(true);
        let started = std::time::Instant::now();
        assert_eq!(queue.push(2, Some(2)), Err(Interrupted));
        assert_eq!(queue.pop(true), Err(Interrupted));
        assert!(started.elapsed() < Duration::from_millis(1500));
    }

    #[test]
    fn the_queue_runs_a_segmentation_model_in_order() {
        // The element's use: tensors in, model runs out, masks made in arrival order.
        let segmenter = Segmenter::new(
            Arc::new(ConstantMaskModel::new(8)),
            ModelProfile {
                input_size: (8, 8),
                ..ModelProfile::SELFIE
            },
        )
        .unwrap();
        let model = segmenter.model.clone();
        let pool =
            RequestPool::new("test", 2, move |tensor: ModelInput| model.run(&tensor)).unwrap();
        let mut queue = FrameQueue::new(pool);
        let mut preparer = segmenter.fresh_copy().preparer;
        for level in [10u8, 20, 30, 40] {
            let pixels = vec![level; 8 * 8 * 3];
            let mut tensor = ModelInput::default();
            preparer
                .prepare(
                    &ImageRef::packed(&pixels, 8, 8, PixelLayout::RGB),
                    &mut tensor,
                )
                .unwrap();
            queue.push(level, Some(tensor)).unwrap();
        }
        let mut finisher = segmenter.fresh_copy().finisher;
        for level in [10u8, 20, 30, 40] {
            let (frame, Ready::Inferred(run)) = queue.pop(true).unwrap().unwrap() else {
                panic!("every frame ran the model");
            };
            assert_eq!(frame, level);
            let mut mask = vec![0u8; 4 * 4];
            finisher
                .finish(&run.unwrap().outputs, 4, 4, &mut mask)
                .unwrap();
            // The constant model answers with the input's mean: the frame's own level.
            assert!(mask.iter().all(|&v| v == level), "{mask:?}");
        }
    }

    #[test]
    fn in_place_runs_follow_the_interval_and_every_new_frame_size() {
        let mut segmenter = Segmenter::new(
            Arc::new(ConstantMaskModel::new(8)),
            ModelProfile {
                input_size: (8, 8),
                ..ModelProfile::SELFIE
            },
        )
        .unwrap();
        let (mut cadence, mut model_mask) = (MaskCadence::default(), ModelMask::default());
        let mut shown = Vec::new();
        for (level, width) in [(10u8, 4), (20, 4), (30, 4), (40, 6), (50, 6), (60, 6)] {
            let pixels = vec![level; width * 4 * 3];
            let frame = ImageRef::packed(&pixels, width, 4, PixelLayout::RGB);
            let ran =
                update_in_place(&mut segmenter, &mut cadence, &mut model_mask, &frame, 2).unwrap();
            assert!(model_mask.fits(width, 4));
            shown.push((model_mask.pixels()[0], ran.is_some()));
        }
        // Every second frame runs, and the first frame of a new size runs whatever the turn.
        assert_eq!(
            shown,
            [
                (10, true),
                (10, false),
                (30, true),
                (40, true),
                (40, false),
                (60, true)
            ]
        );
    }

    #[test]
    fn a_slow_refresh_reads_with_both_rates_and_the_interval_asked() {
        let slow = SlowRefresh {
            masks_per_second: 4.0,
            frames_per_second: 30.0,
            interval: 2,
        };
        let text = slow.describe("u2netp");
        assert!(
            text.starts_with(
                "model u2netp refreshes the mask 4.0 times a second, below the video's 30.0 \
                 frames a second (mask-interval=2 asks for 15.0)"
            ),
            "{text}"
        );
    }
}
