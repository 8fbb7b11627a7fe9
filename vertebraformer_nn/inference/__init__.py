"""Inference: prediction of CT folders, vertebra numbering, lesion instances and the per-case output files.

Submodules are imported where they are used; importing this package loads neither torch nor nnU-Net, so
the pure parts (numbering, lesion instances) stay cheap to import and test.
"""
