"""Re-exports the VertebraFormer trainers for nnU-Net's nnUNet_extTrainer lookup (see __init__.py)."""
from vertebraformer_nn.trainers import (  # noqa: F401
    VertebraFormerTrainer,
    VertebraFormerTrainer_CPU5min,
    VertebraFormerTrainer_CPU20min,
    VertebraFormerTrainer_budget,
    VertebraFormerTrainer_smoke,
    VertebraFormerTrainer_tiny,
)
