//! Model inference behind one trait, so elements do not care where a model runs.

pub mod cancel;
pub mod element;
pub mod float16;
pub mod image_payload;
pub mod onnx;
pub mod onnx_graph;
pub mod openvino;
pub mod remote;
pub mod requests;
pub mod retry;
pub mod runtime;
#[cfg(feature = "sagemaker")]
pub mod sagemaker;
pub mod secrets;
pub mod server_pool;
pub mod shared;
#[cfg(test)]
pub mod testing;
pub mod tls;
pub mod triton;

use std::fmt;

/// The element type of a model input or output, as far as neuralfx handles them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElementType {
    Float32,
    Float16,
    /// Any other tensor element type, by the runtime's name for it (`i64`, `u8`, ...).
    Other(String),
    /// Not a tensor at all (a sequence or a map).
    NotTensor,
}

impl ElementType {
    /// float32 or float16: what the local runtimes feed and read (float16 converted at the
    /// model's edge).
    pub fn is_float(&self) -> bool {
        matches!(self, ElementType::Float32 | ElementType::Float16)
    }
}

impl fmt::Display for ElementType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElementType::Float32 => f.write_str("float32"),
            ElementType::Float16 => f.write_str("float16"),
            ElementType::Other(name) => f.write_str(name),
            ElementType::NotTensor => f.write_str("not a tensor (a sequence or map)"),
        }
    }
}

/// What a model declares for one input or output. Dynamic dimensions are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub element_type: ElementType,
    pub shape: Vec<Option<usize>>,
}

impl fmt::Display for TensorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.name,
            self.element_type,
            ShapeDisplay(&self.shape)
        )
    }
}

/// Formats a declared shape the way users read it: `[1,3,320,320]`, `?` for a dynamic dimension.
pub struct ShapeDisplay<'a>(pub &'a [Option<usize>]);

impl fmt::Display for ShapeDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, dim) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match dim {
                Some(d) => write!(f, "{d}")?,
                None => f.write_str("?")?,
            }
        }
        f.write_str("]")
    }
}

/// A borrowed float32 tensor handed to a backend.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    pub shape: &'a [usize],
    pub data: &'a [f32],
}

/// A float32 tensor a backend returns.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error("{0}")]
    Runtime(#[from] runtime::RuntimeError),
    #[error("cannot load model {path}: {reason}")]
    ModelLoad { path: String, reason: String },
    /// The server itself cannot be used (no connection, not ready, not an address): the
    /// `server` property is what to change, not the model.
    #[error("cannot use the server {server} for model {model}: {reason}")]
    ServerUnusable {
        server: String,
        model: String,
        reason: String,
    },
    #[error("model {model} has {found}; {expected}")]
    Shape {
        model: String,
        found: String,
        expected: String,
    },
    #[error("inference failed: {0}")]
    Run(String),
    /// A request that failed for a reason that may pass: the server could not be reached, did
    /// not answer in time or said it is overloaded. Only these are retried (`retries`).
    #[error("inference failed: {reason}")]
    Unavailable {
        reason: String,
        /// How long the server asked to be left alone (HTTP `Retry-After`).
        retry_after: Option<std::time::Duration>,
    },
    /// The element gave up on the request: it is flushing or stopping.
    #[error("{}", cancel::Cancelled)]
    Cancelled,
}

/// An error with every cause it wraps, each said once: client libraries' own messages are often
/// just "transport error" or "dispatch failure", with the reason a user can act on underneath.
pub fn error_with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl InferenceError {
    /// Whether the same request may succeed if sent again.
    pub fn is_transient(&self) -> bool {
        matches!(self, InferenceError::Unavailable { .. })
    }

    /// How long the server asked to wait before the same request is sent again.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            InferenceError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Runs one model. Local ONNX Runtime sessions and remote servers implement it alike, so an
/// element holds a `Arc<dyn Backend>` and never learns which it has.
pub trait Backend: Send + Sync {
    /// A human-readable name of the model, for error messages and logs.
    fn model_name(&self) -> &str;
    fn inputs(&self) -> &[TensorSpec];
    fn outputs(&self) -> &[TensorSpec];
    /// Runs the model with one tensor per declared input, in declaration order.
    fn run(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>, InferenceError>;

    /// Whether inputs and outputs declared as `element_type` can be fed from and read into
    /// float32. Servers are sent float32 only; the local runtimes also convert float16, so a
    /// model exported with float16 inputs and outputs runs unchanged.
    fn converts(&self, element_type: &ElementType) -> bool {
        *element_type == ElementType::Float32
    }

    /// The tensor types it takes, in words, for error messages.
    fn float_types(&self) -> &'static str {
        if self.converts(&ElementType::Float16) {
            "float32 or float16"
        } else {
            "float32"
        }
    }

    /// Whether its runs wait on a network: a flush or a stop then gives up on them (and their
    /// threads) rather than waiting for them.
    fn is_remote(&self) -> bool {
        false
    }

    /// Runs the model and returns its first output only: what both elements use. A server is
    /// then asked for that one output (u2netp has seven), so less travels back.
    fn run_first(&self, inputs: &[TensorView<'_>]) -> Result<Tensor, InferenceError> {
        self.run_output(inputs, 0)
    }

    /// Runs the model and returns its output `index` only (of [`Backend::outputs`]).
    fn run_output(
        &self,
        inputs: &[TensorView<'_>],
        index: usize,
    ) -> Result<Tensor, InferenceError> {
        let mut outputs = self.run(inputs)?;
        if index >= outputs.len() {
            return Err(InferenceError::Run(format!(
                "{} returned {} outputs, not output {}",
                self.model_name(),
                outputs.len(),
                index + 1
            )));
        }
        Ok(outputs.swap_remove(index))
    }
}

/// A model whose output in use is the one the `output` property names rather than its first:
/// it is listed first and [`Backend::run_first`] runs it (a server is asked for it alone).
pub struct SelectedOutput {
    inner: std::sync::Arc<dyn Backend>,
    index: usize,
    /// The inner model's outputs, the selected one moved first.
    outputs: Vec<TensorSpec>,
}

impl SelectedOutput {
    /// `inner` with its output `name`; an error lists the outputs it has.
    pub fn new(inner: std::sync::Arc<dyn Backend>, name: &str) -> Result<Self, String> {
        let Some(index) = inner.outputs().iter().position(|o| o.name == name) else {
            let names: Vec<String> = inner
                .outputs()
                .iter()
                .map(|o| format!("'{}'", o.name))
                .collect();
            return Err(format!(
                "{} has no output '{name}'; its outputs are {}",
                inner.model_name(),
                names.join(", ")
            ));
        };
        let mut outputs = inner.outputs().to_vec();
        let selected = outputs.remove(index);
        outputs.insert(0, selected);
        Ok(Self {
            inner,
            index,
            outputs,
        })
    }

    /// The inner model's index of output `index` of this one.
    fn inner_index(&self, index: usize) -> usize {
        match index {
            0 => self.index,
            i if i <= self.index => i - 1,
            i => i,
        }
    }
}

impl Backend for SelectedOutput {
    fn model_name(&self) -> &str {
        self.inner.model_name()
    }

    fn inputs(&self) -> &[TensorSpec] {
        self.inner.inputs()
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn run(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>, InferenceError> {
        let mut outputs = self.inner.run(inputs)?;
        if self.index < outputs.len() {
            let selected = outputs.remove(self.index);
            outputs.insert(0, selected);
        }
        Ok(outputs)
    }

    fn run_output(
        &self,
        inputs: &[TensorView<'_>],
        index: usize,
    ) -> Result<Tensor, InferenceError> {
        self.inner.run_output(inputs, self.inner_index(index))
    }

    fn converts(&self, element_type: &ElementType) -> bool {
        self.inner.converts(element_type)
    }

    fn is_remote(&self) -> bool {
        self.inner.is_remote()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Three outputs, each one value: its own index.
    struct ThreeOutputs(Vec<TensorSpec>);

    impl Backend for ThreeOutputs {
        fn model_name(&self) -> &str {
            "'three'"
        }
        fn inputs(&self) -> &[TensorSpec] {
            &[]
        }
        fn outputs(&self) -> &[TensorSpec] {
            &self.0
        }
        fn run(&self, _: &[TensorView<'_>]) -> Result<Vec<Tensor>, InferenceError> {
            Ok((0..3)
                .map(|i| Tensor {
                    shape: vec![1],
                    data: vec![i as f32],
                })
                .collect())
        }
    }

    fn three() -> Arc<dyn Backend> {
        let spec = |name: &str| TensorSpec {
            name: name.into(),
            element_type: ElementType::Float32,
            shape: vec![Some(1)],
        };
        Arc::new(ThreeOutputs(vec![spec("a"), spec("b"), spec("c")]))
    }

    #[test]
    fn a_selected_output_comes_first_and_is_the_one_run() {
        let selected = SelectedOutput::new(three(), "c").unwrap();
        let names: Vec<&str> = selected.outputs().iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["c", "a", "b"]);
        assert_eq!(selected.run_first(&[]).unwrap().data, [2.0]);
        let values: Vec<f32> = selected
            .run(&[])
            .unwrap()
            .iter()
            .map(|t| t.data[0])
            .collect();
        assert_eq!(values, [2.0, 0.0, 1.0]);
        for (index, value) in values.iter().enumerate() {
            assert_eq!(selected.run_output(&[], index).unwrap().data, [*value]);
        }
        let err = SelectedOutput::new(three(), "mask").err().unwrap();
        assert_eq!(
            err,
            "'three' has no output 'mask'; its outputs are 'a', 'b', 'c'"
        );
    }
}
