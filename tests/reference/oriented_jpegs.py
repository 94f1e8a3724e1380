"""Writes JPEGs of one photo as cameras do, for the still-image tests: OUT_DIR/orientation-N.jpg
for EXIF orientations 1-8 (little-endian EXIF, as Pillow writes it), orientation-6-mm.jpg (a
big-endian EXIF, as many phones write it) and plain.jpg (no EXIF). Each stores the pixels turned
so that applying its orientation gives the photo upright, as a camera does.

Usage: oriented_jpegs.py PHOTO OUT_DIR [WIDTH]
"""
import os
import struct
import sys

from PIL import Image, ImageOps

# The inverse of each orientation's transform: what a camera stores for an upright scene.
STORED = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def big_endian_exif(orientation):
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + b"\0\0\0\0"
    return b"Exif\0\0" + b"MM\0\x2a" + struct.pack(">I", 8) + ifd


def main():
    photo, out_dir = sys.argv[1:3]
    width = int(sys.argv[3]) if len(sys.argv) > 3 else 320
    os.makedirs(out_dir, exist_ok=True)
    upright = Image.open(photo).convert("RGB")
    upright = upright.resize((width, round(upright.height * width / upright.width)))
    for orientation, transpose in STORED.items():
        stored = upright.transpose(transpose) if transpose is not None else upright
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = os.path.join(out_dir, f"orientation-{orientation}.jpg")
        stored.save(path, exif=exif.tobytes(), quality=90)
        # The file must really come back upright through Pillow, or the test proves nothing.
        back = ImageOps.exif_transpose(Image.open(path))
        assert back.size == upright.size, (orientation, back.size)
    upright.transpose(STORED[6]).save(os.path.join(out_dir, "orientation-6-mm.jpg"),
                                      exif=big_endian_exif(6), quality=90)
    upright.save(os.path.join(out_dir, "plain.jpg"), quality=90)


if __name__ == "__main__":
    main()
