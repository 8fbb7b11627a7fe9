"""Do the CT's lumbar discs show where `ct_discs` does not read them? No model: the reference masks stand in for
the network's instances (ct_discs on a grid map that is the identity, as ../ct_discs_2026-12-06/chest_discs.py).

    python dark_discs.py SIM REFERENCE OUT.txt OUT.png

SIM: a phantom set with its ``extra_lowdose`` style; REFERENCE: its complete truth (``truth_reference``: vertebra
masks, 255 where a vertebra is cut by the field of view, and lesion masks); the three labelled real CT come from
$VERTEBRAFORMER_REAL_DATA. Along the curve through the reference's bodies (``ct_discs.body_curve``) the CT's
profile (``ct_discs.profile``) is read two ways:

* ``endplate``: today's reading, the endplates' narrow brightness (``endplate_score``), its pitch, its peaks of at
  least 20 HU (the built-in model's ``ct_disc_min_score``);
* ``dark``: at every sample, how far the profile's darkest value within 1.5 mm lies below the darker of its two
  flanks 1.5-8 mm away (``disc_contrast``: a disc is darker than the endplates on either side), its pitch, its
  peaks of at least ``DARK_MIN_HU``.

A disc found is right within ``TOLERANCE_MM`` of a reference disc (the middle between two consecutive labels along
the curve), counted only inside the labelled extent. For each wrong one the report says in which vertebra it lies
and whether a lesion of the truth lies within ``LESION_NEAR_MM`` of the curve there.
"""
import os
import sys
from pathlib import Path

import matplotlib
import numpy as np
import SimpleITK as sitk
from scipy.spatial import cKDTree

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vertebraformer_nn import labels as L  # noqa: E402
from vertebraformer_nn.evaluation.references import IGNORE_VALUE  # noqa: E402
from vertebraformer_nn.geometry import front_axis_after_transpose, superior_axis  # noqa: E402
from vertebraformer_nn.image_io import read_image, read_label  # noqa: E402
from vertebraformer_nn.inference import ct_discs as C  # noqa: E402
from vertebraformer_nn.inference.grid_map import GridMap  # noqa: E402

DARK_MIN_HU = 30.0
ENDPLATE_MIN_HU = 20.0
TOLERANCE_MM = 5.0
LESION_NEAR_MM = 8.0
IGNORE = IGNORE_VALUE  # truth_reference's cut vertebrae
FIRST_LUMBAR_DISC = L.code("T12")  # T12/L1 and every disc below it are lumbar here
REAL = {  # name: (CT, vertebra mask) below $VERTEBRAFORMER_REAL_DATA
    "verse014": ("verse_sub-verse014/sub-verse014_ct.nii.gz", "verse_sub-verse014/sub-verse014_seg-vert_msk.nii.gz"),
    "tptbox": ("tptbox_sample_ct/sub-ct_label-22_ct.nii.gz", "tptbox_sample_ct/sub-ct_seg-vert_label-22_msk.nii.gz"),
    "example_ct": ("totalsegmentator/example_ct.nii.gz",
                   "derived/example_ct_seg-vert_verse-labels_from-totalseg-prediction.nii.gz"),
}


def axes(image: sitk.Image):
    """(spacing, head-foot axis, (front axis, +1 when its index grows towards the back)) of the image's array."""
    spacing = tuple(float(s) for s in image.GetSpacing()[::-1])
    return spacing, superior_axis(image.GetDirection())[0], front_axis_after_transpose(image.GetDirection(), (0, 1, 2))


def read_case(ct_path: Path, mask_path: Path, lesion_path=None):
    image = read_image(ct_path)
    ct = sitk.GetArrayFromImage(image).astype(np.float32)
    mask = sitk.GetArrayFromImage(read_label(mask_path)).astype(np.int32)
    lesion = (sitk.GetArrayFromImage(read_label(lesion_path)) > 0) if lesion_path else None
    spacing, si, front = axes(image)
    grid = GridMap(ct.shape, ct.shape, (0, 1, 2), tuple(np.arange(n, dtype=np.float64) for n in ct.shape))
    seen = C.InputCT.from_grid(ct, spacing, grid, spacing, front)
    curve = C.body_curve(np.where(mask == IGNORE, 0, mask), spacing, si, front)
    values = C.profile(seen, curve)
    index = np.clip(np.round(curve / np.asarray(spacing)).astype(int), 0, np.array(mask.shape) - 1)
    along = mask[tuple(index.T)]
    near_lesion = np.zeros(len(curve), bool)
    if lesion is not None and lesion.any():
        near_lesion = cKDTree(np.argwhere(lesion) * np.asarray(spacing)).query(curve)[0] <= LESION_NEAR_MM
    return dict(values=values, along=along, near_lesion=near_lesion, slice_mm=spacing[si])


def reference_discs(along: np.ndarray):
    """(sample index, the lower code of the two) of each disc: the middle between two consecutive labels (codes one
    apart) along the curve; a cut (ignored) vertebra breaks the sequence."""
    out, last, last_at = [], None, None
    for k, code in enumerate(along):
        if code == IGNORE:
            last = None
        elif code > 0:
            if last is not None and code != last and abs(int(code) - int(last)) == 1:
                out.append(((last_at + k) // 2, min(int(code), int(last))))
            last, last_at = code, k
    return out


def read(values: np.ndarray, how: str):
    if how == "endplate":
        score, floor = C.endplate_score(values), ENDPLATE_MIN_HU
    else:
        score, floor = np.clip(np.nan_to_num(C.disc_contrast(values, np.arange(len(values))), nan=0.0), 0, None), \
            DARK_MIN_HU
    pitch = C.pitch_mm(score)
    return score, pitch, (C.find_discs(score, pitch, floor) if pitch else np.zeros(0, int))


def judge(case: dict, discs: np.ndarray, score: np.ndarray):
    """(right lumbar, right thoracic/cervical, wrong ones as (mm, vertebra, HU, near a lesion)) inside the extent."""
    truth = reference_discs(case["along"])
    labelled = np.flatnonzero((case["along"] > 0) & (case["along"] != IGNORE))
    tol = int(round(TOLERANCE_MM / C.STEP_MM))
    inside = [int(d) for d in discs if labelled.min() - tol <= d <= labelled.max() + tol]
    hit = {t for t, _ in truth if any(abs(t - d) <= tol for d in inside)}
    wrong = [(d * C.STEP_MM, L.name(int(case["along"][d])) if 0 < case["along"][d] != IGNORE else "-",
              float(score[d]), bool(case["near_lesion"][d])) for d in inside if all(abs(t - d) > tol for t, _ in truth)]
    lumbar = [t for t, code in truth if code >= FIRST_LUMBAR_DISC]
    upper = [t for t, code in truth if code < FIRST_LUMBAR_DISC]
    return (len(hit & set(lumbar)), len(lumbar)), (len(hit & set(upper)), len(upper)), wrong


def cases(sim: Path, reference: Path):
    root = Path(os.environ.get("VERTEBRAFORMER_REAL_DATA", "../shared/data/real"))
    for name, (ct, mask) in REAL.items():
        yield name, read_case(root / ct, root / mask)
    for ct in sorted((sim / "extra_lowdose").glob("lowdose_*.nii.gz")):
        if ct.name.endswith("_lesion.nii.gz"):
            continue
        lesion = reference / ct.name.replace(".nii.gz", "_lesion.nii.gz")
        yield ct.name[:-7], read_case(ct, reference / ct.name, lesion if lesion.is_file() else None)


def main(sim, reference, out_txt, out_png) -> int:
    lines, totals, shown = [], {}, {}
    for name, case in cases(Path(sim), Path(reference)):
        lines.append(f"{name} ({case['slice_mm']:g} mm slices), reference discs at "
                     f"{[round(t * C.STEP_MM) for t, _ in reference_discs(case['along'])]} mm")
        for how in ("endplate", "dark"):
            score, pitch, discs = read(case["values"], how)
            lumbar, upper, wrong = judge(case, discs, score)
            counts = [*lumbar, *upper, len(wrong), sum(w[3] for w in wrong), 1]
            totals[how] = totals.get(how, 0) + np.array(counts)
            if (pitch or 0) > C.MAX_PITCH_MM:  # where a reading of lumbar discs would be used
                totals[f"{how}, at a lumbar pitch"] = totals.get(f"{how}, at a lumbar pitch", 0) + np.array(counts)
            regular = bool(pitch) and C.regular(discs, pitch)
            lines.append(f"  {how:8s} pitch {pitch} mm, {'' if regular else 'not '}evenly spaced; found "
                         f"{[round(d * C.STEP_MM) for d in discs]}; lumbar {lumbar[0]}/{lumbar[1]}, above "
                         f"{upper[0]}/{upper[1]}; wrong: " + (", ".join(
                             f"{mm:g} mm in {v} ({hu:.0f} HU{', lesion' if near else ''})" for mm, v, hu, near in wrong)
                             or "none"))
        # the picture: the two real cases the reading is about, and the first phantom read at a lumbar pitch where a
        # lesion was taken for a disc
        if name in ("verse014", "example_ct") or ("phantom" not in shown and (pitch or 0) > C.MAX_PITCH_MM
                                                   and any(w[3] for w in wrong)):
            shown[name if name in REAL else "phantom"] = (name, case, score, discs)  # the dark reading's
    lines.append("")
    for how, t in totals.items():
        lines.append(f"{how} ({t[6]} cases): lumbar discs found {t[0]} of {t[1]}, thoracic/cervical {t[2]} of {t[3]}, "
                     f"wrong {t[4]} ({t[5]} of them within {LESION_NEAR_MM:g} mm of a lesion)")
    Path(out_txt).write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-len(totals):]))
    figure(list(shown.values()), out_png)
    return 0


def figure(chosen, path):
    fig, axs = plt.subplots(len(chosen), 1, figsize=(11, 2.6 * len(chosen)), squeeze=False)
    for ax, (name, case, score, discs) in zip(axs[:, 0], chosen):
        mm = np.arange(len(case["values"])) * C.STEP_MM
        ax.plot(mm, case["values"], color="0.3", lw=1, label="CT along the bodies (HU)")
        ax.plot(mm, score, color="tab:blue", lw=1, label="dark-disc score (HU)")
        ax.plot(discs * C.STEP_MM, score[discs], "v", color="tab:blue", label="dark discs found")
        for t, _ in reference_discs(case["along"]):
            ax.axvline(t * C.STEP_MM, color="tab:green", ls="--", lw=0.8)
        if case["near_lesion"].any():
            ax.fill_between(mm, 0, 1, where=case["near_lesion"], color="tab:red", alpha=0.15,
                            transform=ax.get_xaxis_transform(), label="lesion of the truth near the curve")
        ax.set_title(f"{name}: dashed = discs of the reference")
        ax.set_xlim(0, mm[-1])
        ax.legend(fontsize=7, loc="upper right")
    axs[-1, 0].set_xlabel("mm along the curve through the bodies")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
