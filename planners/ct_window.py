"""The planner's CT intensity window (DESIGN.md section 4), written into the plans' nnU-Net-standard
``foreground_intensity_properties_per_channel`` (nnU-Net's ``CTNormalization`` reads it, so inference needs nothing).

nnU-Net takes the window from labelled voxels, i.e. bone only (a lower clip of ~+200 HU in nnU-Net's reference toy
data, ~0 HU on MultiSpine-Sim), which flattens soft tissue and, at the higher clips, lytic lesions. Ours are the
statistics of HU in and around the spine: the vertebra mask dilated by :data:`WINDOW_MARGIN_MM` mm, united with
the lesion mask; the clip range is widened to the lesion voxels' own percentiles so that neither lytic (~0-100 HU)
nor blastic (~800-1500 HU) lesions are flattened.

Voxels of nnU-Net's ignore label (vertebrae cut by the field of view, and the unlabelled border slabs of VerSe-style
sources: dataset_conversion/common.py) do not count as vertebra: what they hold is by definition not known, and
the 10 mm margin around the labelled vertebrae samples the same tissues anyway. The window therefore is the one
the dataset gave before the ignore label existed.
"""
from __future__ import annotations

import math
import os
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from .data_facts import lesion_file_for

#: Margin around the vertebra mask (mm) whose HU, with the lesions, define the window.
WINDOW_MARGIN_MM = 10.0
WINDOW_SAMPLES_PER_CASE = 10000
WINDOW_MAX_CASES = 64


def window_statistics(samples: np.ndarray, lesion_samples: Optional[np.ndarray] = None) -> Dict[str, float]:
    """nnU-Net's intensity properties (the keys CTNormalization reads) of a 1-D sample of HU values.

    With ``lesion_samples`` the clip range is widened to hold their own 0.5 / 99.5 percentiles too: lesion voxels
    are too few to move the percentiles of the whole region, and blastic lesions (~800-1500 HU) would otherwise
    be flattened into the cortex at the upper clip (lytic ones, ~0-100 HU, are inside anyway)."""
    samples = np.asarray(samples, dtype=np.float64)
    p005, median, p995 = np.percentile(samples, (0.5, 50.0, 99.5))
    if lesion_samples is not None and np.size(lesion_samples) > 0:
        l005, l995 = np.percentile(np.asarray(lesion_samples, dtype=np.float64), (0.5, 99.5))
        p005, p995 = min(p005, l005), max(p995, l995)
    return {
        "mean": float(samples.mean()),
        "median": float(median),
        "std": float(samples.std()),
        "min": float(samples.min()),
        "max": float(samples.max()),
        "percentile_99_5": float(p995),
        "percentile_00_5": float(p005),
    }


def spine_region_samples(image: np.ndarray, seg: np.ndarray, lesion: Optional[np.ndarray],
                         spacing: Sequence[float], margin_mm: float = WINDOW_MARGIN_MM,
                         num_samples: int = WINDOW_SAMPLES_PER_CASE, seed: int = 1234,
                         ignore_label: Optional[int] = None) -> np.ndarray:
    """HU values sampled (with replacement, like nnU-Net's fingerprint) in the vertebra mask (labels > 0 other than
    ``ignore_label``) dilated by ``margin_mm`` united with the lesion mask. 3-D arrays of one case on one grid."""
    from scipy.ndimage import distance_transform_edt

    fg = seg > 0
    if ignore_label is not None:
        fg &= seg != ignore_label
    if lesion is not None:
        fg = fg | (lesion > 0)
    if not fg.any():
        return np.zeros(0, dtype=np.float32)
    # work in the bounding box of the mask plus the margin: EDT on the whole scan is needlessly slow
    pad = [int(math.ceil(margin_mm / float(s))) + 1 for s in spacing]
    idx = np.argwhere(fg)
    lo = np.maximum(idx.min(0) - pad, 0)
    hi = np.minimum(idx.max(0) + pad + 1, fg.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    dist = distance_transform_edt(~fg[box], sampling=[float(s) for s in spacing])
    values = image[box][dist <= margin_mm]
    rs = np.random.RandomState(seed)
    return rs.choice(values, num_samples, replace=True).astype(np.float32)


def ct_window(dataset: Mapping[str, Mapping], reader_writer, ignore_label: Optional[int] = None
              ) -> Tuple[Dict[str, float], Dict]:
    """(intensity properties, description) of the window over the training cases ``dataset`` ({case: {"images",
    "label"}}, as nnU-Net's planner holds it; at most :data:`WINDOW_MAX_CASES` of them, a seeded choice), read
    with ``reader_writer`` (an nnU-Net reader/writer instance)."""
    cases = sorted(dataset)
    if len(cases) > WINDOW_MAX_CASES:
        rs = np.random.RandomState(0)
        cases = sorted(rs.choice(cases, WINDOW_MAX_CASES, replace=False).tolist())
    samples, lesion_samples = [], []
    for case in cases:
        entry = dataset[case]
        image, props = reader_writer.read_images(entry["images"])
        seg, _ = reader_writer.read_seg(entry["label"])
        lesion_file = lesion_file_for(entry["label"])
        lesion = reader_writer.read_seg(lesion_file)[0][0] if lesion_file and os.path.isfile(lesion_file) else None
        samples.append(spine_region_samples(image[0], seg[0], lesion, props["spacing"], ignore_label=ignore_label))
        if lesion is not None and (lesion > 0).any():
            rs = np.random.RandomState(len(lesion_samples))
            lesion_samples.append(rs.choice(image[0][lesion > 0], WINDOW_SAMPLES_PER_CASE, replace=True))
    samples = np.concatenate(samples) if samples else np.zeros(0)
    if samples.size == 0:
        raise RuntimeError("no labelled voxels in the training cases: cannot derive the CT window")
    lesion_samples = np.concatenate(lesion_samples) if lesion_samples else None
    window = window_statistics(samples, lesion_samples)
    info = {
        "rule": f"HU of the vertebra mask (ignore label excluded) dilated by {WINDOW_MARGIN_MM:g} mm, united with the "
                f"lesion masks ({WINDOW_SAMPLES_PER_CASE} samples per case, {len(cases)} cases); clip to percentiles "
                "0.5 / 99.5, widened to the lesion voxels' own 0.5 / 99.5 percentiles; z-score with the region's "
                "mean / std (nnU-Net's CTNormalization)",
        "lesion_samples": int(0 if lesion_samples is None else lesion_samples.size),
        "clip_hu": [window["percentile_00_5"], window["percentile_99_5"]],
    }
    return window, info
