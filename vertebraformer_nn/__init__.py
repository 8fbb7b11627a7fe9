"""VertebraFormer-nn: vertebra segmentation, numbering (C1-L5, T13, L6) and lesion localisation for spinal CT,
built on nnU-Net."""
__version__ = "0.1.0"
