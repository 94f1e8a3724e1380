"""Reference oracle: JPEGs of the kinds SyncTalk_2D's OpenCV reads, and what cv2.imread makes of them.

Usage: jpeg_variants.py SOURCE_IMAGE OUT_DIR WIDTH HEIGHT
Writes OUT_DIR/{grey,cmyk,colour,truncated}.jpg (Pillow, the source resized to WIDTH x HEIGHT;
cmyk is Adobe-inverted CMYK as Pillow and Photoshop write it; truncated is colour cut to its first
half) and, for each, OUT_DIR/<name>.bgr: cv2.imread(path, IMREAD_COLOR) as raw BGR bytes.
"""
import os
import sys

import cv2
from PIL import Image


def main() -> None:
    source, out, width, height = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    os.makedirs(out, exist_ok=True)
    image = Image.open(source).convert("RGB").resize((width, height))
    path = lambda name: os.path.join(out, f"{name}.jpg")
    image.convert("L").save(path("grey"), quality=90)
    image.convert("CMYK").save(path("cmyk"), quality=90)
    image.save(path("colour"), quality=90)
    with open(path("colour"), "rb") as whole:
        data = whole.read()
    with open(path("truncated"), "wb") as cut:
        cut.write(data[: len(data) // 2])
    for name in ["grey", "cmyk", "colour", "truncated"]:
        cv2.imread(path(name), cv2.IMREAD_COLOR).tofile(os.path.join(out, f"{name}.bgr"))


if __name__ == "__main__":
    main()
