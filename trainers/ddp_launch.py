"""``vertebraformer train ... -num_gpus N``: spawn the DDP ranks as nnU-Net's ``run_ddp`` does, each joining the
process group with a selectable backend (``ddp.default_backend``: NCCL on CUDA, gloo otherwise) and building the
trainer as ``vertebraformer train`` does (``build.build_trainer``). The trainer-side half of DDP is ``ddp.py``."""
from __future__ import annotations

import os
import time
from typing import Optional

import torch
from torch import distributed as dist

from .ddp import BACKENDS, default_backend


def _run_rank(rank: int, world_size: int, backend: str, address: str, job: dict) -> None:
    # nnunetv2 2.8.1 run_training.run_ddp, with the backend selectable (nnU-Net's setup_ddp hard-codes "nccl") and
    # the trainer built by `vertebraformer train`'s build_trainer (fold check, plans lookup, our trainer names)
    from nnunetv2.run.run_training import maybe_load_checkpoint

    from .build import build_trainer

    dist.init_process_group(backend, init_method=address, rank=rank, world_size=world_size)
    try:
        if job["device"] == "cuda":
            torch.cuda.set_device(torch.device("cuda", rank))
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, True
        else:  # the ranks share the cores
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
        trainer = build_trainer(job["dataset"], job["fold"], job["configuration"], job["trainer"], job["plans"],
                                job["device"], continue_training=job["continue_training"])
        maybe_load_checkpoint(trainer, job["continue_training"], job["validation_only"])
        if not job["validation_only"]:
            trainer.run_training()
        if job["validate"]:
            trainer.perform_actual_validation(job["npz"])
    finally:
        dist.destroy_process_group()


def run_ddp_training(dataset: str, fold, num_processes: int, configuration: str = "3d_fullres",
                     trainer: str = "VertebraFormerTrainer", plans: Optional[str] = None, device: str = "cuda",
                     backend: Optional[str] = None, continue_training: bool = False, validation_only: bool = False,
                     npz: bool = False, validate: bool = True, timeout_s: Optional[float] = None) -> None:
    """Train (and validate) one fold on ``num_processes`` DDP ranks; returns when every rank has finished.

    ``timeout_s``: stop the ranks and raise TimeoutError after that long (ranks that disagree hang otherwise)."""
    import torch.multiprocessing as mp
    from nnunetv2.run.run_training import find_free_network_port

    backend = backend or default_backend(device)
    if backend not in BACKENDS:
        raise ValueError(f"DDP backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if device == "cuda" and torch.cuda.device_count() < num_processes:
        raise ValueError(f"{num_processes} DDP processes need as many GPUs; {torch.cuda.device_count()} visible")
    # localhost and $MASTER_PORT or a free port, as nnU-Net's run_training (without changing this process's env)
    address = f"tcp://localhost:{os.environ.get('MASTER_PORT') or find_free_network_port()}"
    job = dict(dataset=str(dataset), fold=fold, configuration=configuration, trainer=trainer, plans=plans,
               device=device, continue_training=continue_training, validation_only=validation_only, npz=npz,
               validate=validate)
    context = mp.start_processes(_run_rank, args=(num_processes, backend, address, job), nprocs=num_processes,
                                 join=False, start_method="spawn")
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while not context.join(timeout=1.0):  # raises when a rank fails (and stops the others)
        if deadline is not None and time.monotonic() > deadline:
            for process in context.processes:
                if process.is_alive():
                    process.terminate()
            raise TimeoutError(f"DDP training did not finish within {timeout_s:.0f} s (ranks out of step?)")
