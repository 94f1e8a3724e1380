"""Reference oracle: PIL's Image.resize of a raw 8-bit image.

Usage: pil_resize.py IN_RAW WIDTH HEIGHT CHANNELS OUT_WIDTH OUT_HEIGHT OUT_RAW FILTER
FILTER is lanczos, bilinear or bicubic; CHANNELS is 1 (mode L), 3 (mode RGB) or 4 (mode RGBX: four
channels resized alike, as PIL's RGBA would not be: it premultiplies by alpha).
"""
import sys

import numpy as np
from PIL import Image


def main() -> None:
    in_path, width, height, channels, out_width, out_height, out_path, filter_name = sys.argv[1:9]
    width, height, channels, out_width, out_height = (int(v) for v in (width, height, channels, out_width, out_height))
    shape = (height, width) if channels == 1 else (height, width, channels)
    pixels = np.fromfile(in_path, np.uint8).reshape(shape)
    resample = {
        "lanczos": Image.Resampling.LANCZOS,
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
    }[filter_name]
    if channels == 4:
        image = Image.frombytes("RGBX", (width, height), pixels.tobytes())
    else:
        image = Image.fromarray(pixels)
    resized = image.resize((out_width, out_height), resample)
    with open(out_path, "wb") as out:
        out.write(resized.tobytes())


if __name__ == "__main__":
    main()
