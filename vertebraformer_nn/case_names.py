"""The one rule for case names: converters (``<source>_<id>``) and prediction (file stems, DICOM folder paths).

A case name is a file-name stem on every system and in nnU-Net's ``<case>_0000.nii.gz``: every run of characters
outside ``[A-Za-z0-9._-]`` (spaces, path separators, accented letters) becomes one ``_``; dots and underscores at
either end are dropped (no hidden files, no ``..``); an empty result is ``case``.
"""
from __future__ import annotations

import re

__all__ = ["sanitise"]

_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._-]+")


def sanitise(text) -> str:
    """``text`` as a case name (module docstring): ``"patient 1/séries (2)"`` -> ``"patient_1_s_ries_2"``."""
    return _UNSAFE_RUN.sub("_", str(text)).strip("._") or "case"
