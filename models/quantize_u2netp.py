"""Makes u2netp-int8: u2netp with static QDQ quantization (uint8 activations, int8 weights per
output channel), calibrated on photos, for rembgfilter's catalog.

    quantize_u2netp.py U2NETP_ONNX OUTPUT_ONNX        (photos: $NEURALFX_CALIBRATION_PHOTOS,
                                                       colon-separated; models/fetch.py sets it)

Kept in float32: the first four convolutions (the encoder's first stage, which sees the raw
picture), the last decoder stage with the side outputs and their fusion (where ONNX Runtime's
qdq_loss_debug measured the largest accumulated error on the calibration photos), and the
fusion's Concat. The model is moved to opset 13 first: per-channel DequantizeLinear needs it.

The calibration photos (models/manifest.json) are none of the held-out photos that the tests and
the speed bench judge the masks on. Measured against float u2netp (mask IoU at alpha > 127,
ONNX Runtime): rocket 0.938, chelsea 0.970, motorcycle_left 0.980, camera 0.991, astronaut 0.992,
group 0.996, coffee 0.998, horse 0.980; on rembg's example photos 0.936-0.997. The previous
per-tensor version calibrated on three sample photos gave rocket 0.535.

The masks are sensitive to the calibration ranges to their last bits: rounding every range
outwards by at most 0.25% (done before, to make the bytes the same on every CPU) moved the worst
held-out IoU from 0.936 to 0.891. So the ranges are used as calibrated; another CPU's arithmetic
may give other bytes and other figures (fetch.py reports a different md5, the tests judge the
masks).
"""

import os
import sys
import tempfile

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from PIL import Image

KEPT_IN_FLOAT = [
    # The encoder's first stage.
    "Conv_0", "Conv_2", "Conv_5", "Conv_8",
    # The last fusion and its Concat: one channel there carries values far outside the others.
    "Conv_787", "Concat_786",
    # The last decoder stage, the side outputs and their fusion.
    "Conv_812", "Conv_815", "Conv_818", "Conv_821", "Conv_824", "Conv_827", "Conv_829", "Conv_832",
    "Conv_854", "Conv_876", "Conv_898", "Conv_920", "Conv_942", "Conv_945", "Conv_946", "Conv_966",
    "Conv_986", "Conv_1006", "Conv_1026", "Conv_1047",
]
# Per-channel DequantizeLinear (its axis attribute) needs opset 13.
OPSET = 13
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def rembg_input(image):
    """The tensor rembg gives u2netp: Lanczos to 320x320, divided by its maximum, ImageNet mean/std."""
    pixels = np.asarray(image.convert("RGB").resize((320, 320), Image.LANCZOS), dtype=np.float32)
    pixels = pixels / max(float(pixels.max()), 1e-6)
    pixels = (pixels - MEAN) / STD
    return pixels.transpose(2, 0, 1)[np.newaxis].astype(np.float32)


class Photos(CalibrationDataReader):
    """Each photo as it is and mirrored."""

    def __init__(self, paths, input_name):
        frames = []
        for path in paths:
            image = Image.open(path)
            frames.append(rembg_input(image))
            frames.append(rembg_input(image.transpose(Image.FLIP_LEFT_RIGHT)))
        self.feeds = iter({input_name: frame} for frame in frames)

    def get_next(self):
        return next(self.feeds, None)


def main():
    source, target = sys.argv[1:3]
    photos = [p for p in os.environ.get("NEURALFX_CALIBRATION_PHOTOS", "").split(":") if p]
    if not photos:
        raise SystemExit("quantize_u2netp.py: set NEURALFX_CALIBRATION_PHOTOS to photos to calibrate on")
    import onnx
    from onnx import version_converter

    model = onnx.load(source)
    input_name = model.graph.input[0].name
    missing = sorted(set(KEPT_IN_FLOAT) - {node.name for node in model.graph.node})
    if missing:
        raise SystemExit(f"quantize_u2netp.py: {source} is not the u2netp it was written for (no {', '.join(missing)})")
    common = dict(
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=KEPT_IN_FLOAT,
        calibrate_method=CalibrationMethod.MinMax,
    )
    with tempfile.TemporaryDirectory() as work:
        source = os.path.join(work, "opset13.onnx")
        onnx.save(version_converter.convert_version(model, OPSET), source)
        quantize_static(source, target, Photos(photos, input_name), **common)


if __name__ == "__main__":
    main()
