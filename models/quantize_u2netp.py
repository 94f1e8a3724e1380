"""Makes u2netp-int8: u2netp with static per-tensor QDQ quantization (uint8 activations, int8
weights), calibrated on photos, for rembgfilter's catalog.

    quantize_u2netp.py U2NETP_ONNX OUTPUT_ONNX        (photos: $NEURALFX_CALIBRATION_PHOTOS,
                                                       colon-separated; models/fetch.py sets it)

The last fusion convolution (Conv_787) and the Concat feeding it stay float32: one channel there
carries values far outside the others, and a single per-tensor scale would wreck it.

Calibration ranges are rounded outwards to 1/256 of their power of two, so that the model's bytes
(checked against models/manifest.json) do not depend on the last bits of the float arithmetic of
the CPU that calibrates.
"""

import math
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
from onnxruntime.quantization.calibrate import load_tensors_data, save_tensors_data
from PIL import Image

KEPT_IN_FLOAT = ["Conv_787", "Concat_786"]
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


def rounded_outwards(value, up):
    if value == 0 or not math.isfinite(value):
        return value
    step = 2.0 ** math.floor(math.log2(abs(value))) / 256
    return (math.ceil(value / step) if up else math.floor(value / step)) * step


def round_cache(path):
    ranges = load_tensors_data(path)
    for tensor in ranges.data.values():
        lowest, highest = np.asarray(tensor.lowest), np.asarray(tensor.highest)
        tensor.lowest = np.array(rounded_outwards(float(lowest.ravel()[0]), up=False), dtype=lowest.dtype)
        tensor.highest = np.array(rounded_outwards(float(highest.ravel()[0]), up=True), dtype=highest.dtype)
    save_tensors_data(ranges, path)


def main():
    source, target = sys.argv[1:3]
    photos = [p for p in os.environ.get("NEURALFX_CALIBRATION_PHOTOS", "").split(":") if p]
    if not photos:
        raise SystemExit("quantize_u2netp.py: set NEURALFX_CALIBRATION_PHOTOS to photos to calibrate on")
    import onnx

    input_name = onnx.load(source).graph.input[0].name
    common = dict(
        quant_format=QuantFormat.QDQ,
        per_channel=False,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=KEPT_IN_FLOAT,
        calibrate_method=CalibrationMethod.MinMax,
    )
    with tempfile.TemporaryDirectory() as work:
        cache = os.path.join(work, "ranges.json")
        unrounded = os.path.join(work, "unrounded.onnx")
        quantize_static(source, unrounded, Photos(photos, input_name),
                        calibration_cache_path=cache, **common)
        round_cache(cache)
        quantize_static(source, target, None, calibration_cache_path=cache, **common)


if __name__ == "__main__":
    main()
