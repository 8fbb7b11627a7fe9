"""Dice at the input's resolution of the vertebra labels exported from probabilities against the hard-label export.

    python benchmarks/boundary_dice.py --model M [--cases 3] [--iso-mm 1.0] [--device cpu] [--out-md FILE]

Issue 12 part 3: a model planned at a coarse spacing (3.5 mm for the CPU preset) predicts a phantom CT made at
``--iso-mm`` (1 mm), whose vertebra truth is known at that resolution. One prediction and one numbering per case; its
labels go back to the input grid twice: **before**, nnU-Net's rule for a hard label map (``grid_map.labels_to_input``:
each label's indicator interpolated, the largest wins) and **after**, the boundaries from the probabilities
(``boundaries.spine_labels_to_input``: spine vs background where the foreground probability crosses 1/2, between
neighbours where their levels' probabilities cross, nnU-Net's separate-z rule for thick slices), and **bone edge**,
after moved onto the bone edge the CT shows (``bone_boundary.snap_to_bone`` at the default ``bone_edge_band_mm``, as
``predict`` writes it). So only the way back to the input grid differs. Reported per case and on average: the binary
spine Dice and the mean Dice over the truth's vertebrae (a numbering error lowers both columns alike). The phantoms
are MultiSpine-Sim's VerSe style, made for this script (seed ``--seed``, not the training data's). Not a test; it
measures no time.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from predict_speed import write_result  # this folder is on the path when a script here runs



def phantom_cases(n: int, iso_mm: float, seed: int, folder: Path) -> List[tuple]:
    """(name, CT path, truth label array (z, y, x)) of ``n`` VerSe-style phantoms at ``iso_mm``."""
    import SimpleITK as sitk

    from vertebraformer_nn.image_io import write_image
    from vertebraformer_nn.phantoms.orchestrate import CaseBuilder
    from vertebraformer_nn.phantoms.plan import build_plan

    plan = build_plan(cases_per_source=n, seed=seed)
    builder = CaseBuilder(plan)
    out = []
    for cp in plan.of_source("verse")[:n]:
        case = builder.build(replace(cp, iso_mm=iso_mm))
        path = write_image(case.ct_image(), folder / f"{cp.case_id}.nii.gz")
        out.append((cp.case_id, path, sitk.GetArrayFromImage(case.label_image())))
    return out


def dice_pair(truth: np.ndarray, predicted: np.ndarray) -> tuple:
    """(binary spine Dice, mean Dice over the truth's vertebrae)."""
    from vertebraformer_nn.evaluation.metrics import binary_dice, dice_per_label

    per_label = dice_per_label(truth, predicted)
    in_truth = [per_label[int(c)] for c in np.unique(truth) if c]
    return binary_dice(truth, predicted), float(np.mean(in_truth)) if in_truth else float("nan")


def measure_case(predictor, name: str, path: Path, truth: np.ndarray) -> dict:
    import SimpleITK as sitk

    from vertebraformer_nn import labels
    from vertebraformer_nn.inference.bone_boundary import snap_to_bone
    from vertebraformer_nn.inference.postprocessing import DEFAULTS
    from vertebraformer_nn.inference.boundaries import axis_orders, spine_labels_to_input
    from vertebraformer_nn.inference.cases import Case
    from vertebraformer_nn.inference.export import grid_map, input_model_spacing
    from vertebraformer_nn.inference.grid_map import labels_to_input
    from vertebraformer_nn.inference.numbering import number_vertebrae

    _, probs, meta = predictor.predict_case(Case(name, path, "file"), {})
    axis, sign = meta["superior"]
    codes = labels.training_to_verse(number_vertebrae(probs, meta["model_spacing"], int(axis), int(sign)).labels)
    grid = grid_map(meta)
    before = labels_to_input(codes, grid)
    after = spine_labels_to_input(codes, probs, grid, axis_orders(meta, grid))
    # the spine's outline from the probabilities, the boundaries between neighbours from the hard labels: which of
    # the two kinds of boundary the gain (or loss) comes from
    spine_only = np.where(after > 0, np.where(before > 0, before, after), 0).astype(np.uint8)
    ct = sitk.ReadImage(str(path))
    bone_edge, _ = snap_to_bone(after, sitk.GetArrayViewFromImage(ct), ct.GetSpacing()[::-1],
                                DEFAULTS.bone_edge_band_mm, input_model_spacing(meta, grid))
    return {"case": name, "input_shape": truth.shape, "model_shape": tuple(meta["model_shape"]),
            "model_spacing": meta["model_spacing"], "before": dice_pair(truth, before),
            "after": dice_pair(truth, after), "spine_only": dice_pair(truth, spine_only),
            "bone_edge": dice_pair(truth, bone_edge)}


def report(rows: Sequence[dict], model: Path, iso_mm: float, command: str) -> str:
    columns = (("before", 0), ("after", 0), ("bone_edge", 0), ("before", 1), ("after", 1), ("bone_edge", 1),
               ("spine_only", 1))
    head = ("| case | input grid | model grid (mm) | spine Dice before | after | bone edge | vertebra Dice before | "
            "after | bone edge | vertebra Dice, outline only from probabilities |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {'x'.join(map(str, r['input_shape']))} | "
                     f"{'x'.join(f'{s:.2f}' for s in r['model_spacing'])} | "
                     + " | ".join(f"{r[k][i]:.4f}" for k, i in columns) + " |")
    mean = [np.nanmean([r[k][i] for r in rows]) for k, i in columns]
    lines.append("| mean | | | " + " | ".join(f"{m:.4f}" for m in mean) + " |")
    return "\n".join([
        f"# Export from probabilities vs from hard labels, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "",
        f"Command: `{command}`", "", f"Model: `{model}`; phantoms at {iso_mm:g} mm (VerSe style).", "",
        *lines, "",
        "Before: the hard label map resampled (each label's indicator linearly, the largest wins). After: "
        "boundaries from the probabilities (inference/boundaries.py). Bone edge: after, moved onto the bone edge "
        "the CT shows (inference/bone_boundary.py, the default band), as predict writes it. Outline only: the "
        "spine's outline from the "
        "probabilities, the boundaries between neighbours from the hard labels (it has the spine Dice of after). Same "
        "prediction and numbering in all.", ""])


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True, help="model folder (<Trainer>__<Plans>__<configuration>)")
    p.add_argument("--folds", nargs="+", type=int, default=[0])
    p.add_argument("--cases", type=int, default=3)
    p.add_argument("--iso-mm", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out-md", type=Path, help="default benchmarks/results/boundary_dice_<date>.md")
    args = p.parse_args(argv)
    from vertebraformer_nn.inference.predictor import VertebraFormerPredictor

    predictor = VertebraFormerPredictor(args.device)
    predictor.initialize_from_trained_model_folder(str(args.model), args.folds)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, truth in phantom_cases(args.cases, args.iso_mm, args.seed, Path(tmp)):
            rows.append(measure_case(predictor, name, path, truth))
            r = rows[-1]
            print(f"{name}: spine Dice {r['before'][0]:.4f} -> {r['after'][0]:.4f} -> {r['bone_edge'][0]:.4f}, "
                  f"vertebra Dice {r['before'][1]:.4f} -> {r['after'][1]:.4f} -> {r['bone_edge'][1]:.4f} "
                  f"(outline only {r['spine_only'][1]:.4f})", flush=True)
    text = report(rows, args.model, args.iso_mm, " ".join([sys.executable, *sys.argv]))
    print(text)
    write_result(text, args.out_md, "boundary_dice")
    return 0


if __name__ == "__main__":
    sys.exit(main())
