"""Rewrites a u2netp-style model (one float32 NCHW image normalised by ImageNet's mean and
standard deviation in, float32 masks in 0..1 out) so that it takes uint8 pixel values and gives
uint8 masks, with the normalisation and the scaling to bytes inside, as exports with their
pre- and post-processing built in do: Cast, / 255, - mean, / std after the input; * 255, Round,
Clip to 0..255 and Cast before each output.

Usage: pixels_io.py IN.onnx OUT.onnx
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def constant(name, values, shape):
    return numpy_helper.from_array(np.array(values, dtype=np.float32).reshape(shape), name)


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    model = onnx.load(source)
    graph = model.graph
    graph.initializer.extend([
        constant("pixels_scale", [1.0 / 255.0], []),
        constant("pixels_mean", MEAN, [1, 3, 1, 1]),
        constant("pixels_std", STD, [1, 3, 1, 1]),
        constant("bytes_scale", [255.0], []),
        constant("bytes_low", [0.0], []),
        constant("bytes_high", [255.0], []),
    ])
    (image,) = graph.input
    inside = image.name + "_normalised"
    front = [
        helper.make_node("Cast", [image.name], [image.name + "_float"], to=TensorProto.FLOAT),
        helper.make_node("Mul", [image.name + "_float", "pixels_scale"], [image.name + "_unit"]),
        helper.make_node("Sub", [image.name + "_unit", "pixels_mean"], [image.name + "_centred"]),
        helper.make_node("Div", [image.name + "_centred", "pixels_std"], [inside]),
    ]
    for node in graph.node:
        node.input[:] = [inside if name == image.name else name for name in node.input]
    image.type.tensor_type.elem_type = TensorProto.UINT8
    back = []
    for value in graph.output:
        unit = value.name + "_unit"
        for node in graph.node:
            node.output[:] = [unit if name == value.name else name for name in node.output]
            node.input[:] = [unit if name == value.name else name for name in node.input]
        back += [
            helper.make_node("Mul", [unit, "bytes_scale"], [value.name + "_scaled"]),
            helper.make_node("Round", [value.name + "_scaled"], [value.name + "_rounded"]),
            helper.make_node("Clip", [value.name + "_rounded", "bytes_low", "bytes_high"],
                             [value.name + "_clipped"]),
            helper.make_node("Cast", [value.name + "_clipped"], [value.name], to=TensorProto.UINT8),
        ]
        value.type.tensor_type.elem_type = TensorProto.UINT8
    nodes = front + list(graph.node) + back
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, target)


if __name__ == "__main__":
    main()
