"""Writes an ONNX model shaped like SyncTalk_2D's AudioEncoder (the `ave` audio encoder of Wav2Lip):
13 blocks of Conv2d + BatchNorm + ReLU (residual where the original has them), 1 -> 512 channels,
input [batch, 1, 80, 16] (a mel window), output [batch, 512]; random weights, fixed seed. The real
weights come from a SyncTalk_2D checkpoint whose licence forbids shipping them
(models/export_audio_encoder.py exports a user's own).

    make_audio_encoder.py OUT.onnx [--batch N]     (N fixes the batch dimension; dynamic by default)
    make_audio_encoder.py OUT.onnx --wrong-input   (a [batch, 1, 80, 20] input, for error tests)
    make_audio_encoder.py OUT.onnx --wrong-output  (256 values per row, for error tests)
"""
import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# (in, out, kernel, stride, padding, residual), as in the original.
BLOCKS = [
    (1, 32, 3, (1, 1), 1, False),
    (32, 32, 3, (1, 1), 1, True),
    (32, 32, 3, (1, 1), 1, True),
    (32, 64, 3, (3, 1), 1, False),
    (64, 64, 3, (1, 1), 1, True),
    (64, 64, 3, (1, 1), 1, True),
    (64, 128, 3, (3, 3), 1, False),
    (128, 128, 3, (1, 1), 1, True),
    (128, 128, 3, (1, 1), 1, True),
    (128, 256, 3, (3, 2), 1, False),
    (256, 256, 3, (1, 1), 1, True),
    (256, 512, 3, (1, 1), 0, False),
    (512, 512, 1, (1, 1), 0, False),
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--batch", type=int, default=0)
    parser.add_argument("--wrong-input", action="store_true")
    parser.add_argument("--wrong-output", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(20261201)
    blocks = [list(b) for b in BLOCKS]
    if args.wrong_output:
        blocks[-1][1] = 256
    nodes, inits = [], []
    current = "mel"
    for i, (cin, cout, k, stride, pad, residual) in enumerate(blocks):
        weight = rng.normal(0, np.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k)).astype(np.float32)
        bias = rng.normal(0, 0.01, cout).astype(np.float32)
        inits += [numpy_helper.from_array(weight, f"w{i}"), numpy_helper.from_array(bias, f"b{i}")]
        nodes.append(helper.make_node("Conv", [current, f"w{i}", f"b{i}"], [f"conv{i}"],
                                      kernel_shape=[k, k], strides=list(stride), pads=[pad] * 4))
        scale = rng.uniform(0.8, 1.2, cout).astype(np.float32)
        shift = rng.normal(0, 0.05, cout).astype(np.float32)
        mean = rng.normal(0, 0.05, cout).astype(np.float32)
        var = rng.uniform(0.8, 1.2, cout).astype(np.float32)
        for name, value in (("s", scale), ("t", shift), ("m", mean), ("v", var)):
            inits.append(numpy_helper.from_array(value, f"bn{name}{i}"))
        nodes.append(helper.make_node("BatchNormalization",
                                      [f"conv{i}", f"bns{i}", f"bnt{i}", f"bnm{i}", f"bnv{i}"], [f"bn{i}"]))
        summed = f"bn{i}"
        if residual:
            nodes.append(helper.make_node("Add", [f"bn{i}", current], [f"sum{i}"]))
            summed = f"sum{i}"
        nodes.append(helper.make_node("Relu", [summed], [f"act{i}"]))
        current = f"act{i}"
    out_channels = blocks[-1][1]
    inits.append(numpy_helper.from_array(np.array([-1, out_channels], dtype=np.int64), "flat"))
    nodes.append(helper.make_node("Reshape", [current, "flat"], ["features"]))
    batch = args.batch if args.batch > 0 else "batch"
    frames = 20 if args.wrong_input else 16
    graph = helper.make_graph(
        nodes, "audio_encoder",
        [helper.make_tensor_value_info("mel", TensorProto.FLOAT, [batch, 1, 80, frames])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [batch, out_channels])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, args.out)


if __name__ == "__main__":
    main()
