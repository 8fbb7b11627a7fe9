"""Which body of the chest series bears the first rib: axial slices through the top three bodies, each label in its
colour, with the name the numbering gave it.

    python chest_first_rib.py LABELS.nii.gz OUT.png
"""
import os
import sys

import matplotlib
import numpy as np
import SimpleITK as sitk

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vertebraformer_nn import labels as L  # noqa: E402

HEIGHTS_MM = (272, 264, 256, 252, 248, 244, 236, 228)  # above the lowest slice (2 mm slices)
COLOURS = ([1.0, 0.25, 0.25], [0.25, 1.0, 0.25], [0.3, 0.55, 1.0], [1.0, 1.0, 0.25])


def main(labels_path, out):
    root = os.environ.get("VERTEBRAFORMER_REAL_DATA", "../shared/data/real")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(os.path.join(root, "itkelastix_chest_dicom")))
    ct = sitk.GetArrayFromImage(reader.Execute()).astype(np.float32)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(labels_path))
    top = L.sort_head_to_foot({int(c) for c in np.unique(labels[-30:]) if c})  # the top 60 mm (2 mm slices)
    colour = dict(zip(top[:len(COLOURS)], COLOURS))
    _, ys, xs = np.nonzero(labels)
    yc, xc = int(np.median(ys)), int(np.median(xs))
    window = (slice(yc - 60, yc + 45), slice(xc - 95, xc + 95))
    fig, axes = plt.subplots(2, 4, figsize=(24, 10))
    for ax, mm in zip(axes.ravel(), HEIGHTS_MM):
        z = mm // 2
        grey = np.clip((ct[z][window] + 200) / 1400, 0, 1)
        rgb = np.stack([grey] * 3, axis=-1)
        lab = labels[z][window]
        for code, c in colour.items():
            rgb[lab == code] = 0.6 * rgb[lab == code] + 0.4 * np.array(c)
        ax.imshow(rgb)
        ax.set_title(f"{mm} mm: " + ", ".join(L.name(c) for c in colour if (lab == c).any()), fontsize=13)
        ax.axis("off")
    names = ", ".join(f"{L.name(c)} {n}" for c, n in zip(colour, ("red", "green", "blue", "yellow")))
    fig.suptitle(f"axial slices through the top of the chest series (left = patient's right): {names}", fontsize=14)
    fig.tight_layout()
    fig.savefig(out, dpi=45)


if __name__ == "__main__":
    main(*sys.argv[1:3])
