"""Ablation trainers (issue 5, paper section 6): VertebraFormer with one component switched off, at the full
schedule and at the wall-clock budget of the benchmark. Each only sets ``ARCH_OVERRIDES`` (the network's
switches, see ``network/vertebraformer.py``): the parameters still exist and are frozen, so the checkpoints of
every variant load into every other, and the predictor, which builds the network through the trainer class
named in the checkpoint, applies the same switch."""
from __future__ import annotations

from .budget import VertebraFormerTrainer_budget
from .vertebraformer_trainer import VertebraFormerTrainer

NO_MODULATION = {"use_modulation": False}
NO_IDENTIFICATION = {"use_identification": False}
NO_LESION = {"use_lesion_head": False}


class VertebraFormerTrainer_noModulation(VertebraFormerTrainer):
    ARCH_OVERRIDES = NO_MODULATION


class VertebraFormerTrainer_noIdentification(VertebraFormerTrainer):
    ARCH_OVERRIDES = NO_IDENTIFICATION


class VertebraFormerTrainer_noLesion(VertebraFormerTrainer):
    ARCH_OVERRIDES = NO_LESION


class VertebraFormerTrainer_budget_noModulation(VertebraFormerTrainer_budget):
    ARCH_OVERRIDES = NO_MODULATION


class VertebraFormerTrainer_budget_noIdentification(VertebraFormerTrainer_budget):
    ARCH_OVERRIDES = NO_IDENTIFICATION


class VertebraFormerTrainer_budget_noLesion(VertebraFormerTrainer_budget):
    ARCH_OVERRIDES = NO_LESION
