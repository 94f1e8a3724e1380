//! What `lipsync` does only in live pipelines: frames pushed from the source pad's task through
//! the output queue, lateness against the clock (for catch-up), and stalls in the audio filled
//! with silence by that same task: with nothing to push, it waits on the clock until the next
//! audio is overdue (any change to the queue wakes it first), and fills only if none came.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::{Audio, CAT, FRAME_DURATION, Lipsync, SILENCE_CHUNK, STALL_GRACE, State, own_latency};
use crate::lipsync::output::{Item, Popped};
use crate::talking_head::live;
use crate::talking_head::speech::SAMPLE_RATE;

/// What the stall filler reads besides the state, set by the streaming thread and state changes.
#[derive(Default)]
pub(super) struct StallWatch {
    /// The element is PLAYING: a live source produces, so missing audio is a stall.
    pub(super) playing: AtomicBool,
    /// The clock time the streaming thread last left `chain`, none while it is inside: audio
    /// that is late only because this element is slow (upstream waits on `chain`) is not
    /// missing.
    pub(super) chain_idle_since: Mutex<Option<gst::ClockTime>>,
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
        let seen = self.output.generation();
        match self.output.try_pop() {
            Popped::Flushing => pause(),
            Popped::Empty => self.wait_or_fill_stall(seen),
            Popped::Item(Item::Buffer(buffer)) => {
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
            Popped::Item(Item::Event(event)) => {
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

    /// Nothing to push: sleeps until the queue changes, or on the clock until the next audio
    /// is overdue, and then fills the stall.
    fn wait_or_fill_stall(&self, seen: u64) {
        let (Some(deadline), Some(clock)) = (self.stall_deadline(), self.obj().clock()) else {
            return self.output.wait_for_change(seen);
        };
        let alarm = clock.new_single_shot_id(deadline);
        if !self.output.arm(alarm.clone(), seen) {
            // Something came or changed meanwhile: look again.
            return;
        }
        let (result, _) = alarm.wait();
        self.output.disarm();
        if matches!(result, Ok(_) | Err(gst::ClockError::Early)) {
            self.fill_stall(&clock);
        }
    }

    /// The clock time a frame's worth of audio is overdue: the end of the audio so far plus
    /// upstream's latency, [`STALL_GRACE`] and one frame (so a stall is filled a frame at a
    /// time, never a few samples in a spin), and no earlier than [`STALL_GRACE`] after the
    /// streaming thread last left `chain`. None while not playing, before any audio, after the
    /// end, or while the streaming thread is in `chain` (it wakes the task when it leaves).
    fn stall_deadline(&self) -> Option<gst::ClockTime> {
        if !self.stall_watch.playing.load(Ordering::SeqCst) {
            return None;
        }
        let idle_since = (*self.stall_watch.chain_idle_since.lock().unwrap())?;
        let base_time = self.obj().base_time()?;
        let overdue_at = {
            let guard = self.state.lock().unwrap();
            let state = guard.as_ref()?;
            let end = gst::ClockTime::from_nseconds(state.timeline.end()?);
            let running = state.segment.to_running_time(end)?;
            let overdue = state.upstream_latency + STALL_GRACE + FRAME_DURATION;
            (!state.ended).then(|| running + overdue)?
        };
        Some((base_time + overdue_at).max(idle_since + STALL_GRACE))
    }

    /// The audio is overdue: adds silence up to the time it should have reached (a second at
    /// most a round, so the frames fit the queue this task empties), and pushes its frames.
    fn fill_stall(&self, clock: &gst::Clock) {
        // The streaming thread holds the lock while it feeds (perhaps waiting for this task to
        // make room in the queue): it is not stalled then. Its next frame, or its leaving
        // `chain`, is a change that wakes this task; until then there is nothing to do.
        let seen = self.output.generation();
        let Ok(_push) = self.push_lock.try_lock() else {
            return self.output.wait_for_change(seen);
        };
        let now = clock.time();
        let chain_idle = self
            .stall_watch
            .chain_idle_since
            .lock()
            .unwrap()
            .is_some_and(|since| now >= since + STALL_GRACE);
        if !chain_idle || !self.output.is_empty() {
            return;
        }
        let Some(running_now) = self.obj().current_running_time() else {
            return;
        };
        let silence = {
            let mut guard = self.state.lock().unwrap();
            let Some(state) = guard.as_mut() else {
                return;
            };
            let Some(end) = state.timeline.end() else {
                return;
            };
            if state.ended {
                return;
            }
            let due = running_now.saturating_sub(state.upstream_latency + STALL_GRACE);
            let one_second = gst::ClockTime::SECOND.nseconds();
            match state.segment.position_from_running_time(due) {
                Some(position) => state
                    .timeline
                    .silence_until(position.nseconds().min(end + one_second)),
                None => 0,
            }
        };
        if silence > 0 {
            debug_assert!(silence <= SILENCE_CHUNK as u64 + 1);
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
