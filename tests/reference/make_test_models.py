"""Writes small ONNX models that exercise rembgfilter's model checks.

Usage: make_test_models.py OUT_DIR
(Their bytes are committed in tests/fixtures/models; after a change here, run it with that folder.)
  brightness.onnx     [1,3,64,64] float -> channel mean [1,1,64,64]: a valid custom model
  dynamic.onnx        [1,3,H,W] float (H, W dynamic) -> channel mean: size falls back to 320
  six_channels.onnx   [1,6,32,32] float: wrong channel count
  two_inputs.onnx     two float inputs: not a segmentation model
  int_input.onnx      [1,3,32,32] int64: wrong element type
  not_onnx.onnx       text, not a model
  partly_nan.onnx     [1,3,64,64] -> log of the channel mean: NaN or -inf wherever it is <= 0
  unet_nan.onnx       U-Net (328) shaped for mode ave whose output is NaN everywhere
  unet_nhwc.onnx      U-Net (328) shaped for mode ave whose output is [1,320,320,3]
  no_outputs.onnx     [1,3,32,32] float and no graph output at all
  rembg_1024.onnx     [1,3,1024,1024] -> [1,1,1024,1024]: 3x3 conv to 4 channels, tanh, 1x1 conv,
                      fixed seeded weights; logits of about +-4, so a sigmoid, the mean and the
                      std all change the mask (a stand-in for rembg's 1024 models, which are
                      178-970 MB downloads)
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def save(model_inputs, nodes, outputs, path):
    graph = helper.make_graph(nodes, os.path.basename(path), model_inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def channel_mean(name, shape, out_shape, path):
    x = helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("mask", TensorProto.FLOAT, out_shape)
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [
        helper.make_node("Constant", [], ["axes_value"], value=axes),
        helper.make_node("ReduceMean", [name, "axes_value"], ["mask"], keepdims=1),
    ]
    save([x], nodes, [y], path)


def unet_like(path, output_nodes, output_shape):
    """Inputs of SyncTalk_2D's U-Net in mode ave; `output_nodes` turn 'face' ([1,3,320,320], the
    image input's first three channels) into 'output'."""
    image = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 6, 320, 320])
    audio = helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, 32, 16, 16])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, output_shape)
    ints = lambda name, values: helper.make_node(
        "Constant", [], [name], value=helper.make_tensor(name, TensorProto.INT64, [len(values)], values)
    )
    nodes = [
        ints("starts", [0]),
        ints("ends", [3]),
        ints("axes", [1]),
        helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["face"]),
    ] + output_nodes
    save([image, audio], nodes, [out], path)


def main() -> None:
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    channel_mean("image", [1, 3, 64, 64], [1, 1, 64, 64], os.path.join(out, "brightness.onnx"))
    channel_mean("image", [1, 3, "height", "width"], [1, 1, "height", "width"], os.path.join(out, "dynamic.onnx"))

    six = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 6, 32, 32])
    six_out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 6, 32, 32])
    save([six], [helper.make_node("Identity", ["image"], ["out"])], [six_out], os.path.join(out, "six_channels.onnx"))

    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 3, 32, 32])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 3, 32, 32])
    s = helper.make_tensor_value_info("sum", TensorProto.FLOAT, [1, 3, 32, 32])
    save([a, b], [helper.make_node("Add", ["a", "b"], ["sum"])], [s], os.path.join(out, "two_inputs.onnx"))

    i = helper.make_tensor_value_info("image", TensorProto.INT64, [1, 3, 32, 32])
    f = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 32, 32])
    save([i], [helper.make_node("Cast", ["image"], ["out"], to=TensorProto.FLOAT)], [f], os.path.join(out, "int_input.onnx"))

    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, 64, 64])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    save(
        [x],
        [
            helper.make_node("Constant", [], ["axes_value"], value=axes),
            helper.make_node("ReduceMean", ["image", "axes_value"], ["mean"], keepdims=1),
            helper.make_node("Log", ["mean"], ["mask"]),
        ],
        [y],
        os.path.join(out, "partly_nan.onnx"),
    )

    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    unet_like(
        os.path.join(out, "unet_nan.onnx"),
        [
            helper.make_node("Constant", [], ["two_value"], value=two),
            helper.make_node("Sub", ["face", "two_value"], ["below_zero"]),
            helper.make_node("Sqrt", ["below_zero"], ["output"]),
        ],
        [1, 3, 320, 320],
    )
    unet_like(
        os.path.join(out, "unet_nhwc.onnx"),
        [helper.make_node("Transpose", ["face"], ["output"], perm=[0, 2, 3, 1])],
        [1, 320, 320, 3],
    )

    # The checker refuses a graph without outputs, which is the point: saved unchecked.
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 32, 32])
    graph = helper.make_graph([helper.make_node("Relu", ["image"], ["unused"])], "no_outputs", [image], [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, os.path.join(out, "no_outputs.onnx"))

    rng = np.random.default_rng(1024)
    image = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 1024, 1024])
    mask = helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, 1024, 1024])
    weights = [
        numpy_helper.from_array(rng.normal(0, 0.6, (4, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(0, 0.3, (4,)).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.normal(0, 1.5, (1, 4, 1, 1)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.array([0.5], np.float32), "b2"),
    ]
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "w1", "b1"], ["features"], pads=[1, 1, 1, 1]),
            helper.make_node("Tanh", ["features"], ["squashed"]),
            helper.make_node("Conv", ["squashed", "w2", "b2"], ["mask"]),
        ],
        "rembg_1024", [image], [mask], initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(out, "rembg_1024.onnx"))

    with open(os.path.join(out, "not_onnx.onnx"), "w") as text:
        text.write("this is not an ONNX model\n")


if __name__ == "__main__":
    main()
