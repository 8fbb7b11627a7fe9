"""The VertebraFormer planner and preprocessor (DESIGN.md section 4), installed as ``vertebraformer_nn.planners``.

Modules::

    api           plan_and_preprocess(dataset_id, preset=None, gpu_memory_gb=24, ...) -> plans identifier
    presets       plans names, the network size presets, the network's arch_kwargs from a preset (pure Python)
    data_facts    the dataset's domains and the anatomical axes of its arrays (reader, images' headers)
    ct_window     the CT intensity window written into the plans
    planner       VertebraFormerPlanner, VertebraFormerCPUPlanner (ExperimentPlanner subclasses: pass them as classes)
    tokens        token edges per axis for a spacing (pure; the planner and whole_field share it)
    whole_field   the coarse whole-field configuration (3d_lowres): its spacing and a patch holding the whole scan
    preprocessor  VertebraFormerPreprocessor (lesion map as seg channel 1, per-case facts)

This package imports only ``api`` and ``presets`` (neither imports torch or nnU-Net at import time), so
``vertebraformer --help`` stays fast; nnU-Net and torch load when planning starts.
"""
from .api import plan_and_preprocess, planner_class
from .presets import COARSE_CONFIGURATION, CONFIGURATION, CPU_PLANS_NAME, PLANS_NAME

__all__ = ["COARSE_CONFIGURATION", "CONFIGURATION", "CPU_PLANS_NAME", "PLANS_NAME", "plan_and_preprocess",
           "planner_class"]
