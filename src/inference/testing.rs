//! Fake backends for unit tests: models whose answer says which input they were given, and
//! models that only declare their tensors.

use std::time::Duration;

use super::{Backend, ElementType, InferenceError, Tensor, TensorSpec, TensorView};

/// A model that only declares float32 inputs and outputs of the given shapes, for tests of what
/// is checked when a model is loaded; running it is an error.
pub struct DeclaredModel {
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    converts_float16: bool,
}

impl DeclaredModel {
    pub fn float32(inputs: &[&[Option<usize>]], outputs: &[&[Option<usize>]]) -> Self {
        let specs = |prefix: &str, shapes: &[&[Option<usize>]]| {
            shapes
                .iter()
                .enumerate()
                .map(|(i, shape)| TensorSpec {
                    name: format!("{prefix}{i}"),
                    element_type: ElementType::Float32,
                    shape: shape.to_vec(),
                })
                .collect()
        };
        Self {
            inputs: specs("input", inputs),
            outputs: specs("output", outputs),
            converts_float16: false,
        }
    }

    /// The same model exported with float16 inputs and outputs, declared to a backend that
    /// converts float16 (the local runtimes) or does not (servers).
    pub fn float16(mut self, backend_converts_float16: bool) -> Self {
        for spec in self.inputs.iter_mut().chain(&mut self.outputs) {
            spec.element_type = ElementType::Float16;
        }
        self.converts_float16 = backend_converts_float16;
        self
    }
}

impl Backend for DeclaredModel {
    fn model_name(&self) -> &str {
        "declared"
    }
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }
    fn run(&self, _: &[TensorView<'_>]) -> Result<Vec<Tensor>, InferenceError> {
        Err(InferenceError::Run(
            "a declared-only model does not run".into(),
        ))
    }
    fn converts(&self, element_type: &ElementType) -> bool {
        if self.converts_float16 {
            element_type.is_float()
        } else {
            *element_type == ElementType::Float32
        }
    }
}

/// A `[1,N,N,3]` -> `[1,N,N,1]` model (NHWC, as the selfie models are) that takes `delay` and
/// answers with a constant mask equal to the mean of its input, so each mask tells which frame
/// it was made from.
pub struct ConstantMaskModel {
    size: usize,
    delay: Duration,
    declared: DeclaredModel,
}

impl ConstantMaskModel {
    pub fn new(size: usize) -> Self {
        Self::with_delay(size, Duration::ZERO)
    }

    pub fn with_delay(size: usize, delay: Duration) -> Self {
        let side = Some(size);
        Self {
            size,
            delay,
            declared: DeclaredModel::float32(
                &[&[Some(1), side, side, Some(3)]],
                &[&[Some(1), side, side, Some(1)]],
            ),
        }
    }
}

impl Backend for ConstantMaskModel {
    fn model_name(&self) -> &str {
        "constant-mask"
    }
    fn inputs(&self) -> &[TensorSpec] {
        self.declared.inputs()
    }
    fn outputs(&self) -> &[TensorSpec] {
        self.declared.outputs()
    }
    fn run(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>, InferenceError> {
        std::thread::sleep(self.delay);
        let data = inputs[0].data;
        let mean = data.iter().sum::<f32>() / data.len() as f32;
        Ok(vec![Tensor {
            shape: vec![1, self.size, self.size, 1],
            data: vec![mean; self.size * self.size],
        }])
    }
}
