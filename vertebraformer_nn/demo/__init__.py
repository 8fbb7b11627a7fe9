"""``vertebraformer demo``: the whole pipeline on built-in MultiSpine-Sim data in one command.

    run_demo(DemoConfig(out=Path("demo_out"), cases_per_source=4, minutes=10, device="auto")) -> {step: StepRun}

Modules: pipeline (the steps, their reuse, progress), markers (one marker file per finished step), timing (how
the minutes are spent), reference (the unseen style's evaluation reference from the phantoms' complete truth),
report (REPORT.md), cli (the subcommand). Importing this package imports neither torch nor nnU-Net.
"""
from __future__ import annotations

import importlib

_EXPORTS = {"run_demo": "pipeline", "DemoConfig": "pipeline", "DemoError": "pipeline", "STEPS": "pipeline",
            "add_parser": "cli"}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
