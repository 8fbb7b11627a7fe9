"""MultiSpine-Sim: phantom spine CT written as the four MultiSpine sources (DESIGN.md section 3).

    generate(out_dir, cases_per_source=6, seed=0, sources=SOURCES, extra_styles=(), extra_cases=4,
             previews=False, progress=True, randomise=0.5) -> dict   # the content of OUT/ground_truth/index.json

Modules: anatomy (pure geometry of a subject), shape_model + vertebra_params (vertebra shapes fitted to real
masks; shape_check compares them with real ones), shapes (spine solids: vertebrae, discs, canal, skull, metal),
thorax (ribs, sternum, shoulder girdle), pelvis (sacrum, hip bones, femora), viscera + organs (organs, vessels,
bowel, contrast phases), sdf, texture, grid, softtissue, render (rasterise onto a grid), styles / scanner (scanner
styles and the acquisition model), randomise (domain randomisation beyond the styles), fov (field of view and
pose), plan (which cases exist), one writer per source (verse, ctspine1k, spineweb, dicom), truth (ground truth
and index), preview (pictures), orchestrate (the generate() pipeline), cli.
"""
from __future__ import annotations

from .cli import add_parser
from .plan import SOURCES
from .randomise import DEFAULT_STRENGTH
from .styles import EXTRA_STYLES, SOURCE_STYLES


def generate(out_dir, cases_per_source: int = 6, seed: int = 0, sources=SOURCES, extra_styles=(), extra_cases: int = 4,
             previews: bool = False, progress: bool = True, randomise: float = DEFAULT_STRENGTH) -> dict:
    from .orchestrate import generate as _generate

    return _generate(out_dir, cases_per_source=cases_per_source, seed=seed, sources=sources, extra_styles=extra_styles,
                     extra_cases=extra_cases, previews=previews, progress=progress, randomise=randomise)


__all__ = ["generate", "SOURCES", "SOURCE_STYLES", "EXTRA_STYLES", "add_parser"]
