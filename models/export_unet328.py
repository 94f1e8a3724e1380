"""Exports a SyncTalk_2D U-Net (328) checkpoint to the ONNX model neuralfx's lipsyncsrc and lipsync take.

SyncTalk_2D's licence does not let neuralfx ship its code or weights: run this where you have PyTorch
and the SyncTalk_2D checkout you trained in (it imports the checkout's own unet_328.Model):

    cd SyncTalk_2D
    python /path/to/neuralfx/models/export_unet328.py NAME [--mode ave] [--checkpoint FILE] [--output FILE]

NAME is the folder under checkpoint/ (and dataset/); without --checkpoint the highest-numbered
checkpoint/NAME/<N>.pth is exported, as inference_328.py chooses it. --mode is the audio features the
model was trained on (training_328.sh's asr): ave (the default), hubert or wenet. The model is written
to unet_328_NAME.onnx unless --output says otherwise, with these tensors (batch 1, float32):

    input   [1, 6, 320, 320]   the 320x320 face crop and its mouth-masked copy, BGR, 0..1
    audio   [1, 32, 16, 16]    ave;  hubert [1, 32, 32, 32];  wenet [1, 256, 16, 32]
    output  [1, 3, 320, 320]   the new face, BGR, 0..1

The export is compared with PyTorch on the same inputs when onnxruntime is installed, and the
lipsyncsrc line for the dataset folder is printed (docs/synctalk2d.md walks through the rest).
"""
import argparse
import warnings
import inspect
import os
import sys

AUDIO_SHAPES = {"ave": (1, 32, 16, 16), "hubert": (1, 32, 32, 32), "wenet": (1, 256, 16, 32)}
# The largest difference from PyTorch an export may have: float32 rounding through ~100 layers.
TOLERANCE = 1e-4


def latest_checkpoint(name):
    folder = os.path.join("checkpoint", name)
    if not os.path.isdir(folder):
        raise SystemExit(f"no folder {folder}: run this from the SyncTalk_2D checkout you trained in, "
                         "or give --checkpoint FILE")
    numbered = [f for f in os.listdir(folder) if f.endswith(".pth") and f[:-4].isdigit()]
    if not numbered:
        raise SystemExit(f"{folder} holds no <N>.pth checkpoint (found: {sorted(os.listdir(folder))})")
    return os.path.join(folder, max(numbered, key=lambda f: int(f[:-4])))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the person's folder under checkpoint/ and dataset/")
    parser.add_argument("--mode", choices=sorted(AUDIO_SHAPES), default="ave",
                        help="audio features the model was trained on (default: ave)")
    parser.add_argument("--checkpoint", help="a .pth file (default: the latest checkpoint/NAME/<N>.pth)")
    parser.add_argument("--output", help="the ONNX file to write (default: unet_328_NAME.onnx)")
    args = parser.parse_args()

    import torch

    checkpoint = args.checkpoint or latest_checkpoint(args.name)
    output = args.output or f"unet_328_{args.name}.onnx"
    sys.path.insert(0, ".")
    try:
        from unet_328 import Model  # SyncTalk_2D's own module
    except ImportError as error:
        raise SystemExit(f"run this from a SyncTalk_2D checkout (unet_328.Model not found: {error})")
    model = Model(6, args.mode).eval()
    state = torch.load(checkpoint, map_location="cpu")
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise SystemExit(f"{checkpoint} does not fit unet_328.Model(6, '{args.mode}'): was it trained "
                         f"with another --mode (training_328.sh's asr)?\n{error}")
    print(f"exporting {checkpoint} (mode {args.mode})")

    generator = torch.Generator().manual_seed(328)
    image = torch.rand(1, 6, 320, 320, generator=generator)
    audio = torch.randn(*AUDIO_SHAPES[args.mode], generator=generator)
    options = {}
    warnings.filterwarnings("ignore", message=".*legacy TorchScript", category=DeprecationWarning)
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        # PyTorch >= 2.9 exports through torch.export by default, which needs onnxscript; the
        # TorchScript exporter gives the same graph with what older PyTorch has.
        options["dynamo"] = False
    with torch.no_grad():
        torch.onnx.export(model, (image, audio), output, input_names=["input", "audio"],
                          output_names=["output"], opset_version=13, **options)
        expected = model(image, audio).numpy()
    try:
        import onnxruntime
    except ImportError:
        print(f"wrote {output} (onnxruntime not installed: not compared with PyTorch)")
    else:
        session = onnxruntime.InferenceSession(output, providers=["CPUExecutionProvider"])
        found = session.run(None, {"input": image.numpy(), "audio": audio.numpy()})[0]
        difference = float(abs(found - expected).max())
        print(f"wrote {output}: output {tuple(found.shape)}, largest difference from PyTorch {difference:.2e}")
        if difference > TOLERANCE:
            raise SystemExit(f"the ONNX export differs from PyTorch by more than {TOLERANCE}")
    dataset = os.path.join("dataset", args.name)
    print(f"use it with: gst-launch-1.0 lipsyncsrc model={output} template={dataset} "
          f"audio-location=speech.wav audio-encoder=ave_encoder.onnx ! ..."
          if args.mode == "ave" else
          f"use it with: gst-launch-1.0 lipsyncsrc model={output} template={dataset} "
          f"features=speech_features.npy mode={args.mode} ! ...")


if __name__ == "__main__":
    main()
