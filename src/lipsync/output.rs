//! The frames (and the events between them) waiting for `lipsync`'s source pad task in a live
//! pipeline. A live sink holds each frame until its time; pushing from the audio's streaming
//! thread would hold the next audio back for as long, so a model slower than 25 fps could never
//! run ahead. Frames go into this queue instead and a pad task pushes them, as `queue` would.
//!
//! When the queue is empty the task sleeps until something changes (an item, a flush, a wake
//! from the element) or until a clock alarm it armed here rings: `lipsync` arms one for the
//! time the next audio is overdue. Every change unschedules the alarm, so nothing polls.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

pub enum Item {
    Buffer(gst::Buffer),
    Event(gst::Event),
}

/// What [`OutputQueue::try_pop`] found.
pub enum Popped {
    Item(Item),
    Empty,
    Flushing,
}

struct Inner {
    items: VecDeque<Item>,
    flushing: bool,
    /// What the last push downstream returned: the streaming thread returns it upstream.
    flow: Result<gst::FlowSuccess, gst::FlowError>,
    /// Counts changes, so a waiter that looked before one does not sleep through it.
    generation: u64,
    /// The clock wait of a task with nothing to push, unscheduled by the next change.
    alarm: Option<gst::SingleShotClockId>,
}

impl Inner {
    fn changed(&mut self) {
        self.generation += 1;
        if let Some(alarm) = self.alarm.take() {
            alarm.unschedule();
        }
    }
}

pub struct OutputQueue {
    inner: Mutex<Inner>,
    changed: Condvar,
    capacity: usize,
}

impl OutputQueue {
    /// A queue that holds at most `capacity` items before `push` waits.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                flushing: false,
                flow: Ok(gst::FlowSuccess::Ok),
                generation: 0,
                alarm: None,
            }),
            changed: Condvar::new(),
            capacity,
        }
    }

    /// Adds an item, waiting while the queue is full; returns the last downstream flow (an
    /// error stops the producer as a failed push would).
    pub fn push(&self, item: Item) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut inner = self.inner.lock().unwrap();
        while inner.items.len() >= self.capacity && !inner.flushing && inner.flow.is_ok() {
            inner = self.changed.wait(inner).unwrap();
        }
        if inner.flushing {
            return Err(gst::FlowError::Flushing);
        }
        inner.flow?;
        inner.items.push_back(item);
        inner.changed();
        self.changed.notify_all();
        Ok(gst::FlowSuccess::Ok)
    }

    /// The change count now: pass it to [`OutputQueue::wait_for_change`] or
    /// [`OutputQueue::arm`] after looking at the queue.
    pub fn generation(&self) -> u64 {
        self.inner.lock().unwrap().generation
    }

    /// The next item without waiting.
    pub fn try_pop(&self) -> Popped {
        let mut inner = self.inner.lock().unwrap();
        if inner.flushing {
            return Popped::Flushing;
        }
        match inner.items.pop_front() {
            Some(item) => {
                self.changed.notify_all();
                Popped::Item(item)
            }
            None => Popped::Empty,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.inner.lock().unwrap().items.is_empty()
    }

    /// Sleeps until something changed since `seen` (see [`OutputQueue::generation`]).
    pub fn wait_for_change(&self, seen: u64) {
        let mut inner = self.inner.lock().unwrap();
        while inner.generation == seen && !inner.flushing {
            inner = self.changed.wait(inner).unwrap();
        }
    }

    /// Hands over the clock wait the caller is about to make, for the next change to
    /// unschedule; false (wait not to be made) if something changed since `seen` already.
    pub fn arm(&self, alarm: gst::SingleShotClockId, seen: u64) -> bool {
        let mut inner = self.inner.lock().unwrap();
        if inner.generation != seen || inner.flushing {
            return false;
        }
        inner.alarm = Some(alarm);
        true
    }

    /// The armed clock wait has returned.
    pub fn disarm(&self) {
        self.inner.lock().unwrap().alarm = None;
    }

    /// Something the waiting task should look at again has changed outside the queue.
    pub fn wake(&self) {
        self.inner.lock().unwrap().changed();
        self.changed.notify_all();
    }

    /// The next item, waiting for one; none once flushing.
    #[cfg(test)]
    pub fn pop(&self) -> Option<Item> {
        loop {
            let seen = self.generation();
            match self.try_pop() {
                Popped::Item(item) => return Some(item),
                Popped::Flushing => return None,
                Popped::Empty => self.wait_for_change(seen),
            }
        }
    }

    /// Flushing drops what waits and wakes both sides; clearing it starts afresh.
    pub fn set_flushing(&self, flushing: bool) {
        let mut inner = self.inner.lock().unwrap();
        inner.flushing = flushing;
        inner.items.clear();
        if !flushing {
            inner.flow = Ok(gst::FlowSuccess::Ok);
        }
        inner.changed();
        self.changed.notify_all();
    }

    pub fn set_flow(&self, flow: Result<gst::FlowSuccess, gst::FlowError>) {
        let mut inner = self.inner.lock().unwrap();
        inner.flow = flow;
        self.changed.notify_all();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gst::prelude::*;
    use std::sync::Arc;

    fn buffer(pts: u64) -> Item {
        let mut buffer = gst::Buffer::new();
        buffer
            .get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(pts));
        Item::Buffer(buffer)
    }

    fn pts(item: Item) -> u64 {
        match item {
            Item::Buffer(buffer) => buffer.pts().unwrap().mseconds(),
            Item::Event(_) => panic!("an event"),
        }
    }

    #[test]
    fn items_come_out_in_order_and_a_full_queue_waits() {
        gst::init().unwrap();
        let queue = Arc::new(OutputQueue::new(2));
        queue.push(buffer(0)).unwrap();
        queue.push(buffer(40)).unwrap();
        let producer = {
            let queue = queue.clone();
            std::thread::spawn(move || queue.push(buffer(80)))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(queue.len(), 2, "the third waits for room");
        assert_eq!(pts(queue.pop().unwrap()), 0);
        producer.join().unwrap().unwrap();
        assert_eq!(pts(queue.pop().unwrap()), 40);
        assert_eq!(pts(queue.pop().unwrap()), 80);
    }

    #[test]
    fn flushing_wakes_both_sides_and_a_downstream_error_reaches_the_producer() {
        gst::init().unwrap();
        let queue = Arc::new(OutputQueue::new(1));
        let consumer = {
            let queue = queue.clone();
            std::thread::spawn(move || queue.pop().is_none())
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        queue.set_flushing(true);
        assert!(consumer.join().unwrap(), "pop returns none when flushing");
        assert_eq!(queue.push(buffer(0)), Err(gst::FlowError::Flushing));
        queue.set_flushing(false);
        queue.push(buffer(0)).unwrap();
        queue.set_flow(Err(gst::FlowError::NotLinked));
        assert_eq!(queue.push(buffer(40)), Err(gst::FlowError::NotLinked));
        queue.set_flushing(true);
        queue.set_flushing(false);
        assert_eq!(queue.len(), 0);
        queue.push(buffer(80)).unwrap();
    }

    #[test]
    fn a_push_or_a_wake_unschedules_the_armed_alarm() {
        gst::init().unwrap();
        let clock = gst::SystemClock::obtain();
        let queue = Arc::new(OutputQueue::new(4));
        for change in [0, 1] {
            let seen = queue.generation();
            let alarm = clock.new_single_shot_id(clock.time() + gst::ClockTime::from_seconds(600));
            assert!(queue.arm(alarm.clone(), seen));
            let changer = {
                let queue = queue.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    if change == 0 {
                        queue.push(buffer(0)).unwrap();
                    } else {
                        queue.wake();
                    }
                })
            };
            let (result, _) = alarm.wait();
            assert_eq!(result, Err(gst::ClockError::Unscheduled));
            queue.disarm();
            changer.join().unwrap();
            // A change before arming: the caller is told not to wait.
            let stale = queue.generation() - 1;
            let late = clock.new_single_shot_id(clock.time() + gst::ClockTime::from_seconds(600));
            assert!(!queue.arm(late, stale));
        }
        assert!(matches!(queue.try_pop(), Popped::Item(_)));
        assert!(matches!(queue.try_pop(), Popped::Empty));
    }
}
