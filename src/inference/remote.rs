//! What every server backend shares: a model known by the tensors the server declares, asked
//! for some of its outputs (both elements use only the first, so only that one travels back),
//! with the inputs checked before anything is sent, each request tried as the [`RetryPolicy`]
//! says and given up on when its element flushes or stops ([`Cancellation`]).

use std::sync::Arc;

use super::cancel::Cancellation;
use super::retry::{Attempt, RetryObserver, RetryPolicy};
use super::secrets::Secrets;
use super::triton::WireType;
use super::{Backend, ElementType, InferenceError, Tensor, TensorSpec, TensorView};

/// A model on a server, reached by one request per run.
pub trait RemoteModel: Send + Sync {
    /// The model and where it is, for messages: `'u2netp' on http://host:8000`.
    fn display_name(&self) -> &str;
    fn input_specs(&self) -> &[TensorSpec];
    fn output_specs(&self) -> &[TensorSpec];
    /// One try of a request with `inputs` (one per declared input, of a type converted at the
    /// wire: checked), asking for `outputs`, which come back in that order; within
    /// `attempt.timeout`, and ending early where the client can when the attempt is cancelled.
    fn request(
        &self,
        inputs: &[TensorView<'_>],
        outputs: &[TensorSpec],
        attempt: &Attempt<'_>,
    ) -> Result<Vec<Tensor>, InferenceError>;
}

/// A remote model as a [`Backend`]: inputs checked, requests retried and cancelled.
pub struct RemoteBackend {
    model: Box<dyn RemoteModel>,
    policy: RetryPolicy,
    cancellation: Arc<Cancellation>,
    observer: Option<RetryObserver>,
    /// Taken out of every error before it leaves.
    secrets: Secrets,
}

impl RemoteBackend {
    /// `model`, tried as `policy` says; `cancellation` is what its element's flushes and
    /// stops set.
    pub fn new(
        model: Box<dyn RemoteModel>,
        policy: RetryPolicy,
        cancellation: Arc<Cancellation>,
    ) -> Self {
        Self {
            model,
            policy,
            cancellation,
            observer: None,
            secrets: Secrets::default(),
        }
    }

    /// Errors leave without `secrets` (the server's password, header values).
    pub fn with_secrets(mut self, secrets: Secrets) -> Self {
        self.secrets = secrets;
        self
    }

    /// Hears each retry before its pause (an element warns on the bus).
    pub fn with_observer(mut self, observer: RetryObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    fn request(
        &self,
        inputs: &[TensorView<'_>],
        outputs: &[TensorSpec],
    ) -> Result<Vec<Tensor>, InferenceError> {
        check_inputs(&*self.model, inputs)?;
        let name = self.model.display_name();
        self.policy.run(
            name,
            &self.cancellation,
            self.observer.as_ref(),
            |attempt| {
                // A client that panics fails its frame with an error rather than leaving the
                // frame unanswered (the panic hook has printed where).
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.model.request(inputs, outputs, attempt)
                }))
                .unwrap_or_else(|panic| {
                    Err(request_error(
                        name,
                        format!("the request panicked: {}", panic_text(&*panic)),
                        false,
                    ))
                })
                // Before the retry warning and the element error read it.
                .map_err(|error| self.secrets.redact_error(error))
            },
        )
    }
}

/// What a panic said, when it said it with a string.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

/// A failed request: transient when sending it again may work (the server unreachable,
/// overloaded, or not answering in time), which `retries` then does.
pub fn request_error(
    model: &str,
    reason: impl std::fmt::Display,
    transient: bool,
) -> InferenceError {
    let reason = format!("{model}: {reason}");
    if transient {
        InferenceError::Unavailable {
            reason,
            retry_after: None,
        }
    } else {
        InferenceError::Run(reason)
    }
}

/// How often a call in progress looks whether it was given up on.
const LOOK_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// Runs `call`, a blocking client's one try of a request, on a thread of its own and waits for
/// it, or returns [`InferenceError::Cancelled`] soon after `attempt` is given up on: the thread
/// is left to end on its own (its own timeout bounds it), holding nothing of the caller's.
pub fn run_cancellably<T: Send + 'static>(
    attempt: &Attempt<'_>,
    call: impl FnOnce() -> Result<T, InferenceError> + Send + 'static,
) -> Result<T, InferenceError> {
    use std::sync::mpsc::{RecvTimeoutError, channel};
    let (answer, answered) = channel();
    std::thread::Builder::new()
        .name("neuralfx-request".into())
        .spawn(move || {
            let _ = answer.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)));
        })
        .map_err(|e| InferenceError::Run(format!("cannot start a request thread: {e}")))?;
    loop {
        match answered.recv_timeout(LOOK_EVERY) {
            Ok(Ok(result)) => return result,
            // On the caller's thread, where [`RemoteBackend`] turns it into the frame's error.
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(InferenceError::Run("the request thread ended".into()));
            }
            Err(RecvTimeoutError::Timeout) if attempt.is_cancelled() => {
                return Err(InferenceError::Cancelled);
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

/// A runtime for a network client, on which the element's threads block for each request: its
/// one worker thread drives the client's connections between requests.
#[cfg(any(feature = "triton-grpc", feature = "sagemaker"))]
pub struct BlockingRuntime(tokio::runtime::Runtime);

#[cfg(any(feature = "triton-grpc", feature = "sagemaker"))]
impl BlockingRuntime {
    pub fn new(thread_name: &str) -> std::io::Result<Self> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(thread_name)
            .enable_all()
            .build()
            .map(Self)
    }

    /// Runs `future` to its end, waiting at most `timeout`: past it, a transient failure of
    /// `model` ("no answer within ..."), which `retries` may send again.
    pub fn within<F: std::future::Future>(
        &self,
        model: &str,
        timeout: std::time::Duration,
        future: F,
    ) -> Result<F::Output, InferenceError> {
        self.0
            .block_on(async { tokio::time::timeout(timeout, future).await })
            .map_err(|_| request_error(model, format!("no answer within {timeout:?}"), true))
    }

    /// As [`BlockingRuntime::within`] for one try of a request, which also ends (dropping the
    /// call, so the client cancels it) soon after the attempt is cancelled.
    pub fn attempt<F: std::future::Future>(
        &self,
        model: &str,
        attempt: &Attempt<'_>,
        future: F,
    ) -> Result<F::Output, InferenceError> {
        let cancelled = async {
            while !attempt.is_cancelled() {
                tokio::time::sleep(LOOK_EVERY).await;
            }
        };
        self.0.block_on(async {
            tokio::select! {
                output = tokio::time::timeout(attempt.timeout, future) => output.map_err(|_| {
                    request_error(model, format!("no answer within {:?}", attempt.timeout), true)
                }),
                () = cancelled => Err(InferenceError::Cancelled),
            }
        })
    }
}

/// The inputs fit what the server declared: as many as it takes, each of a type the clients
/// convert to at the wire (float32, float16, uint8).
fn check_inputs(model: &dyn RemoteModel, inputs: &[TensorView<'_>]) -> Result<(), InferenceError> {
    let specs = model.input_specs();
    if inputs.len() != specs.len() {
        return Err(request_error(
            model.display_name(),
            format!("takes {} inputs, {} given", specs.len(), inputs.len()),
            false,
        ));
    }
    if let Some(spec) = specs
        .iter()
        .find(|spec| WireType::of(&spec.element_type).is_none())
    {
        return Err(request_error(
            model.display_name(),
            format!(
                "input '{}' is {}; float32, float16 or uint8 is sent",
                spec.name, spec.element_type
            ),
            false,
        ));
    }
    Ok(())
}

impl Backend for RemoteBackend {
    fn model_name(&self) -> &str {
        self.model.display_name()
    }

    fn inputs(&self) -> &[TensorSpec] {
        self.model.input_specs()
    }

    fn outputs(&self) -> &[TensorSpec] {
        self.model.output_specs()
    }

    fn run(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>, InferenceError> {
        self.request(inputs, self.model.output_specs())
    }

    fn run_output(
        &self,
        inputs: &[TensorView<'_>],
        index: usize,
    ) -> Result<Tensor, InferenceError> {
        let wanted = self
            .model
            .output_specs()
            .get(index..index + 1)
            .unwrap_or_default();
        let mut outputs = self.request(inputs, wanted)?;
        outputs.pop().ok_or_else(|| {
            request_error(
                self.model.display_name(),
                format!("the model declares no output {}", index + 1),
                false,
            )
        })
    }

    fn is_remote(&self) -> bool {
        true
    }

    /// Float32, float16 and uint8 tensors are converted at the wire.
    fn converts(&self, element_type: &ElementType) -> bool {
        WireType::of(element_type).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    /// Records what it is asked for and answers one zero tensor per output asked.
    struct Recording {
        inputs: Vec<TensorSpec>,
        outputs: Vec<TensorSpec>,
        asked: Arc<Mutex<Vec<Vec<String>>>>,
    }

    impl RemoteModel for Recording {
        fn display_name(&self) -> &str {
            "'m' on test"
        }
        fn input_specs(&self) -> &[TensorSpec] {
            &self.inputs
        }
        fn output_specs(&self) -> &[TensorSpec] {
            &self.outputs
        }
        fn request(
            &self,
            _: &[TensorView<'_>],
            outputs: &[TensorSpec],
            _: &Attempt<'_>,
        ) -> Result<Vec<Tensor>, InferenceError> {
            self.asked
                .lock()
                .unwrap()
                .push(outputs.iter().map(|o| o.name.clone()).collect());
            Ok(outputs.iter().map(|_| Tensor::default()).collect())
        }
    }

    fn spec(name: &str, element_type: ElementType) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            element_type,
            shape: vec![Some(1)],
        }
    }

    fn model(input_type: ElementType) -> (RemoteBackend, Arc<Mutex<Vec<Vec<String>>>>) {
        let asked = Arc::new(Mutex::default());
        let recording = Recording {
            inputs: vec![spec("x", input_type)],
            outputs: vec![
                spec("a", ElementType::Float32),
                spec("b", ElementType::Float32),
            ],
            asked: asked.clone(),
        };
        let policy = RetryPolicy::new(0, Duration::from_secs(1), None);
        let backend = RemoteBackend::new(Box::new(recording), policy, Arc::default());
        (backend, asked)
    }

    const ONE: TensorView<'static> = TensorView {
        shape: &[1],
        data: &[0.0],
    };

    #[test]
    fn run_first_asks_the_server_for_the_first_output_only() {
        let (model, asked) = model(ElementType::Float32);
        model.run_first(&[ONE]).unwrap();
        model.run(&[ONE]).unwrap();
        assert_eq!(*asked.lock().unwrap(), [vec!["a"], vec!["a", "b"]]);
    }

    /// Each request's one try is `call()`: run where it is asked, or by [`run_cancellably`] as
    /// a blocking client's.
    struct Scripted<F> {
        specs: Vec<TensorSpec>,
        call: F,
        on_a_thread: bool,
    }

    impl<F, C> RemoteModel for Scripted<F>
    where
        F: Fn() -> C + Send + Sync,
        C: FnOnce() -> Result<Vec<Tensor>, InferenceError> + Send + 'static,
    {
        fn display_name(&self) -> &str {
            "'m' on test"
        }
        fn input_specs(&self) -> &[TensorSpec] {
            &self.specs
        }
        fn output_specs(&self) -> &[TensorSpec] {
            &self.specs
        }
        fn request(
            &self,
            _: &[TensorView<'_>],
            _: &[TensorSpec],
            attempt: &Attempt<'_>,
        ) -> Result<Vec<Tensor>, InferenceError> {
            if self.on_a_thread {
                run_cancellably(attempt, (self.call)())
            } else {
                (self.call)()()
            }
        }
    }

    fn scripted<F, C>(call: F, on_a_thread: bool, cancellation: Arc<Cancellation>) -> RemoteBackend
    where
        F: Fn() -> C + Send + Sync + 'static,
        C: FnOnce() -> Result<Vec<Tensor>, InferenceError> + Send + 'static,
    {
        let policy = RetryPolicy::new(3, Duration::from_secs(3600), None);
        let specs = vec![spec("x", ElementType::Float32)];
        let model = Scripted {
            specs,
            call,
            on_a_thread,
        };
        RemoteBackend::new(Box::new(model), policy, cancellation)
    }

    #[test]
    fn a_request_that_panics_fails_its_frame_with_an_error() {
        // On the caller's thread or on one of its own, alike.
        for on_a_thread in [false, true] {
            let model = scripted(
                || || panic!("a bug in the client"),
                on_a_thread,
                Arc::default(),
            );
            let err = model.run_first(&[ONE]).unwrap_err();
            assert!(!err.is_transient(), "not retried");
            assert_eq!(
                err.to_string(),
                "inference failed: 'm' on test: the request panicked: a bug in the client"
            );
        }
    }

    #[test]
    fn a_blocking_call_is_left_behind_when_its_request_is_cancelled() {
        use crate::inference::requests::Interruptible;
        let cancellation = Arc::new(Cancellation::default());
        // The call never returns by itself until the test ends.
        let (_never, held) = std::sync::mpsc::channel::<()>();
        let held = Arc::new(Mutex::new(held));
        let model = scripted(
            move || {
                let held = held.clone();
                move || {
                    let _ = held.lock().unwrap().recv();
                    Ok(vec![])
                }
            },
            true,
            cancellation.clone(),
        );
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                cancellation.set_interrupted(true);
            });
            // Were the call waited for, the test would not end.
            assert!(matches!(
                model.run_first(&[ONE]),
                Err(InferenceError::Cancelled)
            ));
        });
    }

    #[test]
    fn a_blocking_calls_answer_reaches_the_caller() {
        let answering = scripted(|| || Ok(vec![Tensor::default()]), true, Arc::default());
        assert!(answering.run_first(&[ONE]).is_ok());
    }

    #[test]
    fn inputs_that_do_not_fit_are_refused_before_a_request() {
        let (model, asked) = model(ElementType::Float32);
        let err = model.run(&[ONE, ONE]).unwrap_err().to_string();
        assert!(err.contains("takes 1 inputs, 2 given"), "{err}");
        let (model, asked_too) = self::model(ElementType::Other("INT64".into()));
        assert!(
            model.converts(&ElementType::Float16)
                && !model.converts(&ElementType::Other("INT64".into()))
        );
        let err = model.run_first(&[ONE]).unwrap_err().to_string();
        assert!(err.contains("'x' is INT64"), "{err}");
        assert!(asked.lock().unwrap().is_empty() && asked_too.lock().unwrap().is_empty());
    }
}
