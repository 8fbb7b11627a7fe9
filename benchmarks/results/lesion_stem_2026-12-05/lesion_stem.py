"""Arm D: a lesion path that sees the image at the grid's own resolution. Two 3x3x3 convolution blocks (8 channels,
instance norm, leaky ReLU) on the input patch and a 1x1x1 convolution, initialised to zero, whose output is added to
the lesion head's logits: the network starts as the model it is loaded from, and the lesion logit can learn local
dark or bright spots the half-resolution image stem averages away. Patched into VertebraFormer in this process, then
``vertebraformer_nn.cli.main(argv)`` runs (train, predict), or with ``--script FILE ARGS`` a benchmark script that
calls the command in-process (``benchmarks/real_ct.py``). Not a product option: an experiment."""
import os
import runpy
import sys

import torch
from torch import nn

CHANNELS = 8
# The path's output is multiplied by this gain. With Adam a gain g moves the path's output g times faster, so
# 10 gives the new path the full rate while the rest of the network fine-tunes at a tenth of it (arm D2).
GAIN = float(os.environ.get("LESION_LOCAL_GAIN", "1"))


def patch():
    from vertebraformer_nn.network.vertebraformer import VertebraFormer
    init, forward = VertebraFormer.__init__, VertebraFormer.forward

    def patched_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        local = nn.Sequential(
            nn.Conv3d(self.input_channels, CHANNELS, 3, padding=1), nn.InstanceNorm3d(CHANNELS, affine=True),
            nn.LeakyReLU(inplace=True), nn.Conv3d(CHANNELS, CHANNELS, 3, padding=1),
            nn.InstanceNorm3d(CHANNELS, affine=True), nn.LeakyReLU(inplace=True), nn.Conv3d(CHANNELS, 1, 1))
        nn.init.zeros_(local[-1].weight)
        nn.init.zeros_(local[-1].bias)
        self.lesion_local = local

    def patched_forward(self, x, heads=None):
        out = forward(self, x, heads)
        if not self.use_lesion_head:
            return out
        if isinstance(out, dict):
            out["lesion"] = out["lesion"] + (GAIN * self.lesion_local(x)).to(out["lesion"].dtype)
        elif (self.output_mode if heads is None else heads) == "dense":
            a, b = self.dense_layout()["lesion"]
            out = torch.cat([out[:, :a], out[:, a:b] + (GAIN * self.lesion_local(x)).to(out.dtype), out[:, b:]], dim=1)
        return out

    VertebraFormer.__init__, VertebraFormer.forward = patched_init, patched_forward


if __name__ == "__main__":
    patch()
    if sys.argv[1] == "--script":
        sys.argv = sys.argv[2:]
        runpy.run_path(sys.argv[0], run_name="__main__")
    else:
        from vertebraformer_nn.cli import main
        sys.exit(main(sys.argv[1:]))
