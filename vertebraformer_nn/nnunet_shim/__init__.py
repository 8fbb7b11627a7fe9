"""Shim folder for nnU-Net's ``nnUNet_extTrainer``: ``nnUNet_extTrainer=<this folder> nnUNetv2_train ... -tr
VertebraFormerTrainer``. nnU-Net imports every module in the folder as a *top-level* module and takes the first
attribute with the trainer's name; the one module here re-exports ``vertebraformer_nn.trainers.registry``'s classes,
so their ``__module__`` stays importable (pickling into workers, DDP ranks). Point the variable at this folder,
never at the package root (nnU-Net would re-import the package's modules under wrong names)."""
