"""Real CT, CT judging off and on (run.sh's real_off / real_on): a slice through each case's first candidate of
the arm "off", the candidates' extents outlined (red: written as a lesion, yellow: ranked by the head, factor >= 0.5,
cyan: factor below 0.5). Usage: pictures.py OUT_DIR INPUT_DIR PNG (INPUT_DIR: the CTs real_ct.py linked, beside
$REAL)."""
import json
import sys
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

out, inputs, png = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
cases = ("example_ct", "tptbox", "verse014")
fig, axes = plt.subplots(len(cases), 2, figsize=(9, 4.2 * len(cases)))
for row, case in zip(axes, cases):
    ct = sitk.ReadImage(str(inputs / f"{case}.nii.gz"))
    hu = sitk.GetArrayFromImage(ct)
    first = json.loads((out / "real_off" / "predictions" / f"{case}.json").read_text())["lesion_candidates"][0]
    k, j, i = np.round(ct.TransformPhysicalPointToContinuousIndex(first["centre_mm"])[::-1]).astype(int)
    for ax, arm in zip(row, ("off", "on")):
        pred = out / f"real_{arm}" / "predictions"
        report = json.loads((pred / f"{case}.json").read_text())
        cand = sitk.GetArrayFromImage(sitk.ReadImage(str(pred / f"{case}_lesion_candidates.nii.gz")))
        # the coronal plane (array axes z, x at row j) for an axial stack; its own plane otherwise
        img, lab = hu[:, j, :], cand[:, j, :]
        sz, sx = ct.GetSpacing()[2], ct.GetSpacing()[0]
        ax.imshow(img, cmap="gray", vmin=-200, vmax=1500, origin="lower", aspect=sz / sx)
        for c in report["lesion_candidates"]:
            colour = "red" if c["lesion"] else "yellow" if c["ct_factor"] >= 0.5 else "cyan"
            if (lab == c["id"]).any():
                ax.contour(lab == c["id"], levels=[0.5], colors=colour, linewidths=1.0)
        top = report["lesion_candidates"][:3]
        ax.set_title(f"{case}, CT judging {arm}\n" + "\n".join(
            f"#{c['id']} {c['level'] or '-'} {c['volume_ml']:.2f} ml peak {c['peak_probability']:.2f} "
            f"score {c['score']:.2f}" for c in top), fontsize=7)
        ax.axis("off")
fig.tight_layout()
fig.savefig(png, dpi=90)
