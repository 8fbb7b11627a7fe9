"""Re-exports the VertebraFormer trainers for nnU-Net's nnUNet_extTrainer lookup (see __init__.py)."""
from vertebraformer_nn.trainers import (  # noqa: F401
    VertebraFormerTrainer,
    VertebraFormerTrainer_budget,
    VertebraFormerTrainer_budget_noIdentification,
    VertebraFormerTrainer_budget_noLesion,
    VertebraFormerTrainer_budget_noModulation,
    VertebraFormerTrainer_CPU5min,
    VertebraFormerTrainer_CPU20min,
    VertebraFormerTrainer_noIdentification,
    VertebraFormerTrainer_noLesion,
    VertebraFormerTrainer_noModulation,
    VertebraFormerTrainer_smoke,
    VertebraFormerTrainer_tiny,
    nnUNetTrainer_budget,
)
