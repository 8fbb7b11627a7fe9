"""How bright the vertebral bodies' endplates and anterior walls stand above their trabecular core, measured the same
way on a phantom and on a real CT with its manual mask (pure numpy).

Why: the network learns where one vertebra ends from these rims, and rims brighter than real ones teach it a cue
that real CT does not give. At 1 mm voxels six lumbar phantoms' endplates stand 707 HU and their anterior walls 478
HU above the core, against 404 and 285 HU on verse014 with its manual mask (benchmarks/results/
disc_evidence_2026-12-05, which also says why the generator still draws them so). Arrays are (S, P, L): an image
reoriented to LPS, as ``sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS"))`` gives it.
"""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np

#: the body core: the anterior part of each axial section of the vertebra, near its midline
CORE_AP_FRACTION = 0.4
CORE_HALF_WIDTH_VOXELS = 10
#: how far from the body's top or bottom slice an endplate is looked for (mm)
ENDPLATE_SEARCH_MM = 6.0


def _bodies(labels: np.ndarray, codes: Optional[Iterable[int]]):
    """(mask, its axial rows) of each vertebra of ``codes`` (default every vertebra) spanning 10 rows or more."""
    for code in (list(codes) if codes is not None else [int(c) for c in np.unique(labels) if 0 < c < 100]):
        mask = labels == code
        rows = np.unique(np.nonzero(mask)[0])
        if len(rows) >= 10:
            yield mask, rows


def endplate_rises(ct: np.ndarray, labels: np.ndarray, slice_mm: float,
                   codes: Optional[Iterable[int]] = None) -> np.ndarray:
    """Per endplate (two per vertebra of ``codes``, default every vertebra): the brightest body-core median within
    ``ENDPLATE_SEARCH_MM`` of the body's end minus the median of its middle third (HU)."""
    rises = []
    for mask, rows in _bodies(labels, codes):
        profile = []
        for z in rows:
            section = mask[z]
            y, x = np.nonzero(section)
            y0, y1 = np.percentile(y, 1), np.percentile(y, 99)
            yy, xx = np.ogrid[:section.shape[0], :section.shape[1]]
            core = (section & (yy < y0 + CORE_AP_FRACTION * (y1 - y0))
                    & (np.abs(xx - np.median(x)) < CORE_HALF_WIDTH_VOXELS))
            profile.append(np.median(ct[z][core]) if core.sum() > 5 else np.nan)
        profile = np.array(profile)
        n = len(profile)
        middle = np.nanmedian(profile[n // 3: 2 * n // 3])
        reach = max(2, int(ENDPLATE_SEARCH_MM / slice_mm))
        for end in (profile[:reach], profile[::-1][:reach]):
            if np.isfinite(end).any():
                rises.append(np.nanmax(end) - middle)
    return np.array(rises)


def wall_rises(ct: np.ndarray, labels: np.ndarray, codes: Optional[Iterable[int]] = None) -> np.ndarray:
    """Per axial section of the middle third of each body: along the front-back line through its midline (7 voxels
    wide), the brightest value within 5 voxels of the anterior edge minus the median of the next 14 (HU)."""
    rises = []
    for mask, rows in _bodies(labels, codes):
        for z in rows[len(rows) // 3: 2 * len(rows) // 3]:
            x_mid = int(np.median(np.nonzero(mask[z])[1]))
            band = slice(max(0, x_mid - 3), x_mid + 4)
            ys = np.nonzero(mask[z][:, band].any(axis=1))[0]
            if len(ys) < 10:
                continue
            line = ct[z][:, band].mean(axis=1)
            front = ys.min()
            rises.append(line[max(0, front - 1): front + 5].max() - np.median(line[front + 6: front + 20]))
    return np.array(rises)
