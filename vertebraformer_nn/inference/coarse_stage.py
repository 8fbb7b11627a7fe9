"""The coarse whole-field stage at prediction (issue 15 part 1): the sibling ``3d_lowres`` model's level
probabilities, brought onto the fine model's grid, as the numbering's second source of level evidence.

A fine model folder ``<Trainer>__<Plans>__3d_fullres`` has a coarse stage when ``<Trainer>__<Plans>__3d_lowres``
(planners/whole_field.py: one patch holds the whole scan, the long ones included) stands beside it with a checkpoint
for at least one fold the prediction uses; it runs with those of the prediction's folds it has
(:func:`find_coarse_model`: a fold ensemble may ship with fewer coarse folds, one fold of each being the same size).
Then, per case, after the fine network:

1. the same input goes through nnU-Net's preprocessing with the coarse configuration (same transpose, same crop to
   the image's non-zero box, coarser spacing) and the coarse network's sliding window (one window for a scan no
   larger than its patch, ``sliding_window.predict_grid``), folds averaged as the fine ones;
2. its identification probabilities (its segmentation's vertebra channels, renormalised, for a model without an
   identification head) are kept whole on the coarse grid (:class:`LevelGrid`: (26, *coarse grid) float16, 52
   bytes per coarse voxel, 12 MB for a 60 cm scan at 7 mm; uniform 1/26 where the coarse model sees no spine) as
   ``GridProbabilities.coarse`` (head ``coarse_id``: saved with ``--save_probabilities`` as that array, averaged
   by ``ensemble`` like every head), never expanded to the fine grid;
3. the numbering reads them at the fine grid's instance voxels only (``coarse_resample.at_fine_voxels``, linear
   interpolation: both grids resample the same cropped box, so voxel i of an axis of n fine voxels sits at coarse
   coordinate ``(i + 0.5) * m / n - 0.5`` of its m coarse ones), reduces them per instance as it does the fine
   identification head and weighs them in with ``coarse_level_weight`` (``numbering._evidence``).
   ``coarse_resample.to_fine_grid`` is the same interpolation onto the whole fine grid (small grids, tests).

``predict --no-coarse`` does not run it; ``--set coarse_level_weight=0`` runs it and ignores it (the ablation).
Cost at the CPU preset (7 mm): a 60 cm scan is ~90 x 50 x 50 coarse voxels, one forward pass, 12 MB kept.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from ..planners.presets import COARSE_CONFIGURATION, CONFIGURATION
from .cases import nnunet_input
from .grid_probabilities import LEVELS
from .predictor import VertebraFormerPredictor
from .sliding_window import predict_grid

__all__ = ["sibling_folder", "find_coarse_model", "LevelGrid", "CoarseStage"]


def sibling_folder(model_folder) -> Optional[Path]:
    """``<Trainer>__<Plans>__3d_lowres`` beside a ``<Trainer>__<Plans>__3d_fullres`` model folder (None for a folder
    of another configuration or name)."""
    folder = Path(model_folder)
    parts = folder.name.split("__")
    if len(parts) != 3 or parts[2] != CONFIGURATION:
        return None
    return folder.parent / f"{parts[0]}__{parts[1]}__{COARSE_CONFIGURATION}"


def find_coarse_model(model_folder, folds: Sequence, checkpoint: str) -> Tuple[Optional[Path], list, str]:
    """(the coarse model folder to use, or None; the folds of ``folds`` it has a ``checkpoint`` for, in that order,
    which it runs with; a sentence saying which and why). Never a fold outside ``folds``: a fold's validation cases
    were training cases of every other fold."""
    sibling = sibling_folder(model_folder)
    if sibling is None:
        return None, [], f"coarse whole-field stage: none ({Path(model_folder).name} is not a {CONFIGURATION} model)"
    if not (sibling / "plans.json").is_file():
        return None, [], (f"coarse whole-field stage: none (no {sibling.name} beside the model; train one with "
                          f"vertebraformer train DATASET FOLD -c {COARSE_CONFIGURATION})")
    present = [f for f in folds if (sibling / f"fold_{f}" / checkpoint).is_file()]
    missing = [str(f) for f in folds if f not in present]
    if not present:
        return None, [], (f"coarse whole-field stage: not used ({sibling.name} has no {checkpoint} for fold(s) "
                          f"{', '.join(missing)})")
    without = f" (it has no fold {', '.join(missing)})" if missing else ""
    return sibling, present, f"coarse whole-field stage: {sibling.name}, fold(s) {' '.join(map(str, present))}{without}"


class LevelGrid:
    """Receives the coarse sliding window's finished blocks as a ``GridReducer`` would (``sliding_window
    .predict_grid``'s ``reducer``) and keeps only the level probabilities, whole: (26, *grid) float16."""

    def __init__(self, shape: Sequence[int], seg_channels: int, heads, kept=None):
        self.levels = np.empty((LEVELS, *[int(s) for s in shape]), np.float16)

    def add(self, region, background, vertebrae, identification=None, lesion=None, boundary=None) -> None:
        if identification is None:  # the vertebra channels, renormalised (uniform where there are none)
            vertebrae = torch.as_tensor(vertebrae)
            total = vertebrae.sum(dim=0, keepdim=True)
            identification = torch.where(total > 1e-6, vertebrae / total.clamp_min(1e-6),
                                         torch.full_like(vertebrae, 1.0 / vertebrae.shape[0]))
        levels = torch.as_tensor(identification).to(torch.float16)
        self.levels[(slice(None), *region)] = levels.detach().cpu().numpy()

    def result(self) -> np.ndarray:
        return self.levels


class CoarseStage:
    """A loaded coarse model (a ``VertebraFormerPredictor`` of the ``3d_lowres`` folder) and what it adds to a case."""

    def __init__(self, predictor, folder: Path):
        self.predictor, self.folder = predictor, Path(folder)

    @classmethod
    def load(cls, folder, folds: Sequence, checkpoint: str, device="cpu", use_mirroring: Optional[bool] = None,
             bf16: Optional[bool] = None, tile_step_size: float = 0.5) -> "CoarseStage":
        predictor = VertebraFormerPredictor(device, use_mirroring=use_mirroring, bf16=bf16,
                                            tile_step_size=tile_step_size)
        predictor.initialize_from_trained_model_folder(folder, folds, checkpoint)
        return cls(predictor, folder)

    def describe(self) -> dict:
        p = self.predictor
        return {"model": str(self.folder), "configuration": p.configuration, "folds": p.folds,
                "spacing": [float(s) for s in p.configuration_manager.spacing],
                "patch_size": [int(s) for s in p.configuration_manager.patch_size]}

    def level_probabilities(self, image, fine_properties: Mapping) -> np.ndarray:
        """(26, *coarse grid) float16: the coarse level probabilities of an input image (SimpleITK, as read) whose
        fine grid has the nnU-Net ``properties`` ``fine_properties`` (module docstring)."""
        array, properties, _ = nnunet_input(image, self.predictor.plans_manager.plans["image_reader_writer"])
        data, properties = self.predictor.preprocess([array], properties)
        return self.from_preprocessed(data, properties, fine_properties)

    def from_preprocessed(self, data, properties: Mapping, fine_properties: Mapping) -> np.ndarray:
        """As :meth:`level_probabilities`, from the coarse configuration's preprocessed image (a torch tensor)."""
        box = [list(map(int, b)) for b in properties["bbox_used_for_cropping"]]
        fine_box = [list(map(int, b)) for b in fine_properties["bbox_used_for_cropping"]]
        if box != fine_box:  # the same image cropped alike: anything else means another case or another reader
            raise ValueError(f"coarse stage: its crop {box} differs from the fine stage's {fine_box}")
        if not isinstance(data, torch.Tensor):
            data = torch.from_numpy(np.asarray(data))
        return predict_grid(self.predictor, data, reducer=LevelGrid)
