"""Reference of SyncTalk_2D's inference_328.py loop with OpenCV and ONNX Runtime.

Usage: lipsync_reference.py MODEL TEMPLATE FEATURES MODE OUT_RAW [--start-frame S] [--parsing]
                            [--frames K] [--time]
Writes every frame as packed BGR to OUT_RAW (OUT_RAW may be /dev/null). With --time, prints
"per_frame_ms bare_inference_ms" measured over the run (first frame excluded).
"""
import argparse
import json
import os
import time

import cv2
import numpy as np
import onnxruntime as ort

WINDOWS = {"ave": (32, 16, 16), "hubert": (32, 32, 32), "wenet": (256, 16, 32)}


def load_features(path, mode):
    if path.endswith(".npy"):
        values = np.load(path)
    else:
        with open(path + ".json") as meta:
            info = json.load(meta)
        values = np.fromfile(path, "<f4").reshape(info["num_frames"], info["feature_size"])
    values = values.reshape(len(values), -1).astype(np.float32)
    window_len = int(np.prod(WINDOWS[mode]))
    windowed = values.shape[1] == window_len
    return values, windowed


def audio_window(values, windowed, frame, mode):
    if windowed:
        return values[frame].reshape((1,) + WINDOWS[mode])
    rows = np.zeros((16, values.shape[1]), np.float32)
    for slot, source in enumerate(range(frame - 8, frame + 8)):
        if 0 <= source < len(values):
            rows[slot] = values[source]
    return rows.reshape((1,) + WINDOWS[mode])


def crop_box(lms_path):
    with open(lms_path) as f:
        lms = np.array([np.array(line.split(), dtype=np.float32) for line in f.read().splitlines()], dtype=np.int32)
    xmin, ymin, xmax = lms[1][0], lms[52][1], lms[31][0]
    width = xmax - xmin
    return xmin, ymin, xmax, ymin + width


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("template")
    parser.add_argument("features")
    parser.add_argument("mode", choices=sorted(WINDOWS))
    parser.add_argument("out")
    parser.add_argument("--start-frame", type=int, default=0)
    parser.add_argument("--parsing", action="store_true")
    parser.add_argument("--frames", type=int)
    parser.add_argument("--time", action="store_true")
    args = parser.parse_args()

    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    # The two inputs are told apart by shape: the image one has 6 channels.
    image_name = next(i.name for i in session.get_inputs() if list(i.shape[1:2]) == [6])
    audio_name = next(i.name for i in session.get_inputs() if i.name != image_name)

    values, windowed = load_features(args.features, args.mode)
    frames = len(values) if args.frames is None else min(args.frames, len(values))
    img_dir = os.path.join(args.template, "full_body_img")
    count = len([f for f in os.listdir(img_dir) if f.endswith(".jpg")]) - args.start_frame

    step, index = 0, 0
    total, inference = 0.0, 0.0
    with open(args.out, "wb") as out:
        for i in range(frames):
            started = time.perf_counter()
            if count > 1:
                if index > count - 2:
                    step = -1
                if index < 1:
                    step = 1
                index += step
            current = index + args.start_frame
            img = cv2.imread(os.path.join(img_dir, f"{current}.jpg"))
            xmin, ymin, xmax, ymax = crop_box(os.path.join(args.template, "landmarks", f"{current}.lms"))
            crop = img[ymin:ymax, xmin:xmax]
            original_crop = crop.copy()
            h_crop, w_crop = crop.shape[:2]
            crop = cv2.resize(crop, (328, 328), interpolation=cv2.INTER_CUBIC)
            crop_out = crop.copy()
            real = crop[4:324, 4:324].copy()
            masked = cv2.rectangle(real.copy(), (5, 5, 310, 305), (0, 0, 0), -1)
            real = real.transpose(2, 0, 1).astype(np.float32) / 255.0
            masked = masked.transpose(2, 0, 1).astype(np.float32) / 255.0
            image = np.concatenate([real, masked], axis=0)[None]
            audio = audio_window(values, windowed, i, args.mode)

            model_started = time.perf_counter()
            pred = session.run(None, {image_name: image, audio_name: audio})[0][0]
            model_time = time.perf_counter() - model_started

            pred = np.array(pred.transpose(1, 2, 0) * 255, dtype=np.uint8)
            crop_out[4:324, 4:324] = pred
            crop_out = cv2.resize(crop_out, (w_crop, h_crop), interpolation=cv2.INTER_CUBIC)
            if args.parsing:
                parsing = cv2.imread(os.path.join(args.template, "parsing", f"{current}.png"))[ymin:ymax, xmin:xmax]
                keep = (parsing == [0, 0, 255]).all(axis=2) | (parsing == [255, 255, 255]).all(axis=2)
                crop_out[keep] = original_crop[keep]
            img[ymin:ymax, xmin:xmax] = crop_out
            out.write(img.tobytes())
            if i > 0:
                total += time.perf_counter() - started
                inference += model_time
    if args.time and frames > 1:
        print(f"{total * 1000 / (frames - 1):.2f} {inference * 1000 / (frames - 1):.2f}")


if __name__ == "__main__":
    main()
