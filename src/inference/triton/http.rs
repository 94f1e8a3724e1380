//! A model served over KServe v2's HTTP/REST protocol (Triton's `/v2/...` endpoints), tensors
//! sent and received with the binary tensor extension: a JSON header of
//! `Inference-Header-Content-Length` bytes, then the raw little-endian tensor data.

use std::io::Read;
use std::time::Duration;

use crate::inference::remote::{RemoteModel, request_error, run_cancellably};
use crate::inference::retry::Attempt;
use crate::inference::secrets::{RequestHeaders, redact_url};
use crate::inference::tls::TLS_PROPERTIES;

use crate::inference::{InferenceError, Tensor, TensorSpec, TensorView};

/// The largest answer read from a server (a 1024x1024 mask with all its side outputs is tens
/// of MB): a bigger one is refused rather than buffered.
const MAX_RESPONSE_BYTES: u64 = 1 << 30;

/// A model on a KServe v2 server, reached over HTTP. One connection pool for the element's life.
pub struct TritonHttpBackend {
    /// `http://host:port`, no trailing slash.
    server: String,
    /// `/v2/models/<name>[/versions/<version>]`
    model_path: String,
    display_name: String,
    agent: ureq::Agent,
    /// Sent with every request.
    headers: RequestHeaders,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

impl std::fmt::Debug for TritonHttpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TritonHttpBackend")
            .field("model", &self.display_name)
            .finish_non_exhaustive()
    }
}

/// `server` with a scheme (http:// when none is given) and no trailing slash.
pub fn server_url(server: &str) -> String {
    let server = server.trim().trim_end_matches('/');
    if server.contains("://") {
        server.to_string()
    } else {
        format!("http://{server}")
    }
}

impl TritonHttpBackend {
    /// Checks that the server and the model are ready and reads the model's metadata; each
    /// failure names the server and what it answered.
    pub fn connect(
        server: &str,
        model: &str,
        version: Option<&str>,
        options: &super::ServerOptions,
    ) -> Result<Self, InferenceError> {
        let (timeout, headers) = (options.timeout, &options.headers);
        let server = server_url(server);
        let model_path = match version {
            Some(version) => format!("/v2/models/{model}/versions/{version}"),
            None => format!("/v2/models/{model}"),
        };
        let served = super::ServedModel::new(model, version, &redact_url(&server), super::HTTP);
        let display_name = served.display();
        let mut agent = ureq::AgentBuilder::new()
            .timeout_connect(timeout)
            .timeout(timeout)
            .max_idle_connections_per_host(options.connections.max(1));
        if let Some(tls) = &options.tls {
            if !server.starts_with("https://") {
                return Err(served.unusable(format!("{TLS_PROPERTIES} need an https:// address")));
            }
            agent = agent.tls_config(tls.client_config().map_err(|e| served.unusable(e))?);
        }
        let agent = agent.build();
        let load_error = |reason: String| InferenceError::ModelLoad {
            path: display_name.clone(),
            reason,
        };
        // Liveness, not the server's readiness: by Triton's default (strict readiness) a server
        // is not ready while any of its models is not, and only this model's readiness counts.
        let get = |url: &str| get(&agent, url, headers);
        get(&format!("{server}/v2/health/live"))
            .map_err(|e| served.unusable(format!("the server is not live: {e}")))?;
        let ready = get(&format!("{server}{model_path}/ready"));
        let metadata = get(&format!("{server}{model_path}"));
        // For a model it does not have, Triton's ready endpoint only says "not ready"; its
        // metadata endpoint says "unknown model", which is what the user needs to read.
        let metadata = match (ready, metadata) {
            (Ok(_), Ok(metadata)) => metadata,
            (Err(_), Err(e)) | (Ok(_), Err(e)) => {
                return Err(load_error(format!("the model is not available: {e}")));
            }
            (Err(e), Ok(_)) => return Err(load_error(format!("the model is not ready: {e}"))),
        };
        let metadata: serde_json::Value = serde_json::from_str(&metadata)
            .map_err(|e| load_error(format!("model metadata is not JSON: {e}")))?;
        let inputs = super::tensor_specs(&metadata, "inputs").map_err(load_error)?;
        let outputs = super::tensor_specs(&metadata, "outputs").map_err(load_error)?;
        Ok(Self {
            server,
            model_path,
            display_name,
            agent,
            headers: headers.clone(),
            inputs,
            outputs,
        })
    }
}

/// `request` with the extra `headers`.
fn with_headers(mut request: ureq::Request, headers: &RequestHeaders) -> ureq::Request {
    for (name, value) in headers.iter() {
        request = request.set(name, value);
    }
    request
}

/// GET `url`: the body of a 200 answer, or what went wrong, with the server's own message.
fn get(agent: &ureq::Agent, url: &str, headers: &RequestHeaders) -> Result<String, String> {
    match with_headers(agent.get(url), headers).call() {
        Ok(response) => {
            let mut body = String::new();
            response
                .into_reader()
                .take(1 << 20)
                .read_to_string(&mut body)
                .map_err(|e| format!("{url}: {e}"))?;
            Ok(body)
        }
        Err(err) => Err(describe(url, err)),
    }
}

/// A failed request in words: the HTTP status with the server's `error` message, or why no
/// answer came (refused, timed out).
fn describe(url: &str, err: ureq::Error) -> String {
    match err {
        ureq::Error::Status(code, response) => {
            let body = response.into_string().unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or(body);
            format!("{url} answered HTTP {code}: {}", message.trim())
        }
        // ureq's own text starts with the URL already.
        ureq::Error::Transport(transport) => match transport.to_string() {
            text if text.starts_with(url) => text,
            text => format!("{url}: {text}"),
        },
    }
}

/// A `Retry-After` header's pause: delay-seconds (RFC 9110); an HTTP date is not read, and
/// the usual pauses apply.
pub fn retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The body of an inference request: the JSON header (its length is returned too) asking for
/// every output in binary, then each input's data as the little-endian values of its declared
/// type (float32, float16 or uint8).
pub fn infer_request(
    inputs: &[(&TensorSpec, TensorView<'_>)],
    outputs: &[TensorSpec],
) -> (Vec<u8>, usize) {
    let wires: Vec<super::WireType> = inputs
        .iter()
        .map(|(spec, _)| super::input_wire_type(spec))
        .collect();
    let header = serde_json::json!({
        "inputs": inputs.iter().zip(&wires).map(|((spec, view), wire)| serde_json::json!({
            "name": spec.name,
            "shape": view.shape,
            "datatype": wire.datatype(),
            "parameters": {"binary_data_size": view.data.len() * wire.size()},
        })).collect::<Vec<_>>(),
        "outputs": outputs.iter().map(|spec| serde_json::json!({
            "name": spec.name,
            "parameters": {"binary_data": true},
        })).collect::<Vec<_>>(),
    })
    .to_string();
    let data_len: usize = inputs
        .iter()
        .zip(&wires)
        .map(|((_, view), wire)| view.data.len() * wire.size())
        .sum();
    let mut body = Vec::with_capacity(header.len() + data_len);
    body.extend_from_slice(header.as_bytes());
    for ((_, view), wire) in inputs.iter().zip(&wires) {
        super::raw_bytes(view.data, *wire, &mut body);
    }
    (body, header.len())
}

/// Reads an inference answer: a JSON header of `header_len` bytes (the whole body when the
/// server sent no binary data), then the outputs' binary data in the order the header lists
/// them. Returns the outputs named in `wanted`, in that order, as float32. Sizes are checked
/// against the body before anything is allocated from them.
pub fn parse_infer_response(
    header_len: Option<usize>,
    body: &[u8],
    wanted: &[String],
) -> Result<Vec<Tensor>, String> {
    let header_len = header_len.unwrap_or(body.len());
    let (header, mut binary) = body.split_at_checked(header_len).ok_or_else(|| {
        format!(
            "header of {header_len} bytes in a {}-byte answer",
            body.len()
        )
    })?;
    let header: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| format!("answer header is not JSON: {e}"))?;
    let outputs = header
        .get("outputs")
        .and_then(serde_json::Value::as_array)
        .ok_or("the answer has no 'outputs'")?;
    let mut found: Vec<(String, Tensor)> = Vec::with_capacity(outputs.len().min(64));
    for output in outputs {
        let name = output
            .get("name")
            .and_then(serde_json::Value::as_str)
            .ok_or("an output of the answer has no name")?;
        let datatype = output.get("datatype").and_then(serde_json::Value::as_str);
        let dims: Vec<i64> = output
            .get("shape")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| format!("output '{name}' has no shape"))?
            .iter()
            .map(|d| {
                d.as_i64()
                    .ok_or_else(|| format!("output '{name}' has dimension {d}"))
            })
            .collect::<Result<_, _>>()?;
        // The shape is checked before any byte count taken from the answer is used.
        let (shape, elements) = super::answer_shape(name, &dims)?;
        let binary_size = output
            .get("parameters")
            .and_then(|p| p.get("binary_data_size"))
            .and_then(serde_json::Value::as_u64);
        let tensor = match binary_size {
            Some(size) => {
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                let (bytes, rest) = binary.split_at_checked(size).ok_or_else(|| {
                    format!(
                        "output '{name}' claims {size} bytes, {} are left in the answer",
                        binary.len()
                    )
                })?;
                binary = rest;
                super::tensor_from_raw(name, datatype, &dims, bytes)?
            }
            None => {
                let values = output
                    .get("data")
                    .and_then(serde_json::Value::as_array)
                    .ok_or_else(|| format!("output '{name}' has neither binary nor JSON data"))?;
                if values.len() != elements {
                    return Err(format!(
                        "output '{name}' of shape {shape:?} has {} values",
                        values.len()
                    ));
                }
                let wire = datatype
                    .and_then(super::WireType::from_datatype)
                    .unwrap_or(super::WireType::Fp32);
                let data = values
                    .iter()
                    .map(|v| v.as_f64().map(|v| wire.to_f32(v)))
                    .collect::<Option<Vec<f32>>>()
                    .ok_or_else(|| format!("output '{name}' holds a value that is not a number"))?;
                Tensor { shape, data }
            }
        };
        found.push((name.to_string(), tensor));
    }
    wanted
        .iter()
        .map(|name| {
            found
                .iter()
                .position(|(found, _)| found == name)
                .map(|at| found.swap_remove(at).1)
                .ok_or_else(|| format!("the answer lacks output '{name}'"))
        })
        .collect()
}

impl RemoteModel for TritonHttpBackend {
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
        let pairs: Vec<_> = self.inputs.iter().zip(inputs.iter().copied()).collect();
        let (body, header_len) = infer_request(&pairs, outputs);
        let url = format!("{}{}/infer", self.server, self.model_path);
        // ureq blocks until the answer or the timeout: the call runs on a thread of its own,
        // which a flush or a stop leaves behind to end on its own.
        let request = with_headers(self.agent.post(&url), &self.headers)
            .timeout(attempt.timeout)
            // Tensors barely compress, and compressing them costs the server time.
            .set("Accept-Encoding", "identity")
            .set("Content-Type", "application/octet-stream")
            .set("Inference-Header-Content-Length", &header_len.to_string());
        let display_name = self.display_name.clone();
        let (answer_header_len, answer) = run_cancellably(attempt, move || {
            send_and_read(request, &url, &body, &display_name)
        })?;
        let wanted: Vec<String> = outputs.iter().map(|o| o.name.clone()).collect();
        parse_infer_response(answer_header_len, &answer, &wanted).map_err(run_error)
    }
}

/// Sends `body` as `request` to `url` and reads the answer: its
/// Inference-Header-Content-Length and its bytes.
fn send_and_read(
    request: ureq::Request,
    url: &str,
    body: &[u8],
    display_name: &str,
) -> Result<(Option<usize>, Vec<u8>), InferenceError> {
    let run_error = |reason: String| request_error(display_name, reason, false);
    let response = request.send_bytes(body).map_err(|e| {
        let (transient, retry_after) = match &e {
            ureq::Error::Transport(_) => (true, None),
            // Too many requests, bad gateway, unavailable, gateway timeout.
            ureq::Error::Status(code, response) => (
                matches!(code, 429 | 502 | 503 | 504),
                response.header("Retry-After").and_then(retry_after),
            ),
        };
        match request_error(display_name, describe(url, e), transient) {
            InferenceError::Unavailable { reason, .. } => InferenceError::Unavailable {
                reason,
                retry_after,
            },
            other => other,
        }
    })?;
    let answer_header_len = response
        .header("Inference-Header-Content-Length")
        .map(|v| {
            v.parse::<usize>()
                .map_err(|_| run_error(format!("Inference-Header-Content-Length '{v}'")))
        })
        .transpose()?;
    let mut answer = Vec::new();
    response
        .into_reader()
        .take(MAX_RESPONSE_BYTES + 1)
        .read_to_end(&mut answer)
        // A body that stops coming (timeout, reset) may come whole next time.
        .map_err(|e| request_error(display_name, format!("reading the answer: {e}"), true))?;
    if answer.len() as u64 > MAX_RESPONSE_BYTES {
        return Err(run_error(format!(
            "answer larger than {MAX_RESPONSE_BYTES} bytes"
        )));
    }
    Ok((answer_header_len, answer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::ElementType;

    fn spec(name: &str) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            element_type: ElementType::Float32,
            shape: vec![Some(1), Some(2)],
        }
    }

    /// An answer as Triton writes it: JSON header, then the binary data of each output.
    fn answer(outputs: &[(&str, &[usize], &[f32])]) -> (usize, Vec<u8>) {
        let header = serde_json::json!({
            "model_name": "m",
            "outputs": outputs.iter().map(|(name, shape, data)| serde_json::json!({
                "name": name, "datatype": "FP32", "shape": shape,
                "parameters": {"binary_data_size": data.len() * 4},
            })).collect::<Vec<_>>(),
        })
        .to_string();
        let mut body = header.clone().into_bytes();
        for (_, _, data) in outputs {
            body.extend(data.iter().flat_map(|v| v.to_le_bytes()));
        }
        (header.len(), body)
    }

    /// A KServe v2 server of one model 'm' (one float32 input, one output) on 127.0.0.1 that
    /// records the headers of every request it gets; its first inference is refused with
    /// 503 and `Retry-After: 7`, the next ones answered with 0.25.
    fn fake_server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorded = seen.clone();
        std::thread::spawn(move || {
            let mut inferences = 0;
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                // Requests on this connection, one after the other (keep-alive).
                loop {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            break;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push_str(&line.to_ascii_lowercase());
                    }
                    if head.is_empty() {
                        break;
                    }
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    let mut body = vec![0; length];
                    std::io::Read::read_exact(&mut reader, &mut body).unwrap();
                    recorded.lock().unwrap().push(head.clone());
                    let path = head
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_string();
                    let (status, extra, body) = if path.ends_with("/infer") {
                        inferences += 1;
                        if inferences == 1 {
                            (
                                "503 Unavailable",
                                "Retry-After: 7\r\n".to_string(),
                                b"{}".to_vec(),
                            )
                        } else {
                            let header = r#"{"outputs":[{"name":"y","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":4}}]}"#;
                            let mut body = header.as_bytes().to_vec();
                            body.extend(0.25f32.to_le_bytes());
                            (
                                "200 OK",
                                format!("Inference-Header-Content-Length: {}\r\n", header.len()),
                                body,
                            )
                        }
                    } else if path == "/v2/models/m" {
                        let metadata = r#"{"name":"m","inputs":[{"name":"x","datatype":"FP32","shape":[1]}],"outputs":[{"name":"y","datatype":"FP32","shape":[1]}]}"#;
                        ("200 OK", String::new(), metadata.as_bytes().to_vec())
                    } else {
                        ("200 OK", String::new(), Vec::new())
                    };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}\r\n",
                        body.len()
                    );
                    if writer.write_all(answer.as_bytes()).is_err()
                        || writer.write_all(&body).is_err()
                    {
                        break;
                    }
                }
            }
        });
        (address, seen)
    }

    #[test]
    fn every_request_carries_the_headers_and_answers_come_uncompressed_retry_after_read() {
        use crate::inference::cancel::Cancellation;
        use crate::inference::remote::RemoteModel;
        use crate::inference::retry::RetryPolicy;
        let (address, seen) = fake_server();
        let options = crate::inference::triton::ServerOptions {
            timeout: Duration::from_secs(5),
            connections: 2,
            headers: RequestHeaders::parse("x-token: t0k3n").unwrap(),
            tls: None,
        };
        let backend = TritonHttpBackend::connect(&address, "m", None, &options).unwrap();
        let ask = || {
            let outputs = backend.output_specs().to_vec();
            RetryPolicy::new(0, Duration::from_secs(5), None).run(
                "m",
                &Cancellation::default(),
                None,
                |attempt| {
                    let view = TensorView {
                        shape: &[1],
                        data: &[1.0],
                    };
                    backend.request(&[view], &outputs, attempt)
                },
            )
        };
        let refused = ask().unwrap_err();
        assert!(refused.is_transient(), "{refused}");
        assert_eq!(refused.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(ask().unwrap()[0].data, [0.25]);
        let seen = seen.lock().unwrap();
        assert!(seen.len() >= 5, "{seen:#?}");
        assert!(
            seen.iter().all(|head| head.contains("x-token: t0k3n")),
            "{seen:#?}"
        );
        let inferences: Vec<&String> = seen.iter().filter(|h| h.contains("/infer ")).collect();
        assert_eq!(inferences.len(), 2);
        assert!(
            inferences
                .iter()
                .all(|head| head.contains("accept-encoding: identity")),
            "{inferences:#?}"
        );
    }

    #[test]
    fn a_request_is_the_json_header_then_the_inputs_bytes() {
        let input = spec("image");
        let data = [1.0f32, -2.5];
        let (body, header_len) = infer_request(
            &[(
                &input,
                TensorView {
                    shape: &[1, 2],
                    data: &data,
                },
            )],
            &[spec("mask")],
        );
        let header: serde_json::Value = serde_json::from_slice(&body[..header_len]).unwrap();
        assert_eq!(header["inputs"][0]["name"], "image");
        assert_eq!(header["inputs"][0]["shape"], serde_json::json!([1, 2]));
        assert_eq!(header["inputs"][0]["parameters"]["binary_data_size"], 8);
        assert_eq!(header["outputs"][0]["parameters"]["binary_data"], true);
        assert_eq!(
            &body[header_len..],
            &[1.0f32.to_le_bytes(), (-2.5f32).to_le_bytes()].concat()
        );
    }

    #[test]
    fn outputs_come_back_by_name_in_the_declared_order() {
        let (len, body) = answer(&[("b", &[1, 2], &[3.0, 4.0]), ("a", &[2], &[1.0, 2.0])]);
        let tensors = parse_infer_response(Some(len), &body, &["a".into(), "b".into()]).unwrap();
        assert_eq!(tensors[0].data, [1.0, 2.0]);
        assert_eq!(tensors[1].shape, [1, 2]);
        assert_eq!(tensors[1].data, [3.0, 4.0]);
        let err = parse_infer_response(Some(len), &body, &["c".into()]).unwrap_err();
        assert!(err.contains("lacks output 'c'"), "{err}");
    }

    #[test]
    fn sizes_that_do_not_add_up_are_refused() {
        let (len, body) = answer(&[("a", &[2], &[1.0, 2.0])]);
        let short = &body[..body.len() - 1];
        assert!(
            parse_infer_response(Some(len), short, &["a".into()])
                .unwrap_err()
                .contains("claims 8 bytes")
        );
        assert!(parse_infer_response(Some(body.len() + 1), &body, &["a".into()]).is_err());
        let (len, body) = answer(&[("a", &[3], &[1.0, 2.0])]);
        assert!(
            parse_infer_response(Some(len), &body, &["a".into()])
                .unwrap_err()
                .contains("expected FP32")
        );
        let header = r#"{"outputs":[{"name":"a","datatype":"FP32","shape":[4294967296,4294967296],"parameters":{"binary_data_size":8}}]}"#;
        let err = parse_infer_response(None, header.as_bytes(), &["a".into()]).unwrap_err();
        assert!(
            err.contains("too large") || err.contains("dimension"),
            "{err}"
        );
    }

    #[test]
    fn json_data_answers_are_read_too() {
        let body = br#"{"outputs":[{"name":"a","datatype":"FP32","shape":[2],"data":[0.5,1.5]}]}"#;
        let tensors = parse_infer_response(None, body, &["a".into()]).unwrap();
        assert_eq!(tensors[0].data, [0.5, 1.5]);
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        assert_eq!(retry_after(" 3"), Some(Duration::from_secs(3)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(retry_after("-1"), None);
    }

    #[test]
    fn server_addresses_get_a_scheme() {
        assert_eq!(server_url("127.0.0.1:8000"), "http://127.0.0.1:8000");
        assert_eq!(
            server_url("https://triton.example/"),
            "https://triton.example"
        );
    }
}
