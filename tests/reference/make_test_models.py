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
  recurrent_matting.onnx  Robust Video Matting's exact signature (src [N,3,H,W], r1i..r4i, downsample_ratio [1]
                      in; fgr, pha, r1o..r4o out, sizes dynamic): the alpha depends on the frame, on
                      the previous frames through every state (running means of the frame shrunk by
                      downsample_ratio, of several shapes) and on the ratio (a stand-in for RVM,
                      whose weights are GPL-3.0 and which users bring themselves)
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


def recurrent_matting(path):
    """RVM's interface with a few arithmetic nodes; see the module's docstring."""
    def dynamic(name, channels):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", channels, "height", "width"])

    def state(name):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, None, None, None])

    inputs = [dynamic("src", 3)] + [state(f"r{k}i") for k in range(1, 5)]
    inputs.append(helper.make_tensor_value_info("downsample_ratio", TensorProto.FLOAT, [1]))
    outputs = [dynamic("fgr", 3), dynamic("pha", 1)] + [state(f"r{k}o") for k in range(1, 5)]
    constants = [
        numpy_helper.from_array(np.array([1, 1], np.float32), "ones"),
        numpy_helper.from_array(np.array([1], np.int64), "channel_axis"),
        numpy_helper.from_array(np.array([2], np.int64), "height_axis"),
        numpy_helper.from_array(np.array([2, 3], np.int64), "spatial_axes"),
    ] + [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in
         [("half", 0.5), ("seven_tenths", 0.7), ("three_tenths", 0.3), ("minus_one", -1.0), ("six", 6.0)]]

    def node(op, ins, out, **attributes):
        return helper.make_node(op, ins, [out], **attributes)

    def carried(previous, base, keep, out):
        """out = keep * base + (1 - keep) * previous resized (nearest) to base's shape."""
        return [
            node("Shape", [base], f"{out}_shape"),
            node("Resize", [previous, "", "", f"{out}_shape"], f"{out}_previous", mode="nearest"),
            node("Mul", [base, keep[0]], f"{out}_new"),
            node("Mul", [f"{out}_previous", keep[1]], f"{out}_old"),
            node("Add", [f"{out}_new", f"{out}_old"], out),
        ]

    nodes = [
        node("ReduceMean", ["src", "channel_axis"], "gray", keepdims=1),
        node("Concat", ["ones", "downsample_ratio", "downsample_ratio"], "scales", axis=0),
        node("Resize", ["gray", "", "scales"], "small", mode="linear"),
        *carried("r1i", "small", ("half", "half"), "r1o"),
        node("Mul", ["r1o", "minus_one"], "negated"),
        node("Concat", ["r1o", "negated"], "two_channels", axis=1),
        *carried("r2i", "two_channels", ("seven_tenths", "three_tenths"), "r2o"),
        node("ReduceMean", ["r2o", "height_axis"], "rows", keepdims=1),
        *carried("r3i", "rows", ("half", "half"), "r3o"),
        node("ReduceMean", ["r1o", "spatial_axes"], "level", keepdims=1),
        *carried("r4i", "level", ("half", "half"), "r4o"),
        node("Shape", ["gray"], "frame_shape"),
        node("Resize", ["r1o", "", "", "frame_shape"], "running", mode="linear"),
        node("Sub", ["gray", "running"], "change"),
        node("Mul", ["change", "six"], "scaled"),
        node("ReduceMean", ["r2o_previous"], "memory2", keepdims=1),
        node("ReduceMean", ["r3o_previous"], "memory3", keepdims=1),
        node("Add", ["scaled", "memory2"], "with2"),
        node("Add", ["with2", "memory3"], "with3"),
        node("Add", ["with3", "r4o"], "logits"),
        node("Sigmoid", ["logits"], "pha"),
        node("Mul", ["src", "pha"], "fgr"),
    ]
    graph = helper.make_graph(nodes, "recurrent_matting", inputs, outputs, initializer=constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


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

    recurrent_matting(os.path.join(out, "recurrent_matting.onnx"))

    with open(os.path.join(out, "not_onnx.onnx"), "w") as text:
        text.write("this is not an ONNX model\n")


if __name__ == "__main__":
    main()
