//! Local inference with OpenVINO on the CPU: the runtime found once per process (like ONNX
//! Runtime: an environment variable, beside the plugin, the system), one compiled model per
//! file and options shared by the elements that use it, and a pool of infer requests so that
//! elements sharing a model run it at once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::shared::SharedModels;

use gst::glib;
use openvino::{
    CompiledModel, Core, DeviceType, ElementType as OvElementType, InferRequest, PropertyKey,
    RwPropertyKey, Shape, Tensor as OvTensor,
};

use super::{Backend, ElementType, InferenceError, Tensor, TensorSpec, TensorView, float16};

/// The numeric precision OpenVINO computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstNeuralfxPrecision")]
pub enum Precision {
    #[default]
    #[enum_value(name = "32-bit float: the model's own results", nick = "f32")]
    F32,
    #[enum_value(
        name = "bfloat16 (OpenVINO on a CPU with bf16 instructions): about twice as fast, masks differ slightly",
        nick = "bf16"
    )]
    Bf16,
}

impl Precision {
    pub fn nick(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// OpenVINO's name for it (INFERENCE_PRECISION_HINT).
    fn hint(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// Options that make two compiled models of the same file different.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CompileOptions {
    /// Inference threads; 0 lets OpenVINO choose (one per core).
    pub threads: usize,
    pub precision: Precision,
}

/// The OpenVINO C library (`libopenvino_c.so`), the folder the set-up installs beside the plugin,
/// and the variable that overrides both.
pub const LIBRARY_PREFIX: &str = "libopenvino_c.so";
pub const PLUGIN_SUBFOLDER: &str = "openvino";
pub const PATH_VARIABLE: &str = "OPENVINO_DYLIB_PATH";

#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "could not load the OpenVINO runtime (2025.1 or newer, {LIBRARY_PREFIX}); tried:\n{}\n{}",
    .attempts.join("\n"),
    .hint
)]
pub struct OpenVinoRuntimeError {
    pub attempts: Vec<String>,
    pub hint: String,
}

/// The places to look, in order: `OPENVINO_DYLIB_PATH` (the library, or its folder), the
/// `openvino` folder beside the plugin, what openvino-finder finds (`OPENVINO_INSTALL_DIR`,
/// `INTEL_OPENVINO_DIR`, `LD_LIBRARY_PATH`), then the system loader.
pub fn candidate_paths(
    env_path: Option<&str>,
    plugin_path: Option<&Path>,
    found_by_finder: Option<PathBuf>,
) -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(path) = env_path.filter(|p| !p.is_empty()).map(PathBuf::from) {
        if path.is_dir() {
            candidates.extend(libraries_in(&path));
        } else {
            candidates.push(path);
        }
    }
    if let Some(folder) = plugin_path.and_then(Path::parent) {
        candidates.extend(libraries_in(&folder.join(PLUGIN_SUBFOLDER)));
    }
    candidates.extend(found_by_finder);
    candidates.push(PathBuf::from(LIBRARY_PREFIX));
    candidates.dedup();
    candidates
}

/// The `libopenvino_c.so*` files of a folder, the plain name first.
fn libraries_in(folder: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(LIBRARY_PREFIX))
        })
        .collect();
    found.sort_by_key(|path| path.as_os_str().len());
    found
}

/// The OpenVINO core of this process, and the library it came from.
struct Runtime {
    core: Mutex<Core>,
    library: PathBuf,
    version: String,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static LOAD_LOCK: Mutex<()> = Mutex::new(());

fn runtime() -> Result<&'static Runtime, OpenVinoRuntimeError> {
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let _guard = LOAD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let plugin_path = super::runtime::plugin_path();
    let env_path = std::env::var(PATH_VARIABLE).ok();
    let mut attempts = Vec::new();
    for candidate in candidate_paths(
        env_path.as_deref(),
        plugin_path,
        openvino_sys::library::find(),
    ) {
        // openvino-sys parses the library's version with unwrap(): a foreign build must not
        // take the pipeline down with it.
        match std::panic::catch_unwind(|| open(&candidate)) {
            Ok(Ok(runtime)) => return Ok(RUNTIME.get_or_init(|| runtime)),
            Ok(Err(reason)) => attempts.push(format!("  {}: {reason}", candidate.display())),
            Err(_) => attempts.push(format!(
                "  {}: not a library these bindings can read the version of",
                candidate.display()
            )),
        }
    }
    let hint = match plugin_path.and_then(Path::parent) {
        Some(folder) => format!(
            "Run ./scripts/setup.sh (it installs OpenVINO beside the plugin in {}), or set \
             {PATH_VARIABLE} to libopenvino_c.so of an OpenVINO install (the `openvino` PyPI \
             wheel has it in openvino/libs); or use backend=onnxruntime",
            folder.join(PLUGIN_SUBFOLDER).display()
        ),
        None => format!(
            "Set {PATH_VARIABLE} to libopenvino_c.so of an OpenVINO install (./scripts/setup.sh \
             installs one in ~/.cache/neuralfx/openvino), or use backend=onnxruntime"
        ),
    };
    Err(OpenVinoRuntimeError { attempts, hint })
}

/// Opens the library at `path` and creates a core, with the `plugins.xml` beside the library
/// when there is one (the set-up's, which names the CPU plugin by a file name GStreamer's
/// plugin scanner skips).
fn open(path: &Path) -> Result<Runtime, String> {
    openvino_sys::library::load_from(path)?;
    let plugins_xml = path
        .parent()
        .map(|folder| folder.join("plugins.xml"))
        .filter(|xml| xml.is_file());
    let mut core = match &plugins_xml {
        Some(xml) => Core::new_with_config(&xml.to_string_lossy()),
        None => Core::new(),
    }
    .map_err(|e| e.to_string())?;
    // Compiled models come back from the shared on-disk cache by mmap unless told otherwise; a
    // second process rewriting the same blob (compiling the model at the same moment) would then
    // change the weights under a running model. Reading them into memory keeps each process's own.
    core.set_property(
        &DeviceType::Other("".into()),
        &RwPropertyKey::EnableMmap,
        "NO",
    )
    .map_err(|e| format!("setting ENABLE_MMAP=NO: {e}"))?;
    let build = openvino::version().build_number;
    let version = build.split('-').next().unwrap_or(&build).to_string();
    let core_has_cpu = core
        .available_devices()
        .map_err(|e| e.to_string())?
        .iter()
        .any(|device| device.as_ref() == "CPU");
    if !core_has_cpu {
        return Err(format!(
            "OpenVINO {version} loaded but has no CPU plugin (libopenvino_intel_cpu_plugin)"
        ));
    }
    Ok(Runtime {
        core: Mutex::new(core),
        library: path.to_path_buf(),
        version,
    })
}

/// The library that was loaded, if any.
pub fn loaded_library() -> Option<&'static Path> {
    RUNTIME.get().map(|runtime| runtime.library.as_path())
}

/// Whether the OpenVINO runtime can be loaded in this process (loading it if need be).
pub fn available() -> Result<(), OpenVinoRuntimeError> {
    runtime().map(|_| ())
}

/// Where compiled models are kept between runs, so a second start skips compilation.
fn cache_folder() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    var("NEURALFX_CACHE")
        .map(PathBuf::from)
        .or_else(|| var("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("neuralfx")))
        .or_else(|| var("HOME").map(|d| PathBuf::from(d).join(".cache/neuralfx")))
        .map(|folder| folder.join("openvino-model-cache"))
}

static COMPILED_MODELS: SharedModels<CompileOptions, OpenVinoBackend> = SharedModels::new();

/// A model compiled by OpenVINO for the CPU.
pub struct OpenVinoBackend {
    model_name: String,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    compiled: Mutex<CompiledModel>,
    // Idle requests; a run takes one (or makes one) and puts it back, so runs on several
    // threads (elements sharing the model) use several requests rather than wait for one.
    idle_requests: Mutex<Vec<InferRequest>>,
    description: String,
}

impl std::fmt::Debug for OpenVinoBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenVinoBackend")
            .field("model", &self.model_name)
            .field("runs on", &self.description)
            .finish()
    }
}

impl OpenVinoBackend {
    /// Returns the shared compiled model for this file and these options, compiling it if no
    /// element holds it at the moment.
    pub fn load(path: &Path, options: CompileOptions) -> Result<Arc<Self>, InferenceError> {
        COMPILED_MODELS.get_or_load(path, options, |canonical, display| {
            let runtime = runtime().map_err(|e| InferenceError::Run(e.to_string()))?;
            Self::compile(runtime, canonical, display, options)
        })
    }

    fn compile(
        runtime: &Runtime,
        path: &Path,
        display: &str,
        options: CompileOptions,
    ) -> Result<Self, InferenceError> {
        let load_error = |reason: String| InferenceError::ModelLoad {
            path: display.to_string(),
            reason,
        };
        let mut core = runtime.core.lock().unwrap_or_else(|e| e.into_inner());
        let cpu = DeviceType::CPU;
        if options.precision == Precision::Bf16 {
            check_bf16(&core)?;
        }
        let set = |core: &mut Core, key: RwPropertyKey, value: &str| {
            core.set_property(&cpu, &key, value)
                .map_err(|e| load_error(format!("setting {}={value}: {e}", key.as_ref())))
        };
        set(
            &mut core,
            RwPropertyKey::HintInferencePrecision,
            options.precision.hint(),
        )?;
        // One request with every core: THROUGHPUT's streams of a core each halved the frame
        // rate of u2netp on two cores, even with two frames in flight.
        set(&mut core, RwPropertyKey::HintPerformanceMode, "LATENCY")?;
        let threads = if options.threads > 0 {
            options.threads.to_string()
        } else {
            "0".into()
        };
        set(&mut core, RwPropertyKey::InferenceNumThreads, &threads)?;
        let cache = cache_folder().filter(|f| std::fs::create_dir_all(f).is_ok());
        set(
            &mut core,
            RwPropertyKey::CacheDir,
            &cache
                .as_deref()
                .map(Path::to_string_lossy)
                .unwrap_or_default(),
        )?;
        let model = core
            .read_model_from_file(&path.to_string_lossy(), "")
            .map_err(|e| load_error(e.to_string()))?;
        let mut compiled = match (core.compile_model(&model, DeviceType::CPU), &cache) {
            (Ok(compiled), _) => compiled,
            // Another process compiling the same model at the same moment can remove the blob
            // this one is writing ("filesystem error: cannot set permissions"), and a cache
            // folder can be unwritable: the model itself is fine, so compile it without the cache.
            (Err(with_cache), Some(folder)) => {
                set(&mut core, RwPropertyKey::CacheDir, "")?;
                core.compile_model(&model, DeviceType::CPU).map_err(|e| {
                    load_error(format!(
                        "{e} (and with the compiled-model cache {}: {with_cache})",
                        folder.display()
                    ))
                })?
            }
            (Err(e), None) => return Err(load_error(e.to_string())),
        };
        drop(core);
        let inputs = (0..compiled
            .get_input_size()
            .map_err(|e| load_error(e.to_string()))?)
            .map(|i| {
                compiled
                    .get_input_by_index(i)
                    .and_then(|node| node_spec(&node))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| load_error(e.to_string()))?;
        let outputs = (0..compiled
            .get_output_size()
            .map_err(|e| load_error(e.to_string()))?)
            .map(|i| {
                compiled
                    .get_output_by_index(i)
                    .and_then(|node| node_spec(&node))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| load_error(e.to_string()))?;
        let first_request = compiled
            .create_infer_request()
            .map_err(|e| load_error(e.to_string()))?;
        Ok(Self {
            model_name: display.to_string(),
            inputs,
            outputs,
            compiled: Mutex::new(compiled),
            idle_requests: Mutex::new(vec![first_request]),
            description: format!(
                "OpenVINO {} on the CPU, {} ({})",
                runtime.version,
                options.precision.nick(),
                runtime.library.display()
            ),
        })
    }

    /// What runs the model, for the bus and the `active-backend` property.
    pub fn description(&self) -> &str {
        &self.description
    }

    fn take_request(&self) -> Result<InferRequest, InferenceError> {
        if let Some(request) = self
            .idle_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
        {
            return Ok(request);
        }
        self.compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .create_infer_request()
            .map_err(|e| self.run_error(e))
    }

    fn run_error(&self, error: impl std::fmt::Display) -> InferenceError {
        InferenceError::Run(format!("{}: {error}", self.model_name))
    }

    /// Runs one request with `inputs`, reading the outputs `wanted` gives indices of.
    fn infer(
        &self,
        inputs: &[TensorView<'_>],
        wanted: std::ops::Range<usize>,
    ) -> Result<Vec<Tensor>, InferenceError> {
        if inputs.len() != self.inputs.len() {
            return Err(self.run_error(format!(
                "takes {} inputs, {} given",
                self.inputs.len(),
                inputs.len()
            )));
        }
        let mut request = self.take_request()?;
        for (index, (spec, input)) in self.inputs.iter().zip(inputs).enumerate() {
            if input.shape.iter().product::<usize>() != input.data.len() {
                return Err(self.run_error(format!(
                    "input {index} has {} values for shape {:?}",
                    input.data.len(),
                    input.shape
                )));
            }
            let dims: Vec<i64> = input.shape.iter().map(|&d| d as i64).collect();
            let shape = Shape::new(&dims).map_err(|e| self.run_error(e))?;
            let tensor = if spec.element_type == ElementType::Float16 {
                let mut tensor =
                    OvTensor::new(OvElementType::F16, &shape).map_err(|e| self.run_error(e))?;
                let halves = tensor
                    .get_data_mut::<half::f16>()
                    .map_err(|e| self.run_error(e))?;
                float16::write_f16(input.data, halves);
                tensor
            } else {
                let mut tensor =
                    OvTensor::new(OvElementType::F32, &shape).map_err(|e| self.run_error(e))?;
                tensor
                    .get_data_mut::<f32>()
                    .map_err(|e| self.run_error(e))?
                    .copy_from_slice(input.data);
                tensor
            };
            request
                .set_input_tensor_by_index(index, &tensor)
                .map_err(|e| self.run_error(e))?;
        }
        request.infer().map_err(|e| self.run_error(e))?;
        let mut outputs = Vec::with_capacity(wanted.len());
        for index in wanted {
            let tensor = request
                .get_output_tensor_by_index(index)
                .map_err(|e| self.run_error(e))?;
            let element_type = tensor.get_element_type().map_err(|e| self.run_error(e))?;
            let data = match element_type {
                OvElementType::F32 => tensor
                    .get_data::<f32>()
                    .map_err(|e| self.run_error(e))?
                    .to_vec(),
                OvElementType::F16 => float16::to_f32(
                    tensor
                        .get_data::<half::f16>()
                        .map_err(|e| self.run_error(e))?,
                ),
                other => {
                    return Err(self.run_error(format!(
                        "output {index} is {other}, float32 or float16 expected"
                    )));
                }
            };
            let shape = tensor.get_shape().map_err(|e| self.run_error(e))?;
            outputs.push(Tensor {
                shape: shape
                    .get_dimensions()
                    .iter()
                    .map(|&d| d.max(0) as usize)
                    .collect(),
                data,
            });
        }
        self.idle_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(request);
        Ok(outputs)
    }
}

/// Refuses bf16 on a CPU without bf16 instructions, where OpenVINO would silently compute in f32.
fn check_bf16(core: &Core) -> Result<(), InferenceError> {
    let cpu = DeviceType::CPU;
    let capabilities = core
        .get_property(&cpu, &PropertyKey::DeviceCapabilities)
        .unwrap_or_default();
    if has_bf16(&capabilities) {
        return Ok(());
    }
    let name = core
        .get_property(&cpu, &PropertyKey::DeviceFullName)
        .unwrap_or_else(|_| "this CPU".into());
    Err(InferenceError::Run(format!(
        "property 'precision': bf16 needs a CPU with bfloat16 instructions (AVX512_BF16 or AMX); \
         {name} has none (OpenVINO reports capabilities: {capabilities}); use precision=f32"
    )))
}

/// Whether OpenVINO's OPTIMIZATION_CAPABILITIES of a CPU (e.g. "FP32 BF16 INT8 BIN EXPORT_IMPORT")
/// include bfloat16.
fn has_bf16(capabilities: &str) -> bool {
    capabilities.split_whitespace().any(|c| c == "BF16")
}

fn node_spec(node: &openvino::Node) -> Result<TensorSpec, openvino::InferenceError> {
    let element_type = match node.get_element_type()? {
        OvElementType::F32 => ElementType::Float32,
        OvElementType::F16 => ElementType::Float16,
        other => ElementType::Other(other.to_string().to_lowercase()),
    };
    let shape = node.get_partial_shape()?;
    let shape = shape
        .get_dimensions()
        .iter()
        .map(|d| {
            if d.is_dynamic() {
                None
            } else {
                usize::try_from(d.get_min()).ok()
            }
        })
        .collect();
    Ok(TensorSpec {
        name: node.get_name()?,
        element_type,
        shape,
    })
}

impl Backend for OpenVinoBackend {
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
        self.infer(inputs, 0..self.outputs.len())
    }

    fn run_output(
        &self,
        inputs: &[TensorView<'_>],
        index: usize,
    ) -> Result<Tensor, InferenceError> {
        if index >= self.outputs.len() {
            return Err(self.run_error(format!(
                "the model has {} outputs, not output {}",
                self.outputs.len(),
                index + 1
            )));
        }
        let mut outputs = self.infer(inputs, index..index + 1)?;
        Ok(outputs.swap_remove(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_is_read_from_the_cpu_capabilities() {
        assert!(has_bf16("FP32 BF16 FP16 INT8 BIN EXPORT_IMPORT"));
        // A CPU without bf16 instructions (AVX2 only): precision=bf16 is refused there.
        assert!(!has_bf16("FP32 FP16 INT8 BIN EXPORT_IMPORT"));
        assert!(!has_bf16(""));
    }

    #[test]
    fn variable_first_then_plugin_folder_then_finder_then_system() {
        let dir = std::env::temp_dir().join(format!("neuralfx-ov-{}", std::process::id()));
        let beside = dir.join(PLUGIN_SUBFOLDER);
        std::fs::create_dir_all(&beside).unwrap();
        std::fs::write(beside.join("libopenvino_c.so.2640"), b"").unwrap();
        std::fs::write(beside.join("libopenvino.so.2640"), b"").unwrap();
        let found = candidate_paths(
            Some("/opt/ov/libopenvino_c.so"),
            Some(&dir.join("libgstneuralfx.so")),
            Some(PathBuf::from("/opt/intel/openvino/libopenvino_c.so")),
        );
        assert_eq!(
            found,
            vec![
                PathBuf::from("/opt/ov/libopenvino_c.so"),
                beside.join("libopenvino_c.so.2640"),
                PathBuf::from("/opt/intel/openvino/libopenvino_c.so"),
                PathBuf::from(LIBRARY_PREFIX),
            ]
        );
        // A folder in the variable means the library in it.
        let from_folder = candidate_paths(Some(beside.to_str().unwrap()), None, None);
        assert_eq!(from_folder[0], beside.join("libopenvino_c.so.2640"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
