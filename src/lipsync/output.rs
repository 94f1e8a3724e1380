//! The frames (and the events between them) waiting for `lipsync`'s source pad task in a live
//! pipeline. A live sink holds each frame until its time; pushing from the audio's streaming
//! thread would hold the next audio back for as long, so a model slower than 25 fps could never
//! run ahead. Frames go into this queue instead and a pad task pushes them, as `queue` would.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

pub enum Item {
    Buffer(gst::Buffer),
    Event(gst::Event),
}

struct Inner {
    items: VecDeque<Item>,
    flushing: bool,
    /// What the last push downstream returned: the streaming thread returns it upstream.
    flow: Result<gst::FlowSuccess, gst::FlowError>,
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
        self.changed.notify_all();
        Ok(gst::FlowSuccess::Ok)
    }

    /// The next item, waiting for one; none once flushing.
    pub fn pop(&self) -> Option<Item> {
        let mut inner = self.inner.lock().unwrap();
        loop {
            if inner.flushing {
                return None;
            }
            if let Some(item) = inner.items.pop_front() {
                self.changed.notify_all();
                return Some(item);
            }
            inner = self.changed.wait(inner).unwrap();
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
}
