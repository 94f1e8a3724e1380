"""Writes a SyncTalk_2D-style template folder and audio features from a sample photo.

Usage: make_lipsync_data.py PHOTO OUT_DIR [--templates N] [--width W] [--height H] [--feature-frames F]

OUT_DIR/template/full_body_img/<i>.jpg   the photo on a W x H canvas, shifted a little per frame
OUT_DIR/template/landmarks/<i>.lms       110 "x y" points; points 1, 31 and 52 place the crop on the face
OUT_DIR/template/parsing/<i>.png         a parsing map with (0,0,255) and (255,255,255) regions (BGR)
OUT_DIR/features/<mode>.npy              per-frame features (F x 512, F x 2 x 1024, F x 8192)
OUT_DIR/features/<mode>_windowed.bin     the same windowed (F x 8192, ...), with .bin.json
"""
import argparse
import json
import os

import cv2
import numpy as np

# Where the face sits in skimage's astronaut photo (512x512): the crop square SyncTalk_2D's
# landmarks select runs from the cheeks across and from the nose down.
FACE_BOX = (165, 95, 120)  # x, y, size, in the photo's pixels


def window(features, frame, rows=16):
    out = np.zeros((rows,) + features.shape[1:], np.float32)
    for slot, source in enumerate(range(frame - 8, frame + 8)):
        if 0 <= source < len(features):
            out[slot] = features[source]
    return out.reshape(-1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("photo")
    parser.add_argument("out")
    parser.add_argument("--templates", type=int, default=8)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--feature-frames", type=int, default=12)
    parser.add_argument("--seed", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    photo = cv2.imread(args.photo)
    scale = args.height * 0.9 / photo.shape[0]
    person = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    template = os.path.join(args.out, "template")
    for sub in ("full_body_img", "landmarks", "parsing"):
        os.makedirs(os.path.join(template, sub), exist_ok=True)
    for i in range(args.templates):
        dx, dy = int(rng.integers(-6, 7)), int(rng.integers(-4, 5))
        canvas = np.full((args.height, args.width, 3), (40, 60, 80), np.uint8)
        x0 = (args.width - person.shape[1]) // 2 + dx
        y0 = (args.height - person.shape[0]) // 2 + dy
        canvas[y0:y0 + person.shape[0], x0:x0 + person.shape[1]] = person
        noise = rng.integers(-3, 4, canvas.shape)
        canvas = np.clip(canvas.astype(int) + noise, 0, 255).astype(np.uint8)
        cv2.imwrite(os.path.join(template, "full_body_img", f"{i}.jpg"), canvas, [cv2.IMWRITE_JPEG_QUALITY, 92])

        fx, fy, size = (v * scale for v in FACE_BOX)
        fx, fy = fx + x0, fy + y0
        jitter = rng.uniform(-1.5, 1.5, 3)
        points = rng.uniform([fx, fy], [fx + size, fy + size * 1.2], (110, 2))
        points[1] = (fx + jitter[0], fy + size * 0.4)
        points[31] = (fx + size + jitter[1], fy + size * 0.5)
        points[52] = (fx + size * 0.5, fy + jitter[2])
        with open(os.path.join(template, "landmarks", f"{i}.lms"), "w") as lms:
            lms.writelines(f"{x:.3f} {y:.3f}\n" for x, y in points)

        parsing = np.zeros_like(canvas)
        ix, iy, isize = int(fx), int(fy), int(size)
        parsing[iy:iy + isize // 3, ix:ix + isize] = (0, 0, 255)
        parsing[iy + isize - isize // 5:iy + isize, ix:ix + isize // 2] = (255, 255, 255)
        parsing[iy + isize // 3:iy + isize // 2, ix:ix + isize] = (128, 0, 128)
        cv2.imwrite(os.path.join(template, "parsing", f"{i}.png"), parsing)

    features = os.path.join(args.out, "features")
    os.makedirs(features, exist_ok=True)
    frames = args.feature_frames
    per_frame = {
        "ave": rng.normal(0, 1, (frames, 512)),
        "hubert": rng.normal(0, 1, (frames, 2, 1024)),
        "wenet": rng.normal(0, 1, (frames, 8192)),
    }
    for mode, values in per_frame.items():
        values = values.astype(np.float32)
        np.save(os.path.join(features, f"{mode}.npy"), values)
        windowed = np.stack([window(values.reshape(frames, -1), i) for i in range(frames)])
        path = os.path.join(features, f"{mode}_windowed.bin")
        windowed.astype("<f4").tofile(path)
        with open(path + ".json", "w") as meta:
            json.dump({"num_frames": frames, "feature_size": windowed.shape[1], "shape": list(windowed.shape)}, meta)


if __name__ == "__main__":
    main()
