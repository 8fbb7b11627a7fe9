"""Ablation trainers (issue 5, paper section 6): VertebraFormer with one component switched off, at the full
schedule and at the wall-clock budget of the benchmark. Each only sets ``ARCH_OVERRIDES`` (the network's
switches, see ``network/vertebraformer.py``): the parameters still exist and are frozen, so the checkpoints of
every variant load into every other, and the predictor, which builds the network through the trainer class
named in the checkpoint, applies the same switch.

The domain-randomisation ablation (issue 16 part 2, :mod:`.randomisation`) sets ``RANDOMISATION_GROUPS`` only
(training augmentation; same network, same prediction): none at all, and at the budget one family left out each
(intensity: HU, contrast, bias field; acquisition: noise, kernel, resolution; content: metal, field of view).

The ``_lesionDice`` trainers train the lesion head with the soft Dice of before (``lesion_fn_weight`` 0.5 instead
of the Tversky 0.7 of ``VertebraFormerTrainer``): the comparison that says whether weighting missed lesion voxels
raises the lesion AP (README, "Lesions")."""
from __future__ import annotations

from .budget import VertebraFormerTrainer_budget
from .randomisation import groups_without
from .vertebraformer_trainer import VertebraFormerTrainer

NO_MODULATION = {"use_modulation": False}
NO_IDENTIFICATION = {"use_identification": False}
NO_LESION = {"use_lesion_head": False}
LESION_DICE = {"lesion_fn_weight": 0.5}


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


class VertebraFormerTrainer_noRandomisation(VertebraFormerTrainer):
    RANDOMISATION_GROUPS = ()


class VertebraFormerTrainer_budget_noRandomisation(VertebraFormerTrainer_budget):
    RANDOMISATION_GROUPS = ()


class VertebraFormerTrainer_budget_noIntensityRandomisation(VertebraFormerTrainer_budget):
    RANDOMISATION_GROUPS = groups_without("intensity")


class VertebraFormerTrainer_budget_noAcquisitionRandomisation(VertebraFormerTrainer_budget):
    RANDOMISATION_GROUPS = groups_without("acquisition")


class VertebraFormerTrainer_budget_noContentRandomisation(VertebraFormerTrainer_budget):
    RANDOMISATION_GROUPS = groups_without("content")


class VertebraFormerTrainer_lesionDice(VertebraFormerTrainer):
    SCHEDULE = dict(VertebraFormerTrainer.SCHEDULE, **LESION_DICE)


class VertebraFormerTrainer_budget_lesionDice(VertebraFormerTrainer_budget):
    SCHEDULE = dict(VertebraFormerTrainer_budget.SCHEDULE, **LESION_DICE)
