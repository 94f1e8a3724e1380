"""Reference oracle: OpenCV's cv2.resize(..., INTER_CUBIC) of a raw 8-bit BGR image.

Usage: cv2_resize.py IN_RAW WIDTH HEIGHT OUT_WIDTH OUT_HEIGHT OUT_RAW
"""
import sys

import cv2
import numpy as np


def main() -> None:
    in_path, width, height, out_width, out_height, out_path = sys.argv[1:7]
    pixels = np.fromfile(in_path, np.uint8).reshape(int(height), int(width), 3)
    cv2.resize(pixels, (int(out_width), int(out_height)), interpolation=cv2.INTER_CUBIC).tofile(out_path)


if __name__ == "__main__":
    main()
