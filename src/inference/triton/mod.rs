//! NVIDIA Triton and other KServe v2 inference servers: the model's metadata as the server
//! reports it, and the HTTP/REST client with the binary tensor extension.

pub mod http;

use super::{ElementType, TensorSpec};

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

/// The tensors of a KServe v2 model metadata document (`inputs` or `outputs`); `-1` is a
/// dynamic dimension.
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
            let shape = tensor
                .get("shape")
                .and_then(serde_json::Value::as_array)
                .ok_or_else(|| format!("tensor '{name}' has no shape"))?
                .iter()
                .map(|dim| match dim.as_i64() {
                    Some(-1) => Ok(None),
                    Some(d) if (0..=MAX_DIMENSION).contains(&d) => Ok(Some(d as usize)),
                    _ => Err(format!("tensor '{name}' has dimension {dim}")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(TensorSpec {
                name: name.to_string(),
                element_type: element_type(datatype),
                shape,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
