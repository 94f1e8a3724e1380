"""Writes a stand-in for a SyncTalk_2D checkout, to test models/export_audio_encoder.py and
models/export_unet328.py without SyncTalk_2D's code or weights (its licence keeps them out of
neuralfx): OUT/utils.py defines an `AudioEncoder` with the layer names and shapes SyncTalk_2D's
checkpoints load into (the blocks of make_audio_encoder.py), and
OUT/model/checkpoints/audio_visual_encoder.pth holds random weights saved as SyncTalk_2D saves them
(keys without the "audio_encoder." prefix). OUT/unet_328.py defines a `Model(n_channels, mode)`
with SyncTalk_2D's constructor, forward(x, audio_feat), audio shapes per mode and 320x320 sigmoid
output, smaller inside; OUT/checkpoint/NAME/5.pth and 40.pth hold its random weights for --mode.

    fake_synctalk.py OUT [--unet NAME MODE]   write the checkout (with a U-Net checkpoint)
    fake_synctalk.py OUT --forward IN OUT2    run its encoder on IN (raw f32 [n,1,80,16]) into
                                              OUT2 (raw f32 [n,512]), as PyTorch computes it
    fake_synctalk.py OUT --forward-unet NAME MODE IMAGE AUDIO OUT2
                                              run checkpoint/NAME/40.pth on IMAGE (raw f32
                                              [1,6,320,320]) and AUDIO (raw f32 of the mode's
                                              shape) into OUT2 (raw f32 [1,3,320,320])
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


UNET = '''
import torch
from torch import nn
import torch.nn.functional as F

AUDIO_CHANNELS = {"ave": 32, "hubert": 32, "wenet": 256}


def conv_bn_relu(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class Model(nn.Module):
    def __init__(self, n_channels=6, mode="hubert"):
        super().__init__()
        self.audio_model = nn.Sequential(conv_bn_relu(AUDIO_CHANNELS[mode], 64),
                                         conv_bn_relu(64, 64))
        self.inc = conv_bn_relu(n_channels, 16)
        self.down = nn.Sequential(conv_bn_relu(16, 32, 2), conv_bn_relu(32, 64, 2),
                                  conv_bn_relu(64, 64, 2), conv_bn_relu(64, 64, 2),
                                  conv_bn_relu(64, 64, 2))
        self.fuse_conv = conv_bn_relu(128, 32)
        self.up = nn.Upsample(scale_factor=32, mode="bilinear", align_corners=True)
        self.outc = nn.Conv2d(48, 3, kernel_size=1)

    def forward(self, x, audio_feat):
        x1 = self.inc(x)
        x6 = self.down(x1)
        audio = F.interpolate(self.audio_model(audio_feat), size=x6.shape[2:], mode="bilinear",
                              align_corners=False)
        fused = self.fuse_conv(torch.cat([x6, audio], 1))
        return torch.sigmoid(self.outc(torch.cat([self.up(fused), x1], 1)))
'''

AUDIO_SHAPES = {"ave": (1, 32, 16, 16), "hubert": (1, 32, 32, 32), "wenet": (1, 256, 16, 32)}


def randomise_batch_norms(model):
    import torch

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.05, 0.05)
                module.running_var.uniform_(0.8, 1.2)
                module.weight.uniform_(0.8, 1.2)
                module.bias.uniform_(-0.05, 0.05)


def write_unet(out, name, mode):
    """Two checkpoints, as training leaves them: the export must take the later one (40)."""
    import torch

    with open(os.path.join(out, "unet_328.py"), "w") as f:
        f.write(UNET)
    sys.path.insert(0, out)
    from unet_328 import Model

    folder = os.path.join(out, "checkpoint", name)
    os.makedirs(folder, exist_ok=True)
    for epoch in (5, 40):
        torch.manual_seed(epoch)
        model = Model(6, mode)
        randomise_batch_norms(model)
        torch.save(model.state_dict(), os.path.join(folder, f"{epoch}.pth"))


def forward_unet(out, name, mode, image_path, audio_path, output_path):
    import torch

    sys.path.insert(0, out)
    from unet_328 import Model

    model = Model(6, mode).eval()
    model.load_state_dict(torch.load(os.path.join(out, "checkpoint", name, "40.pth"),
                                     map_location="cpu"))
    image = np.fromfile(image_path, dtype=np.float32).reshape(1, 6, 320, 320)
    audio = np.fromfile(audio_path, dtype=np.float32).reshape(AUDIO_SHAPES[mode])
    with torch.no_grad():
        face = model(torch.from_numpy(image), torch.from_numpy(audio)).numpy()
    face.astype(np.float32).tofile(output_path)


def write_checkout(out):
    import torch

    os.makedirs(os.path.join(out, "model", "checkpoints"), exist_ok=True)
    with open(os.path.join(out, "utils.py"), "w") as f:
        f.write(f"BLOCKS = {BLOCKS!r}\n{UTILS}")
    sys.path.insert(0, out)
    from utils import AudioEncoder

    torch.manual_seed(20261201)
    model = AudioEncoder()
    randomise_batch_norms(model)
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
    elif len(sys.argv) == 8 and sys.argv[2] == "--forward-unet":
        forward_unet(sys.argv[1], *sys.argv[3:])
    elif len(sys.argv) == 2:
        write_checkout(sys.argv[1])
    elif len(sys.argv) == 5 and sys.argv[2] == "--unet":
        write_checkout(sys.argv[1])
        write_unet(sys.argv[1], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
