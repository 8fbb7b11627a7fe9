"""The VertebraFormer planner and preprocessor (DESIGN.md section 4), installed as ``vertebraformer_nn.planners``.

Public API::

    plan_and_preprocess(dataset_id, preset=None, gpu_memory_gb=24, configurations=("3d_fullres",),
                        num_processes=2, verify=False) -> plans identifier
    VertebraFormerPlanner, VertebraFormerCPUPlanner     # ExperimentPlanner subclasses (pass them as classes)
    VertebraFormerPreprocessor, LESION_KEY, HAS_LESION_KEY, DOMAIN_INDEX_KEY, LESION_CHANNEL
    PLANS_NAME, CPU_PLANS_NAME

Names are imported lazily so that ``vertebraformer --help`` does not import nnU-Net.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "plan_and_preprocess": "api",
    "planner_class": "api",
    "VertebraFormerPlanner": "planner",
    "VertebraFormerCPUPlanner": "planner",
    "PLANS_NAME": "planner",
    "CPU_PLANS_NAME": "planner",
    "CONFIGURATION": "planner",
    "VertebraFormerPreprocessor": "preprocessor",
    "LESION_KEY": "preprocessor",
    "LESION_CHANNEL": "preprocessor",
    "HAS_LESION_KEY": "preprocessor",
    "DOMAIN_KEY": "preprocessor",
    "DOMAIN_INDEX_KEY": "preprocessor",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
