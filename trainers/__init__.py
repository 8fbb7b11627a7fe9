"""nnU-Net trainers of VertebraFormer-nn (installed as ``vertebraformer_nn.trainers``).

``VertebraFormerTrainer`` (the full schedule), short variants, ablations, and ``nnUNetTrainer_budget`` (nnU-Net's
default trainer for a wall-clock budget, the benchmark's baseline); stock nnU-Net tools find them by name
through ``nnUNet_extTrainer=<shim folder>`` (:func:`shim_folder`). Names are imported lazily so that
``vertebraformer --help`` does not import torch and nnU-Net.
"""
from __future__ import annotations

import importlib
from pathlib import Path

_EXPORTS = {
    "FoldError": "vertebraformer_trainer",
    "VertebraFormerTrainer": "vertebraformer_trainer",
    "check_fold": "vertebraformer_trainer",
    "load_checkpoint_file": "vertebraformer_trainer",
    "VertebraFormerTrainer_CPU20min": "variants",
    "VertebraFormerTrainer_CPU5min": "variants",
    "VertebraFormerTrainer_smoke": "variants",
    "VertebraFormerTrainer_tiny": "variants",
    "VertebraFormerTrainer_budget": "budget",
    "nnUNetTrainer_budget": "budget",
    "VertebraFormerTrainer_noModulation": "ablation",
    "VertebraFormerTrainer_noIdentification": "ablation",
    "VertebraFormerTrainer_noLesion": "ablation",
    "VertebraFormerTrainer_budget_noModulation": "ablation",
    "VertebraFormerTrainer_budget_noIdentification": "ablation",
    "VertebraFormerTrainer_budget_noLesion": "ablation",
}
TRAINER_NAMES = tuple(name for name in _EXPORTS if "Trainer" in name)

__all__ = sorted([*_EXPORTS, "TRAINERS", "TRAINER_NAMES", "shim_folder"])


def shim_folder() -> str:
    """The folder to put in ``nnUNet_extTrainer`` (one module re-exporting the trainer classes)."""
    import vertebraformer_nn

    return str(Path(vertebraformer_nn.__file__).resolve().parent / "nnunet_shim")


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    if name == "TRAINERS":
        return {n: __getattr__(n) for n in TRAINER_NAMES}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
