"""nnU-Net trainers of VertebraFormer-nn (installed as ``vertebraformer_nn.trainers``).

``VertebraFormerTrainer`` (the full schedule, :mod:`.vertebraformer_trainer`), short variants (:mod:`.variants`),
the wall-clock budget (:mod:`.budget`), ablations (:mod:`.ablation`); :mod:`.registry` has them all by name. Stock
nnU-Net tools find them through ``nnUNet_extTrainer=<shim folder>`` (:func:`shim_folder`).

This file imports nothing heavy: ``vertebraformer --help`` imports the package (for ``trainers.cli``) and must not
import torch.
"""
from __future__ import annotations

from pathlib import Path


def shim_folder() -> str:
    """The folder to put in ``nnUNet_extTrainer`` (one module re-exporting the trainer classes)."""
    import vertebraformer_nn

    return str(Path(vertebraformer_nn.__file__).resolve().parent / "nnunet_shim")
