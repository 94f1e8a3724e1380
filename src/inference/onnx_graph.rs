//! Reads which operators an ONNX file's main graph uses, straight from the protobuf wire format,
//! so `backend=auto` can tell models that one runtime runs much slower than the other before
//! loading either (OpenVINO runs ConvInteger/MatMulInteger models about twice as slowly as ONNX
//! Runtime).

use std::collections::BTreeSet;

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
    Scalar,
    Bytes(&'a [u8]),
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
            0 => self.varint().map(|_| Value::Scalar)?,
            1 => self.take(8).map(|_| Value::Scalar)?,
            2 => {
                let len = self.varint()?;
                Value::Bytes(self.take(len)?)
            }
            5 => self.take(4).map(|_| Value::Scalar)?,
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
