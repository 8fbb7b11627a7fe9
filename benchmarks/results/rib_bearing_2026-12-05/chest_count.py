"""The pictures the chest series was counted on by eye: the mid-sagittal plane through the vertebral bodies (the
discs between them), the same with the predicted labels, and two parasagittal slabs 45 mm to either side (the ribs
in section, one per level), on one head-foot scale in mm above the lowest slice.

    python chest_count.py LABELS.nii.gz OUT.png     # LABELS: the chest's <case>.nii.gz from vertebraformer predict
"""
import json
import os
import sys
from pathlib import Path

import matplotlib
import numpy as np
import SimpleITK as sitk

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SERIES = Path(os.environ.get("VERTEBRAFORMER_REAL_DATA", "../shared/data/real")) / "itkelastix_chest_dicom"


def main(labels_path: str, out: str) -> None:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(SERIES)))
    image = sitk.DICOMOrient(reader.Execute(), "LPS")  # array z, y, x: z towards the head, y to the back
    ct, sp, origin = sitk.GetArrayFromImage(image), image.GetSpacing(), image.GetOrigin()
    labels = sitk.GetArrayFromImage(sitk.DICOMOrient(sitk.ReadImage(labels_path), "LPS"))
    if labels.shape != ct.shape:
        raise SystemExit(f"{labels_path}: grid {labels.shape} is not the series' {ct.shape}")
    _, yy, xx = np.nonzero(labels)
    xc, y0 = int(np.median(xx)), int(np.percentile(yy, 1)) - 10
    report = json.loads(Path(labels_path.replace(".nii.gz", ".json")).read_text())
    height = ct.shape[0] * sp[2]
    fig, axes = plt.subplots(1, 4, figsize=(20, 12))
    mid = ct[:, y0:y0 + 70, xc - 2:xc + 3].mean(axis=2)
    extent = [y0 * sp[1], (y0 + 70) * sp[1], 0, height]
    for ax, with_labels in zip(axes[:2], (False, True)):
        ax.imshow(np.clip(mid, -100, 900), cmap="gray", origin="lower", extent=extent)
        ax.set_title("mid-sagittal, 5 px" + (" + labels" if with_labels else ": count the discs"))
        if with_labels:
            ax.contour(np.arange(y0, y0 + 70) * sp[1], np.arange(ct.shape[0]) * sp[2], labels[:, y0:y0 + 70, xc],
                       levels=np.arange(0.5, 29), colors="cyan", linewidths=0.8)
            for v in report["vertebrae"]:
                ax.text(extent[0] + 1, v["centroid_mm"][2] - origin[2], v["name"], color="yellow", fontsize=12)
    y_lo, y_hi = int(np.median(yy)) - 40, int(np.median(yy)) + 90
    for ax, offset in zip(axes[2:], (-45, 45)):
        x = xc + int(round(offset / sp[0]))
        slab = ct[:, y_lo:y_hi, x - 3:x + 4].max(axis=2)
        ax.imshow(np.clip(slab, -150, 1000), cmap="gray", origin="lower",
                  extent=[y_lo * sp[1], y_hi * sp[1], 0, height])
        ax.set_title(f"{offset:+d} mm from the midline, 7 px MIP: the ribs")
    for ax in axes:
        ax.set_yticks(np.arange(0, height, 10))
        ax.grid(alpha=0.25)
    plt.tight_layout()
    plt.savefig(out, dpi=70)


if __name__ == "__main__":
    main(*sys.argv[1:3])
