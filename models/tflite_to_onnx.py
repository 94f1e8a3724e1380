"""Converts MediaPipe's selfie segmentation TFLite models (and models built from the same ops) to ONNX.

Usage: tflite_to_onnx.py MODEL.tflite OUT.onnx

Off-the-shelf converters fail on these models: tflite2onnx lacks HARD_SWISH, and tf2onnx keeps
MediaPipe's custom Convolution2DTransposeBias op, which ONNX Runtime cannot load. The models use
about a dozen op types, each mapped here to standard ONNX ops (opset 17).

Layout: TFLite is NHWC throughout. The ONNX graph keeps the model's NHWC input and output (so
callers see the same tensors as with TFLite) and transposes to NCHW once after the input and once
before the output; every 4-D tensor in between is NCHW, which is what ONNX convolutions take.
fp16 weights behind DEQUANTIZE ops are folded into fp32 initializers. Any op, option or tensor
type not handled stops the conversion with a message naming it: no silent approximation.
"""
import sys

import numpy as np
import onnx
import tflite
from onnx import TensorProto, helper, numpy_helper

OPSET = 17

BUILTIN_NAMES = {getattr(tflite.BuiltinOperator, k): k for k in dir(tflite.BuiltinOperator) if not k.startswith("_")}
NUMPY_TYPES = {
    tflite.TensorType.FLOAT32: np.float32,
    tflite.TensorType.FLOAT16: np.float16,
    tflite.TensorType.INT32: np.int32,
    tflite.TensorType.INT64: np.int64,
}
# The position of each NHWC axis in NCHW.
NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


class ConversionError(Exception):
    pass


class Converter:
    def __init__(self, data):
        self.model = tflite.Model.GetRootAsModel(data, 0)
        if self.model.SubgraphsLength() != 1:
            raise ConversionError(f"{self.model.SubgraphsLength()} subgraphs; only single-graph models are handled")
        self.graph = self.model.Subgraphs(0)
        self.nodes = []
        self.initializers = []
        # TFLite tensor index -> ONNX value name (activations) or numpy array (constants).
        self.values = {}
        self.constants = {}
        self.unique = 0

    # ---- tensors -------------------------------------------------------------------------------
    def tensor(self, index):
        return self.graph.Tensors(index)

    def shape(self, index):
        return [int(d) for d in self.tensor(index).ShapeAsNumpy()] if self.tensor(index).ShapeLength() else []

    def tensor_name(self, index):
        return self.tensor(index).Name().decode()

    def constant(self, index):
        """The value of a constant tensor (its own buffer or a folded DEQUANTIZE), or None."""
        if index in self.constants:
            return self.constants[index]
        tensor = self.tensor(index)
        buffer = self.model.Buffers(tensor.Buffer())
        if buffer is None or buffer.DataLength() == 0:
            return None
        dtype = NUMPY_TYPES.get(tensor.Type())
        if dtype is None:
            raise ConversionError(f"tensor {self.tensor_name(index)!r} has unsupported type {tensor.Type()}")
        array = np.frombuffer(buffer.DataAsNumpy().tobytes(), dtype=dtype).reshape(self.shape(index))
        self.constants[index] = array
        return array

    def fresh(self, hint):
        self.unique += 1
        return f"{hint}__{self.unique}"

    def initializer(self, array, hint):
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def activation(self, index):
        if index not in self.values:
            raise ConversionError(f"tensor {self.tensor_name(index)!r} is used before any op produces it")
        return self.values[index]

    def operand(self, index, other_rank):
        """An elementwise operand: an activation, or a constant laid out to broadcast in NCHW."""
        value = self.constant(index)
        if value is None:
            return self.activation(index)
        value = value.astype(np.float32) if value.dtype == np.float16 else value
        if value.ndim == 4:
            value = value.transpose(0, 3, 1, 2)
        elif value.ndim == 1 and other_rank == 4 and value.size > 1:
            value = value.reshape(-1, 1, 1)
        elif value.ndim not in (0, 1):
            raise ConversionError(f"constant {self.tensor_name(index)!r} of shape {value.shape} cannot be broadcast")
        return self.initializer(value, self.tensor_name(index))

    def node(self, op_type, inputs, output_index, **attributes):
        output = self.tensor_name(output_index)
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=self.fresh(op_type), **attributes))
        self.values[output_index] = output
        return output

    def fused_activation(self, output_index, function, op_name):
        """Applies an op's fused activation by renaming its raw output and adding the activation."""
        if function == tflite.ActivationFunctionType.NONE:
            return
        raw = self.values[output_index]
        renamed = self.fresh(raw + "_preact")
        self.nodes[-1].output[0] = renamed
        if function == tflite.ActivationFunctionType.RELU:
            self.nodes.append(helper.make_node("Relu", [renamed], [raw], name=self.fresh("Relu")))
        elif function == tflite.ActivationFunctionType.RELU6:
            low = self.initializer(np.array(0, np.float32), "relu6_low")
            high = self.initializer(np.array(6, np.float32), "relu6_high")
            self.nodes.append(helper.make_node("Clip", [renamed, low, high], [raw], name=self.fresh("Clip")))
        else:
            raise ConversionError(f"{op_name}: fused activation {function} is not handled")

    # ---- padding -------------------------------------------------------------------------------
    @staticmethod
    def same_pads(in_size, out_size, kernel, stride, dilation=1):
        """TensorFlow's SAME padding as explicit (begin, end): the odd pixel goes at the end."""
        effective = (kernel - 1) * dilation + 1
        total = max((out_size - 1) * stride + effective - in_size, 0)
        return total // 2, total - total // 2

    def pads_2d(self, padding, in_shape, out_shape, kernel_hw, stride_hw, dilation_hw=(1, 1)):
        if padding == tflite.Padding.VALID:
            return [0, 0, 0, 0]
        if padding != tflite.Padding.SAME:
            raise ConversionError(f"padding {padding} is not handled")
        top, bottom = self.same_pads(in_shape[1], out_shape[1], kernel_hw[0], stride_hw[0], dilation_hw[0])
        left, right = self.same_pads(in_shape[2], out_shape[2], kernel_hw[1], stride_hw[1], dilation_hw[1])
        return [top, left, bottom, right]

    # ---- ops -----------------------------------------------------------------------------------
    def op_DEQUANTIZE(self, op, inputs, outputs):
        value = self.constant(inputs[0])
        if value is None or value.dtype != np.float16:
            raise ConversionError("DEQUANTIZE is only handled for constant fp16 weights")
        self.constants[outputs[0]] = value.astype(np.float32)

    def convolution(self, op, inputs, outputs, options, label, depthwise):
        """CONV_2D and DEPTHWISE_CONV_2D: the same ONNX Conv, with weights laid out for each."""
        options.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
        # TFLite weights: [out, kh, kw, in] for CONV_2D, [1, kh, kw, in * multiplier] for depthwise.
        weights = self.constant(inputs[1])
        if weights is None:
            raise ConversionError(f"{label} with non-constant weights is not handled")
        stride = (options.StrideH(), options.StrideW())
        dilation = (options.DilationHFactor(), options.DilationWFactor())
        pads = self.pads_2d(options.Padding(), self.shape(inputs[0]), self.shape(outputs[0]),
                            weights.shape[1:3], stride, dilation)
        if depthwise:
            # ONNX grouped convolution: weights [in * multiplier, 1, kh, kw], one group per input channel.
            onnx_weights, hint = weights.transpose(3, 0, 1, 2), "dwconv"
            grouping = {"group": self.shape(inputs[0])[3]}
        else:
            onnx_weights, hint, grouping = weights.transpose(0, 3, 1, 2), "conv", {}
        names = [self.activation(inputs[0]), self.initializer(onnx_weights, f"{hint}_w")]
        if len(inputs) > 2 and inputs[2] >= 0:
            names.append(self.initializer(self.constant(inputs[2]), f"{hint}_b"))
        self.node("Conv", names, outputs[0], kernel_shape=list(weights.shape[1:3]), strides=list(stride),
                  dilations=list(dilation), pads=pads, **grouping)
        self.fused_activation(outputs[0], options.FusedActivationFunction(), label)

    def op_CONV_2D(self, op, inputs, outputs):
        self.convolution(op, inputs, outputs, tflite.Conv2DOptions(), "CONV_2D", depthwise=False)

    def op_DEPTHWISE_CONV_2D(self, op, inputs, outputs):
        self.convolution(op, inputs, outputs, tflite.DepthwiseConv2DOptions(), "DEPTHWISE_CONV_2D",
                         depthwise=True)

    def op_AVERAGE_POOL_2D(self, op, inputs, outputs):
        options = tflite.Pool2DOptions()
        options.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
        kernel = (options.FilterHeight(), options.FilterWidth())
        stride = (options.StrideH(), options.StrideW())
        pads = self.pads_2d(options.Padding(), self.shape(inputs[0]), self.shape(outputs[0]), kernel, stride)
        # TFLite averages over the pixels inside the image only: count_include_pad=0.
        self.node("AveragePool", [self.activation(inputs[0])], outputs[0], kernel_shape=list(kernel),
                  strides=list(stride), pads=pads, count_include_pad=0)
        self.fused_activation(outputs[0], options.FusedActivationFunction(), "AVERAGE_POOL_2D")

    def op_MEAN(self, op, inputs, outputs):
        options = tflite.ReducerOptions()
        options.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
        axes = self.constant(inputs[1])
        if axes is None:
            raise ConversionError("MEAN with non-constant axes is not handled")
        rank = len(self.shape(inputs[0]))
        axes = [int(a) % rank for a in np.atleast_1d(axes)]
        if rank == 4:
            if not options.KeepDims():
                raise ConversionError("MEAN over a 4-D tensor without keep_dims is not handled")
            axes = [NHWC_TO_NCHW_AXIS[a] for a in axes]
        self.node("ReduceMean", [self.activation(inputs[0])], outputs[0], axes=sorted(axes),
                  keepdims=int(options.KeepDims()))

    def elementwise(self, op_type, options_class, op, inputs, outputs):
        options = options_class()
        options.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
        rank = len(self.shape(outputs[0]))
        names = [self.operand(i, rank) for i in inputs]
        self.node(op_type, names, outputs[0])
        self.fused_activation(outputs[0], options.FusedActivationFunction(), op_type)

    def op_ADD(self, op, inputs, outputs):
        self.elementwise("Add", tflite.AddOptions, op, inputs, outputs)

    def op_MUL(self, op, inputs, outputs):
        self.elementwise("Mul", tflite.MulOptions, op, inputs, outputs)

    def op_RELU(self, op, inputs, outputs):
        self.node("Relu", [self.activation(inputs[0])], outputs[0])

    def op_LOGISTIC(self, op, inputs, outputs):
        self.node("Sigmoid", [self.activation(inputs[0])], outputs[0])

    def op_HARD_SWISH(self, op, inputs, outputs):
        # TFLite: x * relu6(x + 3) / 6; ONNX HardSwish: x * max(0, min(1, x / 6 + 0.5)): the same.
        self.node("HardSwish", [self.activation(inputs[0])], outputs[0])

    def op_RESIZE_BILINEAR(self, op, inputs, outputs):
        options = tflite.ResizeBilinearOptions()
        options.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
        if options.AlignCorners() and options.HalfPixelCenters():
            raise ConversionError("RESIZE_BILINEAR with both align_corners and half_pixel_centers")
        if options.AlignCorners():
            mode = "align_corners"
        elif options.HalfPixelCenters():
            mode = "half_pixel"
        else:
            mode = "asymmetric"
        batch, height, width, channels = self.shape(outputs[0])
        sizes = self.initializer(np.array([batch, channels, height, width], np.int64), "resize_sizes")
        self.node("Resize", [self.activation(inputs[0]), "", "", sizes], outputs[0], mode="linear",
                  coordinate_transformation_mode=mode)

    def custom_Convolution2DTransposeBias(self, op, inputs, outputs):
        # MediaPipe's op: inputs (input, weights [out, kh, kw, in], bias [out]); its options are a
        # raw TfLiteTransposeConvParams: int32 padding (1 = SAME, 2 = VALID), stride_w, stride_h.
        raw = op.CustomOptionsAsNumpy().tobytes()
        if len(raw) < 12:
            raise ConversionError("Convolution2DTransposeBias: options shorter than 12 bytes")
        padding, stride_w, stride_h = np.frombuffer(raw[:12], dtype="<i4")
        weights = self.constant(inputs[1])
        bias = self.constant(inputs[2])
        if weights is None or bias is None:
            raise ConversionError("Convolution2DTransposeBias with non-constant weights is not handled")
        in_shape, out_shape = self.shape(inputs[0]), self.shape(outputs[0])
        kernel = weights.shape[1:3]
        if padding == 1:
            # SAME: the padding of the forward convolution that maps the output back to the input.
            top, bottom = self.same_pads(out_shape[1], in_shape[1], kernel[0], stride_h)
            left, right = self.same_pads(out_shape[2], in_shape[2], kernel[1], stride_w)
        elif padding == 2:
            top = bottom = left = right = 0
        else:
            raise ConversionError(f"Convolution2DTransposeBias: padding {padding} is not handled")
        # Whatever the pads do not account for (VALID with a larger output) is extra output at the end.
        extra_h = out_shape[1] - ((in_shape[1] - 1) * stride_h + kernel[0] - top - bottom)
        extra_w = out_shape[2] - ((in_shape[2] - 1) * stride_w + kernel[1] - left - right)
        if extra_h < 0 or extra_w < 0:
            raise ConversionError(f"Convolution2DTransposeBias: output {out_shape} does not fit input {in_shape}")
        # ONNX ConvTranspose weights: [in, out, kh, kw].
        names = [self.activation(inputs[0]), self.initializer(weights.transpose(3, 0, 1, 2), "deconv_w"),
                 self.initializer(bias, "deconv_b")]
        self.node("ConvTranspose", names, outputs[0], kernel_shape=list(kernel),
                  strides=[int(stride_h), int(stride_w)], pads=[top, left, bottom, right],
                  output_padding=[int(extra_h), int(extra_w)])

    # ---- graph ---------------------------------------------------------------------------------
    def value_info(self, index, name):
        dtype = self.tensor(index).Type()
        if dtype != tflite.TensorType.FLOAT32:
            raise ConversionError(f"graph input/output {self.tensor_name(index)!r} is not float32")
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, self.shape(index))

    def convert(self):
        graph_inputs = []
        for i in range(self.graph.InputsLength()):
            index = self.graph.Inputs(i)
            name = self.tensor_name(index)
            graph_inputs.append(self.value_info(index, name))
            if len(self.shape(index)) == 4:
                nchw = self.fresh(name + "_nchw")
                self.nodes.append(helper.make_node("Transpose", [name], [nchw], perm=[0, 3, 1, 2],
                                                   name=self.fresh("Transpose")))
                self.values[index] = nchw
            else:
                self.values[index] = name

        for i in range(self.graph.OperatorsLength()):
            op = self.graph.Operators(i)
            code = self.model.OperatorCodes(op.OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            inputs = [int(j) for j in op.InputsAsNumpy()] if op.InputsLength() else []
            outputs = [int(j) for j in op.OutputsAsNumpy()]
            if builtin == tflite.BuiltinOperator.CUSTOM:
                name = code.CustomCode().decode()
                handler = getattr(self, f"custom_{name}", None)
            else:
                name = BUILTIN_NAMES.get(builtin, str(builtin))
                handler = getattr(self, f"op_{name}", None)
            if handler is None:
                raise ConversionError(f"op {i}: {name} is not handled by this converter")
            try:
                handler(op, inputs, outputs)
            except ConversionError as error:
                raise ConversionError(f"op {i} ({name}): {error}") from None

        graph_outputs = []
        for i in range(self.graph.OutputsLength()):
            index = self.graph.Outputs(i)
            name = self.tensor_name(index)
            graph_outputs.append(self.value_info(index, name))
            if len(self.shape(index)) == 4:
                # The op that produced the output wrote NCHW under the output's name; rename it.
                nchw = self.fresh(name + "_nchw")
                for node in self.nodes:
                    node.output[:] = [nchw if o == name else o for o in node.output]
                    node.input[:] = [nchw if o == name else o for o in node.input]
                self.nodes.append(helper.make_node("Transpose", [nchw], [name], perm=[0, 2, 3, 1],
                                                   name=self.fresh("Transpose")))

        graph = helper.make_graph(self.nodes, "converted_from_tflite", graph_inputs, graph_outputs,
                                  initializer=self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="neuralfx tflite_to_onnx")
        model.ir_version = 8
        onnx.checker.check_model(model, full_check=True)
        return model


def convert_bytes(data):
    return Converter(data).convert().SerializeToString()


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    source, target = sys.argv[1:]
    with open(source, "rb") as f:
        data = f.read()
    try:
        serialized = convert_bytes(data)
    except ConversionError as error:
        raise SystemExit(f"{source}: {error}")
    with open(target, "wb") as f:
        f.write(serialized)


if __name__ == "__main__":
    main()
