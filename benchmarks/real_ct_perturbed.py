"""The real CT cases of ``real_ct.py`` under small changes that real scans of the same anatomy show (issue 16), so
that a model's real-CT result rests on more than one picture of each case.

    python benchmarks/real_ct_perturbed.py --work /tmp/rcp --tag builtin                  # the built-in model
    python benchmarks/real_ct_perturbed.py --work /tmp/rcp --tag demo -m MODEL_FOLDER -f 0
    python benchmarks/real_ct_perturbed.py --work /tmp/rcp2 --tag try --renumber /tmp/rcp --set NAME=VALUE

Every option this script does not know goes to ``real_ct.py`` and from there to ``vertebraformer predict``.
``--renumber WORK`` runs no network: each variant's probabilities, saved by an earlier run in ``WORK`` (with
``--save_probabilities``), are post-processed again (``real_ct.py --renumber``): 30 s for the ten variants of the
built-in model, variant data and scoring included, where predicting them takes about 80 s. The cases
are the ones with a reference (verse014, tptbox, example_ct: 15 reference vertebrae; the chest has none). Each
variant (:data:`VARIANTS`) is a pure function of the CT image; the two that move voxels apart (``size``) change the
reference alike. The variants' data folders (``<work>/data/<variant>``: the changed CTs and references, the others
linked, MANIFEST.md copied) are scored by ``real_ct.main`` into ``<work>/reports``; this script then writes
``real_ct_perturbed_<date>_<tag>.md`` (and ``.json``) into ``--results``: per variant and case the binary spine Dice and
the levels right, per variant the levels right of all cases, and how many variants meet each case's target.

Why: one run of a model on four scans says little (the model card's run-to-run table). A level count that changes
when the same scan is a little smoother, noisier or differently calibrated is luck, not transfer; one that holds
under every variant is not. Not a timed benchmark and not a test.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_ct  # noqa: E402  (the benchmark beside this one: its cases, scoring and predict call)

from vertebraformer_nn.atomic import write_text_atomic  # noqa: E402
from vertebraformer_nn.paths import real_data_dir  # noqa: E402


# --- the variants (pure functions of an image) -----------------------------------------------------------------

def _float(image: sitk.Image) -> sitk.Image:
    return sitk.Cast(image, sitk.sitkFloat32)


def _with_array(image: sitk.Image, array: np.ndarray) -> sitk.Image:
    out = sitk.GetImageFromArray(array.astype(np.float32))
    out.CopyInformation(image)
    return out


def blurred(image: sitk.Image, sigma_mm: float) -> sitk.Image:
    """A softer reconstruction kernel: Gaussian blur of ``sigma_mm`` (physical units)."""
    return sitk.SmoothingRecursiveGaussian(_float(image), sigma_mm)


def noisier(image: sitk.Image, sd_hu: float, seed: int) -> sitk.Image:
    """A lower dose: white Gaussian noise of ``sd_hu`` added, seeded."""
    a = sitk.GetArrayFromImage(image).astype(np.float32)
    return _with_array(image, a + np.random.default_rng(seed).normal(0.0, sd_hu, a.shape))


def shifted(image: sitk.Image, hu: float) -> sitk.Image:
    """A miscalibrated scanner: every voxel ``hu`` higher."""
    return _with_array(image, sitk.GetArrayFromImage(image).astype(np.float32) + hu)


def bone_scaled(image: sitk.Image, factor: float, above_hu: float = 100.0) -> sitk.Image:
    """Less or more mineralised bone: values above ``above_hu`` scaled by ``factor`` about it, the rest kept."""
    a = sitk.GetArrayFromImage(image).astype(np.float32)
    return _with_array(image, np.where(a > above_hu, above_hu + factor * (a - above_hu), a))


def resized(image: sitk.Image, factor: float) -> sitk.Image:
    """A smaller or larger patient: spacing and origin scaled by ``factor``, voxels and direction kept (applied to
    the reference alike, it stays on the CT's grid)."""
    out = sitk.Image(image)
    out.SetSpacing([s * factor for s in image.GetSpacing()])
    out.SetOrigin([o * factor for o in image.GetOrigin()])
    return out


@dataclass(frozen=True)
class Variant:
    name: str
    what: str
    ct: Callable[[sitk.Image, int], sitk.Image]  # (image, seed) -> image
    moves_voxels: bool = False  # the reference changes alike


VARIANTS = (
    Variant("original", "as stored", lambda im, seed: im),
    Variant("soft1", "blurred, 1 mm (a softer kernel)", lambda im, seed: blurred(im, 1.0)),
    Variant("soft2", "blurred, 2 mm", lambda im, seed: blurred(im, 2.0)),
    Variant("noise30", "30 HU of white noise added (a lower dose)", lambda im, seed: noisier(im, 30.0, seed)),
    Variant("hu+40", "40 HU higher everywhere (calibration)", lambda im, seed: shifted(im, 40.0)),
    Variant("hu-40", "40 HU lower everywhere", lambda im, seed: shifted(im, -40.0)),
    Variant("bone0.7", "bone above 100 HU x 0.7 (less mineral)", lambda im, seed: bone_scaled(im, 0.7)),
    Variant("bone1.4", "bone above 100 HU x 1.4 (denser)", lambda im, seed: bone_scaled(im, 1.4)),
    Variant("size0.9", "voxel spacing x 0.9 (a smaller patient)", lambda im, seed: resized(im, 0.9), True),
    Variant("size1.1", "voxel spacing x 1.1 (a larger patient)", lambda im, seed: resized(im, 1.1), True),
)
BY_NAME: Dict[str, Variant] = {v.name: v for v in VARIANTS}
#: the real cases with a reference (the chest series has none, and is a DICOM folder)
CASES = tuple(c for c in real_ct.CASES if c.reference)


def write_variant_data(variant: Variant, data: Path, out: Path, cases: Sequence[real_ct.RealCase]) -> None:
    """``out``: the variant's copy of the cases (changed CT; reference changed alike or linked) and MANIFEST.md, laid
    out as ``data``. The source files are only read."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(data / "MANIFEST.md", out / "MANIFEST.md")
    for k, case in enumerate(cases):
        ct, ref = out / case.ct, out / case.reference
        for path in (ct, ref):
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink() or path.exists():
                path.unlink()
        sitk.WriteImage(variant.ct(sitk.ReadImage(str(data / case.ct)), k), str(ct))
        if variant.moves_voxels:  # its CT function is geometric only: the labels keep their values
            sitk.WriteImage(variant.ct(sitk.ReadImage(str(data / case.reference)), k), str(ref))
        else:
            ref.symlink_to((data / case.reference).resolve())


# --- summary (pure) --------------------------------------------------------------------------------------------

def summarise(results: Dict[str, List[dict]]) -> dict:
    """``{variant: real_ct results}`` -> per variant the levels right of all cases and the cases whose target is met;
    per case in how many variants its target is met; the spread of levels right over the variants."""
    rows = {}
    for name, cases in results.items():
        right = sum(sum(r["right"] for r in c["levels"]) for c in cases)
        total = sum(len(c["levels"]) for c in cases)
        rows[name] = {"levels_right": right, "levels": total,
                      "met": [c["case"] for c in cases if str(c.get("target", "")).startswith("met")]}
    counts = [r["levels_right"] for r in rows.values()]
    met = {c["case"]: sum(c["case"] in rows[n]["met"] for n in rows) for cases in results.values() for c in cases}
    return {"variants": rows, "target_met_in": met,
            "levels_right": {"min": min(counts), "max": max(counts), "mean": float(np.mean(counts))} if counts else {}}


# --- command ---------------------------------------------------------------------------------------------------

def parse(argv: Optional[Sequence[str]] = None):
    p = argparse.ArgumentParser(description="The real CT cases with a reference under small test-time changes (see "
                                "the module docstring); every other option goes to real_ct.py / vertebraformer predict.",
                                allow_abbrev=False)
    p.add_argument("--work", required=True, type=Path, help="work folder (variant data, predictions, per-variant reports)")
    p.add_argument("--tag", required=True, help="the report's name: real_ct_perturbed_<date>_<tag>.md")
    p.add_argument("--results", type=Path, default=real_ct.RESULTS, help=f"where the report goes ({real_ct.RESULTS})")
    p.add_argument("--data", type=Path, default=None, help="real data folder (default $VERTEBRAFORMER_REAL_DATA)")
    p.add_argument("--variants", nargs="+", choices=list(BY_NAME), default=list(BY_NAME), help="a subset")
    p.add_argument("--renumber", type=Path, default=None, metavar="WORK",
                   help="no network: post-process again what an earlier run with --save_probabilities saved in WORK")
    return p.parse_known_args(argv)


def _cell(case: dict) -> str:
    if case.get("problem"):
        return "no prediction"
    right = sum(r["right"] for r in case["levels"])
    return f"{case['dice']:.2f}, {right}/{len(case['levels'])}"


def write_report(results: Dict[str, List[dict]], summary: dict, out_dir: Path, tag: str, command: str) -> Path:
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    names = [c.name for c in CASES]
    lines = [f"# Real CT under test-time variants: {tag} ({date})", "", f"`{command}`", "",
             "Per case: binary spine Dice, levels right of the reference's vertebrae (`benchmarks/real_ct.py`'s "
             "scoring). The CT is changed as the variant says; the reference is changed alike where voxels move.", "",
             "| variant | what | " + " | ".join(names) + " | levels right |",
             "|---|---|" + "---|" * len(names) + "---|"]
    for name, cases in results.items():
        by_case = {c["case"]: c for c in cases}
        row = summary["variants"][name]
        lines.append(f"| {name} | {BY_NAME[name].what} | " + " | ".join(_cell(by_case[n]) for n in names)
                     + f" | {row['levels_right']}/{row['levels']} |")
    spread = summary["levels_right"]
    lines += ["", f"Levels right over the {len(results)} variants: mean {spread['mean']:.1f}, "
              f"min {spread['min']}, max {spread['max']}.", "",
              "Target of issue 16 met (`real_ct.py`'s targets) in: " + ", ".join(
                  f"{n} {summary['target_met_in'].get(n, 0)} of {len(results)} variants" for n in names) + "."]
    stem = f"real_ct_perturbed_{date}_{tag}"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / f"{stem}.json", json.dumps({"summary": summary, "results": results}, indent=1))
    write_text_atomic(out_dir / f"{stem}.md", "\n".join(lines) + "\n")
    return out_dir / f"{stem}.md"


def main(argv: Optional[Sequence[str]] = None) -> int:
    args, passed = parse(argv)
    data = args.data or real_data_dir()
    if not (data / "MANIFEST.md").is_file():
        print(f"real_ct_perturbed: no real data at {data} (MANIFEST.md missing)", file=sys.stderr)
        return 2
    results: Dict[str, List[dict]] = {}
    reports = args.work / "reports"
    for name in args.variants:
        variant_data = args.work / "data" / name
        write_variant_data(BY_NAME[name], data, variant_data, CASES)
        saved = [] if args.renumber is None else ["--renumber", str(args.renumber / "runs" / name / "predictions")]
        status = real_ct.main(["--work", str(args.work / "runs" / name), "--tag", f"{args.tag}-{name}",
                               "--results", str(reports), "--data", str(variant_data),
                               "--cases", *[c.name for c in CASES], *saved, *passed])
        if status:
            return status
        results[name] = json.loads(max(reports.glob(f"real_ct_*_{args.tag}-{name}.json"),
                                       key=lambda p: p.stat().st_mtime).read_text())
    summary = summarise(results)
    command = " ".join(shlex.quote(a) for a in ["python", "benchmarks/real_ct_perturbed.py", *(argv or sys.argv[1:])])
    report = write_report(results, summary, args.results, args.tag, command)
    print(f"levels right over {len(results)} variants: mean {summary['levels_right']['mean']:.1f}, "
          f"min {summary['levels_right']['min']}, max {summary['levels_right']['max']}; report: {report}")
    return 0


if __name__ == "__main__":  # nnU-Net's spawn pools need the guard
    sys.exit(main())
