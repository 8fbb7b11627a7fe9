"""nnU-Net's DDP path (``-num_gpus N``) for the VertebraFormer trainers, on GPUs and, with gloo, on CPUs.

nnU-Net 2.8.1 (``nnunetv2/run/run_training.py``) spawns one process per GPU (``run_ddp``), each of which joins a
process group with the backend hard-coded to NCCL (``setup_ddp``), builds the trainer by name and trains; the
trainer gives every rank ``cuda:<rank>`` and wraps the network as ``DDP(net, device_ids=[rank])``, which torch
accepts for CUDA modules only. Here:

* ``ddp_launch.run_ddp_training`` spawns the ranks as ``run_ddp`` does; each joins the group with a selectable
  backend (NCCL on CUDA, gloo otherwise, or the one asked for) and builds the trainer as ``vertebraformer train``
  does;
* :class:`DDPAnyDeviceMixin` lets a rank on another device keep it (gloo on the CPU: the tests, a CPU-only machine)
  and wraps the network without ``device_ids``; on CUDA nnU-Net's own code runs unchanged;
* :func:`broadcast_from_rank0` makes decisions that must agree across ranks (the budget trainer's epoch count) once.
"""
from __future__ import annotations

import torch
from torch import distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

BACKENDS = ("nccl", "gloo")


def default_backend(device: str) -> str:
    return "nccl" if device == "cuda" else "gloo"


def broadcast_from_rank0(value):
    """Rank 0's ``value`` on every rank (the value itself outside DDP)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class DDPAnyDeviceMixin:
    """DDP ranks on a device other than CUDA (module docstring); put it before nnUNetTrainer."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        if self.is_ddp and device.type != "cuda":  # nnU-Net's __init__ set cuda:<rank> and a CUDA grad scaler
            self.device = device
            self.grad_scaler = None

    def initialize(self):
        if not (self.is_ddp and self.device.type != "cuda"):
            return super().initialize()
        # nnU-Net's initialize would call DDP(net, device_ids=[rank]) (CUDA only): it runs as for one process, then
        # its DDP steps follow here: the rank's share of the batch, SyncBatchNorm, the wrap, the cross-rank loss
        self.is_ddp = False
        try:
            super().initialize()
        finally:
            self.is_ddp = True
        self._set_batch_size_and_oversample()
        self.network = DDP(torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.network))
        self.loss = self._build_loss()
