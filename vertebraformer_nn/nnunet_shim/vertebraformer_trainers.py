"""Re-exports the VertebraFormer trainers for nnU-Net's nnUNet_extTrainer lookup (see __init__.py): every name of
``vertebraformer_nn.trainers.registry`` becomes an attribute of this module, where nnU-Net looks for it."""
from vertebraformer_nn.trainers.registry import TRAINERS

globals().update(TRAINERS)
__all__ = list(TRAINERS)
