//! Bounded retries of a remote model's requests: a request that failed for a reason that may
//! pass (server unreachable, overloaded, no answer in time) is sent again after a growing,
//! jittered pause (or the server's own `Retry-After`), at most `retries` times and within the
//! frame's deadline; any other failure, and the last one, is returned as it is. A flush or a
//! stop ends the tries and their pauses at once ([`Cancellation`]).

use std::time::{Duration, Instant};

use super::InferenceError;
use super::cancel::{Cancellation, Epoch};

/// The pause before the first retry; each further retry waits twice as long, up to
/// [`MAX_PAUSE`], less a random part of up to half so that clients that failed together do not
/// come back together.
pub const FIRST_PAUSE: Duration = Duration::from_millis(100);
pub const MAX_PAUSE: Duration = Duration::from_secs(2);
/// The longest `Retry-After` honoured: a server that asks for more is tried again after this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Called before each retry with the retry's number (from 1), the number allowed, the pause
/// before it and the failure that caused it, so an element can say so on the bus.
pub type RetryObserver = Box<dyn Fn(u32, u32, Duration, &InferenceError) + Send + Sync>;

/// How a remote model's requests are tried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Tries after the first, for transient failures only.
    pub retries: u32,
    /// Bounds each try.
    pub request_timeout: Duration,
    /// Bounds one frame's request, every try and pause together; `None`: only the tries'
    /// own bounds.
    pub frame_deadline: Option<Duration>,
    pub first_pause: Duration,
}

impl RetryPolicy {
    pub fn new(retries: u32, request_timeout: Duration, frame_deadline: Option<Duration>) -> Self {
        Self {
            retries,
            request_timeout,
            frame_deadline,
            first_pause: FIRST_PAUSE,
        }
    }

    /// The pause before retry `retry` (from 1); `random` in 0..1 picks the jitter. A server's
    /// `retry_after` is kept to when it is longer.
    pub fn pause(&self, retry: u32, retry_after: Option<Duration>, random: f64) -> Duration {
        let doublings = retry.saturating_sub(1).min(20);
        let full = (self.first_pause * (1u32 << doublings)).min(MAX_PAUSE.max(self.first_pause));
        let jittered = full.mul_f64(1.0 - 0.5 * random.clamp(0.0, 1.0));
        jittered.max(retry_after.unwrap_or_default().min(MAX_RETRY_AFTER))
    }

    /// Runs `request` until it succeeds, fails for good, runs out of retries or of the frame's
    /// deadline, or `cancellation` gives up on it. `model` names it in the deadline's error.
    pub fn run<T>(
        &self,
        model: &str,
        cancellation: &Cancellation,
        observer: Option<&RetryObserver>,
        mut request: impl FnMut(&Attempt<'_>) -> Result<T, InferenceError>,
    ) -> Result<T, InferenceError> {
        let epoch = cancellation.epoch();
        let deadline = self.frame_deadline.map(|d| Instant::now() + d);
        let mut retry = 0;
        let mut last_error = None;
        loop {
            if cancellation.is_cancelled(epoch) {
                return Err(InferenceError::Cancelled);
            }
            let timeout = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(self.past_deadline(model, last_error));
                    }
                    left.min(self.request_timeout)
                }
                None => self.request_timeout,
            };
            let attempt = Attempt {
                timeout,
                cancellation,
                epoch,
            };
            let error = match request(&attempt) {
                Err(_) if cancellation.is_cancelled(epoch) => {
                    return Err(InferenceError::Cancelled);
                }
                Err(error) if error.is_transient() && retry < self.retries => error,
                result => return result,
            };
            retry += 1;
            let pause = self.pause(retry, error.retry_after(), random_unit());
            if deadline.is_some_and(|deadline| Instant::now() + pause >= deadline) {
                return Err(self.past_deadline(model, Some(error)));
            }
            if let Some(observer) = observer {
                observer(retry, self.retries, pause, &error);
            }
            last_error = Some(error);
            cancellation
                .pause(epoch, pause)
                .map_err(|_| InferenceError::Cancelled)?;
        }
    }

    fn past_deadline(&self, model: &str, last_error: Option<InferenceError>) -> InferenceError {
        let deadline = self.frame_deadline.unwrap_or_default();
        let last = last_error.map_or(String::new(), |e| format!("; the last try: {e}"));
        InferenceError::Run(format!(
            "{model}: no answer within the frame's deadline of {} ms (property 'frame-deadline'){last}",
            deadline.as_millis()
        ))
    }
}

/// One try of a request: how long it may take, and whether its caller has given up on it
/// (a client that can stop waiting looks).
#[derive(Debug)]
pub struct Attempt<'a> {
    pub timeout: Duration,
    cancellation: &'a Cancellation,
    epoch: Epoch,
}

impl Attempt<'_> {
    pub fn is_cancelled(&self) -> bool {
        self.cancellation.is_cancelled(self.epoch)
    }
}

/// A number in 0..1, different at each call and in each process, for jitter.
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded per process and per instance: entropy without a crate.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::requests::Interruptible;
    use std::sync::{Arc, Mutex};

    fn unavailable(reason: &str, retry_after: Option<Duration>) -> InferenceError {
        InferenceError::Unavailable {
            reason: reason.into(),
            retry_after,
        }
    }

    /// Each try's timeout, as a request saw it.
    type Tries = Arc<Mutex<Vec<Duration>>>;

    /// A request that fails its first `failures` tries (transient or not), recording each
    /// try's timeout.
    fn flaky(
        failures: u32,
        transient: bool,
    ) -> (
        impl FnMut(&Attempt<'_>) -> Result<u32, InferenceError>,
        Tries,
    ) {
        let tries = Arc::new(Mutex::new(Vec::new()));
        let seen = tries.clone();
        let request = move |attempt: &Attempt<'_>| {
            let mut tries = seen.lock().unwrap();
            tries.push(attempt.timeout);
            let run = tries.len() as u32;
            if run <= failures {
                let reason = format!("failure {run}");
                return Err(if transient {
                    unavailable(&reason, None)
                } else {
                    InferenceError::Run(reason)
                });
            }
            Ok(run)
        };
        (request, tries)
    }

    fn policy(retries: u32) -> RetryPolicy {
        RetryPolicy {
            first_pause: Duration::from_millis(1),
            ..RetryPolicy::new(retries, Duration::from_secs(5), None)
        }
    }

    fn observed() -> (RetryObserver, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let observer: RetryObserver = Box::new(move |retry, of, _pause, error| {
            log.lock().unwrap().push(format!("{retry}/{of} {error}"));
        });
        (observer, seen)
    }

    #[test]
    fn transient_failures_are_retried_until_one_succeeds() {
        let (request, tries) = flaky(2, true);
        let (observer, seen) = observed();
        let cancellation = Cancellation::default();
        let result = policy(3).run("m", &cancellation, Some(&observer), request);
        assert_eq!(result.unwrap(), 3);
        assert_eq!(tries.lock().unwrap().len(), 3);
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "1/3 inference failed: failure 1",
                "2/3 inference failed: failure 2"
            ]
        );
    }

    #[test]
    fn the_last_failure_is_returned_once_the_retries_are_spent() {
        let (request, tries) = flaky(10, true);
        let err = policy(2)
            .run("m", &Cancellation::default(), None, request)
            .unwrap_err();
        assert_eq!(err.to_string(), "inference failed: failure 3");
        assert_eq!(tries.lock().unwrap().len(), 3);
    }

    #[test]
    fn other_failures_and_zero_retries_are_not_retried() {
        let (request, tries) = flaky(1, false);
        assert!(
            policy(5)
                .run("m", &Cancellation::default(), None, request)
                .is_err()
        );
        assert_eq!(tries.lock().unwrap().len(), 1);
        let (request, tries) = flaky(1, true);
        assert!(
            policy(0)
                .run("m", &Cancellation::default(), None, request)
                .is_err()
        );
        assert_eq!(tries.lock().unwrap().len(), 1);
    }

    #[test]
    fn pauses_double_with_up_to_half_taken_off_and_honour_retry_after() {
        let policy = RetryPolicy::new(9, Duration::from_secs(1), None);
        assert_eq!(policy.pause(1, None, 0.0), FIRST_PAUSE);
        assert_eq!(policy.pause(1, None, 1.0), FIRST_PAUSE / 2);
        assert_eq!(policy.pause(3, None, 0.0), FIRST_PAUSE * 4);
        assert_eq!(policy.pause(30, None, 0.0), MAX_PAUSE);
        let asked = Duration::from_secs(5);
        assert_eq!(policy.pause(1, Some(asked), 0.5), asked);
        assert_eq!(
            policy.pause(1, Some(Duration::from_secs(3600)), 0.5),
            MAX_RETRY_AFTER
        );
        let draws: Vec<f64> = (0..64).map(|_| random_unit()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        assert!(draws.iter().any(|&d| d != draws[0]), "the jitter varies");
    }

    #[test]
    fn the_frame_deadline_bounds_every_try_and_ends_the_retries() {
        let mut policy = policy(1000);
        policy.frame_deadline = Some(Duration::from_millis(200));
        policy.first_pause = Duration::from_millis(40);
        let (request, tries) = flaky(u32::MAX, true);
        let err = policy
            .run("'m' on host", &Cancellation::default(), None, request)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'m' on host: no answer within the frame's deadline of 200 ms")
                && err.contains("property 'frame-deadline'")
                && err.contains("failure"),
            "{err}"
        );
        let tries = tries.lock().unwrap();
        // 40 + 80 ms of pauses fit in 200 ms, the 160 ms after the third try do not.
        assert!(tries.len() < 5, "{tries:?}");
        assert!(tries.iter().all(|&t| t <= Duration::from_millis(200)));
    }

    #[test]
    fn a_flush_ends_the_tries_and_their_pauses() {
        let cancellation = Cancellation::default();
        let mut policy = policy(1000);
        policy.first_pause = Duration::from_secs(3600);
        let (request, tries) = flaky(u32::MAX, true);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                cancellation.set_interrupted(true);
            });
            // Without the flush this would pause for an hour.
            let err = policy.run("m", &cancellation, None, request).unwrap_err();
            assert!(matches!(err, InferenceError::Cancelled), "{err}");
        });
        assert_eq!(tries.lock().unwrap().len(), 1);
        // A request begun during the flush is not tried at all.
        let (request, tries) = flaky(0, true);
        assert!(policy.run("m", &cancellation, None, request).is_err());
        assert!(tries.lock().unwrap().is_empty());
    }
}
