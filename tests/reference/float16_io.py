"""Rewrites an ONNX model so that its float32 inputs and outputs are float16, as exporters such as
onnxconverter_common's float16 conversion (with float32 kept inside, or with a block list) leave
them: a Cast to float32 after each such input and a Cast to float16 before each such output.

Usage: float16_io.py IN.onnx OUT.onnx
"""
import sys

import onnx
from onnx import TensorProto, helper


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    model = onnx.load(source)
    graph = model.graph
    renamed = {}
    front, back = [], []
    for value in graph.input:
        tensor = value.type.tensor_type
        if tensor.elem_type == TensorProto.FLOAT:
            inside = value.name + "_float32"
            renamed[value.name] = inside
            front.append(helper.make_node("Cast", [value.name], [inside], to=TensorProto.FLOAT))
            tensor.elem_type = TensorProto.FLOAT16
    for node in graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
    for value in graph.output:
        tensor = value.type.tensor_type
        if tensor.elem_type == TensorProto.FLOAT:
            inside = value.name + "_float32_out"
            for node in graph.node:
                node.output[:] = [inside if name == value.name else name for name in node.output]
                node.input[:] = [inside if name == value.name else name for name in node.input]
            back.append(helper.make_node("Cast", [inside], [value.name], to=TensorProto.FLOAT16))
            tensor.elem_type = TensorProto.FLOAT16
    nodes = front + list(graph.node) + back
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, target)
    print(sum(1 for v in graph.input if v.type.tensor_type.elem_type == TensorProto.FLOAT16),
          sum(1 for v in graph.output if v.type.tensor_type.elem_type == TensorProto.FLOAT16))


if __name__ == "__main__":
    main()
