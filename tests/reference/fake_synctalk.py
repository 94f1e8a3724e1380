"""Writes a stand-in for a SyncTalk_2D checkout, to test models/export_audio_encoder.py without
SyncTalk_2D's code or weights (its licence keeps them out of neuralfx): OUT/utils.py defines an
`AudioEncoder` with the layer names and shapes SyncTalk_2D's checkpoints load into (the blocks of
make_audio_encoder.py), and OUT/model/checkpoints/audio_visual_encoder.pth holds random weights
saved as SyncTalk_2D saves them (keys without the "audio_encoder." prefix).

    fake_synctalk.py OUT                      write the checkout
    fake_synctalk.py OUT --forward IN OUT2    run its encoder on IN (raw f32 [n,1,80,16]) into
                                              OUT2 (raw f32 [n,512]), as PyTorch computes it
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_audio_encoder import BLOCKS  # noqa: E402

UTILS = '''
import torch
from torch import nn


class Block(nn.Module):
    """Conv2d + BatchNorm2d + ReLU, the input added before the ReLU where `residual`."""

    def __init__(self, cin, cout, kernel, stride, padding, residual):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding),
                                        nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x):
        y = self.conv_block(x)
        return self.act(y + x if self.residual else y)


class AudioEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.audio_encoder = nn.Sequential(*[Block(*spec) for spec in BLOCKS])

    def forward(self, x):
        return self.audio_encoder(x).flatten(1)
'''


def write_checkout(out):
    import torch

    os.makedirs(os.path.join(out, "model", "checkpoints"), exist_ok=True)
    with open(os.path.join(out, "utils.py"), "w") as f:
        f.write(f"BLOCKS = {BLOCKS!r}\n{UTILS}")
    sys.path.insert(0, out)
    from utils import AudioEncoder

    torch.manual_seed(20261201)
    model = AudioEncoder()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.05, 0.05)
                module.running_var.uniform_(0.8, 1.2)
                module.weight.uniform_(0.8, 1.2)
                module.bias.uniform_(-0.05, 0.05)
    prefix = "audio_encoder."
    state = {key[len(prefix):]: value for key, value in model.state_dict().items()}
    torch.save(state, os.path.join(out, "model", "checkpoints", "audio_visual_encoder.pth"))


def forward(out, windows_path, rows_path):
    import torch

    sys.path.insert(0, out)
    from utils import AudioEncoder

    model = AudioEncoder().eval()
    state = torch.load(os.path.join(out, "model", "checkpoints", "audio_visual_encoder.pth"),
                       map_location="cpu")
    model.load_state_dict({f"audio_encoder.{key}": value for key, value in state.items()})
    windows = np.fromfile(windows_path, dtype=np.float32).reshape(-1, 1, 80, 16)
    with torch.no_grad():
        rows = model(torch.from_numpy(windows)).numpy()
    rows.astype(np.float32).tofile(rows_path)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[2] == "--forward":
        forward(sys.argv[1], sys.argv[3], sys.argv[4])
    elif len(sys.argv) == 2:
        write_checkout(sys.argv[1])
    else:
        sys.exit(__doc__)
