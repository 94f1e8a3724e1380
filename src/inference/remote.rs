//! What every server backend shares: a model known by the tensors the server declares, asked
//! for some of its outputs (both elements use only the first, so only that one travels back),
//! with the inputs checked before anything is sent.

use super::{Backend, ElementType, InferenceError, Tensor, TensorSpec, TensorView};

/// A model on a server, reached by one request per run.
pub trait RemoteModel: Send + Sync {
    /// The model and where it is, for messages: `'u2netp' on http://host:8000`.
    fn display_name(&self) -> &str;
    fn input_specs(&self) -> &[TensorSpec];
    fn output_specs(&self) -> &[TensorSpec];
    /// One request with `inputs` (float32, one per declared input, checked), asking for
    /// `outputs`, which come back in that order.
    fn request(
        &self,
        inputs: &[TensorView<'_>],
        outputs: &[TensorSpec],
    ) -> Result<Vec<Tensor>, InferenceError>;
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
        InferenceError::Unavailable(reason)
    } else {
        InferenceError::Run(reason)
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
}

/// The inputs fit what the server declared: as many as it takes, every one float32 (the only
/// type sent).
fn check_inputs(model: &impl RemoteModel, inputs: &[TensorView<'_>]) -> Result<(), InferenceError> {
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
        .find(|spec| spec.element_type != ElementType::Float32)
    {
        return Err(request_error(
            model.display_name(),
            format!(
                "input '{}' is {}; only float32 is sent",
                spec.name, spec.element_type
            ),
            false,
        ));
    }
    Ok(())
}

impl<T: RemoteModel> Backend for T {
    fn model_name(&self) -> &str {
        self.display_name()
    }

    fn inputs(&self) -> &[TensorSpec] {
        self.input_specs()
    }

    fn outputs(&self) -> &[TensorSpec] {
        self.output_specs()
    }

    fn run(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>, InferenceError> {
        check_inputs(self, inputs)?;
        self.request(inputs, self.output_specs())
    }

    fn run_first(&self, inputs: &[TensorView<'_>]) -> Result<Tensor, InferenceError> {
        check_inputs(self, inputs)?;
        let first = self.output_specs().get(..1).unwrap_or_default();
        let mut outputs = self.request(inputs, first)?;
        outputs.pop().ok_or_else(|| {
            request_error(self.display_name(), "the model declares no outputs", false)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records what it is asked for and answers one zero tensor per output asked.
    struct Recording {
        inputs: Vec<TensorSpec>,
        outputs: Vec<TensorSpec>,
        asked: Mutex<Vec<Vec<String>>>,
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

    fn model(input_type: ElementType) -> Recording {
        Recording {
            inputs: vec![spec("x", input_type)],
            outputs: vec![
                spec("a", ElementType::Float32),
                spec("b", ElementType::Float32),
            ],
            asked: Mutex::default(),
        }
    }

    const ONE: TensorView<'static> = TensorView {
        shape: &[1],
        data: &[0.0],
    };

    #[test]
    fn run_first_asks_the_server_for_the_first_output_only() {
        let model = model(ElementType::Float32);
        model.run_first(&[ONE]).unwrap();
        model.run(&[ONE]).unwrap();
        assert_eq!(*model.asked.lock().unwrap(), [vec!["a"], vec!["a", "b"]]);
    }

    #[test]
    fn inputs_that_do_not_fit_are_refused_before_a_request() {
        let model = model(ElementType::Float32);
        let err = model.run(&[ONE, ONE]).unwrap_err().to_string();
        assert!(err.contains("takes 1 inputs, 2 given"), "{err}");
        let model = self::model(ElementType::Other("INT64".into()));
        let err = model.run_first(&[ONE]).unwrap_err().to_string();
        assert!(err.contains("'x' is INT64"), "{err}");
        assert!(model.asked.lock().unwrap().is_empty());
    }
}
