"""What ``multispine_protocol.py`` makes of predictions: the nnU-Net "separate models"' case files from the two
networks' stored probabilities, and an evaluation's headline numbers split into clean and perturbed cases.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from protocol_setup import Protocol


def combine_separate_models(seg_dir: Path, lesion_dir: Path, target: Path, numbering: str) -> int:
    """The case files of nnU-Net's "separate models": vertebrae from the segmentation network's probabilities,
    lesions from the lesion network's (its foreground channel), both saved by ``predict --save_probabilities``
    on the same model grid (same plans, same images), exported by our one export path."""
    from vertebraformer_nn.image_io import read_image
    from vertebraformer_nn.inference import probabilities as P
    from vertebraformer_nn.inference.export import export_case
    from vertebraformer_nn.inference.preview import write_colour_table

    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    n = 0
    for seg_file in sorted(seg_dir.glob("*_vfprobs.npz")):
        case = seg_file.name[: -len("_vfprobs.npz")]
        seg, meta = P.load(seg_file)
        lesion, lesion_meta = P.load(lesion_dir / seg_file.name)
        if lesion_meta["model_shape"] != meta["model_shape"]:
            raise RuntimeError(f"{case}: the lesion network's grid {lesion_meta['model_shape']} differs from the "
                               f"segmentation network's {meta['model_shape']}")
        probs = {"seg": seg.expand("seg"), "lesion": lesion.expand("seg")[1:2]}
        export_case(target, read_image(meta["source"]), probs, meta, preview=False, numbering=numbering)
        n += 1
    write_colour_table(target)
    return n


def split_clean_and_perturbed(report: dict, protocol: Protocol) -> dict:
    """Headline numbers of the clean test cases (with intervals) and per-variant means of the perturbed ones."""
    from vertebraformer_nn.evaluation.aggregation import summarise
    from vertebraformer_nn.evaluation.perturbations import parse_variant

    clean, variants = {}, {}
    for name, record in report["cases"].items():
        case, kind, level = parse_variant(name)
        if kind is None:
            clean[case] = record
        else:
            variants.setdefault(f"{kind}{level}", []).append(record)
    perturbed_cases = {parse_variant(r["case"])[0] for records in variants.values() for r in records}
    thresholds = report["settings"]["lesion_iou_thresholds"]
    boot = {"n_resamples": protocol.bootstrap, "confidence": 0.95, "seed": protocol.seed}
    few = {**boot, "n_resamples": 200}  # the curves need means only
    base = [clean[c] for c in sorted(perturbed_cases) if c in clean]
    return {"clean": summarise(list(clean.values()), thresholds, **boot) if clean else None,
            "clean_perturbed_cases": summarise(base, thresholds, **few) if base else None,
            "perturbed": {key: summarise(records, thresholds, **few) for key, records in sorted(variants.items())}}
