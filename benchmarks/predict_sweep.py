"""The model-spacing sweep of issue 12: ``vertebraformer predict`` next to ``nnUNetv2_predict`` at 3.5, 2, 1.5, 1 mm.

    python benchmarks/predict_sweep.py --workdir /tmp/predbench --model M --nnunet-model N \\
        [--spacings 3.5 2 1.5 1] [--inputs large] [--methods ours nnunet] [--mem-cap-gb 20]

Memory and time depend on the model grid (its spacing and the patch), not on the weights: for each spacing both
model folders are copied (``WORKDIR/sweep/<s>mm``, checkpoints linked, not copied) with their plans' configuration
spacing set to ``s`` mm on every axis, as the issue's "Measured now" did; nnU-Net's is its default plans
(``benchmarks/predict_speed.py --prepare`` makes both in WORKDIR, with the inputs). Each run is
``predict_speed.run_method``: a subprocess with 2 threads, an address-space cap and a timeout, peak resident memory of
all its processes polled; an out-of-memory or a timeout is a row of the report, not a crash. The report
(``benchmarks/results/predict_sweep_<date>.md``) has predict_speed's table per spacing and per run the model-grid
size (the input's extent over the spacing) with the peak resident bytes per model-grid voxel. Not a test.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import signal
import sys
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

_spec = importlib.util.spec_from_file_location("predict_speed", Path(__file__).with_name("predict_speed.py"))
ps = importlib.util.module_from_spec(_spec)
sys.modules["predict_speed"] = ps  # its dataclasses look their module up there
_spec.loader.exec_module(ps)

SPACINGS = (3.5, 2.0, 1.5, 1.0)


def spacing_tag(spacing: float) -> str:
    return f"{spacing:g}mm"


def model_at_spacing(model: Path, target: Path, spacing: float, configuration: Optional[str] = None) -> Path:
    """A copy of the model folder ``model`` at ``target`` whose plans run ``configuration`` (default: the one in the
    folder's name, ``<Trainer>__<Plans>__<configuration>``, else 3d_fullres) at ``spacing`` mm on every axis; files
    other than ``plans.json`` are linked (checkpoints are large). Returns ``target``."""
    model, target = Path(model).resolve(), Path(target)
    configuration = configuration or (model.name.split("__")[-1] if "__" in model.name else "3d_fullres")
    plans = json.loads((model / "plans.json").read_text())
    if configuration not in plans.get("configurations", {}):
        raise ValueError(f"{model}: plans.json has no configuration {configuration!r}")
    if target.exists():
        shutil.rmtree(target)
    for path in sorted(model.rglob("*")):
        if path.is_file() and path.name != "plans.json":
            (target / path.relative_to(model)).parent.mkdir(parents=True, exist_ok=True)
            (target / path.relative_to(model)).symlink_to(path)
    plans["configurations"][configuration]["spacing"] = [float(spacing)] * 3
    target.mkdir(parents=True, exist_ok=True)
    (target / "plans.json").write_text(json.dumps(plans, indent=2))
    return target


def model_grid_voxels(size: Sequence[int], image_spacing: Sequence[float], spacing: float) -> int:
    """Voxels of the model grid of an image (before nnU-Net's crop to the non-zero region): its extent / spacing."""
    return int(np.prod([round(n * s / spacing) for n, s in zip(size, image_spacing)]))


def image_grid(path: Path) -> tuple:
    """(size, spacing) of an image file (its header) or DICOM series folder."""
    import SimpleITK as sitk

    from vertebraformer_nn.image_io import read_image

    if Path(path).is_dir():
        image = read_image(path)
        return image.GetSize(), image.GetSpacing()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return reader.GetSize(), reader.GetSpacing()


def bytes_table(rows: Sequence[dict]) -> str:
    """Per run: peak RSS over the model-grid voxels, and the slope from the next coarser spacing's run of the same
    input and method (the bytes each further voxel costs: imports, the model and other fixed costs cancel)."""
    lines = ["| spacing | input | method | model-grid voxels (M) | peak RSS GB | peak bytes per model-grid voxel | "
             "marginal bytes per voxel | status |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        per = r["peak_gb"] * 1024 ** 3 / r["voxels"] if r.get("voxels") else None
        coarser = [q for q in rows if (q["input"], q["method"]) == (r["input"], r["method"]) and
                   q["voxels"] < r["voxels"] and q["status"] == "ok"]
        slope = ""
        if coarser and r["status"] == "ok":
            q = max(coarser, key=lambda q: q["voxels"])
            slope = f"{(r['peak_gb'] - q['peak_gb']) * 1024 ** 3 / (r['voxels'] - q['voxels']):.0f}"
        lines.append(f"| {r['spacing']:g} mm | {r['input']} | {r['method']} | {r['voxels'] / 1e6:.1f} | "
                     f"{r['peak_gb']:.2f} | {'' if per is None else f'{per:.0f}'} | {slope} | {r['status']} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, required=True, help="predict_speed's work folder (inputs, runs, logs)")
    p.add_argument("--model", type=Path, required=True, help="our model folder (<Trainer>__<Plans>__3d_fullres)")
    p.add_argument("--nnunet-model", type=Path, help="nnU-Net's model folder (needed for the nnunet methods)")
    p.add_argument("--spacings", nargs="+", type=float, default=list(SPACINGS))
    p.add_argument("--inputs", nargs="+", choices=ps.INPUTS, default=["large"])
    p.add_argument("--phantom", type=Path, help="the phantom CT (default: predict_speed's, made once in WORKDIR)")
    p.add_argument("--methods", nargs="+", choices=ps.METHODS, default=["ours", "nnunet"])
    p.add_argument("--mem-cap-gb", type=float, default=20.0)
    p.add_argument("--timeout-s", type=float, default=3600.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out-md", type=Path, help="default benchmarks/results/predict_sweep_<date>.md")
    args = p.parse_args(argv)
    if any(m.startswith("nnunet") for m in args.methods) and args.nnunet_model is None:
        p.error("--nnunet-model is needed for the nnunet methods")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = args.workdir.resolve()
    load_start = os.getloadavg()
    phantom = args.phantom or ps.whole_spine_phantom(work / "inputs" / "phantom_whole_spine.nii.gz")
    real = ps.real_data_dir() / "totalsegmentator"
    sources: Dict[str, Path] = {"phantom": Path(phantom), "example_ct": real / "example_ct.nii.gz",
                                "dicom": real / "example_ct_dicom"}
    if "large" in args.inputs:
        sources["large"] = ps.make_large(Path(phantom), work / "inputs" / "large_512x512x600.nii.gz")
    niftis = dict(sources)
    if "dicom" in args.inputs and any(m.startswith("nnunet") for m in args.methods):
        niftis["dicom"] = work / "inputs" / "dicom_series.nii.gz"
        if not niftis["dicom"].is_file():
            ps.convert_dicom(sources["dicom"], niftis["dicom"])
    grids = {name: image_grid(sources[name]) for name in args.inputs}
    env = ps.child_env(args.threads)
    rows: List[dict] = []
    for spacing in args.spacings:
        tag = spacing_tag(spacing)
        ours = model_at_spacing(args.model, work / "sweep" / tag / "ours" / args.model.resolve().name, spacing)
        theirs = None
        if args.nnunet_model is not None:
            nn = args.nnunet_model.resolve()
            theirs = model_at_spacing(nn, work / "sweep" / tag / "nnUNet_results" / nn.parent.name / nn.name, spacing)
        for name in args.inputs:
            for method in args.methods:
                row = ps.run_method(name, method, sources[name], niftis[name], ours, theirs, work, env,
                                    args.mem_cap_gb, args.timeout_s, args.threads, tag=tag)
                row.update(spacing=spacing, voxels=model_grid_voxels(*grids[name], spacing))
                rows.append(row)
                print(ps.format_table([row]).splitlines()[-1], flush=True)
    sections = []
    for spacing in args.spacings:
        part = [dict(r, input=f"{r['input']} @ {spacing:g} mm") for r in rows if r["spacing"] == spacing]
        sections += [f"## {spacing:g} mm", "", ps.format_table(part), ""]
    report = "\n".join([
        f"# Prediction time and memory by model spacing, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "",
        f"Command: `{' '.join([sys.executable, *sys.argv])}`", "",
        f"Machine: {ps.machine(load_start)} at the start; load average at the end "
        f"{'/'.join(f'{v:.2f}' for v in os.getloadavg())}.",
        f"Versions: Python {platform.python_version()}, torch {version('torch')}, nnunetv2 {version('nnunetv2')}; "
        f"{args.threads} threads per run, cap {args.mem_cap_gb:g} GB, timeout {args.timeout_s:g} s.", "",
        f"Models: ours `{args.model}`; nnU-Net `{args.nnunet_model}`; each copied per spacing with its plans' "
        "spacing changed (the weights do not change what the grid costs).", "",
        "Inputs: " + "; ".join(f"{n} `{sources[n]}` ({ps.describe_image(sources[n])})" for n in args.inputs), "",
        *sections,
        "## Bytes per model-grid voxel", "",
        bytes_table(rows), "",
        "Model-grid voxels: the input's extent over the spacing (nnU-Net crops to the non-zero region first, so the "
        "grid predicted can be smaller). Columns of the per-spacing tables as in predict_speed's report.",
    ])
    ps.write_result(report, args.out_md, "predict_sweep")
    return 0


if __name__ == "__main__":
    sys.exit(main())
