//! NVIDIA Triton and other KServe v2 inference servers: the model's metadata as the server
//! reports it, the raw tensor bytes both protocols carry, and the two clients: HTTP/REST with
//! the binary tensor extension, and gRPC (feature `triton-grpc`).

#[cfg(feature = "triton-grpc")]
pub mod grpc;
pub mod http;

use std::time::Duration;

use super::secrets::RequestHeaders;
use super::tls::TlsFiles;
use super::{ElementType, InferenceError, Tensor, TensorSpec};

/// How a client reaches its server, beyond the address.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Bounds the connection and every call at start (each request has its own, per try).
    pub timeout: Duration,
    /// Connections kept open between requests: one per request in flight (HTTP).
    pub connections: usize,
    /// Sent with every request.
    pub headers: RequestHeaders,
    /// A private CA, a client certificate, the server's name: TLS addresses only.
    pub tls: Option<TlsFiles>,
}

/// How messages name the protocols.
pub const GRPC: &str = "gRPC";
pub const HTTP: &str = "HTTP";

/// `'u2netp'`, or `'u2netp' version 2`: a served model as messages name it.
pub fn model_name(model: &str, version: Option<&str>) -> String {
    match version {
        Some(version) => format!("'{model}' version {version}"),
        None => format!("'{model}'"),
    }
}

/// A served model and its server as both clients' messages name them.
pub struct ServedModel {
    /// As [`model_name`] gives it.
    pub model: String,
    /// `host:8001 (gRPC)`.
    pub server: String,
}

impl ServedModel {
    pub fn new(model: &str, version: Option<&str>, server: &str, protocol: &str) -> Self {
        Self {
            model: model_name(model, version),
            server: format!("{server} ({protocol})"),
        }
    }

    /// `'u2netp' on host:8001 (gRPC)`: the name a backend gives its model.
    pub fn display(&self) -> String {
        format!("{} on {}", self.model, self.server)
    }

    /// The server itself cannot be used: property 'server' is what to change.
    pub fn unusable(&self, reason: String) -> InferenceError {
        InferenceError::ServerUnusable {
            server: self.server.clone(),
            model: self.model.clone(),
            reason,
        }
    }
}

/// The largest dimension accepted from a server's metadata or answer: anything larger cannot be
/// a tensor this project sends or receives, so it is refused before anything is sized from it.
pub const MAX_DIMENSION: i64 = 1 << 31;

/// A KServe v2 datatype as this project's element type.
pub fn element_type(datatype: &str) -> ElementType {
    match datatype {
        "FP32" => ElementType::Float32,
        "FP16" => ElementType::Float16,
        other => ElementType::Other(other.to_string()),
    }
}

/// One tensor of a model's metadata; `-1` is a dynamic dimension. Dimensions are checked
/// before anything is sized from them.
pub fn tensor_spec(name: &str, datatype: &str, dims: &[i64]) -> Result<TensorSpec, String> {
    let shape = dims
        .iter()
        .map(|&dim| match dim {
            -1 => Ok(None),
            d if (0..=MAX_DIMENSION).contains(&d) => Ok(Some(d as usize)),
            _ => Err(format!("tensor '{name}' has dimension {dim}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TensorSpec {
        name: name.to_string(),
        element_type: element_type(datatype),
        shape,
    })
}

/// The tensors of a KServe v2 model metadata document (`inputs` or `outputs`) as the HTTP API
/// returns it.
pub fn tensor_specs(metadata: &serde_json::Value, field: &str) -> Result<Vec<TensorSpec>, String> {
    let Some(tensors) = metadata.get(field).and_then(serde_json::Value::as_array) else {
        return Err(format!("the model metadata has no '{field}' list"));
    };
    tensors
        .iter()
        .map(|tensor| {
            let name = tensor
                .get("name")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| format!("a tensor of '{field}' has no name"))?;
            let datatype = tensor
                .get("datatype")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| format!("tensor '{name}' has no datatype"))?;
            let dims = tensor
                .get("shape")
                .and_then(serde_json::Value::as_array)
                .ok_or_else(|| format!("tensor '{name}' has no shape"))?
                .iter()
                .map(|dim| {
                    dim.as_i64()
                        .ok_or_else(|| format!("tensor '{name}' has dimension {dim}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            tensor_spec(name, datatype, &dims)
        })
        .collect()
}

/// The shape of an output in an answer, each dimension checked, and its number of elements.
pub fn answer_shape(name: &str, dims: &[i64]) -> Result<(Vec<usize>, usize), String> {
    let shape: Vec<usize> = dims
        .iter()
        .map(|&d| {
            usize::try_from(d)
                .ok()
                .filter(|_| d <= MAX_DIMENSION)
                .ok_or_else(|| format!("output '{name}' has dimension {d}"))
        })
        .collect::<Result<_, _>>()?;
    let elements = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| format!("output '{name}' of shape {shape:?} is too large"))?;
    Ok((shape, elements))
}

/// A tensor type as it travels: what a server may declare at a model's edge. Elements work in
/// float32; the client converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    Fp32,
    /// Rounded to the nearest float16 when sent, widened exactly when read.
    Fp16,
    /// Rounded and clamped to 0..255 when sent (the model takes pixel values: input-mean 0,
    /// input-std 1/255); read as value / 255 (a mask in bytes is 0..1).
    Uint8,
}

impl WireType {
    /// The wire type of a declared element type; `None` for one this client does not convert.
    pub fn of(element_type: &ElementType) -> Option<Self> {
        match element_type {
            ElementType::Float32 => Some(Self::Fp32),
            ElementType::Float16 => Some(Self::Fp16),
            ElementType::Other(name) if name == "UINT8" => Some(Self::Uint8),
            _ => None,
        }
    }

    pub fn from_datatype(datatype: &str) -> Option<Self> {
        Self::of(&element_type(datatype))
    }

    /// KServe v2's name for it.
    pub fn datatype(self) -> &'static str {
        match self {
            Self::Fp32 => "FP32",
            Self::Fp16 => "FP16",
            Self::Uint8 => "UINT8",
        }
    }

    /// Bytes a value.
    pub fn size(self) -> usize {
        match self {
            Self::Fp32 => 4,
            Self::Fp16 => 2,
            Self::Uint8 => 1,
        }
    }

    /// A value read from an answer (JSON data, gRPC's typed contents) as the element's float32.
    pub fn to_f32(self, value: f64) -> f32 {
        match self {
            Self::Uint8 => (value / 255.0) as f32,
            _ => value as f32,
        }
    }
}

/// An output sent as raw bytes (HTTP's binary extension, gRPC's `raw_output_contents`) as a
/// float32 tensor: the datatype must be one the client converts, and the byte count must
/// match the shape.
pub fn tensor_from_raw(
    name: &str,
    datatype: Option<&str>,
    dims: &[i64],
    bytes: &[u8],
) -> Result<Tensor, String> {
    let (shape, elements) = answer_shape(name, dims)?;
    let wire = datatype.and_then(WireType::from_datatype);
    let Some(wire) = wire.filter(|wire| elements.checked_mul(wire.size()) == Some(bytes.len()))
    else {
        return Err(format!(
            "output '{name}' is {} of shape {shape:?} in {} bytes; expected FP32, FP16 or UINT8, \
             4, 2 or 1 bytes a value",
            datatype.unwrap_or("untyped"),
            bytes.len()
        ));
    };
    let data = match wire {
        WireType::Fp32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        WireType::Fp16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        WireType::Uint8 => bytes.iter().map(|&b| f32::from(b) / 255.0).collect(),
    };
    Ok(Tensor { shape, data })
}

/// Input data as the raw little-endian bytes of `wire` that both protocols carry.
pub fn raw_bytes(data: &[f32], wire: WireType, into: &mut Vec<u8>) {
    into.reserve(data.len() * wire.size());
    match wire {
        WireType::Fp32 => {
            for value in data {
                into.extend_from_slice(&value.to_le_bytes());
            }
        }
        WireType::Fp16 => {
            for half in super::float16::to_f16(data) {
                into.extend_from_slice(&half.to_le_bytes());
            }
        }
        WireType::Uint8 => into.extend(data.iter().map(|v| v.round().clamp(0.0, 255.0) as u8)),
    }
}

/// The wire type an input is sent as: what the server declared (float32 for what it does not:
/// such an input is refused before a request).
pub fn input_wire_type(spec: &TensorSpec) -> WireType {
    WireType::of(&spec.element_type).unwrap_or(WireType::Fp32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_protocols_name_a_served_model_and_its_server_alike() {
        let served = ServedModel::new("u2netp", Some("2"), "host:8001", GRPC);
        assert_eq!(served.display(), "'u2netp' version 2 on host:8001 (gRPC)");
        assert_eq!(
            served.unusable("cannot connect".into()).to_string(),
            "cannot use the server host:8001 (gRPC) for model 'u2netp' version 2: cannot connect"
        );
        assert_eq!(model_name("unet", None), "'unet'");
    }

    #[test]
    fn fp16_and_uint8_tensors_are_converted_at_the_wire() {
        let mut bytes = Vec::new();
        raw_bytes(&[0.5, -2.0, 65504.0], WireType::Fp16, &mut bytes);
        assert_eq!(bytes.len(), 6);
        let back = tensor_from_raw("a", Some("FP16"), &[3], &bytes).unwrap();
        assert_eq!(back.data, [0.5, -2.0, 65504.0]);
        let mut bytes = Vec::new();
        raw_bytes(&[-3.0, 127.6, 300.0], WireType::Uint8, &mut bytes);
        assert_eq!(bytes, [0, 128, 255]);
        let mask = tensor_from_raw("m", Some("UINT8"), &[1, 3], &bytes).unwrap();
        assert_eq!(mask.shape, [1, 3]);
        assert_eq!(mask.data, [0.0, 128.0 / 255.0, 1.0]);
        let err = tensor_from_raw("m", Some("INT64"), &[1], &[0; 8]).unwrap_err();
        assert!(err.contains("output 'm' is INT64"), "{err}");
        assert!(tensor_from_raw("m", Some("FP16"), &[3], &[0; 4]).is_err());
        assert_eq!(WireType::of(&ElementType::Other("INT8".into())), None);
    }

    #[test]
    fn metadata_gives_names_types_and_dynamic_dimensions() {
        let metadata = serde_json::json!({
            "name": "u2netp",
            "inputs": [{"name": "input.1", "datatype": "FP32", "shape": [1, 3, -1, 320]}],
            "outputs": [{"name": "mask", "datatype": "INT64", "shape": [1]}]
        });
        let inputs = tensor_specs(&metadata, "inputs").unwrap();
        assert_eq!(inputs[0].name, "input.1");
        assert_eq!(inputs[0].element_type, ElementType::Float32);
        assert_eq!(inputs[0].shape, [Some(1), Some(3), None, Some(320)]);
        let outputs = tensor_specs(&metadata, "outputs").unwrap();
        assert_eq!(outputs[0].element_type, ElementType::Other("INT64".into()));
    }

    #[test]
    fn absurd_metadata_is_refused_naming_the_tensor() {
        let huge = serde_json::json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 99999999999i64]}]});
        assert!(tensor_specs(&huge, "inputs").unwrap_err().contains("'x'"));
        let negative =
            serde_json::json!({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-5]}]});
        assert!(tensor_specs(&negative, "inputs").is_err());
        assert!(tensor_specs(&serde_json::json!({}), "outputs").is_err());
    }
}
