"""Lesion instances: components, their level, score, volume, order and ids (inference/lesions.py)."""
import numpy as np
import pytest

from vertebraformer_nn.inference.lesions import lesion_instances

SPACING = (1.5, 0.8, 0.9)  # mm per array axis
VOXEL_MM3 = 1.5 * 0.8 * 0.9


def _volume():
    """Vertebrae L1 (20) on rows 0-9 and L2 (21) on rows 10-19 of a 20x30x30 grid, lesions planted by the tests."""
    vertebrae = np.zeros((20, 30, 30), np.uint8)
    vertebrae[0:10, 5:25, 5:25] = 20
    vertebrae[10:20, 5:25, 5:25] = 21
    return vertebrae, np.zeros(vertebrae.shape, np.float32)


def test_instances_counts_levels_scores_volumes_and_ids():
    vertebrae, prob = _volume()
    prob[2:6, 8:12, 8:13] = 0.7  # A: 80 voxels inside L1
    prob[3, 9, 9] = 0.95  # A's hottest voxel: score is the max
    prob[8:14, 15:19, 15:19] = 0.9  # B: rows 8-9 in L1 (32 voxels), rows 10-13 in L2 (64): level L2
    prob[16:19, 26:29, 26:29] = 0.8  # C: 27 voxels outside every vertebra
    prob[0, 0, 0] = 0.99  # D: one voxel, below the minimum volume
    prob[18, 0:5, 0] = 0.5  # not above the threshold
    instance_map, instances = lesion_instances(prob, vertebrae, SPACING, threshold=0.5, min_volume_mm3=20.0)

    assert instance_map.dtype == np.int32 and instance_map.shape == prob.shape
    assert [i["id"] for i in instances] == [1, 2, 3]
    a, b, c = (next(i for i in instances if i["voxels"] == n) for n in (80, 96, 27))
    # Ordered by descending score: A (0.95), B (0.9), C (0.8).
    assert [a["id"], b["id"], c["id"]] == [1, 2, 3]
    assert a["score"] == pytest.approx(0.95) and b["score"] == pytest.approx(0.9)
    assert (a["level_code"], a["level_name"]) == (20, "L1")
    assert (b["level_code"], b["level_name"]) == (21, "L2")
    assert (c["level_code"], c["level_name"]) == (0, None)
    assert a["volume_mm3"] == pytest.approx(80 * VOXEL_MM3, rel=1e-4)
    assert a["centre_index"] == pytest.approx([3.5, 9.5, 10.0])
    assert b["bbox_index"] == [[8, 13], [15, 18], [15, 18]]
    # The map carries exactly these ids, each on its own voxels; the dropped voxel and the 0.5 row are background.
    assert sorted(np.unique(instance_map).tolist()) == [0, 1, 2, 3]
    for inst in instances:
        assert int((instance_map == inst["id"]).sum()) == inst["voxels"]
    assert instance_map[0, 0, 0] == 0 and not instance_map[18, 0:5, 0].any()


def test_diagonal_neighbours_are_one_instance_26_connectivity():
    vertebrae, prob = _volume()
    prob[4:7, 4:7, 4:7] = 0.8
    prob[7:10, 7:10, 7:10] = 0.8  # touches the first cube only at a corner
    _, instances = lesion_instances(prob, vertebrae, SPACING, min_volume_mm3=0.0)
    assert len(instances) == 1 and instances[0]["voxels"] == 54


def test_equal_scores_rank_larger_first_and_minimum_volume_in_mm3():
    vertebrae, prob = _volume()
    prob[1:3, 1:3, 1:3] = 0.8  # 8 voxels = 8.64 mm3
    prob[12:16, 1:4, 1:4] = 0.8  # 36 voxels
    _, instances = lesion_instances(prob, vertebrae, SPACING, min_volume_mm3=0.0)
    assert [i["voxels"] for i in instances] == [36, 8]
    _, kept = lesion_instances(prob, vertebrae, SPACING, min_volume_mm3=9.0)
    assert [i["voxels"] for i in kept] == [36]


def test_no_lesion_gives_an_empty_map():
    vertebrae, prob = _volume()
    instance_map, instances = lesion_instances(prob, vertebrae, SPACING)
    assert instances == [] and not instance_map.any()


def test_bad_inputs_are_named():
    vertebrae, prob = _volume()
    with pytest.raises(ValueError, match="differ in shape"):
        lesion_instances(prob, vertebrae[:5], SPACING)
    with pytest.raises(ValueError, match="spacing"):
        lesion_instances(prob, vertebrae, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="3D"):
        lesion_instances(prob[0], vertebrae[0], SPACING)
