//! A model served over KServe v2's gRPC protocol (Triton's port 8001), with the client that
//! build.rs generates from `grpc_predict_v2.proto`. Tensors travel as raw bytes
//! (`raw_input_contents`, `raw_output_contents`); one channel serves the element's whole life.

use std::time::Duration;

use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::inference::remote::{BlockingRuntime, RemoteModel, request_error};
use crate::inference::retry::Attempt;
use crate::inference::secrets::{RequestHeaders, redact_url};
use crate::inference::tls::TLS_PROPERTIES;
use crate::inference::{InferenceError, Tensor, TensorSpec, TensorView};

/// The client and messages generated from the proto.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("inference");
}

use proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use proto::{
    ModelInferRequest, ModelInferResponse, ModelMetadataRequest, ModelReadyRequest,
    ServerLiveRequest,
};

/// The largest message sent or received: gRPC's default of 4 MB is less than one 1024x1024
/// float32 image (12 MB), so the limit is raised to what a segmentation model can need.
const MAX_MESSAGE_BYTES: usize = 1 << 30;

/// HTTP/2 pings while requests are under way, and how long one may go unanswered before the
/// connection is dropped and dialled again. None while idle: gRPC servers by default turn away
/// clients that ping an idle connection more often than every 5 minutes (too_many_pings).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// The `headers` property as gRPC metadata, added to every call (`host` instead becomes the
/// channel's `:authority`).
#[derive(Clone, Default)]
struct ExtraMetadata(Vec<(AsciiMetadataKey, AsciiMetadataValue)>);

impl ExtraMetadata {
    fn new(headers: &RequestHeaders) -> Result<Self, String> {
        headers
            .iter()
            .filter(|(name, _)| *name != "host")
            .map(|(name, value)| {
                let key = AsciiMetadataKey::from_bytes(name.as_bytes())
                    .map_err(|_| format!("'{name}' is not a gRPC metadata name"))?;
                let value = AsciiMetadataValue::try_from(value)
                    .map_err(|_| format!("the value of '{name}' is not gRPC metadata text"))?;
                Ok((key, value))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl Interceptor for ExtraMetadata {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        for (key, value) in &self.0 {
            request.metadata_mut().insert(key.clone(), value.clone());
        }
        Ok(request)
    }
}

type Client = GrpcInferenceServiceClient<InterceptedService<Channel, ExtraMetadata>>;

fn client(channel: Channel, metadata: ExtraMetadata) -> Client {
    GrpcInferenceServiceClient::with_interceptor(channel, metadata)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// `endpoint` pinging every `interval` while requests are under way. A connection that died
/// quietly under a request (a restarted pod, a dropped NAT entry) is found by its pings, not by
/// the request waiting out its timeout.
fn keeping_alive(endpoint: Endpoint, interval: Duration) -> Endpoint {
    endpoint
        .http2_keep_alive_interval(interval)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(false)
        .tcp_keepalive(Some(interval))
}

/// A model on a KServe v2 server, reached over gRPC.
pub struct TritonGrpcBackend {
    /// The requests are made from the element's threads, which block on this runtime; its one
    /// worker thread drives the channel's connection.
    runtime: BlockingRuntime,
    client: Client,
    model: String,
    version: String,
    display_name: String,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

impl std::fmt::Debug for TritonGrpcBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TritonGrpcBackend")
            .field("model", &self.display_name)
            .finish_non_exhaustive()
    }
}

/// `server` as a URI tonic connects to: `host:port` and `grpc://` are plain HTTP/2, `grpcs://`
/// and `https://` use TLS.
pub fn server_uri(server: &str) -> String {
    let server = server.trim().trim_end_matches('/');
    if let Some(rest) = server.strip_prefix("grpc://") {
        format!("http://{rest}")
    } else if let Some(rest) = server.strip_prefix("grpcs://") {
        format!("https://{rest}")
    } else if server.contains("://") {
        server.to_string()
    } else {
        format!("http://{server}")
    }
}

/// A failed call in words, and whether it may pass: the server's status code and message, or
/// why the call did not get through.
fn describe_status(status: &tonic::Status) -> (String, bool) {
    use tonic::Code;
    // A connection that broke (reset, closed mid-answer) comes as UNKNOWN with tonic's
    // transport error under it: another try, or another server, may serve.
    let broken_connection = status.code() == Code::Unknown
        && std::error::Error::source(status)
            .is_some_and(|source| source.is::<tonic::transport::Error>());
    let transient = broken_connection
        || matches!(
            status.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Cancelled
        );
    let mut text = format!("server answered {:?}: {}", status.code(), status.message());
    if let Some(source) = std::error::Error::source(status) {
        text.push_str(": ");
        text.push_str(&crate::inference::error_with_causes(source));
    }
    (text, transient)
}

impl TritonGrpcBackend {
    /// Connects, checks that the server and the model are ready and reads the model's
    /// metadata; each failure names the server and what it answered. `timeout` bounds the
    /// connection and every call.
    pub fn connect(
        server: &str,
        model: &str,
        version: Option<&str>,
        options: &super::ServerOptions,
    ) -> Result<Self, InferenceError> {
        let (timeout, headers) = (options.timeout, &options.headers);
        let uri = server_uri(server);
        let served =
            super::ServedModel::new(model, version, &redact_url(server.trim()), super::GRPC);
        let display_name = served.display();
        let load_error = |reason: String| InferenceError::ModelLoad {
            path: display_name.clone(),
            reason,
        };
        let runtime = BlockingRuntime::new("neuralfx-grpc")
            .map_err(|e| load_error(format!("cannot start the gRPC runtime: {e}")))?;
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| {
                served.unusable(format!(
                    "'{}' is not a server address: {e}",
                    redact_url(server)
                ))
            })?
            .connect_timeout(timeout);
        endpoint = keeping_alive(endpoint, KEEPALIVE_INTERVAL);
        let metadata = ExtraMetadata::new(headers)
            .map_err(|e| served.unusable(format!("property 'headers': {e}")))?;
        if let Some(host) = headers.get("host") {
            let scheme = if uri.starts_with("https://") {
                "https"
            } else {
                "http"
            };
            let origin = format!("{scheme}://{host}").parse().map_err(|_| {
                served.unusable(format!(
                    "property 'headers': host '{host}' is not a host name"
                ))
            })?;
            endpoint = endpoint.origin(origin);
        }
        if uri.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(files) = &options.tls {
                if let Some(ca) = &files.ca_pem {
                    tls = tls.ca_certificate(Certificate::from_pem(ca));
                }
                if let Some((chain, key)) = &files.identity {
                    tls = tls.identity(Identity::from_pem(chain, key));
                }
                if let Some(name) = &files.server_name {
                    tls = tls.domain_name(name);
                }
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| {
                served.unusable(format!("TLS: {}", crate::inference::error_with_causes(&e)))
            })?;
        } else if options.tls.is_some() {
            return Err(served.unusable(format!(
                "{TLS_PROPERTIES} need a grpcs:// or https:// address"
            )));
        }
        let channel = runtime
            .within(&display_name, timeout, endpoint.connect())
            .map_err(|_| served.unusable(format!("no connection within {timeout:?}")))?
            .map_err(|e| {
                served.unusable(format!(
                    "cannot connect: {}",
                    crate::inference::error_with_causes(&e)
                ))
            })?;
        let client = client(channel, metadata);
        let version = version.unwrap_or_default().to_string();
        let call_error = |what: &str, status: tonic::Status| {
            load_error(format!("{what}: {}", describe_status(&status).0))
        };
        // Bounded too: a server that takes the connection and never answers is an error.
        let (ready, metadata) = runtime.within(&display_name, timeout, async {
            let mut client = client.clone();
            // Liveness, not the server's readiness: by Triton's default (strict readiness) a
            // server is not ready while any of its models is not, and only this model's counts.
            let server_live = client
                .server_live(ServerLiveRequest {})
                .await
                .map_err(|s| {
                    served.unusable(format!("the server is not live: {}", describe_status(&s).0))
                })?
                .into_inner()
                .live;
            if !server_live {
                return Err(served.unusable("the server is not live".into()));
            }
            let model_ready = client
                .model_ready(ModelReadyRequest {
                    name: model.to_string(),
                    version: version.clone(),
                })
                .await
                .map(|answer| answer.into_inner().ready);
            // For a model it does not have, Triton only says "not ready" here; its metadata
            // call says "unknown model", which is what the user needs to read.
            let metadata = client
                .model_metadata(ModelMetadataRequest {
                    name: model.to_string(),
                    version: version.clone(),
                })
                .await
                .map_err(|s| call_error("the model is not available", s))?
                .into_inner();
            let ready = model_ready.map_err(|s| call_error("the model is not ready", s))?;
            Ok((ready, metadata))
        })??;
        if !ready {
            return Err(load_error("the model is not ready".into()));
        }
        let specs = |tensors: &[proto::model_metadata_response::TensorMetadata]| {
            tensors
                .iter()
                .map(|t| super::tensor_spec(&t.name, &t.datatype, &t.shape))
                .collect::<Result<Vec<_>, _>>()
                .map_err(load_error)
        };
        let inputs = specs(&metadata.inputs)?;
        let outputs = specs(&metadata.outputs)?;
        Ok(Self {
            runtime,
            client,
            model: model.to_string(),
            version,
            display_name,
            inputs,
            outputs,
        })
    }
}

impl RemoteModel for TritonGrpcBackend {
    fn display_name(&self) -> &str {
        &self.display_name
    }

    fn input_specs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn output_specs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn request(
        &self,
        inputs: &[TensorView<'_>],
        outputs: &[TensorSpec],
        attempt: &Attempt<'_>,
    ) -> Result<Vec<Tensor>, InferenceError> {
        let run_error = |reason: String| request_error(&self.display_name, reason, false);
        let request = infer_request(
            &self.model,
            &self.version,
            &self.inputs,
            inputs,
            outputs.iter().map(|o| o.name.as_str()),
        );
        let mut client = self.client.clone();
        let mut request = tonic::Request::new(request);
        // Sent as grpc-timeout: the server gives up on the request when the client does.
        request.set_timeout(attempt.timeout);
        let response = self
            .runtime
            .attempt(&self.display_name, attempt, client.model_infer(request))?
            .map_err(|status| {
                // The deadline sent with the request passed: the server gave up as we would,
                // or tonic's own timer of the same deadline fired first.
                let past_deadline = status.code() == tonic::Code::DeadlineExceeded
                    || (status.code() == tonic::Code::Cancelled
                        && status.message().contains("Timeout expired"));
                if past_deadline {
                    let text = format!("no answer within {:?}", attempt.timeout);
                    return request_error(&self.display_name, text, true);
                }
                let (text, transient) = describe_status(&status);
                request_error(&self.display_name, text, transient)
            })?
            .into_inner();
        let wanted: Vec<&str> = outputs.iter().map(|o| o.name.as_str()).collect();
        parse_infer_response(response, &wanted).map_err(run_error)
    }
}

/// A ModelInfer request with each input's data as raw bytes, asking for `outputs`.
pub fn infer_request<'a>(
    model: &str,
    version: &str,
    specs: &[TensorSpec],
    inputs: &[TensorView<'_>],
    outputs: impl Iterator<Item = &'a str>,
) -> ModelInferRequest {
    let wires: Vec<super::WireType> = specs.iter().map(super::input_wire_type).collect();
    ModelInferRequest {
        model_name: model.to_string(),
        model_version: version.to_string(),
        inputs: specs
            .iter()
            .zip(inputs)
            .zip(&wires)
            .map(|((spec, view), wire)| InferInputTensor {
                name: spec.name.clone(),
                datatype: wire.datatype().into(),
                shape: view.shape.iter().map(|&d| d as i64).collect(),
                ..Default::default()
            })
            .collect(),
        outputs: outputs
            .map(|name| InferRequestedOutputTensor {
                name: name.to_string(),
                ..Default::default()
            })
            .collect(),
        raw_input_contents: inputs
            .iter()
            .zip(&wires)
            .map(|(view, wire)| {
                let mut bytes = Vec::new();
                super::raw_bytes(view.data, *wire, &mut bytes);
                bytes
            })
            .collect(),
        ..Default::default()
    }
}

/// The outputs named in `wanted`, in that order, from an answer whose tensors come as raw bytes
/// (one entry of `raw_output_contents` per output) or as `fp32_contents`. Sizes are checked
/// against the shape before a tensor is made.
pub fn parse_infer_response(
    response: ModelInferResponse,
    wanted: &[&str],
) -> Result<Vec<Tensor>, String> {
    let ModelInferResponse {
        outputs,
        mut raw_output_contents,
        ..
    } = response;
    if !raw_output_contents.is_empty() && raw_output_contents.len() != outputs.len() {
        return Err(format!(
            "the answer has {} outputs and {} raw contents",
            outputs.len(),
            raw_output_contents.len()
        ));
    }
    wanted
        .iter()
        .map(|&name| {
            let at = outputs
                .iter()
                .position(|o| o.name == name)
                .ok_or_else(|| format!("the answer lacks output '{name}'"))?;
            let output = &outputs[at];
            if let Some(raw) = raw_output_contents.get_mut(at) {
                let bytes = std::mem::take(raw);
                return super::tensor_from_raw(name, Some(&output.datatype), &output.shape, &bytes);
            }
            // Typed contents: float32 and uint8 have fields of their own (float16 travels raw).
            let (shape, elements) = super::answer_shape(name, &output.shape)?;
            let contents = output.contents.as_ref();
            let data: Vec<f32> = match output.datatype.as_str() {
                "FP32" => contents
                    .map(|c| c.fp32_contents.clone())
                    .unwrap_or_default(),
                "UINT8" => contents
                    .map(|c| {
                        c.uint_contents
                            .iter()
                            .map(|&v| super::WireType::Uint8.to_f32(f64::from(v)))
                            .collect()
                    })
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            if data.len() != elements {
                return Err(format!(
                    "output '{name}' is {} of shape {shape:?} with {} values",
                    output.datatype,
                    data.len()
                ));
            }
            Ok(Tensor { shape, data })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::remote::RemoteBackend;
    use crate::inference::retry::RetryPolicy;
    use crate::inference::{Backend, ElementType};
    use proto::model_infer_response::InferOutputTensor;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    fn output(name: &str, datatype: &str, shape: &[i64]) -> InferOutputTensor {
        InferOutputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
            ..Default::default()
        }
    }

    fn raw(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// Counts the HTTP/2 PING frames a client sends (not the acknowledgements), reading the
    /// frame headers of what passes: the 24-byte preface, then 9 bytes a frame and its payload.
    struct PingCounter {
        socket: tokio::net::TcpStream,
        to_skip: usize,
        header: Vec<u8>,
        seen: Arc<Seen>,
    }

    impl PingCounter {
        fn saw(&mut self, mut bytes: &[u8]) {
            while !bytes.is_empty() {
                if self.to_skip > 0 {
                    let skipped = self.to_skip.min(bytes.len());
                    self.to_skip -= skipped;
                    bytes = &bytes[skipped..];
                    continue;
                }
                let taken = (9 - self.header.len()).min(bytes.len());
                self.header.extend_from_slice(&bytes[..taken]);
                bytes = &bytes[taken..];
                if let [a, b, c, kind, flags, _, _, _, _] = self.header[..] {
                    if kind == 6 && flags & 1 == 0 {
                        self.seen.pings.fetch_add(1, Ordering::SeqCst);
                    }
                    self.to_skip = u32::from_be_bytes([0, a, b, c]) as usize;
                    self.header.clear();
                }
            }
        }
    }

    impl tokio::io::AsyncRead for PingCounter {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let this = self.get_mut();
            let before = buf.filled().len();
            let polled = std::pin::Pin::new(&mut this.socket).poll_read(cx, buf);
            if let std::task::Poll::Ready(Ok(())) = polled {
                let read = buf.filled()[before..].to_vec();
                this.saw(&read);
            }
            polled
        }
    }

    impl tokio::io::AsyncWrite for PingCounter {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::pin::Pin::new(&mut self.get_mut().socket).poll_write(cx, buf)
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.get_mut().socket).poll_flush(cx)
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.get_mut().socket).poll_shutdown(cx)
        }
    }

    /// What [`holding_server`] saw: the client's pings so far, each request's grpc-timeout.
    #[derive(Default)]
    struct Seen {
        pings: AtomicUsize,
        timeouts: Mutex<Vec<String>>,
    }

    /// An HTTP/2 server on 127.0.0.1 that holds each request until its client has pinged
    /// `pings` times, then answers it with a gRPC error saying so.
    fn holding_server(pings: usize) -> (tokio::runtime::Runtime, String, Arc<Seen>) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Seen::default());
        let recorded = seen.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let (socket, _) = listener.accept().await.unwrap();
            let tap = PingCounter {
                socket,
                to_skip: 24,
                header: Vec::new(),
                seen: recorded.clone(),
            };
            let mut connection = h2::server::handshake(tap).await.unwrap();
            // Accepting drives the connection: it answers the pings meanwhile.
            while let Some(Ok((request, mut respond))) = connection.accept().await {
                let timeout = request.headers().get("grpc-timeout");
                let before = recorded.pings.load(Ordering::SeqCst);
                recorded
                    .timeouts
                    .lock()
                    .unwrap()
                    .push(timeout.map_or("none".into(), |t| t.to_str().unwrap().into()));
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    while recorded.pings.load(Ordering::SeqCst) < before + pings {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    let head = http::Response::builder()
                        .status(200)
                        .header("content-type", "application/grpc")
                        .body(())
                        .unwrap();
                    let mut stream = respond.send_response(head, false).unwrap();
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", "13".parse().unwrap());
                    trailers.insert("grpc-message", "answered after the pings".parse().unwrap());
                    let _ = stream.send_trailers(trailers);
                });
            }
        });
        (runtime, address, seen)
    }

    #[test]
    fn a_request_pings_while_under_way_not_while_idle_and_sends_its_deadline() {
        const PINGS: usize = 3;
        let (_server, address, seen) = holding_server(PINGS);
        let runtime = BlockingRuntime::new("test-grpc").unwrap();
        let endpoint = Endpoint::from_shared(format!("http://{address}")).unwrap();
        let channel = runtime
            .within(
                "test",
                Duration::from_secs(60),
                keeping_alive(endpoint, Duration::from_millis(50)).connect(),
            )
            .unwrap()
            .unwrap();
        let spec = |name: &str| TensorSpec {
            name: name.into(),
            element_type: ElementType::Float32,
            shape: vec![Some(1)],
        };
        let backend = TritonGrpcBackend {
            runtime,
            client: client(channel, ExtraMetadata::default()),
            model: "m".into(),
            version: String::new(),
            display_name: "'m' on test".into(),
            inputs: vec![spec("x")],
            outputs: vec![spec("y")],
        };
        // Idle for ten intervals: no ping (servers turn away clients that ping idle connections).
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(seen.pings.load(Ordering::SeqCst), 0, "pinged while idle");
        let policy = RetryPolicy::new(0, Duration::from_secs(60), None);
        let model = RemoteBackend::new(Box::new(backend), policy, Arc::default());
        let err = model
            .run_first(&[TensorView {
                shape: &[1],
                data: &[0.5],
            }])
            .unwrap_err()
            .to_string();
        // The server answers only once pinged: without pings the request would wait a minute.
        assert!(err.contains("answered after the pings"), "{err}");
        // The deadline in the largest unit that keeps it to 8 digits, as gRPC writes it.
        assert_eq!(*seen.timeouts.lock().unwrap(), ["60000000u"]);
    }

    #[test]
    fn a_request_carries_each_input_as_raw_little_endian_bytes() {
        let spec = TensorSpec {
            name: "input.1".into(),
            element_type: ElementType::Float32,
            shape: vec![Some(1), Some(2)],
        };
        let data = [1.5f32, -3.0];
        let request = infer_request(
            "u2netp",
            "2",
            &[spec],
            &[TensorView {
                shape: &[1, 2],
                data: &data,
            }],
            ["mask"].into_iter(),
        );
        assert_eq!(request.model_name, "u2netp");
        assert_eq!(request.model_version, "2");
        assert_eq!(request.inputs[0].name, "input.1");
        assert_eq!(request.inputs[0].datatype, "FP32");
        assert_eq!(request.inputs[0].shape, [1, 2]);
        assert_eq!(request.raw_input_contents, [raw(&data)]);
        assert_eq!(request.outputs[0].name, "mask");
    }

    #[test]
    fn raw_outputs_come_back_by_name_in_the_order_asked() {
        let response = ModelInferResponse {
            outputs: vec![output("b", "FP32", &[1, 2]), output("a", "FP32", &[1])],
            raw_output_contents: vec![raw(&[3.0, 4.0]), raw(&[1.0])],
            ..Default::default()
        };
        let tensors = parse_infer_response(response, &["a", "b"]).unwrap();
        assert_eq!(tensors[0].data, [1.0]);
        assert_eq!(tensors[1].shape, [1, 2]);
        assert_eq!(tensors[1].data, [3.0, 4.0]);
    }

    #[test]
    fn answers_that_do_not_add_up_are_refused() {
        let short = ModelInferResponse {
            outputs: vec![output("a", "FP32", &[3])],
            raw_output_contents: vec![raw(&[1.0, 2.0])],
            ..Default::default()
        };
        let err = parse_infer_response(short, &["a"]).unwrap_err();
        assert!(err.contains("expected FP32"), "{err}");
        let wrong_type = ModelInferResponse {
            outputs: vec![output("a", "INT64", &[1])],
            raw_output_contents: vec![vec![0; 8]],
            ..Default::default()
        };
        assert!(parse_infer_response(wrong_type, &["a"]).is_err());
        let huge = ModelInferResponse {
            outputs: vec![output("a", "FP32", &[1 << 40, 1 << 40])],
            raw_output_contents: vec![vec![]],
            ..Default::default()
        };
        assert!(parse_infer_response(huge, &["a"]).is_err());
        let mismatched = ModelInferResponse {
            outputs: vec![output("a", "FP32", &[1]), output("b", "FP32", &[1])],
            raw_output_contents: vec![raw(&[1.0])],
            ..Default::default()
        };
        assert!(parse_infer_response(mismatched, &["a"]).is_err());
        let missing = ModelInferResponse::default();
        let err = parse_infer_response(missing, &["mask"]).unwrap_err();
        assert!(err.contains("lacks output 'mask'"), "{err}");
    }

    #[test]
    fn typed_contents_are_read_when_no_raw_bytes_come() {
        let mut tensor = output("a", "FP32", &[2]);
        tensor.contents = Some(proto::InferTensorContents {
            fp32_contents: vec![0.25, 0.75],
            ..Default::default()
        });
        let response = ModelInferResponse {
            outputs: vec![tensor],
            ..Default::default()
        };
        assert_eq!(
            parse_infer_response(response, &["a"]).unwrap()[0].data,
            [0.25, 0.75]
        );
    }

    #[test]
    fn server_addresses_become_uris() {
        assert_eq!(server_uri("127.0.0.1:8001"), "http://127.0.0.1:8001");
        assert_eq!(server_uri("grpc://triton:8001/"), "http://triton:8001");
        assert_eq!(server_uri("grpcs://triton:443"), "https://triton:443");
        assert_eq!(server_uri("https://triton"), "https://triton");
    }

    #[test]
    fn an_absent_server_is_named_quickly() {
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let started = std::time::Instant::now();
        let err = TritonGrpcBackend::connect(
            &format!("127.0.0.1:{port}"),
            "u2netp",
            None,
            &crate::inference::triton::ServerOptions {
                timeout: Duration::from_secs(5),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
        assert!(err.contains("cannot connect"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
