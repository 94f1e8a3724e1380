"""Reference oracle: pictures of every kind Pillow opens, and the alpha of Python rembg's cutout
of each (remove(), as `rembg i` runs it: EXIF/TIFF orientation applied, the mask multiplied by
the picture's own alpha).

Usage: still_formats.py SOURCE_IMAGE PICTURES_DIR REFERENCE_DIR
Writes PICTURES_DIR/<name> for each kind (JPEG grey/CMYK/progressive, PNG grey/LA/palette with a
transparent index/RGBA, WebP with alpha, BMP, GIF single and animated, TIFF with orientation tags
1-8, an LZW TIFF), all from SOURCE_IMAGE at 300x200, and REFERENCE_DIR/<name>.alpha: the
cutout's alpha as raw bytes, with "<name> WIDTH HEIGHT" per line on stdout. rembg runs u2netp
from $U2NET_HOME, the file neuralfx reads too.
"""
import os
import sys

import numpy as np
from PIL import Image, TiffImagePlugin
from rembg import new_session, remove


def pictures(source: Image.Image) -> dict:
    """name -> (Pillow image, save options)."""
    rgba = np.array(source.convert("RGBA"))
    # A transparent band, a half-transparent band: the cutout's alpha must follow both.
    rgba[:, :60, 3] = 0
    rgba[:, 60:100, 3] = 128
    rgba = Image.fromarray(rgba)
    kinds = {
        "grey-jpeg.jpg": (source.convert("L"), {"quality": 90}),
        "cmyk.jpg": (source.convert("CMYK"), {"quality": 90}),
        "progressive.jpg": (source, {"quality": 90, "progressive": True}),
        "grey.png": (source.convert("L"), {}),
        "grey-alpha.png": (rgba.convert("LA"), {}),
        "rgba.png": (rgba, {}),
        "alpha.webp": (rgba, {"lossless": True}),
        "bitmap.bmp": (source, {}),
        "one-frame.gif": (source.quantize(128), {}),
        "animated.gif": (source.quantize(64), {
            "save_all": True, "duration": 100, "loop": 0,
            "append_images": [source.transpose(Image.Transpose.FLIP_LEFT_RIGHT).quantize(64)]}),
        "lzw.tiff": (source, {"compression": "tiff_lzw"}),
    }
    # A palette PNG whose least used index is transparent: Pillow masks it, like an alpha of 0.
    palette = source.quantize(64)
    least_used = int(np.argmin(np.bincount(np.array(palette).ravel(), minlength=64)))
    kinds["palette.png"] = (palette, {"transparency": least_used})
    for orientation in range(1, 9):
        tags = TiffImagePlugin.ImageFileDirectory_v2()
        tags[274] = orientation
        kinds[f"orientation-{orientation}.tiff"] = (source, {"tiffinfo": tags})
    return kinds


def main() -> None:
    source_path, pictures_dir, reference_dir = sys.argv[1:4]
    os.makedirs(pictures_dir, exist_ok=True)
    os.makedirs(reference_dir, exist_ok=True)
    source = Image.open(source_path).convert("RGB").resize((300, 200))
    session = new_session("u2netp")
    for name, (image, options) in sorted(pictures(source).items()):
        path = os.path.join(pictures_dir, name)
        image.save(path, **options)
        cutout = remove(Image.open(path), session=session)
        alpha = cutout.getchannel("A")
        with open(os.path.join(reference_dir, name + ".alpha"), "wb") as out:
            out.write(alpha.tobytes())
        print(name, alpha.width, alpha.height)


if __name__ == "__main__":
    main()
