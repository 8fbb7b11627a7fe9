"""The chest series before and after the cut at the CT's discs: two sagittal views through the bodies, each label in
its colour with its name, and the profile along the curve through the bodies with the discs the reading finds.

    python chest_discs.py BEFORE.nii.gz AFTER.nii.gz OUT.png

The profile is computed here on the input grid, with the label map AFTER standing in for the model grid's
instances (``ct_discs`` on a grid map that is the identity): the same functions predict runs on the model grid.
The dashed lines are the 12 discs counted by eye in the rib-bearing record (../rib_bearing_2026-12-05,
``chest_count.png``: mm above the lowest slice).
"""
import os
import sys

import matplotlib
import numpy as np
import SimpleITK as sitk

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vertebraformer_nn import labels as L  # noqa: E402
from vertebraformer_nn.inference import ct_discs as C  # noqa: E402
from vertebraformer_nn.inference.grid_map import GridMap  # noqa: E402

BY_EYE_MM = [253, 237, 219, 199, 176, 154, 132, 108, 84, 60, 37, 11]


def read_chest():
    root = os.environ.get("VERTEBRAFORMER_REAL_DATA", "../shared/data/real")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(os.path.join(root, "itkelastix_chest_dicom")))
    return reader.Execute()


def sagittal(ax, ct, labels, title):
    x = int(np.median(np.nonzero(labels)[2]))
    ys = np.nonzero(labels[:, :, x])[1]
    y0, y1 = ys.min() - 10, ys.max() + 5
    grey = np.clip((ct[:, y0:y1, x] + 200) / 1400, 0, 1)
    rgb = np.stack([grey] * 3, axis=-1)
    lab = labels[:, y0:y1, x]
    cmap = plt.get_cmap("tab20")
    extent = (0, (y1 - y0) * 0.977, -1, ct.shape[0] * 2 - 1)  # mm: 0.98 mm columns, 2 mm slices
    for k, code in enumerate(np.unique(lab[lab > 0])):
        inside = lab == code
        rgb[inside] = 0.55 * rgb[inside] + 0.45 * np.array(cmap(k % 20)[:3])
        zz, yy = np.nonzero(inside)
        ax.text(yy.min() * 0.977 - 9, np.median(zz) * 2, L.name(int(code)), color="w", fontsize=9)
    ax.imshow(rgb, origin="lower", extent=extent)
    for mm in BY_EYE_MM:
        ax.axhline(mm, color="y", lw=0.6, ls="--")
    ax.set_title(title)
    ax.set_ylabel("mm above the lowest slice")


def profile_panel(ax, image, ct, labels):
    shape = ct.shape
    grid = GridMap(shape, shape, (0, 1, 2), tuple(np.arange(n, dtype=np.float64) for n in shape))
    spacing = image.GetSpacing()[::-1]
    seen = C.InputCT.from_grid(ct, spacing, grid, spacing, (1, 1))  # LPS: axis 1 grows towards the back
    curve = C.body_curve(labels.astype(np.int32), spacing, 0, seen.front)
    values = C.profile(seen, curve)
    score = C.endplate_score(values)
    pitch = C.pitch_mm(score)
    discs = C.find_discs(score, pitch, 20.0)
    along = np.arange(len(values)) * C.STEP_MM
    ax.plot(along, values, lw=0.8, label="mean HU across the curve (7 mm disc)")
    ax.plot(along, score + 50, lw=0.8, label="endplate score + 50")
    for d in discs:
        ax.axvline(d * C.STEP_MM, color="r", lw=0.8)
    ax.set_xlabel(f"mm along the curve through the bodies (pitch {pitch:g} mm; red: the {len(discs)} discs found)")
    ax.legend(loc="upper left", fontsize=8)


def main(before_path, after_path, out):
    image = read_chest()
    ct = sitk.GetArrayFromImage(image).astype(np.float32)
    before = sitk.GetArrayFromImage(sitk.ReadImage(before_path))
    after = sitk.GetArrayFromImage(sitk.ReadImage(after_path))
    fig = plt.figure(figsize=(16, 16))
    sagittal(fig.add_axes([0.03, 0.3, 0.45, 0.68]), ct, before, "off")
    sagittal(fig.add_axes([0.52, 0.3, 0.45, 0.68]), ct, after, "ct_disc_min_score 20, ct_disc_rib_bearing_strength 8")
    profile_panel(fig.add_axes([0.05, 0.04, 0.92, 0.2]), image, ct, after)
    fig.savefig(out, dpi=60)


if __name__ == "__main__":
    main(*sys.argv[1:4])
