"""Every trainer of VertebraFormer-nn by name: what ``vertebraformer train -tr``, the predictor (the trainer named
in a checkpoint), the demo and nnU-Net's ``nnUNet_extTrainer`` shim resolve names against.

Importing this module imports torch and nnU-Net; the package's ``__init__`` does not, so that ``vertebraformer
--help`` answers at once.
"""
from __future__ import annotations

from .ablation import (VertebraFormerTrainer_budget_lesionDice,
                       VertebraFormerTrainer_budget_noAcquisitionRandomisation,
                       VertebraFormerTrainer_budget_noContentRandomisation,
                       VertebraFormerTrainer_budget_noIdentification,
                       VertebraFormerTrainer_budget_noIntensityRandomisation, VertebraFormerTrainer_budget_noLesion,
                       VertebraFormerTrainer_budget_noModulation, VertebraFormerTrainer_budget_noRandomisation,
                       VertebraFormerTrainer_lesionDice, VertebraFormerTrainer_noIdentification,
                       VertebraFormerTrainer_noLesion, VertebraFormerTrainer_noModulation,
                       VertebraFormerTrainer_noRandomisation)
from .budget import VertebraFormerTrainer_budget, nnUNetTrainer_budget
from .new_heads import VertebraFormerTrainer_budget_newHeads
from .variants import (VertebraFormerTrainer_CPU5min, VertebraFormerTrainer_CPU20min, VertebraFormerTrainer_smoke,
                       VertebraFormerTrainer_tiny)
from .vertebraformer_trainer import VertebraFormerTrainer

TRAINERS = {cls.__name__: cls for cls in (
    VertebraFormerTrainer, VertebraFormerTrainer_tiny, VertebraFormerTrainer_smoke, VertebraFormerTrainer_CPU5min,
    VertebraFormerTrainer_CPU20min, VertebraFormerTrainer_budget, nnUNetTrainer_budget,
    VertebraFormerTrainer_noModulation, VertebraFormerTrainer_noIdentification, VertebraFormerTrainer_noLesion,
    VertebraFormerTrainer_budget_noModulation, VertebraFormerTrainer_budget_noIdentification,
    VertebraFormerTrainer_budget_noLesion, VertebraFormerTrainer_noRandomisation,
    VertebraFormerTrainer_budget_noRandomisation, VertebraFormerTrainer_budget_noIntensityRandomisation,
    VertebraFormerTrainer_budget_noAcquisitionRandomisation, VertebraFormerTrainer_budget_noContentRandomisation,
    VertebraFormerTrainer_lesionDice, VertebraFormerTrainer_budget_lesionDice, VertebraFormerTrainer_budget_newHeads)}
TRAINER_NAMES = tuple(TRAINERS)


class UnknownTrainerError(LookupError):
    """A trainer name that is neither ours nor one nnU-Net can find."""


def resolve_trainer_class(name: str) -> type:
    """Our trainer of that name, else nnU-Net's search (its own trainers, then ``nnUNet_extTrainer``)."""
    if name in TRAINERS:
        return TRAINERS[name]
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    try:
        return recursive_find_trainer_class_by_name(name)
    except RuntimeError:  # nnU-Net's "Could not find requested nnunet trainer"
        raise UnknownTrainerError(f"unknown trainer {name!r}: neither ours ({', '.join(TRAINER_NAMES)}) nor one "
                                  f"nnU-Net finds") from None
