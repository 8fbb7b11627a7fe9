"""Learning-rate schedule and augmentation geometry of the VertebraFormer trainer (pure, no trainer state).

The axes the geometry acts on come from the plans (``plans_facts.anatomical_axes``), never from an assumed
orientation."""
from __future__ import annotations

from typing import Tuple

import numpy as np
from torch.optim.lr_scheduler import _LRScheduler


class WarmupPolyLRScheduler(_LRScheduler):
    """Linear warm-up over ``warmup_epochs`` epochs to ``initial_lr``, then nnU-Net's poly decay (exponent 0.9)
    to 0 at ``max_epochs``. Stateless: ``step(epoch)`` sets the rate from the epoch alone, so a resumed
    training gets the right rate from its restored epoch counter (one optimizer for the whole run; nnU-Net's
    warm-up trainer swaps optimizer and scheduler at the end of the warm-up instead)."""

    def __init__(self, optimizer, initial_lr: float, max_epochs: int, warmup_epochs: int, exponent: float = 0.9):
        self.optimizer = optimizer
        self.initial_lr = float(initial_lr)
        self.max_epochs = int(max_epochs)
        self.warmup_epochs = int(max(0, min(warmup_epochs, max_epochs - 1)))
        self.exponent = exponent
        self.ctr = 0
        super().__init__(optimizer, -1)

    def lr_at(self, epoch: int) -> float:
        return lr_at(epoch, self.initial_lr, self.max_epochs, self.warmup_epochs, self.exponent)

    def step(self, current_step=None):
        if current_step is None or current_step == -1:
            current_step = self.ctr
            self.ctr += 1
        lr = self.lr_at(current_step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._last_lr = [lr for _ in self.optimizer.param_groups]


def lr_at(epoch: int, initial_lr: float, max_epochs: int, warmup_epochs: int, exponent: float = 0.9) -> float:
    if epoch < warmup_epochs:
        return initial_lr * (epoch + 1) / warmup_epochs
    span = max(1, max_epochs - warmup_epochs)
    progress = min(1.0, max(0.0, (epoch - warmup_epochs) / span))
    return initial_lr * (1 - progress) ** exponent


# ------------------------------------------------------------------------------------------- geometry
#: rotation about the head-foot axis (axial plane), and the tilt allowed about each of the other two axes
AXIAL_ROTATION_DEG = 30.0
TILT_DEG = 8.0


class AxisRotation:
    """Rotation-angle sampler for batchgeneratorsv2's SpatialTransform: called with ``dim=i`` it returns the
    angle about array axis i (SpatialTransform builds Rx, Ry, Rz from angles[0], [1], [2], each rotating about
    that array axis). Free rotation in the axial plane (about the head-foot axis) up to ``axial_deg``; at most
    ``tilt_deg`` about each of the other two axes, so the head-foot axis stays within about
    sqrt(2) x tilt_deg of head-foot. A module-level class so it pickles into augmentation workers."""

    def __init__(self, si_axis: int, axial_deg: float = AXIAL_ROTATION_DEG, tilt_deg: float = TILT_DEG):
        self.si_axis = int(si_axis)
        self.axial = np.deg2rad(axial_deg)
        self.tilt = np.deg2rad(tilt_deg)

    def range_for(self, axis: int) -> Tuple[float, float]:
        a = self.axial if axis == self.si_axis else self.tilt
        return (-a, a)

    def __call__(self, *args, dim=None, **kwargs) -> float:
        if dim is None:
            raise ValueError("AxisRotation needs the axis (dim=)")
        return float(np.random.uniform(*self.range_for(int(dim))))

    def __repr__(self):
        return (f"AxisRotation(si_axis={self.si_axis}, axial_deg={np.rad2deg(self.axial):.1f}, "
                f"tilt_deg={np.rad2deg(self.tilt):.1f})")
