"""The chest series with the disc pitch read as the autocorrelation's highest value (before) and as its first strong
peak (after): two sagittal views through the bodies, and the autocorrelation of the endplate score that the
numbering computed on the model grid, with both readings marked.

    python chest_pitch.py PROBABILITIES_FOLDER BEFORE.nii.gz AFTER.nii.gz OUT.png

PROBABILITIES_FOLDER holds the chest's saved probabilities (``predict --save_probabilities``): they are numbered
again here (``ensemble`` in-process, into a temporary folder) only to catch the score ``ct_discs`` reads. The views
are those of ../ct_discs_2026-12-06/chest_discs.py (the dashed lines: the 12 discs counted by eye).
"""
import os
import shutil
import sys
import tempfile

import matplotlib
import numpy as np
import SimpleITK as sitk

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ct_discs_2026-12-06"))
from chest_discs import read_chest, sagittal  # noqa: E402

from vertebraformer_nn.cli import main as vertebraformer  # noqa: E402
from vertebraformer_nn.inference import ct_discs as C  # noqa: E402
from vertebraformer_nn.inference import numbering  # noqa: E402


def model_grid_score(probabilities_folder):
    """The endplate score along the curve through the bodies, as the numbering of the chest computes it."""
    caught = []
    cut = numbering.cut_at_ct_discs

    def catch(instance_map, spacing, si_axis, ct, *args):
        curve = C.body_curve(instance_map, spacing, si_axis, ct.front)
        caught.append(C.endplate_score(C.profile(ct, curve)))
        return cut(instance_map, spacing, si_axis, ct, *args)

    work = tempfile.mkdtemp()
    try:
        os.symlink(os.path.abspath(os.path.join(probabilities_folder, "chest_vfprobs.npz")),
                   os.path.join(work, "chest_vfprobs.npz"))
        numbering.cut_at_ct_discs = catch
        vertebraformer(["ensemble", "-i", work, "-o", os.path.join(work, "out"), "--no_preview",
                        "--disable_progress_bar"])
    finally:
        numbering.cut_at_ct_discs = cut
        shutil.rmtree(work)
    return caught[0]


def autocorrelation_panel(ax, score):
    lo, hi = (int(round(x / C.STEP_MM)) for x in C.PITCH_RANGE_MM)
    centred = score - score.mean()
    hi = min(hi, len(centred) // 2)
    lags = np.arange(lo, hi + 1)
    corr = np.array([np.dot(centred[:-lag], centred[lag:]) / (len(centred) - lag) for lag in lags])
    ax.plot(lags * C.STEP_MM, corr, lw=1.0)
    highest = lags[int(np.argmax(corr))] * C.STEP_MM
    ax.axvline(highest, color="r", ls="--", label=f"highest value: {highest:g} mm (before)")
    ax.axvline(C.pitch_mm(score), color="g", label=f"first peak of at least {C.HARMONIC_FRACTION:g} x the highest: "
               f"{C.pitch_mm(score):g} mm (after)")
    ax.set_xlabel("lag (mm) along the curve through the bodies (model grid, as predict reads it)")
    ax.set_ylabel("autocorrelation of the endplate score")
    ax.legend(loc="lower right", fontsize=9)


def main(probabilities_folder, before_path, after_path, out):
    score = model_grid_score(probabilities_folder)
    image = read_chest()
    ct = sitk.GetArrayFromImage(image).astype(np.float32)
    before = sitk.GetArrayFromImage(sitk.ReadImage(before_path))
    after = sitk.GetArrayFromImage(sitk.ReadImage(after_path))
    fig = plt.figure(figsize=(16, 16))
    sagittal(fig.add_axes([0.03, 0.3, 0.45, 0.68]), ct, before, "before: pitch read at the range's end, discs unread")
    sagittal(fig.add_axes([0.52, 0.3, 0.45, 0.68]), ct, after, "after: pitch at the first strong peak, discs read")
    autocorrelation_panel(fig.add_axes([0.05, 0.04, 0.92, 0.2]), score)
    fig.savefig(out, dpi=60)


if __name__ == "__main__":
    main(*sys.argv[1:5])
