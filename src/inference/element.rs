//! What every inference element shares: where the model runs (`backend`, with `threads` and
//! `execution-provider` for ONNX Runtime, `server`, `model-version`, `request-timeout` and
//! `requests-in-flight` for a server), and loading it at start with errors and warnings a
//! GStreamer user can act on.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;

use super::TensorSpec;
use super::cancel::Cancellation;
use super::onnx::{ExecutionProvider, OnnxBackend, SessionOptions};
use super::openvino::{CompileOptions, OpenVinoBackend, Precision};
use super::remote::{RemoteBackend, RemoteModel};
use super::retry::RetryPolicy;
use super::secrets::{RequestHeaders, Secrets, redact_url, redacted_headers_property};
use super::server_pool::{Connector, ServerObserver, ServerPool, server_list};
use super::tls::TlsSettings;
use super::triton::ServerOptions;
#[cfg(feature = "triton-grpc")]
use super::triton::grpc::TritonGrpcBackend;
use super::triton::http::TritonHttpBackend;
use super::{Backend, InferenceError, SelectedOutput};

pub const DEFAULT_THREADS: u32 = 0;
pub const DEFAULT_EXECUTION_PROVIDER: ExecutionProvider = ExecutionProvider::Cpu;

/// The largest `threads` accepted: four per core of this machine. More only adds contention,
/// and a typo such as 1024 would start a thousand threads.
pub fn max_threads() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    u32::try_from(cores.saturating_mul(4)).unwrap_or(u32::MAX)
}

/// Where an element's model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstNeuralfxBackend")]
pub enum BackendKind {
    #[default]
    #[enum_value(
        name = "OpenVINO in this process when it loads and suits the model, else ONNX Runtime (always ONNX Runtime with execution-provider=cuda)",
        nick = "auto"
    )]
    Auto,
    #[enum_value(
        name = "ONNX Runtime in this process (model is a file)",
        nick = "onnxruntime"
    )]
    OnnxRuntime,
    #[enum_value(
        name = "OpenVINO on the CPU in this process (model is a file; property 'precision')",
        nick = "openvino"
    )]
    OpenVino,
    #[enum_value(
        name = "A Triton or other KServe v2 server over HTTP (model is the served model's name, server its address)",
        nick = "triton-http"
    )]
    TritonHttp,
    #[enum_value(
        name = "A Triton or other KServe v2 server over gRPC (model is the served model's name, server its address)",
        nick = "triton"
    )]
    TritonGrpc,
    #[enum_value(
        name = "An AWS SageMaker endpoint (property 'endpoint'; model is the same model as a local file or catalog name, for its tensors' names and shapes)",
        nick = "sagemaker"
    )]
    SageMaker,
}

/// What a SageMaker endpoint is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstNeuralfxPayload")]
pub enum Payload {
    #[default]
    #[enum_value(
        name = "The model's input tensor in Triton's SageMaker binary+json format; tensors come back",
        nick = "tensor"
    )]
    Tensor,
    #[enum_value(
        name = "The frame as a PNG, for containers that do their own processing; a mask comes back (PNG, JPEG, or raw uint8/float32 of the frame size)",
        nick = "png"
    )]
    Png,
    #[enum_value(
        name = "The frame as a JPEG (quality 90): smaller and faster than png, slightly lossy; a mask comes back",
        nick = "jpeg"
    )]
    Jpeg,
}

pub const DEFAULT_REQUEST_TIMEOUT_MS: u32 = 10_000;
pub const DEFAULT_REQUESTS_IN_FLIGHT: u32 = 2;
pub const DEFAULT_RETRIES: u32 = 0;
/// No bound on one frame's request beyond its tries' (`retries` + 1 times `request-timeout`).
pub const DEFAULT_FRAME_DEADLINE_MS: u32 = 0;
/// SageMaker real-time endpoints take requests of at most 6 MB.
pub const DEFAULT_MAX_REQUEST_BYTES: u32 = 6 * 1024 * 1024;

/// The properties of [`param_specs`], as an element keeps them.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendSettings {
    pub kind: BackendKind,
    pub threads: u32,
    pub execution_provider: ExecutionProvider,
    pub server: Option<String>,
    /// Extra headers of a server's requests, as the property gives them (parsed at start).
    pub headers: Option<String>,
    pub tls: TlsSettings,
    /// The output the element uses, by name; `None`: the model's first.
    pub output: Option<String>,
    pub model_version: Option<String>,
    pub request_timeout_ms: u32,
    pub requests_in_flight: u32,
    pub retries: u32,
    /// Bounds one frame's request, retries and pauses included; 0 = no bound.
    pub frame_deadline_ms: u32,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub content_type: Option<String>,
    pub payload: Payload,
    /// The largest request a SageMaker endpoint takes; 0 = no limit.
    pub max_request_bytes: u32,
    pub target_model: Option<String>,
    pub target_variant: Option<String>,
    pub inference_component: Option<String>,
    pub custom_attributes: Option<String>,
    pub precision: Precision,
}

impl Default for BackendSettings {
    fn default() -> Self {
        Self {
            kind: BackendKind::default(),
            threads: DEFAULT_THREADS,
            execution_provider: DEFAULT_EXECUTION_PROVIDER,
            server: None,
            headers: None,
            tls: TlsSettings::default(),
            output: None,
            model_version: None,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            requests_in_flight: DEFAULT_REQUESTS_IN_FLIGHT,
            retries: DEFAULT_RETRIES,
            frame_deadline_ms: DEFAULT_FRAME_DEADLINE_MS,
            endpoint: None,
            region: None,
            endpoint_url: None,
            content_type: None,
            payload: Payload::default(),
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            target_model: None,
            target_variant: None,
            inference_component: None,
            custom_attributes: None,
            precision: Precision::default(),
        }
    }
}

impl Payload {
    /// The property value that selects it, as users write it.
    pub fn nick(self) -> &'static str {
        match self {
            Payload::Tensor => "tensor",
            Payload::Png => "png",
            Payload::Jpeg => "jpeg",
        }
    }
}

impl BackendKind {
    /// The property value that selects it, as users write it.
    pub fn nick(self) -> &'static str {
        match self {
            BackendKind::Auto => "auto",
            BackendKind::OnnxRuntime => "onnxruntime",
            BackendKind::OpenVino => "openvino",
            BackendKind::TritonHttp => "triton-http",
            BackendKind::TritonGrpc => "triton",
            BackendKind::SageMaker => "sagemaker",
        }
    }
}

impl BackendSettings {
    /// The model runs on a server.
    pub fn is_remote(&self) -> bool {
        !matches!(
            self.kind,
            BackendKind::Auto | BackendKind::OnnxRuntime | BackendKind::OpenVino
        )
    }

    /// These settings for a helper model that always runs in this process (lipsync's audio
    /// encoder): a server backend becomes `auto`, the rest (threads, precision, provider) stays.
    pub fn in_this_process(&self) -> Self {
        let mut local = self.clone();
        if local.is_remote() {
            local.kind = BackendKind::Auto;
        }
        // The output named is the main model's.
        local.output = None;
        local
    }

    /// Which model behind a SageMaker endpoint answers.
    #[cfg(feature = "sagemaker")]
    pub fn sagemaker_routing(&self) -> super::sagemaker::Routing {
        super::sagemaker::Routing {
            target_model: self.target_model.clone(),
            target_variant: self.target_variant.clone(),
            inference_component: self.inference_component.clone(),
        }
    }

    /// The element sends whole frames as pictures and gets masks back (the endpoint does its own
    /// processing), rather than tensors.
    pub fn sends_pictures(&self) -> bool {
        self.kind == BackendKind::SageMaker && self.payload != Payload::Tensor
    }

    /// How many model requests an element may have in flight: several for a server, one for a
    /// local runtime, which gives one request every core (two OpenVINO streams of one core
    /// each ran u2netp at 1080p at half the frame rate on a 2-core machine).
    pub fn requests_in_flight(&self) -> usize {
        if self.is_remote() {
            self.requests_in_flight.max(1) as usize
        } else {
            1
        }
    }

    /// Sets one of [`param_specs`]'s properties; false for any other name.
    pub fn set(&mut self, name: &str, value: &glib::Value) -> bool {
        let text = |value: &glib::Value| {
            value
                .get::<Option<String>>()
                .expect("type checked upstream")
                .filter(|s| !s.is_empty())
        };
        match name {
            "backend" => self.kind = value.get().expect("type checked upstream"),
            "threads" => self.threads = value.get().expect("type checked upstream"),
            "execution-provider" => {
                self.execution_provider = value.get().expect("type checked upstream")
            }
            "server" => self.server = text(value),
            "headers" => self.headers = text(value),
            "output" => self.output = text(value),
            "tls-ca-file" => self.tls.ca_file = text(value).map(PathBuf::from),
            "tls-certificate" => self.tls.certificate = text(value).map(PathBuf::from),
            "tls-key" => self.tls.key = text(value).map(PathBuf::from),
            "tls-server-name" => self.tls.server_name = text(value),
            "model-version" => self.model_version = text(value),
            "request-timeout" => {
                self.request_timeout_ms = value.get().expect("type checked upstream")
            }
            "requests-in-flight" => {
                self.requests_in_flight = value.get().expect("type checked upstream")
            }
            "retries" => self.retries = value.get().expect("type checked upstream"),
            "frame-deadline" => {
                self.frame_deadline_ms = value.get().expect("type checked upstream")
            }
            "endpoint" => self.endpoint = text(value),
            "region" => self.region = text(value),
            "endpoint-url" => self.endpoint_url = text(value),
            "content-type" => self.content_type = text(value),
            "payload" => self.payload = value.get().expect("type checked upstream"),
            "max-request-bytes" => {
                self.max_request_bytes = value.get().expect("type checked upstream")
            }
            "target-model" => self.target_model = text(value),
            "target-variant" => self.target_variant = text(value),
            "inference-component" => self.inference_component = text(value),
            "custom-attributes" => self.custom_attributes = text(value),
            "precision" => self.precision = value.get().expect("type checked upstream"),
            _ => return false,
        }
        true
    }

    /// Reads one of [`param_specs`]'s properties; `None` for any other name.
    pub fn get(&self, name: &str) -> Option<glib::Value> {
        Some(match name {
            "backend" => self.kind.to_value(),
            "threads" => self.threads.to_value(),
            "execution-provider" => self.execution_provider.to_value(),
            // Read back without the password of a URL or the values of headers.
            "server" => self.server.as_deref().map(redact_url).to_value(),
            "headers" => self
                .headers
                .as_deref()
                .map(redacted_headers_property)
                .to_value(),
            "tls-ca-file" => path_value(&self.tls.ca_file),
            "tls-certificate" => path_value(&self.tls.certificate),
            "tls-key" => path_value(&self.tls.key),
            "tls-server-name" => self.tls.server_name.to_value(),
            "output" => self.output.to_value(),
            "model-version" => self.model_version.to_value(),
            "request-timeout" => self.request_timeout_ms.to_value(),
            "requests-in-flight" => self.requests_in_flight.to_value(),
            "retries" => self.retries.to_value(),
            "frame-deadline" => self.frame_deadline_ms.to_value(),
            "endpoint" => self.endpoint.to_value(),
            "region" => self.region.to_value(),
            "endpoint-url" => self.endpoint_url.to_value(),
            "content-type" => self.content_type.to_value(),
            "payload" => self.payload.to_value(),
            "max-request-bytes" => self.max_request_bytes.to_value(),
            "target-model" => self.target_model.to_value(),
            "target-variant" => self.target_variant.to_value(),
            "inference-component" => self.inference_component.to_value(),
            "custom-attributes" => self.custom_attributes.to_value(),
            "precision" => self.precision.to_value(),
            _ => return None,
        })
    }
}

fn path_value(path: &Option<PathBuf>) -> glib::Value {
    path.as_ref()
        .map(|path| path.to_string_lossy().into_owned())
        .to_value()
}

/// Where the model runs and how, changeable up to READY.
pub fn param_specs() -> [glib::ParamSpec; 27] {
    [
        glib::ParamSpecEnum::builder_with_default("backend", BackendKind::default())
            .nick("Backend")
            .blurb("Where the model runs: auto (OpenVINO, else ONNX Runtime), onnxruntime, openvino, triton, triton-http or sagemaker")
            .mutable_ready()
            .build(),
        glib::ParamSpecEnum::builder_with_default("precision", Precision::default())
            .nick("Precision")
            .blurb("What OpenVINO computes in: f32, or bf16 (about 2x faster on CPUs with bfloat16, slightly different)")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("output")
            .nick("Output tensor")
            .blurb("Name of the model output the element uses (empty = the model's first output)")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("active-backend")
            .nick("Active backend")
            .blurb("Read-only, while running: what runs the model (runtime and device, or the server)")
            .read_only()
            .build(),
        glib::ParamSpecUInt::builder("threads")
            .nick("Threads")
            .blurb("Inference threads of ONNX Runtime or OpenVINO (0 = their default, one per core); at most four per core")
            .maximum(max_threads())
            .default_value(DEFAULT_THREADS)
            .mutable_ready()
            .build(),
        glib::ParamSpecEnum::builder_with_default("execution-provider", DEFAULT_EXECUTION_PROVIDER)
            .nick("Execution provider")
            .blurb(
                "Where ONNX Runtime runs the model; cuda falls back to the CPU with a warning if it cannot load",
            )
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("server")
            .nick("Server")
            .blurb("Triton server: host:8001 for gRPC (grpcs:// for TLS), host:8000 or http(s)://... for HTTP; several separated by commas")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("headers")
            .nick("Request headers")
            .blurb("Extra headers of a Triton server's requests: 'name: value; ...' or @FILE (a header per line); read back without values")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("tls-ca-file")
            .nick("TLS CA file")
            .blurb("PEM file of CA certificates to trust for a Triton server, besides the public ones")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("tls-certificate")
            .nick("TLS client certificate")
            .blurb("PEM file of the client certificate (chain) a Triton server asks for (with tls-key)")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("tls-key")
            .nick("TLS client key")
            .blurb("PEM file of the private key of tls-certificate")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("tls-server-name")
            .nick("TLS server name")
            .blurb("Name the Triton server's certificate must carry, when not the address's host")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("model-version")
            .nick("Model version")
            .blurb("Version of the served model (empty = the server's choice)")
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("request-timeout")
            .nick("Request timeout")
            .blurb("Milliseconds a request to a server may take, connecting included")
            .minimum(1)
            .maximum(3_600_000)
            .default_value(DEFAULT_REQUEST_TIMEOUT_MS)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("requests-in-flight")
            .nick("Requests in flight")
            .blurb("Frames at a server at once (non-live pipelines, or live ones with asynchronous=false)")
            .minimum(1)
            .maximum(64)
            .default_value(DEFAULT_REQUESTS_IN_FLIGHT)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("retries")
            .nick("Retries")
            .blurb("Times a request that failed for a passing reason (unreachable, overloaded, timed out) is sent again")
            .maximum(100)
            .default_value(DEFAULT_RETRIES)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("frame-deadline")
            .nick("Frame deadline")
            .blurb("Milliseconds one frame's server request may take, retries and pauses included (0 = no bound)")
            .maximum(3_600_000)
            .default_value(DEFAULT_FRAME_DEADLINE_MS)
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("endpoint")
            .nick("SageMaker endpoint")
            .blurb("Name of the SageMaker endpoint of backend=sagemaker")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("region")
            .nick("AWS region")
            .blurb("AWS region of the SageMaker endpoint (empty = the standard AWS chain: AWS_REGION, the profile)")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("endpoint-url")
            .nick("SageMaker runtime URL")
            .blurb("Another URL for the SageMaker runtime API (a VPC endpoint, a test server); empty = AWS's own for the region")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("content-type")
            .nick("Content type")
            .blurb("Content type sent to SageMaker instead of the payload's own")
            .mutable_ready()
            .build(),
        glib::ParamSpecEnum::builder_with_default("payload", Payload::default())
            .nick("SageMaker payload")
            .blurb("What goes to SageMaker: tensor (processing here), or the frame as png or jpeg")
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("max-request-bytes")
            .nick("Largest SageMaker request")
            .blurb("Largest request the endpoint takes (real-time: 6 MiB); 0 = no limit")
            .default_value(DEFAULT_MAX_REQUEST_BYTES)
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("target-model")
            .nick("SageMaker target model")
            .blurb("Model of a multi-model SageMaker endpoint to invoke (e.g. u2netp.tar.gz)")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("target-variant")
            .nick("SageMaker target variant")
            .blurb("Production variant of the SageMaker endpoint to invoke (empty = by its weights)")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("inference-component")
            .nick("SageMaker inference component")
            .blurb("Inference component of the SageMaker endpoint that serves the model")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("custom-attributes")
            .nick("SageMaker custom attributes")
            .blurb("Passed to the SageMaker endpoint's container with each request, as they are")
            .mutable_ready()
            .build(),
    ]
}

/// A tensor request's size: its float32 values (where every dimension is declared) and room for
/// the JSON header; `None` when a dimension is dynamic.
#[cfg(feature = "sagemaker")]
fn tensor_request_bytes(inputs: &[TensorSpec]) -> Option<u64> {
    const HEADER_ROOM: u64 = 1024;
    inputs.iter().try_fold(HEADER_ROOM, |total, input| {
        let values = input
            .shape
            .iter()
            .try_fold(1u64, |n, d| d.map(|d| n.saturating_mul(d as u64)))?;
        Some(total.saturating_add(values.saturating_mul(4)))
    })
}

/// Refuses at start a model whose requests are larger than the endpoint takes, rather than
/// letting the first frame find out.
#[cfg(feature = "sagemaker")]
fn check_request_size(
    inputs: &[TensorSpec],
    settings: &BackendSettings,
) -> Result<(), gst::ErrorMessage> {
    let limit = u64::from(settings.max_request_bytes);
    match tensor_request_bytes(inputs) {
        Some(bytes) if limit > 0 && bytes > limit => {
            let described: Vec<String> = inputs.iter().map(ToString::to_string).collect();
            Err(gst::error_msg!(
                gst::ResourceError::Settings,
                (
                    "property 'max-request-bytes': each request would carry {:.1} MB ({}), more \
                     than the endpoint's {:.1} MB (a real-time SageMaker endpoint takes 6 MiB); \
                     use payload=jpeg (the frame as a picture), a model with a smaller input, or \
                     raise max-request-bytes for an endpoint that takes more",
                    bytes as f64 / 1e6,
                    described.join(", "),
                    limit as f64 / 1e6
                )
            ))
        }
        _ => Ok(()),
    }
}

/// A model ready to run, and what runs it (the `active-backend` property).
pub struct LoadedBackend {
    pub model: Arc<dyn Backend>,
    pub runs_on: String,
    /// A server's requests: what the element's flushes and stops set, so that they give up
    /// on the requests under way rather than wait for them.
    pub cancellation: Option<Arc<Cancellation>>,
}

/// The model of `model` (a file or catalog name for a local runtime, the served model's name for
/// a server) where `settings` says it runs. `local_file` turns `model` into a file; it is called
/// only for local runtimes and SageMaker tensors.
pub fn load_backend(
    element: &impl IsA<gst::Element>,
    settings: &BackendSettings,
    model: &str,
    local_file: impl FnOnce() -> Result<PathBuf, gst::ErrorMessage>,
) -> Result<LoadedBackend, gst::ErrorMessage> {
    let mut loaded = load_where_set(element, settings, model, local_file)?;
    if let Some(output) = &settings.output {
        let selected = SelectedOutput::new(loaded.model, output).map_err(|reason| {
            gst::error_msg!(
                gst::ResourceError::Settings,
                ("property 'output': {}", reason)
            )
        })?;
        loaded.model = Arc::new(selected);
    }
    Ok(loaded)
}

/// The model where `settings` say, its first output in use.
fn load_where_set(
    element: &impl IsA<gst::Element>,
    settings: &BackendSettings,
    model: &str,
    local_file: impl FnOnce() -> Result<PathBuf, gst::ErrorMessage>,
) -> Result<LoadedBackend, gst::ErrorMessage> {
    if settings.precision == Precision::Bf16
        && !matches!(settings.kind, BackendKind::Auto | BackendKind::OpenVino)
    {
        return Err(gst::error_msg!(
            gst::LibraryError::Settings,
            (
                "property 'precision': bf16 is OpenVINO's; backend={} computes in f32 (use backend=openvino or auto, or precision=f32)",
                settings.kind.nick()
            )
        ));
    }
    if settings.kind == BackendKind::OpenVino
        && settings.execution_provider != ExecutionProvider::Cpu
    {
        return Err(gst::error_msg!(
            gst::LibraryError::Settings,
            ("property 'execution-provider': cuda is ONNX Runtime's; backend=openvino runs on the CPU (use backend=onnxruntime or auto for CUDA)")
        ));
    }
    match settings.kind {
        BackendKind::Auto => {
            let path = local_file()?;
            match auto_choice(settings, &path) {
                Ok(()) => match OpenVinoBackend::load(&path, openvino_options(settings)) {
                    Ok(backend) => Ok(announce_openvino(element, backend)),
                    // A model OpenVINO cannot compile may still run on ONNX Runtime.
                    Err(error) if settings.precision == Precision::F32 => load_onnxruntime(
                        element,
                        &path,
                        settings,
                        &format!("OpenVINO could not compile it: {error}"),
                    ),
                    Err(error) => Err(openvino_error(error)),
                },
                Err(reason) => load_onnxruntime(element, &path, settings, &reason),
            }
        }
        BackendKind::OnnxRuntime => load_onnxruntime(element, &local_file()?, settings, ""),
        BackendKind::OpenVino => {
            let backend = OpenVinoBackend::load(&local_file()?, openvino_options(settings))
                .map_err(openvino_error)?;
            Ok(announce_openvino(element, backend))
        }
        BackendKind::TritonHttp | BackendKind::TritonGrpc => {
            let server = settings.server.as_deref().ok_or_else(|| {
                gst::error_msg!(
                    gst::ResourceError::Settings,
                    (
                        "property 'server' is not set: backend={} needs the server's address",
                        settings.kind.nick()
                    )
                )
            })?;
            let servers = server_list(server).map_err(|reason| {
                gst::error_msg!(
                    gst::ResourceError::Settings,
                    ("property 'server': {}", reason)
                )
            })?;
            if cfg!(not(feature = "triton-grpc")) && settings.kind == BackendKind::TritonGrpc {
                return Err(gst::error_msg!(
                    gst::LibraryError::Init,
                    ("backend=triton: this build of neuralfx has no gRPC client (cargo feature 'triton-grpc'); use backend=triton-http")
                ));
            }
            let timeout = Duration::from_millis(u64::from(settings.request_timeout_ms));
            let version = settings.model_version.as_deref();
            let headers = request_headers(settings)?;
            let server_refs: Vec<&str> = servers.iter().map(String::as_str).collect();
            let secrets = Secrets::new(&server_refs, &headers);
            let model_error = |error| model_error(secrets.redact_error(error));
            let tls = settings
                .tls
                .is_set()
                .then(|| settings.tls.load())
                .transpose()
                .map_err(|reason| gst::error_msg!(gst::ResourceError::OpenRead, ("{}", reason)))?;
            let options = ServerOptions {
                timeout,
                connections: settings.requests_in_flight(),
                headers,
                tls,
            };
            let addresses: Vec<String> = servers.iter().map(|s| redact_url(s)).collect();
            let mut connectors: Vec<(String, Connector)> = servers
                .iter()
                .zip(&addresses)
                .map(|(server, address)| {
                    let connector =
                        triton_connector(settings.kind, server, model, version, &options);
                    (address.clone(), connector)
                })
                .collect();
            let backend: Box<dyn RemoteModel> = if connectors.len() == 1 {
                let (_, connect) = connectors.remove(0);
                connect().map_err(model_error)?
            } else {
                let pool = ServerPool::connect(
                    &super::triton::model_name(model, version),
                    connectors,
                    Some(server_warnings(element, secrets.clone())),
                )
                .map_err(model_error)?;
                Box::new(pool)
            };
            let runs_on = format!(
                "Triton at {} ({})",
                addresses.join(", "),
                triton_protocol(settings.kind)
            );
            post_info(
                element,
                &format!(
                    "{} runs on {runs_on}",
                    super::triton::model_name(model, version)
                ),
            );
            Ok(remote_backend(element, backend, settings, runs_on, secrets))
        }
        BackendKind::SageMaker => {
            if settings.headers.is_some() || settings.tls.is_set() {
                return Err(gst::error_msg!(
                    gst::ResourceError::Settings,
                    ("properties 'headers' and 'tls-*' are for backend=triton and triton-http; a SageMaker request is signed with the AWS credentials (and endpoint-url may be https://)")
                ));
            }
            let backend = sagemaker_backend(settings, local_file)?;
            #[cfg(feature = "sagemaker")]
            let routing = settings.sagemaker_routing().describe();
            #[cfg(not(feature = "sagemaker"))]
            let routing = String::new();
            let runs_on = format!(
                "the SageMaker endpoint {}{routing} ({} payload)",
                settings.endpoint.as_deref().unwrap_or_default(),
                settings.payload.nick()
            );
            post_info(element, &format!("the model runs on {runs_on}"));
            let endpoint_url = settings.endpoint_url.as_deref();
            let secrets = Secrets::new(endpoint_url.as_slice(), &RequestHeaders::default());
            Ok(remote_backend(element, backend, settings, runs_on, secrets))
        }
    }
}

/// Whether `backend=auto` runs `path` on OpenVINO; if not, why not.
fn auto_choice(settings: &BackendSettings, path: &Path) -> Result<(), String> {
    if settings.precision == Precision::Bf16 {
        return Ok(());
    }
    if settings.execution_provider == ExecutionProvider::Cuda {
        return Err("execution-provider=cuda is ONNX Runtime's".into());
    }
    // Reading the file costs a few milliseconds even for ISNet's 170 MB.
    if std::fs::read(path)
        .is_ok_and(|bytes| super::onnx_graph::uses_dynamic_integer_operators(&bytes))
    {
        return Err(format!(
            "the model uses {} (dynamic quantization), which ONNX Runtime runs about twice as fast",
            super::onnx_graph::DYNAMIC_INTEGER_OPERATORS.join("/")
        ));
    }
    super::openvino::available().map_err(|e| e.to_string())
}

fn openvino_options(settings: &BackendSettings) -> CompileOptions {
    CompileOptions {
        threads: settings.threads as usize,
        precision: settings.precision,
    }
}

fn openvino_error(error: InferenceError) -> gst::ErrorMessage {
    match error {
        InferenceError::ModelLoad { .. } => {
            gst::error_msg!(
                gst::ResourceError::OpenRead,
                ("property 'model': {}", error)
            )
        }
        _ => gst::error_msg!(gst::LibraryError::Init, ("backend=openvino: {}", error)),
    }
}

/// Says on the bus what runs the model, as for ONNX Runtime.
fn announce_openvino(
    element: &impl IsA<gst::Element>,
    backend: Arc<OpenVinoBackend>,
) -> LoadedBackend {
    let runs_on = backend.description().to_string();
    post_info(
        element,
        &format!("{} runs on {runs_on}", backend.model_name()),
    );
    LoadedBackend {
        model: backend,
        runs_on,
        cancellation: None,
    }
}

/// ONNX Runtime; `why_not_openvino` says why backend=auto did not choose OpenVINO.
fn load_onnxruntime(
    element: &impl IsA<gst::Element>,
    path: &Path,
    settings: &BackendSettings,
    why_not_openvino: &str,
) -> Result<LoadedBackend, gst::ErrorMessage> {
    let options = SessionOptions {
        threads: settings.threads as usize,
        execution_provider: settings.execution_provider,
    };
    let backend = load_model(element, path, options, why_not_openvino)?;
    let runs_on = format!(
        "ONNX Runtime's {} ({})",
        backend.provider(),
        super::runtime::loaded_library().map_or("?".into(), |p| p.display().to_string())
    );
    // Says what runs, so a user can check that the GPU is used.
    let why = if why_not_openvino.is_empty() {
        String::new()
    } else {
        format!(" (backend=auto: not OpenVINO, as {why_not_openvino})")
    };
    post_info(
        element,
        &format!("{} runs on {runs_on}{why}", backend.model_name()),
    );
    Ok(LoadedBackend {
        model: backend,
        runs_on,
        cancellation: None,
    })
}

/// A SageMaker endpoint serving the model of `local_file`, whose tensors' names and shapes it
/// reads from the file (no runtime session): SageMaker has no metadata call.
#[cfg(feature = "sagemaker")]
fn sagemaker_backend(
    settings: &BackendSettings,
    local_file: impl FnOnce() -> Result<PathBuf, gst::ErrorMessage>,
) -> Result<Box<dyn RemoteModel>, gst::ErrorMessage> {
    use super::image_payload::ImageEncoding;
    use super::sagemaker::{
        EndpointClient, EndpointSettings, SageMakerImageBackend, SageMakerTensorBackend,
    };
    let Some(endpoint) = settings.endpoint.clone() else {
        return Err(gst::error_msg!(
            gst::ResourceError::Settings,
            ("property 'endpoint' is not set: backend=sagemaker needs the endpoint's name")
        ));
    };
    let client = EndpointClient::connect(EndpointSettings {
        endpoint,
        region: settings.region.clone(),
        endpoint_url: settings.endpoint_url.clone(),
        content_type: settings.content_type.clone(),
        timeout: Duration::from_millis(u64::from(settings.request_timeout_ms)),
        routing: settings.sagemaker_routing(),
        custom_attributes: settings.custom_attributes.clone(),
    })
    .map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ("{}", e)))?;
    let encoding = match settings.payload {
        Payload::Tensor => None,
        Payload::Png => Some(ImageEncoding::Png),
        Payload::Jpeg => Some(ImageEncoding::Jpeg(90)),
    };
    if let Some(encoding) = encoding {
        return Ok(Box::new(SageMakerImageBackend::new(client, encoding)));
    }
    // The tensors' names and shapes, read from the file itself: nothing runs here.
    let path = local_file()?;
    let not_read = |reason: String| {
        gst::error_msg!(
            gst::ResourceError::OpenRead,
            (
                "property 'model': {} gives the SageMaker endpoint's tensor names and shapes, \
                 but {}",
                path.display(),
                reason
            )
        )
    };
    let bytes = std::fs::read(&path).map_err(|e| not_read(format!("cannot be read: {e}")))?;
    let (inputs, outputs) = super::onnx_graph::tensor_specs(&bytes)
        .ok_or_else(|| not_read("it is not an ONNX model".into()))?;
    drop(bytes);
    check_request_size(&inputs, settings)?;
    Ok(Box::new(SageMakerTensorBackend::new(
        client, inputs, outputs,
    )))
}

#[cfg(not(feature = "sagemaker"))]
fn sagemaker_backend(
    _settings: &BackendSettings,
    _local_file: impl FnOnce() -> Result<PathBuf, gst::ErrorMessage>,
) -> Result<Box<dyn RemoteModel>, gst::ErrorMessage> {
    Err(gst::error_msg!(
        gst::LibraryError::Init,
        ("backend=sagemaker: this build of neuralfx has no SageMaker client (cargo feature 'sagemaker')")
    ))
}

/// Connects to the Triton model on `server` as `kind` says, each time it is called.
fn triton_connector(
    kind: BackendKind,
    server: &str,
    model: &str,
    version: Option<&str>,
    options: &ServerOptions,
) -> Connector {
    let (server, model) = (server.to_string(), model.to_string());
    let (version, options) = (version.map(str::to_string), options.clone());
    Box::new(move || -> Result<Box<dyn RemoteModel>, InferenceError> {
        let version = version.as_deref();
        #[cfg(feature = "triton-grpc")]
        if kind == BackendKind::TritonGrpc {
            return Ok(Box::new(TritonGrpcBackend::connect(
                &server, &model, version, &options,
            )?));
        }
        let _ = kind;
        Ok(Box::new(TritonHttpBackend::connect(
            &server, &model, version, &options,
        )?))
    })
}

/// What befalls the servers of a list, as warnings on the bus (secrets taken out).
fn server_warnings(element: &impl IsA<gst::Element>, secrets: Secrets) -> ServerObserver {
    let element = element.upcast_ref::<gst::Element>().downgrade();
    Box::new(move |text| {
        if let Some(element) = element.upgrade() {
            gst::element_warning!(
                element,
                gst::ResourceError::Read,
                ("{} (property 'server')", secrets.redact(text))
            );
        }
    })
}

/// The `headers` property, parsed.
fn request_headers(settings: &BackendSettings) -> Result<RequestHeaders, gst::ErrorMessage> {
    RequestHeaders::parse(settings.headers.as_deref().unwrap_or_default()).map_err(|reason| {
        gst::error_msg!(
            gst::ResourceError::Settings,
            ("property 'headers': {}", reason)
        )
    })
}

fn model_error(error: InferenceError) -> gst::ErrorMessage {
    let property = match error {
        InferenceError::ServerUnusable { .. } => "server",
        _ => "model",
    };
    gst::error_msg!(
        gst::ResourceError::OpenRead,
        ("property '{}': {}", property, error)
    )
}

fn triton_protocol(kind: BackendKind) -> &'static str {
    match kind {
        BackendKind::TritonGrpc => super::triton::GRPC,
        _ => super::triton::HTTP,
    }
}

/// An info message whose text is also its debug string: gst-launch-1.0 prints only an info
/// message's debug string, which for the element macros is the source file and line.
fn post_info(element: &impl IsA<gst::Element>, text: &str) {
    let message = gst::message::Info::builder(gst::LibraryError::Init, text)
        .debug(text)
        .src(element.upcast_ref::<gst::Element>())
        .build();
    let _ = element.post_message(message);
}

/// A server's model as the element runs it: tried as `retries`, `request-timeout` and
/// `frame-deadline` say, with a warning on the bus before each retry, and given up on by the
/// element's flushes and stops.
fn remote_backend(
    element: &impl IsA<gst::Element>,
    model: Box<dyn RemoteModel>,
    settings: &BackendSettings,
    runs_on: String,
    secrets: Secrets,
) -> LoadedBackend {
    let policy = RetryPolicy::new(
        settings.retries,
        Duration::from_millis(u64::from(settings.request_timeout_ms)),
        (settings.frame_deadline_ms > 0)
            .then(|| Duration::from_millis(u64::from(settings.frame_deadline_ms))),
    );
    let cancellation = Arc::new(Cancellation::default());
    let element = element.upcast_ref::<gst::Element>().downgrade();
    let backend = RemoteBackend::new(model, policy, cancellation.clone())
        .with_secrets(secrets)
        .with_observer(Box::new(move |retry, of, pause, error| {
            if let Some(element) = element.upgrade() {
                let asked = if error.retry_after().is_some() {
                    ", as the server asked"
                } else {
                    ""
                };
                gst::element_warning!(
                    element,
                    gst::ResourceError::Read,
                    (
                        "{}; retry {} of {} in {:.1} s{} (property 'retries')",
                        error,
                        retry,
                        of,
                        pause.as_secs_f64(),
                        asked
                    )
                );
            }
        }));
    LoadedBackend {
        model: Arc::new(backend),
        runs_on,
        cancellation: Some(cancellation),
    }
}

/// Loads (or shares) the session for `path`; a CUDA fallback becomes a warning on the bus.
fn load_model(
    element: &impl IsA<gst::Element>,
    path: &Path,
    options: SessionOptions,
    why_not_openvino: &str,
) -> Result<Arc<OnnxBackend>, gst::ErrorMessage> {
    let backend = OnnxBackend::load(path, options).map_err(|e| match e {
        InferenceError::Runtime(_) if !why_not_openvino.is_empty() => gst::error_msg!(
            gst::LibraryError::Init,
            (
                "{}\n(backend=auto tried OpenVINO first: {})",
                e,
                why_not_openvino
            )
        ),
        InferenceError::Runtime(_) => gst::error_msg!(gst::LibraryError::Init, ("{}", e)),
        _ => gst::error_msg!(gst::ResourceError::OpenRead, ("property 'model': {}", e)),
    })?;
    if let Some(warning) = backend.fallback_warning() {
        gst::element_warning!(element, gst::LibraryError::Init, ("{}", warning));
    }
    Ok(backend)
}

/// What an inference element's read-only `stats` property reports, counted from `start()`:
/// frames output, model runs, and the time inside the model's runs (not the work around them),
/// so that users and benchmarks can tell the two apart.
#[derive(Debug, Default, Clone, Copy)]
pub struct InferenceStats {
    pub frames: u64,
    pub model_runs: u64,
    pub model_time: std::time::Duration,
}

impl InferenceStats {
    pub fn count_model_run(&mut self, model_time: std::time::Duration) {
        self.model_runs += 1;
        self.model_time += model_time;
    }

    /// The property's value: a structure named `name` with `frames`, `model-runs` and
    /// `model-time` (nanoseconds), all guint64.
    pub fn to_structure(self, name: &str) -> gst::Structure {
        gst::Structure::builder(name)
            .field("frames", self.frames)
            .field("model-runs", self.model_runs)
            .field("model-time", self.model_time.as_nanos() as u64)
            .build()
    }
}

/// Records what runs for the read-only `active-backend` property and notifies it, so
/// `gst-launch-1.0 -v` prints it: the quickest check of what runs (the GPU or not).
pub fn set_active_backend(
    element: &impl IsA<glib::Object>,
    active_backend: &std::sync::Mutex<String>,
    runs_on: String,
) {
    *active_backend.lock().unwrap() = runs_on;
    element.notify("active-backend");
}

/// Posts a GStreamer `progress` message from `element` (gst-launch and the scripts print them).
pub fn post_progress(
    element: &impl IsA<gst::Element>,
    kind: gst::ProgressType,
    code: &str,
    text: &str,
) {
    let _ = element.post_message(
        gst::message::Progress::builder(kind, code, text)
            .src(element.upcast_ref::<gst::Element>())
            .build(),
    );
}

/// A first-use model download as `progress` messages (code "download"): start, bytes so far,
/// complete or error; each also logged in the element's debug category `cat`.
pub fn post_download_progress(
    element: &impl IsA<gst::Element>,
    cat: gst::DebugCategory,
    model: &str,
    event: crate::segmentation::download::DownloadEvent,
) {
    use crate::segmentation::download::DownloadEvent;
    let kind = match event {
        DownloadEvent::Started { .. } => gst::ProgressType::Start,
        DownloadEvent::Received { .. } => gst::ProgressType::Continue,
        DownloadEvent::Finished { .. } => gst::ProgressType::Complete,
        DownloadEvent::Failed => gst::ProgressType::Error,
    };
    let text = event.describe(model);
    gst::info!(cat, obj = element, "{text}");
    post_progress(element, kind, "download", &text);
}

/// Property `model` of `element` as a file: a path, or a catalog name found in the model folders
/// or, with `download`, downloaded with its progress posted.
pub fn locate_model(
    element: &impl IsA<gst::Element>,
    cat: gst::DebugCategory,
    model: &str,
    download: bool,
) -> Result<crate::segmentation::locate::ResolvedModel, gst::ErrorMessage> {
    crate::segmentation::locate::resolve_reporting(model, download, &mut |event| {
        post_download_progress(element, cat, model, event)
    })
    .map_err(|e| gst::error_msg!(gst::ResourceError::NotFound, ("property 'model': {}", e)))
}

/// The read-only `stats` property; `blurb` says what the element's figures mean.
pub fn stats_param_spec(blurb: &str) -> glib::ParamSpec {
    glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
        .nick("Statistics")
        .blurb(blurb)
        .read_only()
        .build()
}

/// Keeps the properties that take effect only at start (flagged `mutable_ready`: the model, its
/// runtime, its server, its input statistics...) from changing under a running element: a new
/// value is refused with a bus warning naming the property and what still runs, so reading the
/// property back reports what runs. They take new values in the NULL and READY states.
#[derive(Debug, Default)]
pub struct StartSettingsGuard {
    running: AtomicBool,
}

impl StartSettingsGuard {
    /// Called from `start()` (true) and `stop()` (false).
    pub fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::SeqCst);
    }

    /// Whether setting `pspec` now must be refused; if so the warning is posted, with the value
    /// in force that `current` reads (only then).
    pub fn refuses(
        &self,
        element: &impl IsA<gst::Element>,
        pspec: &glib::ParamSpec,
        current: impl FnOnce() -> glib::Value,
    ) -> bool {
        let start_only = pspec.flags().contains(gst::PARAM_FLAG_MUTABLE_READY)
            && !pspec.flags().contains(gst::PARAM_FLAG_MUTABLE_PLAYING);
        if !start_only || !self.running.load(Ordering::SeqCst) {
            return false;
        }
        let shown = current()
            .serialize()
            .map(|text| text.to_string())
            .unwrap_or_else(|_| "its value".into());
        gst::element_warning!(
            element,
            gst::LibraryError::Settings,
            (
                "property '{}' cannot change while the element runs: it keeps {} (set it in the NULL or READY state)",
                pspec.name(),
                shown
            )
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_helper_model_runs_here_whatever_the_backend() {
        let served = BackendSettings {
            kind: BackendKind::TritonGrpc,
            precision: Precision::Bf16,
            threads: 2,
            ..BackendSettings::default()
        };
        let local = served.in_this_process();
        assert_eq!(
            (local.kind, local.precision, local.threads),
            (BackendKind::Auto, Precision::Bf16, 2)
        );
        let openvino = BackendSettings {
            kind: BackendKind::OpenVino,
            ..BackendSettings::default()
        };
        assert_eq!(openvino.in_this_process(), openvino);
    }
}
