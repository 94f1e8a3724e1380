"""Writes a copy of a TFLite model with its HARD_SWISH ops turned into TANH, an op that
models/tflite_to_onnx.py does not handle, to check that the converter refuses it by name.

Usage: tflite_unsupported_op.py IN.tflite OUT.tflite
The op code table is patched in place (both the int8 deprecated field and the int32 field).
"""
import struct
import sys

import tflite


def main():
    source, target = sys.argv[1:3]
    data = bytearray(open(source, "rb").read())
    model = tflite.Model.GetRootAsModel(data, 0)
    patched = 0
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) != tflite.BuiltinOperator.HARD_SWISH:
            continue
        table = code._tab
        deprecated, current = table.Offset(4), table.Offset(10)
        if not deprecated or not current:
            raise SystemExit("the op code fields are not stored in this file; cannot patch")
        data[table.Pos + deprecated] = tflite.BuiltinOperator.TANH
        struct.pack_into("<i", data, table.Pos + current, tflite.BuiltinOperator.TANH)
        patched += 1
    if not patched:
        raise SystemExit(f"{source} has no HARD_SWISH op")
    open(target, "wb").write(data)


if __name__ == "__main__":
    main()
