//! Bounded retries of a remote model's requests: a request that failed for a reason that may
//! pass (server unreachable, overloaded, no answer in time) is sent again after a growing pause,
//! at most `retries` times; any other failure, and the last one, is returned as it is.

use std::sync::Arc;
use std::time::Duration;

use super::{Backend, ElementType, InferenceError, Tensor, TensorSpec, TensorView};

/// The pause before the first retry; each further retry waits twice as long, up to
/// [`MAX_PAUSE`].
pub const FIRST_PAUSE: Duration = Duration::from_millis(100);
pub const MAX_PAUSE: Duration = Duration::from_secs(2);

/// Called before each retry with the retry's number (from 1), the number allowed and the
/// failure that caused it, so an element can say so on the bus.
pub type RetryObserver = Box<dyn Fn(u32, u32, &InferenceError) + Send + Sync>;

/// A backend whose transient failures are retried.
pub struct Retrying {
    inner: Arc<dyn Backend>,
    retries: u32,
    first_pause: Duration,
    observer: RetryObserver,
}

impl Retrying {
    pub fn new(inner: Arc<dyn Backend>, retries: u32, observer: RetryObserver) -> Self {
        Self {
            inner,
            retries,
            first_pause: FIRST_PAUSE,
            observer,
        }
    }

    /// The same, with another first pause (tests use a short one).
    pub fn with_first_pause(mut self, pause: Duration) -> Self {
        self.first_pause = pause;
        self
    }

    fn attempt<T>(
        &self,
        mut request: impl FnMut() -> Result<T, InferenceError>,
    ) -> Result<T, InferenceError> {
        let mut pause = self.first_pause;
        let mut retry = 0;
        loop {
            match request() {
                Err(error) if error.is_transient() && retry < self.retries => {
                    retry += 1;
                    (self.observer)(retry, self.retries, &error);
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(MAX_PAUSE.max(self.first_pause));
                }
                result => return result,
            }
        }
    }
}

impl Backend for Retrying {
    fn model_name(&self) -> &str {
        self.inner.model_name()
    }

    fn inputs(&self) -> &[TensorSpec] {
        self.inner.inputs()
    }

    fn outputs(&self) -> &[TensorSpec] {
        self.inner.outputs()
    }

    fn run(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>, InferenceError> {
        self.attempt(|| self.inner.run(inputs))
    }

    fn run_first(&self, inputs: &[TensorView<'_>]) -> Result<Tensor, InferenceError> {
        self.attempt(|| self.inner.run_first(inputs))
    }

    fn converts(&self, element_type: &ElementType) -> bool {
        self.inner.converts(element_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails its first `failures` runs with `error`, then answers.
    struct Flaky {
        failures: u32,
        transient: bool,
        runs: AtomicU32,
    }

    impl Backend for Flaky {
        fn model_name(&self) -> &str {
            "flaky"
        }
        fn inputs(&self) -> &[TensorSpec] {
            &[]
        }
        fn outputs(&self) -> &[TensorSpec] {
            &[]
        }
        fn run(&self, _: &[TensorView<'_>]) -> Result<Vec<Tensor>, InferenceError> {
            let run = self.runs.fetch_add(1, Ordering::SeqCst);
            if run < self.failures {
                let reason = format!("failure {}", run + 1);
                return Err(if self.transient {
                    InferenceError::Unavailable(reason)
                } else {
                    InferenceError::Run(reason)
                });
            }
            Ok(vec![Tensor::default()])
        }
    }

    fn flaky(failures: u32, transient: bool) -> Arc<Flaky> {
        Arc::new(Flaky {
            failures,
            transient,
            runs: AtomicU32::new(0),
        })
    }

    fn retrying(inner: Arc<Flaky>, retries: u32) -> (Retrying, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let backend = Retrying::new(
            inner,
            retries,
            Box::new(move |retry, of, error| {
                log.lock().unwrap().push(format!("{retry}/{of} {error}"));
            }),
        )
        .with_first_pause(Duration::from_millis(1));
        (backend, seen)
    }

    #[test]
    fn transient_failures_are_retried_until_one_succeeds() {
        let inner = flaky(2, true);
        let (backend, seen) = retrying(inner.clone(), 3);
        assert!(backend.run_first(&[]).is_ok());
        assert_eq!(inner.runs.load(Ordering::SeqCst), 3);
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
        let inner = flaky(10, true);
        let (backend, seen) = retrying(inner.clone(), 2);
        let err = backend.run(&[]).unwrap_err();
        assert_eq!(err.to_string(), "inference failed: failure 3");
        assert_eq!(inner.runs.load(Ordering::SeqCst), 3);
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[test]
    fn other_failures_and_zero_retries_are_not_retried() {
        let inner = flaky(1, false);
        let (backend, seen) = retrying(inner.clone(), 5);
        assert!(backend.run(&[]).is_err());
        assert_eq!(inner.runs.load(Ordering::SeqCst), 1);
        assert!(seen.lock().unwrap().is_empty());

        let inner = flaky(1, true);
        let (backend, _) = retrying(inner.clone(), 0);
        assert!(backend.run(&[]).is_err());
        assert_eq!(inner.runs.load(Ordering::SeqCst), 1);
    }
}
