"""Reference oracle: the mask Python rembg computes for an image, written as raw 8-bit bytes.

Usage: rembg_mask.py MODEL_NAME IMAGE OUT_RAW [--post-process]
The model is read from $U2NET_HOME, where neuralfx reads it too, so both run the same file.
Prints "WIDTH HEIGHT" of the mask on stdout.
"""
import os
import sys

from PIL import Image
from rembg import new_session, remove


def main() -> None:
    model_name, image_path, out_path = sys.argv[1:4]
    post_process = "--post-process" in sys.argv[4:]
    model_file = os.path.join(os.environ["U2NET_HOME"], model_name + ".onnx")
    if not os.path.isfile(model_file):
        sys.exit(f"{model_file} missing: rembg would download it instead")
    session = new_session(model_name)
    mask = remove(Image.open(image_path), session=session, only_mask=True, post_process_mask=post_process)
    with open(out_path, "wb") as out:
        out.write(mask.tobytes())
    print(mask.width, mask.height)


if __name__ == "__main__":
    main()
