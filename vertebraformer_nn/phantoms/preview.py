"""Sagittal and coronal pictures of a phantom case: the CT in a bone/soft-tissue window, the vertebra labels
overlaid and named, lesions outlined. The planes are *curved* along the spine (each axial slice sampled where the
spine is on that slice), so a scoliotic spine still shows every vertebra; titles say so."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from .. import labels

WINDOW = (250.0, 1500.0)  # level, width: fat, muscle, trabecular bone and cortex all distinguishable


def _lps(image: sitk.Image) -> np.ndarray:
    """Array (S, P, L) with index 0 at the feet, posterior and left increasing."""
    return sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS"))


def _track(mask: np.ndarray, axis: int) -> np.ndarray:
    """Per axial slice, the mean index of the mask along ``axis`` (1 = P, 2 = L), filled between slices."""
    n = mask.shape[0]
    idx = np.arange(mask.shape[axis], dtype=float)
    counts = mask.sum(axis=(1, 2)).astype(float)
    prof = mask.sum(axis=3 - axis)  # (S, along axis)
    mean = np.where(counts > 0, (prof * idx[None, :]).sum(axis=1) / np.maximum(counts, 1), np.nan)
    ok = ~np.isnan(mean)
    if not ok.any():
        return np.full(n, mask.shape[axis] // 2, dtype=float)
    track = np.interp(np.arange(n), np.flatnonzero(ok), mean[ok])
    # Smooth a little: the processes of one vertebra pull the mean around.
    k = np.ones(5) / 5.0
    return np.convolve(np.pad(track, 2, mode="edge"), k, mode="valid")


def _label_colours():
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    lut = np.zeros((256, 4))
    for i, code in enumerate(labels.ANATOMICAL_ORDER_CODES):
        lut[code] = cmap((i * 7) % 20)
        lut[code, 3] = 0.38
    return lut


def save_preview(ct: sitk.Image, vertebrae: sitk.Image, path, lesions: Optional[sitk.Image] = None,
                 title: str = "", centroids: Optional[Mapping[int, Sequence[float]]] = None) -> Path:
    """Write a PNG with three panels: curved sagittal CT, the same with labels, curved coronal with labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    a = _lps(ct).astype(np.float32)
    v = _lps(vertebrae).astype(np.uint8)
    les = _lps(lesions) if lesions is not None else np.zeros_like(v)
    sp = sitk.DICOMOrient(ct, "LPS").GetSpacing()  # (L, P, S)
    body = np.isin(v, list(labels.VERTEBRA_CODES))
    x_track, y_track = _track(body, 2), _track(body, 1) - 8.0 / sp[1]
    if centroids:
        # Through the vertebral-body centroids: the label-based track wanders back into the processes.
        ref = sitk.DICOMOrient(vertebrae, "LPS")
        ijk = np.array([ref.TransformPhysicalPointToContinuousIndex([float(c) for c in p]) for p in centroids.values()])
        order = np.argsort(ijk[:, 2])
        rows_ = np.arange(a.shape[0])
        x_track = np.interp(rows_, ijk[order, 2], ijk[order, 0])
        y_track = np.interp(rows_, ijk[order, 2], ijk[order, 1])
    x_track = np.rint(x_track).astype(int).clip(0, a.shape[2] - 1)
    y_track = np.rint(y_track).astype(int).clip(0, a.shape[1] - 1)
    rows = np.arange(a.shape[0])
    sag = a[rows, :, x_track]  # (S, P)
    sag_v = v[rows, :, x_track]
    sag_l = les[rows, :, x_track]
    cor = a[rows, y_track, :]  # (S, L)
    cor_v = v[rows, y_track, :]
    cor_l = les[rows, y_track, :]

    lo, hi = WINDOW[0] - WINDOW[1] / 2, WINDOW[0] + WINDOW[1] / 2
    lut = _label_colours()
    h_mm = a.shape[0] * sp[2]
    fig_h = 7.5
    widths = [a.shape[1] * sp[1], a.shape[1] * sp[1], a.shape[2] * sp[0]]
    fig, axes = plt.subplots(1, 3, figsize=(fig_h * sum(widths) / h_mm + 0.6, fig_h + 0.6),
                             gridspec_kw={"width_ratios": widths})
    ext_sag = (0, a.shape[1] * sp[1], 0, h_mm)
    ext_cor = (a.shape[2] * sp[0], 0, 0, h_mm)  # patient's right on the viewer's left (radiological convention)
    for ax, img, lab, le, ext, name in ((axes[0], sag, None, None, ext_sag, "curved sagittal"),
                                        (axes[1], sag, sag_v, sag_l, ext_sag, "curved sagittal + labels"),
                                        (axes[2], cor, cor_v, cor_l, ext_cor, "curved coronal + labels")):
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, origin="lower", extent=ext, interpolation="bilinear")
        if lab is not None:
            ax.imshow(lut[lab], origin="lower", extent=ext, interpolation="nearest")
            if le.any():
                ax.contour(le > 0, levels=[0.5], colors="red", linewidths=1.0, origin="lower", extent=ext)
            for code in np.unique(lab):
                if code == 0:
                    continue
                rr, cc = np.nonzero(lab == code)
                px = ext[0] + (cc.mean() + 0.5) * (ext[1] - ext[0]) / lab.shape[1]
                py = (rr.mean() + 0.5) * sp[2]
                ax.text(px, py, labels.name(int(code)), color="yellow", fontsize=6, ha="center", va="center")
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
