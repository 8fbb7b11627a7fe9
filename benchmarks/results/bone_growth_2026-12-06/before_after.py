"""The picture of this record: verse014 (against its manual mask) and the chest series (no reference), the built-in
model's labels with the bone edge's 2 mm band alone (grow 0) and with bone_edge_grow_mm = 6.
    python before_after.py W OUT.png     (W: run.sh's work folder)"""
import sys

import matplotlib
import numpy as np
import SimpleITK as sitk

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

W, OUT = sys.argv[1], sys.argv[2]
REAL = "../shared/data/real" if len(sys.argv) < 4 else sys.argv[3]


def read(path):
    if path.endswith("dicom"):
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(path))
        return sitk.GetArrayFromImage(reader.Execute())
    return sitk.GetArrayFromImage(sitk.ReadImage(path))


def overlay(ct, pred, ref=None):
    g = np.clip((ct.astype(float) + 200) / 1200, 0, 1)
    rgb = np.stack([g] * 3, -1)
    if ref is None:  # green: labelled
        rgb[pred] = 0.5 * rgb[pred] + [0, 0.5, 0]
        return rgb
    rgb[pred & ref] = 0.5 * rgb[pred & ref] + [0, 0.5, 0]
    rgb[pred & ~ref], rgb[~pred & ref] = [1, 0, 0], [0, 0.4, 1]
    return rgb


fig, axs = plt.subplots(2, 4, figsize=(20, 10))
ct = read(f"{REAL}/verse_sub-verse014/sub-verse014_ct.nii.gz")  # (R, I, P): a slice is head up, front left
ref = read(f"{REAL}/verse_sub-verse014/sub-verse014_seg-vert_msk.nii.gz") > 0
for row, g in enumerate((0, 6)):
    pred = read(f"{W}/rc_{g}/predictions/verse014.nii.gz") > 0
    for k, x in enumerate((20, 26)):
        axs[row, k].imshow(overlay(ct[x], pred[x], ref[x]))
        axs[row, k].set_title(f"verse014, grow {g} mm: sagittal {x}")
chest = read(f"{REAL}/itkelastix_chest_dicom")
for row, g in enumerate((0, 6)):
    pred = read(f"{W}/rc_{g}/predictions/chest.nii.gz") > 0
    for k, z in enumerate((8, 79)):
        ys, xs = np.nonzero(pred[z])
        cy, cx = int(ys.mean()), int(xs.mean())
        crop = (slice(cy - 60, cy + 60), slice(cx - 80, cx + 80))
        axs[row, 2 + k].imshow(overlay(chest[z][crop], pred[z][crop]))
        axs[row, 2 + k].set_title(f"chest, grow {g} mm: axial {z}")
for a in axs.ravel():
    a.axis("off")
plt.tight_layout()
plt.savefig(OUT, dpi=55)
