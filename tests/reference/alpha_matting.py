"""Reference oracle for alpha matting: Python rembg's alpha_matting_cutout (pymatting's
closed-form matting and estimate_foreground_ml on the trimap rembg makes of the mask), its
trimap, and pymatting's matting Laplacian.

Usage:
  alpha_matting.py remove MODEL IMAGE OUT_RGBA FG BG ERODE
      rembg's remove(alpha_matting=True) with the model (read from $U2NET_HOME).
  alpha_matting.py cutout WIDTH HEIGHT RGB_RAW MASK_RAW OUT_RGBA FG BG ERODE [TIMES]
      alpha_matting_cutout on the given image and mask (8-bit): the matting step alone, timed
      TIMES times (default 1), the median printed.
  alpha_matting.py trimap WIDTH HEIGHT MASK_RAW OUT_RAW FG BG ERODE
      the trimap alpha_matting_cutout builds (0, 128, 255).
  alpha_matting.py laplacian WIDTH HEIGHT RGB_RAW TRIMAP_RAW OUT_F64
      L_U (dense, unknown pixels in raster order) then -R x_K, as float64.
remove and cutout print "WIDTH HEIGHT SECONDS PEAK_MIB": the seconds alpha_matting_cutout took
(timed on a second call, after numba compiled on the first, on a small image for cutout) and the
process's peak resident memory.
"""
import os
import resource
import sys
import time

import numpy as np
from PIL import Image
from pymatting.laplacian.cf_laplacian import cf_laplacian
from pymatting.util.util import trimap_split
from rembg import new_session, remove
from rembg.bg import alpha_matting_cutout
from scipy.ndimage import binary_erosion


def rembg_trimap(mask, foreground, background, erode):
    # What alpha_matting_cutout does before estimate_alpha_cf.
    structure = np.ones((erode, erode), dtype=np.uint8) if erode > 0 else None
    is_foreground = binary_erosion(mask > foreground, structure=structure)
    is_background = binary_erosion(mask < background, structure=structure, border_value=1)
    trimap = np.full(mask.shape, dtype=np.uint8, fill_value=128)
    trimap[is_foreground] = 255
    trimap[is_background] = 0
    return trimap


def timed_cutout(image, mask, foreground, background, erode, warm_up=None, times=1):
    warm_image, warm_mask = warm_up or (image, mask)
    alpha_matting_cutout(warm_image, warm_mask, foreground, background, erode)
    seconds = []
    for _ in range(times):
        started = time.perf_counter()
        cutout = alpha_matting_cutout(image, mask, foreground, background, erode)
        seconds.append(time.perf_counter() - started)
    return cutout, sorted(seconds)[len(seconds) // 2]


def main() -> None:
    command = sys.argv[1]
    if command == "remove":
        model, image_path, out_path = sys.argv[2:5]
        foreground, background, erode = (int(v) for v in sys.argv[5:8])
        model_file = os.path.join(os.environ["U2NET_HOME"], model + ".onnx")
        if not os.path.isfile(model_file):
            sys.exit(f"{model_file} missing: rembg would download it instead")
        session = new_session(model)
        image = Image.open(image_path).convert("RGB")
        cutout = remove(
            image,
            session=session,
            alpha_matting=True,
            alpha_matting_foreground_threshold=foreground,
            alpha_matting_background_threshold=background,
            alpha_matting_erode_size=erode,
        )
        try:
            _, seconds = timed_cutout(
                image, session.predict(image)[0], foreground, background, erode
            )
        except ValueError:
            # No sure foreground or background: remove() fell back to the plain cutout.
            seconds = 0.0
        write_cutout(cutout, out_path, seconds)
    elif command == "cutout":
        width, height = int(sys.argv[2]), int(sys.argv[3])
        rgb = np.fromfile(sys.argv[4], dtype=np.uint8).reshape(height, width, 3)
        mask = np.fromfile(sys.argv[5], dtype=np.uint8).reshape(height, width)
        out_path = sys.argv[6]
        foreground, background, erode = (int(v) for v in sys.argv[7:10])
        times = max(1, int(sys.argv[10])) if len(sys.argv) > 10 else 1
        image, mask_image = Image.fromarray(rgb), Image.fromarray(mask)
        # numba compiles on a small image (half foreground, half background), so a large frame
        # is not matted twice.
        warm_mask = np.zeros((64, 64), dtype=np.uint8)
        warm_mask[:, :32] = 255
        warm_up = (image.crop((0, 0, 64, 64)), Image.fromarray(warm_mask))
        cutout, seconds = timed_cutout(
            image, mask_image, foreground, background, erode, warm_up, times
        )
        write_cutout(cutout, out_path, seconds)
    elif command == "trimap":
        width, height = int(sys.argv[2]), int(sys.argv[3])
        mask = np.fromfile(sys.argv[4], dtype=np.uint8).reshape(height, width)
        foreground, background, erode = (int(v) for v in sys.argv[6:9])
        rembg_trimap(mask, foreground, background, erode).tofile(sys.argv[5])
    elif command == "laplacian":
        width, height = int(sys.argv[2]), int(sys.argv[3])
        image = np.fromfile(sys.argv[4], dtype=np.uint8).reshape(height, width, 3) / 255.0
        trimap = np.fromfile(sys.argv[5], dtype=np.uint8).reshape(height, width) / 255.0
        is_fg, _, is_known, is_unknown = trimap_split(trimap)
        laplacian = cf_laplacian(image, is_known=is_known)
        unknown_rows = laplacian[is_unknown, :]
        l_u = unknown_rows[:, is_unknown].toarray()
        rhs = -unknown_rows[:, is_known].dot(is_fg[is_known].astype(np.float64))
        np.concatenate([l_u.ravel(), rhs]).astype(np.float64).tofile(sys.argv[6])
    else:
        sys.exit(f"unknown command {command}")


def write_cutout(cutout, out_path, seconds):
    rgba = cutout.convert("RGBA")
    with open(out_path, "wb") as out:
        out.write(rgba.tobytes())
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(rgba.width, rgba.height, f"{seconds:.6f}", f"{peak_mib:.0f}")


if __name__ == "__main__":
    main()
