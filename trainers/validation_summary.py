"""``validation/summary_vertebraformer.json``: the final validation's binary spine Dice per case and its mean, and
nnU-Net's per-label Dice (from its ``summary.json``) by vertebra name. Read with the plans' image reader, as
nnU-Net's own evaluation does; voxels under the ignore label (vertebrae cut by the field of view) count nowhere."""
from __future__ import annotations

import json
import os
from typing import Optional

import numpy as np

from vertebraformer_nn.evaluation.metrics import dice_from_counts
from vertebraformer_nn.labels import ANATOMICAL_ORDER

SUMMARY = "summary_vertebraformer.json"


def binary_spine_dice(pred: np.ndarray, gt: np.ndarray, ignore_label: Optional[int] = None) -> float:
    """Dice of "any vertebra" (label > 0) between two label maps, ``ignore_label`` voxels of ``gt`` left out."""
    known = np.ones(gt.shape, bool) if ignore_label is None else gt != ignore_label
    p, g = (pred > 0) & known, (gt > 0) & known
    return dice_from_counts(float((p & g).sum()), float((p & ~g).sum()), float((~p & g).sum()))


def write_spine_summary(folder: str, gt_folder: str, file_ending: str, reader, ignore_label: Optional[int] = None,
                        held_out_domain: Optional[str] = None) -> dict:
    """Write and return the summary of the validation predictions in ``folder`` against ``gt_folder`` (nnU-Net's
    ``gt_segmentations``); ``reader``: an instance of the plans' image reader/writer."""
    per_case = {}
    for name in sorted(os.listdir(folder)):
        gt_file = os.path.join(gt_folder, name)
        if not name.endswith(file_ending) or not os.path.isfile(gt_file):
            continue
        pred, _ = reader.read_seg(os.path.join(folder, name))
        gt, _ = reader.read_seg(gt_file)
        per_case[name[: -len(file_ending)]] = binary_spine_dice(pred, gt, ignore_label)
    per_level = {}
    summary_file = os.path.join(folder, "summary.json")
    if os.path.isfile(summary_file):
        with open(summary_file) as f:
            mean = json.load(f).get("mean", {})
        for label, metrics in sorted(mean.items(), key=lambda kv: int(kv[0])):
            if 1 <= int(label) <= len(ANATOMICAL_ORDER):
                per_level[ANATOMICAL_ORDER[int(label) - 1]] = metrics.get("Dice")
    values = [v for v in per_case.values() if v == v]
    result = {"binary_spine_dice_mean": float(np.mean(values)) if values else None,
              "binary_spine_dice_per_case": per_case, "dice_per_level": per_level,
              "held_out_domain": held_out_domain}
    with open(os.path.join(folder, SUMMARY), "w") as f:
        json.dump(result, f, indent=2, allow_nan=True)
    return result
