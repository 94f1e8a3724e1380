"""Writes an ONNX model shaped like SyncTalk_2D's U-Net (328), with random weights.

Same inputs, output, layer structure and channel widths as unet_328.py's Model(6, mode) after
export (BatchNorm folded into the convolutions), so its speed is the real model's.

Usage: make_unet328.py MODE OUT.onnx [--audio-first] [--seed N] [--narrow]
  MODE: ave, hubert or wenet. --audio-first declares the audio input first and names the
  inputs differently, as some exports do. --narrow divides every channel width by 4: the same
  inputs, output and layers at about a tenth of the work, for the tests that need the model's
  interface and an output that depends on both inputs but not the real model's speed.
"""
import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WIDTHS = [32, 64, 128, 256, 512]
AUDIO_SHAPES = {"ave": [1, 32, 16, 16], "hubert": [1, 32, 32, 32], "wenet": [1, 256, 16, 32]}


class Graph:
    def __init__(self, seed, widths):
        self.rng = np.random.default_rng(seed)
        self.widths = widths
        self.nodes, self.initializers, self.count = [], [], 0

    def name(self, prefix):
        self.count += 1
        return f"{prefix}_{self.count}"

    def conv(self, x, cin, cout, kernel, stride=1, pad=0, groups=1, gain=0.7):
        weight = self.name("w")
        bias = self.name("b")
        fan_in = cin // groups * kernel * kernel
        # Variance-preserving weights keep activations in range through the depth of the net.
        w = self.rng.normal(0, np.sqrt(2.0 / fan_in) * gain, (cout, cin // groups, kernel, kernel))
        self.initializers.append(numpy_helper.from_array(w.astype(np.float32), weight))
        self.initializers.append(numpy_helper.from_array(self.rng.normal(0, 0.02, cout).astype(np.float32), bias))
        out = self.name("conv")
        strides = stride if isinstance(stride, list) else [stride, stride]
        self.nodes.append(
            helper.make_node(
                "Conv", [x, weight, bias], [out], kernel_shape=[kernel, kernel], strides=strides,
                pads=[pad] * 4, group=groups,
            )
        )
        return out

    def op(self, kind, inputs, **attrs):
        out = self.name(kind.lower())
        self.nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    def relu(self, x):
        return self.op("Relu", [x])

    def inverted_residual(self, x, inp, oup, stride, residual, expand=2):
        hidden = inp * expand
        y = self.relu(self.conv(x, inp, hidden, 1))
        y = self.relu(self.conv(y, hidden, hidden, 3, stride, 1, groups=hidden))
        y = self.conv(y, hidden, oup, 1)
        return self.op("Add", [x, y]) if residual else y

    def double_conv_dw(self, x, cin, cout, stride):
        x = self.inverted_residual(x, cin, cout, stride, False)
        return self.inverted_residual(x, cout, cout, 1, True)

    def up(self, x1, x2, cin, cout):
        scales = self.name("scales")
        self.initializers.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), scales))
        x1 = self.op(
            "Resize", [x1, "", scales], mode="linear", coordinate_transformation_mode="align_corners"
        )
        x = self.op("Concat", [x1, x2], axis=1)
        return self.double_conv_dw(x, cin, cout, 1)

    def audio_encoder(self, a, mode):
        c = self.widths
        # The audio's own channels come in (narrower than the net's widths when --narrow).
        channels = AUDIO_SHAPES[mode][1]
        if mode == "wenet":
            a = self.inverted_residual(a, channels, c[3], 1, channels == c[3])
            a = self.inverted_residual(a, c[3], c[3], 1, True)
            a = self.relu(self.conv(a, c[3], c[3], 3, [1, 2], 1))
        else:
            a = self.inverted_residual(a, channels, c[1], 1, False)
            a = self.inverted_residual(a, c[1], c[2], 1, False)
            a = self.relu(self.conv(a, c[2], c[3], 3, 2 if mode == "hubert" else 1, 1))
        a = self.inverted_residual(a, c[3], c[3], 1, True)
        a = self.relu(self.conv(a, c[3], c[4], 3, 2, 3))
        a = self.inverted_residual(a, c[4], c[4], 1, True)
        return self.inverted_residual(a, c[4], c[4], 1, True)


def build(mode, audio_first, seed, narrow=False):
    c = [width // 4 for width in WIDTHS] if narrow else WIDTHS
    g = Graph(seed, c)
    image_name, audio_name = ("face", "speech") if audio_first else ("input", "audio")
    x1 = g.inverted_residual(image_name, 6, c[0], 1, False)
    x2 = g.double_conv_dw(x1, c[0], c[0], 2)
    x3 = g.double_conv_dw(x2, c[0], c[1], 2)
    x4 = g.double_conv_dw(x3, c[1], c[2], 2)
    x5 = g.double_conv_dw(x4, c[2], c[3], 2)
    x6 = g.double_conv_dw(x5, c[3], c[4], 2)
    audio = g.audio_encoder(audio_name, mode)
    x6 = g.op("Concat", [x6, audio], axis=1)
    x6 = g.double_conv_dw(x6, c[4] * 2, c[4], 1)
    x6 = g.double_conv_dw(x6, c[4], c[3], 1)
    x = g.up(x6, x5, c[4], c[3] // 2)
    x = g.up(x, x4, c[3], c[2] // 2)
    x = g.up(x, x3, c[2], c[1] // 2)
    x = g.up(x, x2, c[1], c[0])
    x = g.up(x, x1, c[1], c[0] // 2)
    # A strong last layer spreads the sigmoid over 0..1, so the face visibly depends on the inputs.
    out = g.conv(x, c[0] // 2, 3, 1, gain=40.0)
    g.nodes.append(helper.make_node("Sigmoid", [out], ["output"]))

    image = helper.make_tensor_value_info(image_name, TensorProto.FLOAT, [1, 6, 320, 320])
    speech = helper.make_tensor_value_info(audio_name, TensorProto.FLOAT, AUDIO_SHAPES[mode])
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 320, 320])
    inputs = [speech, image] if audio_first else [image, speech]
    graph = helper.make_graph(g.nodes, f"unet328_{mode}", inputs, [output], g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=sorted(AUDIO_SHAPES))
    parser.add_argument("out")
    parser.add_argument("--audio-first", action="store_true")
    parser.add_argument("--seed", type=int, default=328)
    parser.add_argument("--narrow", action="store_true")
    args = parser.parse_args()
    onnx.save(build(args.mode, args.audio_first, args.seed, args.narrow), args.out)


if __name__ == "__main__":
    main()
