"""Reference oracle: the mask Python rembg computes for an image, written as raw 8-bit bytes.

Usage: rembg_mask.py MODEL_NAME IMAGE OUT_RAW [--post-process] [--home DIR]
(MODEL_NAME: a rembg session name, or isnet-int8 / isnet-fp16 for img.ly's ISNet exports)
The model is read from $U2NET_HOME (or DIR), where neuralfx reads it too, so both run the same file.
Prints "WIDTH HEIGHT" of the mask on stdout.
"""
import os
import sys

from PIL import Image
from rembg import new_session, remove


def main() -> None:
    model_name, image_path, out_path = sys.argv[1:4]
    post_process = "--post-process" in sys.argv[4:]
    if "--home" in sys.argv[4:]:
        os.environ["U2NET_HOME"] = sys.argv[sys.argv.index("--home") + 1]
    model_file = os.path.join(os.environ["U2NET_HOME"], model_name + ".onnx")
    if not os.path.isfile(model_file):
        sys.exit(f"{model_file} missing: rembg would download it instead")
    if model_name in ("isnet-int8", "isnet-fp16"):
        # Other ISNet exports (img.ly's int8 and fp16) run through rembg's session for custom
        # DIS models: the same 1024x1024 input and normalisation as isnet-general-use.
        session = new_session("dis_custom", model_path=model_file)
    else:
        session = new_session(model_name)
    mask = remove(Image.open(image_path), session=session, only_mask=True, post_process_mask=post_process)
    with open(out_path, "wb") as out:
        out.write(mask.tobytes())
    print(mask.width, mask.height)


if __name__ == "__main__":
    main()
