"""MediaPipe's own runtime as the oracle for the converted selfie segmentation models.

Usage: mediapipe_selfie.py general|landscape IMAGE OUT_PREFIX [--full-size]
Writes OUT_PREFIX.rgb.npy (the photo resized to the model's input size, uint8 HxWx3 RGB) and
OUT_PREFIX.mask.npy (MediaPipe's float32 HxW mask for exactly that image). Feeding the model an
image of its own input size makes MediaPipe's resizing steps identities, so what is compared is
the model itself: the same pixels in, the two runtimes' masks out.
With --full-size the photo keeps its size and MediaPipe does its own resizing both ways: the whole
chain, for a looser comparison (its resampling differs from the element's).
"""
import sys

import cv2
import numpy as np
from mediapipe.python.solutions import selfie_segmentation

# (width, height) of each model's input, and MediaPipe's model_selection for it.
MODELS = {"general": ((256, 256), 0), "landscape": ((256, 144), 1)}


def main():
    variant, image_path, prefix = sys.argv[1:4]
    full_size = "--full-size" in sys.argv[4:]
    size, selection = MODELS[variant]
    bgr = cv2.imread(image_path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read {image_path}")
    if not full_size:
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb = np.ascontiguousarray(rgb)
    with selfie_segmentation.SelfieSegmentation(model_selection=selection) as segmenter:
        mask = segmenter.process(rgb).segmentation_mask
    if mask.shape != rgb.shape[:2]:
        raise SystemExit(f"MediaPipe returned a {mask.shape} mask for a {rgb.shape[:2]} image")
    np.save(prefix + ".rgb.npy", rgb)
    np.save(prefix + ".mask.npy", mask.astype(np.float32))


if __name__ == "__main__":
    main()
