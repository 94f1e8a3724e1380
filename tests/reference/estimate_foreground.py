"""Reference oracle: pymatting's estimate_foreground_ml (what rembg's decontaminate and alpha
matting run) for an image and an alpha, both raw 8-bit bytes.

Usage: estimate_foreground.py WIDTH HEIGHT RGB_RAW ALPHA_RAW OUT_F32
Writes the estimated foreground as float32 RGB (0..1), row-major, and prints the seconds
pymatting took (its second run: the first compiles with numba).
"""
import sys
import time

import numpy as np
from pymatting import estimate_foreground_ml


def main() -> None:
    width, height = int(sys.argv[1]), int(sys.argv[2])
    rgb_path, alpha_path, out_path = sys.argv[3:6]
    image = np.fromfile(rgb_path, dtype=np.uint8).reshape(height, width, 3) / 255.0
    alpha = np.fromfile(alpha_path, dtype=np.uint8).reshape(height, width) / 255.0
    estimate_foreground_ml(image[:8, :8], alpha[:8, :8])
    started = time.perf_counter()
    foreground = estimate_foreground_ml(image, alpha)
    seconds = time.perf_counter() - started
    foreground.astype(np.float32).tofile(out_path)
    print(f"{seconds:.6f}")


if __name__ == "__main__":
    main()
