"""Reference oracle: the mask Python rembg computes for an image, written as raw 8-bit bytes.

Usage: rembg_mask.py MODEL_NAME IMAGE OUT_RAW [IMAGE OUT_RAW ...] [--post-process] [--home DIR]
(MODEL_NAME: a rembg session name, or isnet-int8 / isnet-fp16 for img.ly's ISNet exports)
The model is read from $U2NET_HOME (or DIR), where neuralfx reads it too, so both run the same file.
Prints "WIDTH HEIGHT" of each mask on stdout, a line per image, in order.
"""
import os
import sys

from PIL import Image
from rembg import new_session, remove


def main() -> None:
    args = sys.argv[1:]
    post_process = "--post-process" in args
    if post_process:
        args.remove("--post-process")
    if "--home" in args:
        at = args.index("--home")
        os.environ["U2NET_HOME"] = args[at + 1]
        del args[at : at + 2]
    model_name, pairs = args[0], args[1:]
    if not pairs or len(pairs) % 2:
        sys.exit(__doc__)
    model_file = os.path.join(os.environ["U2NET_HOME"], model_name + ".onnx")
    if not os.path.isfile(model_file):
        sys.exit(f"{model_file} missing: rembg would download it instead")
    if model_name in ("isnet-int8", "isnet-fp16"):
        # Other ISNet exports (img.ly's int8 and fp16) run through rembg's session for custom
        # DIS models: the same 1024x1024 input and normalisation as isnet-general-use.
        session = new_session("dis_custom", model_path=model_file)
    else:
        session = new_session(model_name)
    # One session for every image: the model loads once.
    for image_path, out_path in zip(pairs[0::2], pairs[1::2]):
        mask = remove(Image.open(image_path), session=session, only_mask=True, post_process_mask=post_process)
        with open(out_path, "wb") as out:
            out.write(mask.tobytes())
        print(mask.width, mask.height)


if __name__ == "__main__":
    main()
