"""Reference: Forte and Pitie's blur-fusion foreground estimator ("Approximate fast foreground
colour estimation", ICIP 2021, estimator 2) as the paper writes it, at full resolution with
OpenCV's box filter, for an image and an alpha, both raw 8-bit bytes. rembgfilter's
`foreground-estimation=blur-fusion` sums its windows on a reduced copy of large frames; this is
what that shortcut is checked against.

Usage: blur_fusion.py WIDTH HEIGHT RGB_RAW ALPHA_RAW OUT_F32
Writes the estimated foreground as float32 RGB (0..1), row-major, and prints the seconds it took.
"""
import sys
import time

import cv2
import numpy as np

# The paper's windows: 90 pixels on the image, then 6 on the first estimate.
WIDE_WINDOW = 90
NARROW_WINDOW = 6


def estimate(image, foreground, background, alpha, window):
    """One pass: alpha-weighted local means of F and B, then the correction of the pixel."""
    a = alpha[:, :, None]
    blurred_alpha = cv2.blur(alpha, (window, window))[:, :, None]
    mean_foreground = cv2.blur(foreground * a, (window, window)) / (blurred_alpha + 1e-5)
    mean_background = cv2.blur(background * (1 - a), (window, window)) / (
        (1 - blurred_alpha) + 1e-5
    )
    corrected = mean_foreground + a * (image - a * mean_foreground - (1 - a) * mean_background)
    return np.clip(corrected, 0, 1), mean_background


def blur_fusion(image, alpha):
    foreground, background = estimate(image, image, image, alpha, WIDE_WINDOW)
    foreground, _ = estimate(image, foreground, background, alpha, NARROW_WINDOW)
    return foreground


def main() -> None:
    width, height = int(sys.argv[1]), int(sys.argv[2])
    rgb_path, alpha_path, out_path = sys.argv[3:6]
    image = np.fromfile(rgb_path, dtype=np.uint8).reshape(height, width, 3).astype(np.float32)
    alpha = np.fromfile(alpha_path, dtype=np.uint8).reshape(height, width).astype(np.float32)
    started = time.perf_counter()
    foreground = blur_fusion(image / 255, alpha / 255)
    seconds = time.perf_counter() - started
    foreground.astype(np.float32).tofile(out_path)
    print(f"{seconds:.6f}")


if __name__ == "__main__":
    main()
