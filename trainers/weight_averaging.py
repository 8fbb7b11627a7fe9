"""The model a run ends with as the mean of its weights over the run's last part (stochastic weight averaging).

Averaging the weights a run passes through late in training, where the learning rate is small, lands in a flatter
part of the loss surface than any one iterate, and a flatter minimum generalises better to shifted data: SWA (Izmailov
et al., UAI 2018) and, for domain generalisation, SWAD (Cha et al., NeurIPS 2021: dense averaging over iterations,
better on held-out domains than any single checkpoint). The network has no batch statistics (LayerNorm and
InstanceNorm only), so averaged weights need no recalibration pass.

:class:`WeightAveragingMixin` keeps a running mean of the network's parameters and buffers over every iteration from
epoch ``floor(weight_average_from x num_epochs)`` on; at the end of training the unaveraged weights are saved as
:data:`UNAVERAGED` beside the fold's other checkpoints and the mean is loaded into the network before nnU-Net's
``on_train_end`` writes ``checkpoint_final.pth`` and validation runs on it. ``weight_average_from`` is the trainer's
(:attr:`WeightAveragingMixin.weight_average_from`), or ``$VERTEBRAFORMER_WEIGHT_AVERAGE_FROM`` (a fraction in (0, 1];
1: no averaging). A resumed run (``--c``) starts its mean afresh: checkpoints hold nnU-Net's fields only.
"""
from __future__ import annotations

import math
import os
from typing import Dict, Optional

import torch

from .environment import positive_from_env

AVERAGE_FROM_ENV = "VERTEBRAFORMER_WEIGHT_AVERAGE_FROM"
#: the last iterate's weights, kept beside the averaged checkpoint_final.pth (``predict -chk`` reads either)
UNAVERAGED = "checkpoint_final_unaveraged.pth"


def average_from_env(default: Optional[float]) -> Optional[float]:
    """The fraction of ``$VERTEBRAFORMER_WEIGHT_AVERAGE_FROM`` (``default`` when unset); None for no averaging."""
    value = positive_from_env(AVERAGE_FROM_ENV, "fraction of the epochs in (0, 1]")
    if value is None:
        return default
    if value > 1:
        raise ValueError(f"{AVERAGE_FROM_ENV}={value!r} must be a fraction of the epochs in (0, 1]")
    return None if value >= 1 else float(value)


def first_averaged_epoch(fraction: Optional[float], num_epochs: int) -> Optional[int]:
    """The first epoch whose iterations enter the mean, None for no averaging (also when a run is too short to
    have an epoch after it: averaging then would be the last iterate itself)."""
    if fraction is None or num_epochs < 2:
        return None
    return min(int(num_epochs) - 1, max(1, int(math.floor(fraction * num_epochs))))


class RunningMean:
    """The running mean of a module's floating-point state (parameters and buffers), in float32."""

    def __init__(self):
        self.count = 0
        self.mean: Dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def add(self, module: torch.nn.Module) -> None:
        self.count += 1
        for name, value in module.state_dict().items():
            if not value.is_floating_point():
                continue
            if name not in self.mean:
                self.mean[name] = value.detach().float().clone()
            else:
                self.mean[name].add_(value.detach().float() - self.mean[name], alpha=1.0 / self.count)

    @torch.no_grad()
    def load_into(self, module: torch.nn.Module) -> None:
        state = module.state_dict()
        for name, value in self.mean.items():
            state[name].copy_(value.to(state[name].dtype))


class WeightAveragingMixin:
    """Weight averaging over the run's last part (module docstring); put it before the class whose ``train_step``
    does the update and before nnU-Net's trainer."""

    #: averaging starts after this fraction of the run's epochs; None: no averaging
    weight_average_from: Optional[float] = None

    def on_train_start(self):
        super().on_train_start()
        self.weight_average_from = average_from_env(self.weight_average_from)
        self._weight_mean = RunningMean()
        if self.weight_average_from is not None:
            self.print_to_log_file(f"Weight averaging over every iteration from {self.weight_average_from:.0%} of the "
                                   f"epochs on (checkpoint_final holds the mean, {UNAVERAGED} the last weights)")

    def train_step(self, batch: dict) -> dict:
        out = super().train_step(batch)
        start = first_averaged_epoch(self.weight_average_from, int(self.num_epochs))
        if start is not None and self.current_epoch >= start:
            self._weight_mean.add(self._plain_module())
        return out

    def on_train_end(self):
        mean = getattr(self, "_weight_mean", None)
        if mean is not None and mean.count > 0:
            self.save_checkpoint(os.path.join(self.output_folder, UNAVERAGED))  # nnU-Net's: rank 0 writes
            mean.load_into(self._plain_module())
            self.print_to_log_file(f"checkpoint_final holds the mean of the weights of the last {mean.count} "
                                   "iterations")
            self._weight_mean = RunningMean()  # on_train_end may run twice (a budget's end, then nnU-Net's)
        super().on_train_end()
