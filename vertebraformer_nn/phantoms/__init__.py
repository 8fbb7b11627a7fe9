"""MultiSpine-Sim: phantom spine CT written as the four MultiSpine sources (DESIGN.md section 3).

    generate(out_dir, cases_per_source=6, seed=0, sources=SOURCES, extra_styles=(), extra_cases=4,
             previews=False, progress=True) -> dict   # the content of OUT/ground_truth/index.json

Modules: anatomy (pure geometry of a subject), shapes (subject -> solids of SDF primitives), sdf, grid,
softtissue, render (rasterise onto a grid), styles / scanner (scanner styles and the acquisition model),
fov (field of view and pose), plan (which cases exist), one writer per source (verse, ctspine1k, spineweb,
dicom), truth (ground truth and index), preview (pictures), orchestrate (the generate() pipeline), cli.
"""
from __future__ import annotations

from .cli import add_parser
from .plan import SOURCES
from .styles import EXTRA_STYLES, SOURCE_STYLES


def generate(out_dir, cases_per_source: int = 6, seed: int = 0, sources=SOURCES, extra_styles=(), extra_cases: int = 4,
             previews: bool = False, progress: bool = True) -> dict:
    from .orchestrate import generate as _generate

    return _generate(out_dir, cases_per_source=cases_per_source, seed=seed, sources=sources, extra_styles=extra_styles,
                     extra_cases=extra_cases, previews=previews, progress=progress)


__all__ = ["generate", "SOURCES", "SOURCE_STYLES", "EXTRA_STYLES", "add_parser"]
