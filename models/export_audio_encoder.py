"""Exports SyncTalk_2D's audio encoder (the `ave` AudioEncoder) to ONNX for neuralfx's lipsyncsrc.

SyncTalk_2D's licence does not let neuralfx ship its weights: run this where you have PyTorch and a
SyncTalk_2D checkout with its checkpoint model/checkpoints/audio_visual_encoder.pth:

    cd SyncTalk_2D
    python /path/to/neuralfx/models/export_audio_encoder.py [audio_visual_encoder.pth] [ave_encoder.onnx]

The model takes mel windows [batch, 1, 80, 16] (batch dynamic) and gives [batch, 512]; lipsyncsrc
checks both shapes when it starts. The checkpoint is loaded as inference_328.py loads it (its keys
prefixed with "audio_encoder."). If onnxruntime is installed, the export is compared with PyTorch.
"""
import inspect
import sys

import torch


def main():
    checkpoint = sys.argv[1] if len(sys.argv) > 1 else "model/checkpoints/audio_visual_encoder.pth"
    output = sys.argv[2] if len(sys.argv) > 2 else "ave_encoder.onnx"
    sys.path.insert(0, ".")
    try:
        from utils import AudioEncoder  # SyncTalk_2D's own module
    except ImportError as error:
        raise SystemExit(f"run this from a SyncTalk_2D checkout (utils.AudioEncoder not found: {error})")
    model = AudioEncoder().eval()
    state = torch.load(checkpoint, map_location="cpu")
    model.load_state_dict({f"audio_encoder.{key}": value for key, value in state.items()})
    example = torch.randn(2, 1, 80, 16)
    options = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        # PyTorch >= 2.9 exports through torch.export by default, which needs onnxscript and
        # opset 18; the TorchScript exporter gives the same graph with what older PyTorch has.
        options["dynamo"] = False
    torch.onnx.export(model, example, output, input_names=["mel"], output_names=["features"],
                      dynamic_axes={"mel": {0: "batch"}, "features": {0: "batch"}}, opset_version=13,
                      **options)
    with torch.no_grad():
        expected = model(example).numpy()
    try:
        import onnxruntime
    except ImportError:
        print(f"wrote {output} (onnxruntime not installed: not compared with PyTorch)")
        return
    session = onnxruntime.InferenceSession(output, providers=["CPUExecutionProvider"])
    found = session.run(None, {"mel": example.numpy()})[0].reshape(expected.shape)
    difference = float(abs(found - expected).max())
    print(f"wrote {output}: output {tuple(found.shape)}, largest difference from PyTorch {difference:.2e}")
    if difference > 1e-3:
        raise SystemExit("the ONNX export differs from PyTorch by more than 1e-3")


if __name__ == "__main__":
    main()
