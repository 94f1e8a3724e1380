//! Local inference with ONNX Runtime, with one shared session per model file and options.

use std::path::Path;
use std::sync::{Arc, Mutex};

use ort::session::{Session, SessionInputValue};
use ort::value::{Tensor as OrtTensor, TensorElementType, TensorRef, ValueType};

use super::shared::SharedModels;
use super::{
    Backend, ElementType, InferenceError, Tensor, TensorSpec, TensorView, float16, runtime,
};

/// Where ONNX Runtime executes the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstNeuralfxExecutionProvider")]
pub enum ExecutionProvider {
    #[default]
    #[enum_value(name = "CPU", nick = "cpu")]
    Cpu,
    #[enum_value(
        name = "CUDA (NVIDIA GPU), falling back to CPU when it cannot load",
        nick = "cuda"
    )]
    Cuda,
}

use gst::glib;

/// Options that make two sessions of the same model different.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SessionOptions {
    /// Intra-op threads; 0 lets ONNX Runtime choose.
    pub threads: usize,
    pub execution_provider: ExecutionProvider,
}

static SESSIONS: SharedModels<SessionOptions, OnnxBackend> = SharedModels::new();

/// A model loaded into ONNX Runtime.
pub struct OnnxBackend {
    model_name: String,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    // ort's `Session::run` takes `&mut self`; elements sharing a session take turns.
    session: Mutex<Session>,
    fallback_warning: Option<String>,
    /// The execution provider the session runs on, as ONNX Runtime names it.
    provider: &'static str,
}

impl std::fmt::Debug for OnnxBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxBackend")
            .field("model", &self.model_name)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish()
    }
}

impl OnnxBackend {
    /// Returns the shared session for this file and these options, loading it if no element
    /// holds it at the moment.
    pub fn load(path: &Path, options: SessionOptions) -> Result<Arc<OnnxBackend>, InferenceError> {
        SESSIONS.get_or_load(path, options, |canonical, display| {
            Self::create(canonical, display, options)
        })
    }

    fn create(
        path: &Path,
        display: &str,
        options: SessionOptions,
    ) -> Result<OnnxBackend, InferenceError> {
        let environment = runtime::environment()?;
        let load_error = |reason: String| InferenceError::ModelLoad {
            path: display.to_string(),
            reason,
        };
        let mut builder = Session::builder(environment).map_err(|e| load_error(e.to_string()))?;
        if options.threads > 0 {
            builder = builder
                .with_intra_threads(options.threads)
                .map_err(|e| load_error(e.to_string()))?;
        }
        let mut fallback_warning = None;
        let mut provider = "CPUExecutionProvider";
        if options.execution_provider == ExecutionProvider::Cuda {
            use ort::ep::ExecutionProvider as _;
            // A CPU build of ONNX Runtime accepts the CUDA options and then silently runs on the
            // CPU, so ask which providers this build has before trusting the registration.
            if !ort::ep::CUDA::is_available().unwrap_or(false) {
                fallback_warning = Some(format!(
                    "CUDA is not available: this ONNX Runtime build has no CUDA execution provider; \
                     running {display} on the CPU"
                ));
            } else {
                // NVIDIA's wheels beside a GPU build from setup.sh --cuda: loaded before the
                // provider looks for them by name. What would not load is said with the fallback.
                let preloaded = runtime::preload_cuda_libraries();
                let cuda = ort::ep::CUDA::default().build().error_on_failure();
                builder = match builder.with_execution_providers([cuda]) {
                    Ok(builder) => {
                        provider = "CUDAExecutionProvider";
                        builder
                    }
                    Err(e) => {
                        let unloaded = preloaded
                            .err()
                            .map(|failures| format!("; these would not load: {failures}"))
                            .unwrap_or_default();
                        let reason = e.to_string();
                        // The one library no wheel brings: it comes with the GPU's driver.
                        let driver = if reason.contains("libcuda.so") {
                            "; libcuda.so.1 is the NVIDIA driver's (nvidia-smi should list a GPU)"
                        } else {
                            ""
                        };
                        fallback_warning = Some(format!(
                            "CUDA is not available ({}{unloaded}{driver}); running {display} on \
                             the CPU",
                            reason.trim_end()
                        ));
                        e.recover()
                    }
                };
            }
        }
        let session = builder
            .commit_from_file(path)
            .map_err(|e| load_error(e.to_string()))?;
        let inputs = session
            .inputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype()))
            .collect();
        let outputs = session
            .outputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype()))
            .collect();
        Ok(OnnxBackend {
            model_name: display.to_string(),
            inputs,
            outputs,
            session: Mutex::new(session),
            fallback_warning,
            provider,
        })
    }

    /// The execution provider that runs the model: `CPUExecutionProvider` or
    /// `CUDAExecutionProvider`.
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// Set when CUDA was asked for but the session runs on the CPU.
    pub fn fallback_warning(&self) -> Option<&str> {
        self.fallback_warning.as_deref()
    }
}

fn spec(name: &str, dtype: &ValueType) -> TensorSpec {
    let (element_type, shape) = match dtype {
        ValueType::Tensor { ty, shape, .. } => (
            match ty {
                TensorElementType::Float32 => ElementType::Float32,
                TensorElementType::Float16 => ElementType::Float16,
                other => ElementType::Other(other.to_string()),
            },
            shape.iter().map(|&d| usize::try_from(d).ok()).collect(),
        ),
        _ => (ElementType::NotTensor, Vec::new()),
    };
    TensorSpec {
        name: name.to_string(),
        element_type,
        shape,
    }
}

impl Backend for OnnxBackend {
    fn model_name(&self) -> &str {
        &self.model_name
    }

    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn converts(&self, element_type: &ElementType) -> bool {
        element_type.is_float()
    }

    fn run(&self, inputs: &[TensorView<'_>]) -> Result<Vec<Tensor>, InferenceError> {
        if inputs.len() != self.inputs.len() {
            return Err(InferenceError::Run(format!(
                "{} takes {} inputs, {} given",
                self.model_name,
                self.inputs.len(),
                inputs.len()
            )));
        }
        let run_error = |e: ort::Error| InferenceError::Run(format!("{}: {e}", self.model_name));
        let mut values: Vec<(&str, SessionInputValue<'_>)> = Vec::with_capacity(inputs.len());
        for (spec, input) in self.inputs.iter().zip(inputs) {
            let value = if spec.element_type == ElementType::Float16 {
                OrtTensor::from_array((input.shape.to_vec(), float16::to_f16(input.data)))
                    .map_err(run_error)?
                    .into()
            } else {
                TensorRef::from_array_view((input.shape, input.data))
                    .map_err(run_error)?
                    .into()
            };
            values.push((spec.name.as_str(), value));
        }
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let outputs = session.run(values).map_err(run_error)?;
        let mut tensors = Vec::with_capacity(outputs.len());
        for (_, value) in outputs.iter() {
            let (shape, data) = match value.dtype() {
                ValueType::Tensor {
                    ty: TensorElementType::Float16,
                    ..
                } => {
                    let (shape, halves) =
                        value.try_extract_tensor::<half::f16>().map_err(run_error)?;
                    (shape, float16::to_f32(halves))
                }
                _ => {
                    let (shape, data) = value.try_extract_tensor::<f32>().map_err(run_error)?;
                    (shape, data.to_vec())
                }
            };
            tensors.push(Tensor {
                shape: shape.iter().map(|&d| d.max(0) as usize).collect(),
                data,
            });
        }
        Ok(tensors)
    }
}
