//! Fake backends for unit tests: models whose answer says which input they were given.

use std::time::Duration;

use super::{Backend, ElementType, InferenceError, Tensor, TensorSpec, TensorView};

/// A `[1,N,N,3]` -> `[1,N,N,1]` model (NHWC, as the selfie models are) that takes `delay` and
/// answers with a constant mask equal to the mean of its input, so each mask tells which frame
/// it was made from.
pub struct ConstantMaskModel {
    size: usize,
    delay: Duration,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

impl ConstantMaskModel {
    pub fn new(size: usize) -> Self {
        Self::with_delay(size, Duration::ZERO)
    }

    pub fn with_delay(size: usize, delay: Duration) -> Self {
        let spec = |name: &str, channels| TensorSpec {
            name: name.into(),
            element_type: ElementType::Float32,
            shape: vec![Some(1), Some(size), Some(size), Some(channels)],
        };
        Self {
            size,
            delay,
            inputs: vec![spec("image", 3)],
            outputs: vec![spec("mask", 1)],
        }
    }
}

impl Backend for ConstantMaskModel {
    fn model_name(&self) -> &str {
        "constant-mask"
    }
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }
    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
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
