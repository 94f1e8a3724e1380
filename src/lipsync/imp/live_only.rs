//! What `lipsync` does only in live pipelines: frames pushed from the source pad's task through
//! the output queue, lateness against the clock (for catch-up), and the thread that fills stalls
//! in the audio with silence.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::{Audio, CAT, Lipsync, STALL_GRACE, State, own_latency};
use crate::lipsync::output::Item;
use crate::talking_head::live;
use crate::talking_head::speech::SAMPLE_RATE;

/// What the stall filler, the streaming thread and the flush events share.
#[derive(Default)]
pub(super) struct StallWatch {
    pub(super) stop: AtomicBool,
    pub(super) flushing: AtomicBool,
    /// When the streaming thread last left `chain`, none while it is inside: audio that is late
    /// only because this element is slow (upstream waits on `chain`) is not missing.
    pub(super) chain_idle_since: Mutex<Option<std::time::Instant>>,
    pub(super) clock_id: Mutex<Option<gst::SingleShotClockId>>,
    pub(super) thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl StallWatch {
    pub(super) fn wake(&self) {
        if let Some(id) = self.clock_id.lock().unwrap().as_ref() {
            id.unschedule();
        }
    }
}

impl Lipsync {
    /// Sends a frame or a serialized event downstream: through the output queue once the
    /// pipeline is known to be live, straight from this thread before and otherwise.
    pub(super) fn send(&self, item: Item) -> Result<gst::FlowSuccess, gst::FlowError> {
        if self.live_output.load(Ordering::SeqCst) {
            return self.output.push(item);
        }
        match item {
            Item::Buffer(buffer) => self.srcpad.push(buffer),
            Item::Event(event) => {
                if self.srcpad.push_event(event) {
                    Ok(gst::FlowSuccess::Ok)
                } else {
                    Err(gst::FlowError::Error)
                }
            }
        }
    }

    /// Live: the source pad's task pushes what the queue holds, so waiting at a live sink never
    /// holds back the audio.
    pub(super) fn start_output_task(&self) {
        self.live_output.store(true, Ordering::SeqCst);
        let element = self.obj().downgrade();
        let started = self.srcpad.start_task(move || {
            let Some(element) = element.upgrade() else {
                return;
            };
            element.imp().push_one_queued();
        });
        if let Err(err) = started {
            gst::element_imp_error!(
                self,
                gst::CoreError::Thread,
                ("could not start the output task: {}", err)
            );
        }
    }

    pub(super) fn push_one_queued(&self) {
        let pause = || {
            let _ = self.srcpad.pause_task();
        };
        match self.output.pop() {
            None => pause(),
            Some(Item::Buffer(buffer)) => {
                let flow = self.srcpad.push(buffer);
                self.output.set_flow(flow);
                match flow {
                    Ok(_) => {}
                    Err(gst::FlowError::Flushing) | Err(gst::FlowError::Eos) => pause(),
                    Err(err) => {
                        gst::element_imp_error!(
                            self,
                            gst::StreamError::Failed,
                            ("Internal data stream error."),
                            ["streaming stopped, reason {:?}", err]
                        );
                        self.srcpad.push_event(gst::event::Eos::new());
                        pause();
                    }
                }
            }
            Some(Item::Event(event)) => {
                let eos = matches!(event.view(), gst::EventView::Eos(_));
                self.srcpad.push_event(event);
                if eos {
                    pause();
                }
            }
        }
    }

    /// Whether a frame stamped `pts` would reach a live sink after its time if the U-Net ran
    /// on it now.
    pub(super) fn would_be_late(&self, state: &State, pts: gst::ClockTime) -> bool {
        if state.live != Some(true) {
            return false;
        }
        // A sink that does not synchronise sets no latency (0); the element still keeps the
        // pace it reports, so a frame is due no later than its own latency after its time.
        let own = state.upstream_latency + own_latency(state.model_latency, true);
        let latency = self
            .pipeline_latency
            .lock()
            .unwrap()
            .map_or(own, |pipeline| pipeline.max(own));
        let (Some(running), Some(now)) = (
            state.segment.to_running_time(pts),
            self.obj().current_running_time(),
        ) else {
            return false;
        };
        gst::trace!(
            CAT,
            imp = self,
            "frame at {pts}: running {running}, now {now}, latency {latency}, U-Net about {:?}",
            state.model_estimate
        );
        // Twice the usual U-Net time: room for a slower run and for the elements after this.
        live::would_be_late(
            now.nseconds(),
            2 * state.model_estimate.as_nanos() as u64,
            (running + latency).nseconds(),
        )
    }

    /// In a live pipeline: a thread that wakes when the next audio is overdue (its time plus
    /// upstream's latency plus [`STALL_GRACE`]) and, if none came, adds silence up to the time
    /// the audio should have reached, so frames keep coming at 25 fps through the stall.
    pub(super) fn start_stall_watch(&self) {
        let watch = self.stall_watch.clone();
        watch.stop.store(false, Ordering::SeqCst);
        let element = self.obj().downgrade();
        let spawned = std::thread::Builder::new()
            .name("lipsync-stall".into())
            .spawn(move || {
                while !watch.stop.load(Ordering::SeqCst) {
                    let Some(element) = element.upgrade() else {
                        return;
                    };
                    element.imp().fill_stall(&watch);
                }
            });
        match spawned {
            Ok(thread) => *self.stall_watch.thread.lock().unwrap() = Some(thread),
            Err(err) => gst::warning!(CAT, imp = self, "no stall filler: {err}"),
        }
    }

    pub(super) fn stop_stall_watch(&self) {
        self.stall_watch.stop.store(true, Ordering::SeqCst);
        self.stall_watch.wake();
        if let Some(thread) = self.stall_watch.thread.lock().unwrap().take() {
            let _ = thread.join();
        }
    }

    /// One round of the stall filler: wait until the audio is overdue, then fill.
    pub(super) fn fill_stall(&self, watch: &StallWatch) {
        let pause = || std::thread::sleep(Duration::from_millis(40));
        let obj = self.obj();
        let (Some(clock), Some(base_time)) = (obj.clock(), obj.base_time()) else {
            return pause();
        };
        if obj.current_state() != gst::State::Playing || watch.flushing.load(Ordering::SeqCst) {
            return pause();
        }
        // The state lock is let go before any pause: the streaming thread needs it.
        let overdue_at = {
            let guard = self.state.lock().unwrap();
            guard.as_ref().and_then(|state| {
                let end = gst::ClockTime::from_nseconds(state.timeline.end()?);
                let running = state.segment.to_running_time(end)?;
                (!state.ended).then(|| running + state.upstream_latency + STALL_GRACE)
            })
        };
        let Some(overdue_at) = overdue_at else {
            return pause();
        };
        let id = clock.new_single_shot_id(base_time + overdue_at);
        *watch.clock_id.lock().unwrap() = Some(id.clone());
        if watch.stop.load(Ordering::SeqCst) || watch.flushing.load(Ordering::SeqCst) {
            return;
        }
        let (result, _) = id.wait();
        *watch.clock_id.lock().unwrap() = None;
        if result != Ok(gst::ClockSuccess::Ok) && result != Err(gst::ClockError::Early) {
            return;
        }
        let chain_idle = watch
            .chain_idle_since
            .lock()
            .unwrap()
            .is_some_and(|since| since.elapsed() >= Duration::from(STALL_GRACE));
        if !chain_idle {
            // The streaming thread is busy (or just was): the audio waits upstream, it is not
            // missing. Look again a frame later.
            return pause();
        }
        let _push = self.push_lock.lock().unwrap();
        if watch.stop.load(Ordering::SeqCst) || watch.flushing.load(Ordering::SeqCst) {
            return;
        }
        let Some(now) = obj.current_running_time() else {
            return;
        };
        let silence = {
            let mut guard = self.state.lock().unwrap();
            let Some(state) = guard.as_mut() else {
                return;
            };
            if state.ended {
                return;
            }
            let due = now.saturating_sub(state.upstream_latency + STALL_GRACE);
            match state.segment.position_from_running_time(due) {
                Some(position) => state.timeline.silence_until(position.nseconds()),
                None => 0,
            }
        };
        if silence > 0 {
            gst::debug!(
                CAT,
                imp = self,
                "no audio for {} ms: filling with silence",
                silence * 1000 / u64::from(SAMPLE_RATE)
            );
            if let Err(err) = self.feed(Audio::Silence(silence)) {
                gst::debug!(CAT, imp = self, "stall frames not pushed: {err:?}");
            }
        }
    }
}
