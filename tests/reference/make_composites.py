"""The edge refinement test set: foregrounds with a known soft alpha composited over other photos.

Usage: make_composites.py SAMPLES_DIR OUT_DIR
For each foreground (the astronaut, 512x512; the group portrait, scaled to 810x540) the "true"
alpha is closed-form matting (pymatting's estimate_alpha_cf) on the trimap rembg's alpha matting
makes of ISNet's mask (isnet-fp16, a model neither tested model is), and the foreground colour
is pymatting's estimate_foreground_ml on it. Each composite is alpha F + (1 - alpha) B over a
background photo scaled to the foreground's size. Writes OUT_DIR/<foreground>_<background>.png,
OUT_DIR/<foreground>.alpha (8-bit raw), OUT_DIR/<foreground>.foreground (its colour, packed RGB,
for clips made of it) and OUT_DIR/listing.txt, one line per composite:
"FILE ALPHA_FILE WIDTH HEIGHT" (a file: pymatting prints its warnings on stdout).
"""
import os
import sys

import numpy as np
from PIL import Image
from pymatting import estimate_alpha_cf, estimate_foreground_ml
from rembg import new_session, remove
from scipy.ndimage import binary_erosion

FOREGROUNDS = [("astronaut", "astronaut.png", None), ("group", "group.jpg", (810, 540))]
BACKGROUNDS = ["coffee.png", "motorcycle_right.png", "rocket.jpg", "hubble_deep_field.jpg"]


def true_alpha_and_foreground(image, session):
    mask = np.asarray(remove(image, session=session, only_mask=True))
    # rembg's alpha matting trimap (240, 10, erode 10).
    square = np.ones((10, 10), dtype=np.uint8)
    is_foreground = binary_erosion(mask > 240, structure=square)
    is_background = binary_erosion(mask < 10, structure=square, border_value=1)
    trimap = np.full(mask.shape, 0.5)
    trimap[is_foreground] = 1.0
    trimap[is_background] = 0.0
    pixels = np.asarray(image) / 255.0
    alpha = estimate_alpha_cf(pixels, trimap)
    return alpha, estimate_foreground_ml(pixels, alpha)


def main() -> None:
    samples, out = sys.argv[1:3]
    os.makedirs(out, exist_ok=True)
    model = os.path.join(os.environ["U2NET_HOME"], "isnet-fp16.onnx")
    session = new_session("dis_custom", model_path=model)
    listing = []
    for name, file, size in FOREGROUNDS:
        image = Image.open(os.path.join(samples, file)).convert("RGB")
        if size:
            image = image.resize(size, Image.LANCZOS)
        alpha, foreground = true_alpha_and_foreground(image, session)
        alpha_path = os.path.join(out, name + ".alpha")
        np.clip(alpha * 255 + 0.5, 0, 255).astype(np.uint8).tofile(alpha_path)
        foreground_path = os.path.join(out, name + ".foreground")
        np.clip(foreground * 255 + 0.5, 0, 255).astype(np.uint8).tofile(foreground_path)
        for background_file in BACKGROUNDS:
            background = Image.open(os.path.join(samples, background_file)).convert("RGB")
            background = np.asarray(background.resize(image.size, Image.BILINEAR)) / 255.0
            a = alpha[:, :, None]
            composite = a * foreground + (1 - a) * background
            path = os.path.join(out, f"{name}_{background_file.split('.')[0]}.png")
            Image.fromarray(np.clip(composite * 255 + 0.5, 0, 255).astype(np.uint8)).save(path)
            listing.append(f"{path} {alpha_path} {image.width} {image.height}\n")
    with open(os.path.join(out, "listing.txt"), "w") as file:
        file.writelines(listing)


if __name__ == "__main__":
    main()
