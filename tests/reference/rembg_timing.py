"""Times Python rembg's remove() on one image at a given size, the way its users call it.

Usage: rembg_timing.py MODEL_NAME IMAGE WIDTH HEIGHT ITERATIONS
Prints the mean milliseconds per image on stdout (after one warm-up call).
"""
import sys
import time

from PIL import Image
from rembg import new_session, remove


def main() -> None:
    model_name, image_path = sys.argv[1:3]
    width, height, iterations = (int(v) for v in sys.argv[3:6])
    session = new_session(model_name)
    image = Image.open(image_path).convert("RGB").resize((width, height))
    remove(image, session=session)
    start = time.perf_counter()
    for _ in range(iterations):
        remove(image, session=session)
    print(f"{(time.perf_counter() - start) * 1000 / iterations:.2f}")


if __name__ == "__main__":
    main()
