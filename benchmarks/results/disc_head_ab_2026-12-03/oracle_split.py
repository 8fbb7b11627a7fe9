"""How far post-processing alone could take the built-in model on a real case: the numbering on its captured inputs
(``../disc_head_2026-12-03/capture3.py``, CAPDIR) with the fused instances cut along the manual reference (an oracle
no model has) and/or every instance smaller than FRAC x the median instance merged into the neighbour it touches most.

    python oracle_split.py verse014 4,3 0.25    # instances 4 and 3 (ids after repair) cut by the reference, fragments merged
    python oracle_split.py verse014 "" 0.25     # fragments merged only
"""
import os
import pickle
import sys

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from vertebraformer_nn import labels
from vertebraformer_nn.inference import model_grid_hu, numbering
from vertebraformer_nn.inference.postprocessing import DEFAULTS

CAPDIR = os.environ.get("CAPDIR", "/tmp/cap/p")
REAL = "/work/shared/data/real/"
REFERENCES = {"verse014": REAL + "verse_sub-verse014/sub-verse014_seg-vert_msk.nii.gz",
              "tptbox": REAL + "tptbox_sample_ct/sub-ct_seg-vert_label-22_msk.nii.gz"}
MIN_PART_MM3 = 15000  # a reference vertebra's share of a fused instance smaller than this stays where it is


def merge_fragments(instance_map, fraction):
    """Instances under ``fraction`` x the median volume join the touching instance they share most faces with
    (dropped when they touch none), smallest first."""
    out = instance_map.copy()
    while True:
        ids = np.unique(out)
        ids = ids[ids > 0]
        if len(ids) < 2:
            return out
        volumes = np.array([(out == i).sum() for i in ids])
        small = [(v, i) for v, i in zip(volumes, ids) if v < fraction * np.median(volumes)]
        if not small:
            return out
        _, i = min(small)
        mine = out == i
        ring = ndimage.binary_dilation(mine, np.ones((3, 3, 3), bool)) & ~mine
        touching = out[ring]
        touching = touching[touching > 0]
        out[mine] = np.bincount(touching).argmax() if len(touching) else 0


def main(case, cut_ids, fraction):
    captured = pickle.load(open(f"{CAPDIR}/{case}.pkl", "rb"))
    grid = pickle.load(open(f"{CAPDIR}/{case}_grid.pkl", "rb"))
    reference = model_grid_hu.from_input(
        sitk.GetArrayFromImage(sitk.ReadImage(REFERENCES[case])).astype(np.int16), grid)
    repair = numbering.repair_instances

    def repaired(instance_map, spacing, axis, params):
        instance_map, notes = repair(instance_map, spacing, axis, params)
        instance_map = instance_map.copy()
        next_id = int(instance_map.max()) + 1
        if cut_ids:
            _, nearest = ndimage.distance_transform_edt(reference == 0, sampling=spacing, return_indices=True)
            owner = reference[tuple(nearest)]
            for i in cut_ids:
                mine = instance_map == i
                for code in np.unique(owner[mine])[1:]:  # the first code keeps the instance's id
                    part = mine & (owner == code)
                    if part.sum() * np.prod(spacing) > MIN_PART_MM3:
                        instance_map[part] = next_id
                        next_id += 1
        if fraction > 0:
            instance_map = merge_fragments(instance_map, fraction)
        return instance_map, notes

    numbering.repair_instances = repaired
    result = numbering.number_vertebrae(captured["probs"], captured["spacing"], captured["axis"], captured["sign"],
                                        params=captured["params"] or DEFAULTS, hu=captured["hu"])
    predicted = labels.training_to_verse(result.labels)
    print("instances:", [(i["name"], round(i["volume_mm3"] / 1000)) for i in result.instances])
    for code in np.unique(reference)[1:]:
        counts = np.bincount(predicted[reference == code].astype(int), minlength=30)
        counts[0] = 0
        print(f"  {labels.name(int(code))} -> {labels.name(int(counts.argmax())) if counts.any() else '-'}")


if __name__ == "__main__":
    main(sys.argv[1], [int(x) for x in sys.argv[2].split(",") if x], float(sys.argv[3]))
