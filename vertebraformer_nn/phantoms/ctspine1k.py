"""CTSpine1K writer (docs/source_layouts.md, "CTSpine1K"): volumes/<collection>/<stem>.nii.gz with
labels/<collection>/<stem>_seg.nii.gz paired by stem, and data_split.txt. Every visible vertebra is labelled,
partial ones included; CTSpine1K has no T13 code (its subjects are drawn without one)."""
from __future__ import annotations

from pathlib import Path
from typing import List

from ..image_io import write_image
from .case import Case

SPLIT_BLOCKS = ("trainset", "test_public", "test_private")


def write_case(root: Path, case: Case) -> Path:
    coll, stem = case.plan.extra["collection"], case.plan.extra["stem"]
    if 28 in case.rendered.levels:
        raise ValueError(f"CTSpine1K case {stem} would carry T13 (code 28), which CTSpine1K does not have")
    ct_path = write_image(case.ct_image(), root / "volumes" / coll / f"{stem}.nii.gz")
    write_image(case.label_image(drop_partial=False), root / "labels" / coll / f"{stem}_seg.nii.gz")
    return ct_path


def write_split(root: Path, cases: List[Case]) -> Path:
    """Blocks headed 'trainset:', 'test_public:', 'test_private:', one '<stem>.nii.gz' a line, blank line between."""
    blocks = []
    for name in SPLIT_BLOCKS:
        stems = [c.plan.extra["stem"] for c in cases if c.plan.extra["split"] == name]
        blocks.append("\n".join([f"{name}:"] + [f"{s}.nii.gz" for s in stems]))
    path = root / "data_split.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(blocks) + "\n")
    return path
