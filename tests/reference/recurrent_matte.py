"""Reference oracle: a recurrent matting model (Robust Video Matting's interface) run frame by
frame with onnxruntime, each frame's state outputs fed back as the next frame's inputs, as RVM's
own inference loop does.

Usage: recurrent_matte.py MODEL FRAMES_RAW WIDTH HEIGHT RATIO OUT_RAW [RESTART_AT ...]

FRAMES_RAW holds packed RGB frames of WIDTH x HEIGHT one after the other. The state starts as
zeros of shape [1,1,1,1], and again before each frame index RESTART_AT (where the stream starts
afresh). src is RGB / 255 as float32 NCHW; downsample_ratio is [RATIO]. Writes each frame's
alpha (pha) as 8-bit bytes, clipped to 0..1 and rounded, one frame after the other.
"""
import sys

import numpy as np
import onnxruntime as ort


def main() -> None:
    if len(sys.argv) < 7:
        sys.exit(__doc__)
    model, frames_path, width, height, ratio, out_path = sys.argv[1:7]
    width, height, ratio = int(width), int(height), float(ratio)
    restarts = {int(v) for v in sys.argv[7:]}
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    states = [name for name in inputs if name.endswith("i") and name[:-1] + "o" in outputs]
    # A float16 export takes float16: feeds are cast to each input's own type.
    types = {i.name: np.float16 if i.type == "tensor(float16)" else np.float32 for i in session.get_inputs()}
    frames = np.fromfile(frames_path, np.uint8).reshape(-1, height, width, 3)
    start = {name: np.zeros((1, 1, 1, 1), types[name]) for name in states}
    state = dict(start)
    with open(out_path, "wb") as out:
        for index, frame in enumerate(frames):
            if index in restarts:
                state = dict(start)
            feed = dict(state)
            feed["src"] = (frame.transpose(2, 0, 1)[None] / 255.0).astype(np.float32).astype(types["src"])
            if "downsample_ratio" in inputs:
                feed["downsample_ratio"] = np.array([ratio], types["downsample_ratio"])
            result = dict(zip(outputs, session.run(None, feed)))
            state = {name: result[name[:-1] + "o"] for name in states}
            alpha = np.clip(result["pha"][0, 0].astype(np.float32), 0, 1) * 255
            out.write(np.floor(alpha + 0.5).astype(np.uint8).tobytes())


if __name__ == "__main__":
    main()
