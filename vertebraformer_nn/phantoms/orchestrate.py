"""Orchestration: plan -> subjects -> scans -> source files + ground truth + index (+ pictures)."""
from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, Iterable, List, Sequence

from .. import labels
from . import ctspine1k, dicom, spineweb, verse
from .anatomy import Subject, sample_subject
from .case import Case
from .fov import levels_inside, plan_grid
from .pathology import with_pathology
from .plan import SOURCES, CasePlan, Plan, build_plan, rng_for
from .randomise import DEFAULT_STRENGTH, WIDE_FOV, randomise
from .render import render
from .scanner import acquire
from .styles import ALL_STYLES, EXTRA_STYLES, ScanParams, sample_scan_params
from .truth import index_entry, write_truth

PREVIEWS_PER_SOURCE = 2
#: What a previous run leaves in OUT; only these are cleared before writing again.
_OWN_ENTRIES = ("verse", "ctspine1k", "spineweb", "dicom", "ground_truth", "previews")
#: Written first, so that an interrupted run's folder is still recognised as ours and may be regenerated.
_MARKER = ".multispine-sim"


class CaseBuilder:
    """Builds cases of a plan; subjects (shared by several scans) are sampled once and cached."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.seed = plan.seed
        self._cases = {c.key: c for c in plan.cases}
        self._subjects: Dict[str, Subject] = {}

    def params(self, cp: CasePlan) -> ScanParams:
        fov = cp.fov
        if cp.extra.get("duplicate_of"):
            # A re-annotated VerSe subject: CTSpine1K's crop covers the same region as the VerSe scan, re-drawn.
            spec = self.plan.subjects[cp.subject_key]
            fov = self.params(self._cases[spec.primary_case]).fov
        rng = rng_for(self.seed, "params", cp.key)
        p = sample_scan_params(ALL_STYLES[cp.style], rng, fov=fov, axcodes=cp.axcodes)
        for _ in range(50):
            if p.fov not in cp.avoid_fov:
                break
            p = sample_scan_params(ALL_STYLES[cp.style], rng, fov=fov, axcodes=cp.axcodes)
        if cp.randomise:
            allowed = (p.fov,) if fov else tuple(k for k in WIDE_FOV if k not in cp.avoid_fov)
            p = randomise(p, cp.randomise, lambda group: rng_for(self.seed, "randomise", group, cp.key), allowed)
        if cp.iso_mm:
            p = replace(p, pixel_mm=cp.iso_mm, slice_mm=cp.iso_mm, thickness_mm=cp.iso_mm)
        return p

    def subject(self, key: str) -> Subject:
        if key not in self._subjects:
            spec = self.plan.subjects[key]
            base = sample_subject(rng_for(self.seed, "anatomy", key), spec.subject_id, transitional=spec.transitional,
                                  allow_t13=spec.allow_t13, degeneration=rng_for(self.seed, "degeneration", key))
            primary = self._cases[spec.primary_case]
            p = self.params(primary)
            _, _, zr = plan_grid(base, p, ALL_STYLES[primary.style], rng_for(self.seed, "fov", primary.key))
            # Pathology goes where the subject's first scan sees it whole, so every source's images show some.
            self._subjects[key] = with_pathology(
                base, rng_for(self.seed, "pathology", key), levels_inside(base, *zr), n_lesions=spec.n_lesions,
                n_fractures=spec.n_fractures, metal=p.metal, p_lytic=spec.p_lytic)
        return self._subjects[key]

    def build(self, cp: CasePlan) -> Case:
        subject = self.subject(cp.subject_key)
        p = self.params(cp)
        style = ALL_STYLES[cp.style]
        grid, placement, _ = plan_grid(subject, p, style, rng_for(self.seed, "fov", cp.key))
        rendered = render(subject, grid, placement, p.contrast, p.pv_factor)
        ct = acquire(rendered.hu, grid, p, rng_for(self.seed, "noise", cp.key), rendered.metal)
        return Case(cp, subject, p, grid, placement, rendered, ct)


def _prepare_out(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        if not ((out / _MARKER).is_file() or (out / "ground_truth" / "index.json").is_file()):
            raise FileExistsError(f"{out} is not empty and holds no earlier MultiSpine-Sim output; choose an empty "
                                  "or new folder (nothing was written)")
        # An earlier run: clear only what the generator writes, so no stale case of a larger run survives.
        for child in out.iterdir():
            if child.name in _OWN_ENTRIES or child.name.startswith("extra_"):
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / _MARKER).write_text("MultiSpine-Sim output (vertebraformer phantoms); regenerating replaces it\n")


def _write_source_case(out: Path, case: Case, seed: int) -> str:
    source = case.plan.source
    root = out / source
    if source == "verse":
        path = verse.write_case(root, case)
    elif source == "ctspine1k":
        path = ctspine1k.write_case(root, case)
    elif source == "spineweb":
        path = spineweb.write_case(root, case)
    elif source == "dicom":
        path = dicom.write_case(root, case, seed)
    else:
        from ..image_io import write_image

        path = write_image(case.ct_image(), root / f"{case.plan.case_id}.nii.gz")
    return path.relative_to(out).as_posix()


def _write_source_files(out: Path, source: str, cases: List[Case], seed: int) -> None:
    if source == "verse" and cases:
        verse.write_fracture_grades(out / "verse", cases)
    elif source == "ctspine1k" and cases:
        ctspine1k.write_split(out / "ctspine1k", cases)
    elif source == "dicom" and cases:
        dicom.write_mapping(out / "dicom", cases, seed)


def _preview(out: Path, case: Case) -> Path:
    from .preview import save_preview

    r = case.rendered

    def names(codes):
        return ",".join(labels.name(c) for c in codes)

    title = (f"{case.plan.source} {case.plan.case_id} | style {case.params.style}, {case.params.fov}, {case.grid.axcodes} "
             f"{'x'.join(f'{s:g}' for s in case.grid.spacing)} mm | {names(r.levels[:1])}-{names(r.levels[-1:])}"
             f"{' +' + case.subject.transitional if case.subject.transitional else ''} | partial: {names(r.partial) or '-'}"
             f" | lesions {len(r.lesion_info)}, fractures {len(case.subject.fractures)}"
             f"{', metal' if r.metal.any() else ''}")
    return save_preview(case.ct_image(), case.label_image(), out / "previews" / f"{case.plan.source}_{case.plan.case_id}.png",
                        case.lesion_image(), title=title, centroids=r.centroids)


def _light(case: Case) -> Case:
    """Keep what source-level files need (plan, subject, levels), drop the volumes."""
    r = replace(case.rendered, hu=None, tissue=None, vertebrae=None, lesions=None, metal=None)
    return replace(case, rendered=r, ct=None)


def generate(out_dir, cases_per_source: int = 6, seed: int = 0, sources: Iterable[str] = SOURCES,
             extra_styles: Sequence[str] = (), extra_cases: int = 4, previews: bool = False,
             progress: bool = True, randomise: float = DEFAULT_STRENGTH) -> dict:
    """Write MultiSpine-Sim into ``out_dir``: the sources in their native layouts, ground truth and
    ground_truth/index.json (whose content is returned). Same arguments, same files (label maps byte for byte).
    ``randomise``: domain randomisation strength of the sources' scans (randomise.py; 0 = their styles only)."""
    sources = list(sources)
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise ValueError(f"unknown source(s) {unknown}; choose from {', '.join(SOURCES)}")
    bad = [s for s in extra_styles if s not in EXTRA_STYLES]
    if bad:
        raise ValueError(f"unknown extra style(s) {bad}; choose from {', '.join(EXTRA_STYLES)}")
    if int(seed) < 0:
        raise ValueError("seed must be >= 0")
    out = Path(out_dir)
    _prepare_out(out)
    plan = build_plan(cases_per_source, seed, extra_styles, extra_cases, randomise=randomise)
    builder = CaseBuilder(plan)
    groups = [s for s in SOURCES if s in sources] + [f"extra_{s}" for s in extra_styles]
    todo = [c for g in groups for c in plan.of_source(g)]
    entries = []
    t_start = time.perf_counter()
    for g in groups:
        written: List[Case] = []
        for k, cp in enumerate(plan.of_source(g)):
            t0 = time.perf_counter()
            case = builder.build(cp)
            image_rel = _write_source_case(out, case, seed)
            truth = write_truth(out, case)
            entries.append(index_entry(case, image_rel, truth))
            if previews and k < PREVIEWS_PER_SOURCE:
                _preview(out, case)
            written.append(_light(case))
            if progress:
                print(f"[{len(entries)}/{len(todo)}] {cp.source}/{cp.case_id}: {case.params.fov}, "
                      f"{len(case.rendered.levels)} vertebrae, {time.perf_counter() - t0:.2f} s", file=sys.stderr, flush=True)
        _write_source_files(out, g, written, seed)
    index = {"seed": int(seed), "cases_per_source": int(cases_per_source), "generator": "MultiSpine-Sim",
             "randomise": float(randomise), "sources": [g for g in groups], "cases": entries}
    (out / "ground_truth").mkdir(parents=True, exist_ok=True)
    (out / "ground_truth" / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    if progress:
        print(f"MultiSpine-Sim: {len(entries)} cases in {time.perf_counter() - t_start:.1f} s -> {out}", file=sys.stderr)
    return index
