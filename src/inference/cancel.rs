//! Giving up on a server's requests: a flush or a stop cancels every request of its element that
//! is under way, so that neither a streaming thread nor a state change waits on a server. A
//! request notes the [`Epoch`] it started in; it is cancelled while the element flushes and
//! once a flush or a stop has begun since, even after the flush ends (its frame is gone).

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::requests::Interruptible;

/// When a request started, as its element's flushes count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch(u64);

#[derive(Debug, Default)]
struct Flushes {
    flushing: bool,
    /// Flushes and stops begun so far.
    begun: u64,
}

/// The requests of one element that a flush or a stop gives up on.
#[derive(Debug, Default)]
pub struct Cancellation {
    flushes: Mutex<Flushes>,
    changed: Condvar,
}

/// A request given up on: the element is flushing or stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cancelled: the element is flushing or stopping")]
pub struct Cancelled;

impl Cancellation {
    fn lock(&self) -> MutexGuard<'_, Flushes> {
        self.flushes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The epoch a request starting now belongs to.
    pub fn epoch(&self) -> Epoch {
        Epoch(self.lock().begun)
    }

    /// Whether a request of `epoch` has been given up on.
    pub fn is_cancelled(&self, epoch: Epoch) -> bool {
        let flushes = self.lock();
        flushes.flushing || flushes.begun != epoch.0
    }

    /// Waits `pause`, or less if a request of `epoch` is given up on meanwhile.
    pub fn pause(&self, epoch: Epoch, pause: Duration) -> Result<(), Cancelled> {
        let until = Instant::now() + pause;
        let mut flushes = self.lock();
        loop {
            if flushes.flushing || flushes.begun != epoch.0 {
                return Err(Cancelled);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            flushes = self
                .changed
                .wait_timeout(flushes, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Interruptible for Cancellation {
    fn set_interrupted(&self, on: bool) {
        let mut flushes = self.lock();
        if on && !flushes.flushing {
            flushes.begun += 1;
        }
        flushes.flushing = on;
        drop(flushes);
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_cancels_the_requests_begun_before_it_for_good() {
        let cancellation = Cancellation::default();
        let before = cancellation.epoch();
        assert!(!cancellation.is_cancelled(before));
        cancellation.set_interrupted(true);
        let during = cancellation.epoch();
        assert!(cancellation.is_cancelled(before) && cancellation.is_cancelled(during));
        cancellation.set_interrupted(false);
        assert!(cancellation.is_cancelled(before), "its frame was flushed");
        assert!(!cancellation.is_cancelled(cancellation.epoch()));
    }

    #[test]
    fn a_pause_ends_when_its_request_is_cancelled() {
        let cancellation = Cancellation::default();
        let epoch = cancellation.epoch();
        assert_eq!(cancellation.pause(epoch, Duration::from_millis(1)), Ok(()));
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                cancellation.set_interrupted(true);
            });
            // Returns on the flush: were it to wait the hour, the test would not end.
            assert_eq!(
                cancellation.pause(epoch, Duration::from_secs(3600)),
                Err(Cancelled)
            );
        });
    }
}
