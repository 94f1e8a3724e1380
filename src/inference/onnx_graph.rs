//! Reads an ONNX file's main graph straight from the protobuf wire format, without a runtime:
//! which operators it uses, so `backend=auto` can tell models that one runtime runs much slower
//! than the other before loading either (OpenVINO runs ConvInteger/MatMulInteger models about
//! twice as slowly as ONNX Runtime); and its inputs and outputs, for a server backend that only
//! needs the tensors' names and shapes.

use std::collections::BTreeSet;

use super::{ElementType, TensorSpec};

// Field numbers in onnx.proto: ModelProto.graph = 7, GraphProto.node = 1, NodeProto.op_type = 4.
const MODEL_GRAPH: u64 = 7;
const GRAPH_NODE: u64 = 1;
const NODE_OP_TYPE: u64 = 4;

/// Dynamically quantized operators: integer kernels that ONNX Runtime has and OpenVINO emulates.
pub const DYNAMIC_INTEGER_OPERATORS: [&str; 2] = ["ConvInteger", "MatMulInteger"];

/// The operator types of the main graph of the ONNX model in `bytes`; `None` when the bytes are
/// not a well-formed protobuf (the runtime that loads it will say what is wrong).
pub fn operator_types(bytes: &[u8]) -> Option<BTreeSet<String>> {
    let mut types = BTreeSet::new();
    for (field, value) in Fields::new(bytes) {
        let Value::Bytes(graph) = value? else {
            continue;
        };
        if field != MODEL_GRAPH {
            continue;
        }
        for (field, value) in Fields::new(graph) {
            let Value::Bytes(node) = value? else {
                continue;
            };
            if field != GRAPH_NODE {
                continue;
            }
            for (field, value) in Fields::new(node) {
                if let (NODE_OP_TYPE, Value::Bytes(name)) = (field, value?) {
                    types.insert(String::from_utf8_lossy(name).into_owned());
                }
            }
        }
    }
    Some(types)
}

/// Whether the model uses any of [`DYNAMIC_INTEGER_OPERATORS`].
pub fn uses_dynamic_integer_operators(bytes: &[u8]) -> bool {
    operator_types(bytes).is_some_and(|types| {
        DYNAMIC_INTEGER_OPERATORS
            .iter()
            .any(|op| types.contains(*op))
    })
}

enum Value<'a> {
    Varint(u64),
    Fixed,
    Bytes(&'a [u8]),
}

// GraphProto.initializer = 5, .input = 11, .output = 12; TensorProto.name = 8;
// ValueInfoProto.name = 1, .type = 2; TypeProto.tensor_type = 1; TypeProto.Tensor.elem_type = 1,
// .shape = 2; TensorShapeProto.dim = 1; Dimension.dim_value = 1.
const GRAPH_INITIALIZER: u64 = 5;
const GRAPH_INPUT: u64 = 11;
const GRAPH_OUTPUT: u64 = 12;
const TENSOR_NAME: u64 = 8;
const VALUE_NAME: u64 = 1;
const VALUE_TYPE: u64 = 2;
const TYPE_TENSOR: u64 = 1;
const TENSOR_ELEM_TYPE: u64 = 1;
const TENSOR_SHAPE: u64 = 2;
const SHAPE_DIM: u64 = 1;
const DIM_VALUE: u64 = 1;
/// The largest dimension taken as declared; a larger one is a broken file.
const MAX_DIMENSION: u64 = 1 << 31;

/// The main graph's inputs (initializers that older exporters also list as inputs left out) and
/// outputs, as the runtimes report them: float32/float16 by name, dynamic dimensions `None`.
/// `None` when the bytes are not a well-formed ONNX model.
pub fn tensor_specs(bytes: &[u8]) -> Option<(Vec<TensorSpec>, Vec<TensorSpec>)> {
    let mut graph = None;
    for (field, value) in Fields::new(bytes) {
        if let (MODEL_GRAPH, Value::Bytes(found)) = (field, value?) {
            graph = Some(found);
        }
    }
    let graph = graph?;
    let (mut inputs, mut outputs, mut initializers) = (Vec::new(), Vec::new(), BTreeSet::new());
    for (field, value) in Fields::new(graph) {
        let Value::Bytes(message) = value? else {
            continue;
        };
        match field {
            GRAPH_INPUT => inputs.push(value_info(message)?),
            GRAPH_OUTPUT => outputs.push(value_info(message)?),
            GRAPH_INITIALIZER => {
                for (field, value) in Fields::new(message) {
                    if let (TENSOR_NAME, Value::Bytes(name)) = (field, value?) {
                        initializers.insert(String::from_utf8_lossy(name).into_owned());
                    }
                }
            }
            _ => {}
        }
    }
    inputs.retain(|spec| !initializers.contains(&spec.name));
    Some((inputs, outputs))
}

/// One ValueInfoProto as a tensor spec.
fn value_info(message: &[u8]) -> Option<TensorSpec> {
    let (mut name, mut element_type, mut shape) =
        (String::new(), ElementType::NotTensor, Vec::new());
    for (field, value) in Fields::new(message) {
        match (field, value?) {
            (VALUE_NAME, Value::Bytes(bytes)) => name = String::from_utf8_lossy(bytes).into_owned(),
            (VALUE_TYPE, Value::Bytes(type_proto)) => {
                for (field, value) in Fields::new(type_proto) {
                    if let (TYPE_TENSOR, Value::Bytes(tensor)) = (field, value?) {
                        (element_type, shape) = tensor_type(tensor)?;
                    }
                }
            }
            _ => {}
        }
    }
    Some(TensorSpec {
        name,
        element_type,
        shape,
    })
}

/// TypeProto.Tensor: its element type and its dimensions (`None` where symbolic or unset).
fn tensor_type(message: &[u8]) -> Option<(ElementType, Vec<Option<usize>>)> {
    let (mut element_type, mut shape) = (ElementType::Other("undefined".into()), Vec::new());
    for (field, value) in Fields::new(message) {
        match (field, value?) {
            (TENSOR_ELEM_TYPE, Value::Varint(code)) => element_type = element_type_of(code),
            (TENSOR_SHAPE, Value::Bytes(shape_proto)) => {
                for (field, value) in Fields::new(shape_proto) {
                    let (SHAPE_DIM, Value::Bytes(dimension)) = (field, value?) else {
                        continue;
                    };
                    let mut size = None;
                    for (field, value) in Fields::new(dimension) {
                        if let (DIM_VALUE, Value::Varint(v)) = (field, value?) {
                            if v > MAX_DIMENSION {
                                return None;
                            }
                            size = Some(v as usize);
                        }
                    }
                    shape.push(size);
                }
            }
            _ => {}
        }
    }
    Some((element_type, shape))
}

/// onnx.proto's TensorProto.DataType, named as ONNX Runtime's backend names element types.
fn element_type_of(code: u64) -> ElementType {
    let name = match code {
        1 => return ElementType::Float32,
        10 => return ElementType::Float16,
        2 => "u8",
        3 => "i8",
        4 => "u16",
        5 => "i16",
        6 => "i32",
        7 => "i64",
        8 => "String",
        9 => "bool",
        11 => "f64",
        12 => "u32",
        13 => "u64",
        16 => "bf16",
        other => return ElementType::Other(format!("ONNX type {other}")),
    };
    ElementType::Other(name.into())
}

/// The top-level fields of one protobuf message; an item is `None` (and the last) where the
/// bytes stop making sense.
struct Fields<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            rest: bytes,
            failed: false,
        }
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.rest.split_first()?;
            self.rest = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn take(&mut self, len: u64) -> Option<&'a [u8]> {
        let len = usize::try_from(len).ok()?;
        if len > self.rest.len() {
            return None;
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(taken)
    }

    fn field(&mut self) -> Option<(u64, Value<'a>)> {
        let key = self.varint()?;
        let value = match key & 7 {
            0 => self.varint().map(Value::Varint)?,
            1 => self.take(8).map(|_| Value::Fixed)?,
            2 => {
                let len = self.varint()?;
                Value::Bytes(self.take(len)?)
            }
            5 => self.take(4).map(|_| Value::Fixed)?,
            _ => return None,
        };
        Some((key >> 3, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (u64, Option<Value<'a>>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        match self.field() {
            Some((field, value)) => Some((field, Some(value))),
            None => {
                self.failed = true;
                Some((0, None))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn length_delimited(field: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![((field << 3) | 2) as u8];
        let mut len = payload.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        out.extend_from_slice(payload);
        out
    }

    fn model_with(ops: &[&str]) -> Vec<u8> {
        let mut graph = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let mut node = length_delimited(3, format!("node{i}").as_bytes());
            node.extend(length_delimited(NODE_OP_TYPE, op.as_bytes()));
            graph.extend(length_delimited(GRAPH_NODE, &node));
        }
        graph.extend(length_delimited(2, b"main"));
        // ir_version (varint), then the graph.
        let mut model = vec![0x08, 0x08];
        model.extend(length_delimited(MODEL_GRAPH, &graph));
        model
    }

    #[test]
    fn finds_the_operator_types_of_the_main_graph() {
        let types = operator_types(&model_with(&["Conv", "Relu", "Conv", "ConvInteger"])).unwrap();
        assert_eq!(
            types.into_iter().collect::<Vec<_>>(),
            ["Conv", "ConvInteger", "Relu"]
        );
        assert!(uses_dynamic_integer_operators(&model_with(&[
            "MatMulInteger"
        ])));
        assert!(!uses_dynamic_integer_operators(&model_with(&[
            "QuantizeLinear",
            "Conv"
        ])));
    }

    #[test]
    fn truncated_or_foreign_bytes_are_not_a_model() {
        let model = model_with(&["Conv"]);
        assert_eq!(operator_types(&model[..model.len() - 2]), None);
        assert_eq!(operator_types(b"\x0f\xff\xff"), None);
        assert!(!uses_dynamic_integer_operators(b"not a model"));
    }

    #[test]
    fn the_catalog_models_on_this_machine_are_read() {
        let home = &crate::segmentation::locate::model_folders("isnet-int8")[0];
        let Ok(int8) = std::fs::read(home.join("isnet-int8.onnx")) else {
            eprintln!("skipped: isnet-int8.onnx is not in {}", home.display());
            return;
        };
        assert!(uses_dynamic_integer_operators(&int8));
        let u2netp = std::fs::read(home.join("u2netp.onnx")).expect("u2netp beside isnet-int8");
        let types = operator_types(&u2netp).expect("u2netp parses");
        assert!(
            types.contains("Conv") && types.contains("Sigmoid"),
            "{types:?}"
        );
        assert!(!uses_dynamic_integer_operators(&u2netp));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = operator_types(&bytes);
        }

        #[test]
        fn mutated_models_never_panic(flips in proptest::collection::vec((0usize..200, any::<u8>()), 1..8)) {
            let mut model = model_with(&["Conv", "ConvInteger", "Sigmoid"]);
            for (at, byte) in flips {
                let at = at % model.len();
                model[at] = byte;
            }
            let _ = operator_types(&model);
        }
    }
}
