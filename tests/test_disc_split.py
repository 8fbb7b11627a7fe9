"""Instances cut at the discs the disc head sees (``inference.disc_split``): pure, no model."""
from __future__ import annotations

import numpy as np

from vertebraformer_nn.inference.disc_split import split_at_discs
from vertebraformer_nn.inference.grid_probabilities import GridProbabilities
from vertebraformer_nn.inference.numbering import ordered_instances

SP = (3.5, 3.5, 3.5)


def _column(bodies=3, height=9, disc=2):
    """``bodies`` boxes along axis 0 with ``disc`` voxels between them, all one instance (a bridged disc with one
    argmax level), and the disc head's probability: 0.9 on the discs, 0 elsewhere."""
    pitch = height + disc
    shape = (bodies * pitch + 2, 12, 12)
    instance = np.zeros(shape, np.int32)
    instance[1:bodies * pitch + 1 - disc, 3:9, 3:9] = 1
    field = np.zeros(shape, np.float32)
    for b in range(1, bodies):
        field[1 + b * pitch - disc:1 + b * pitch] = 0.9
    return instance, field


def _rows(instance, field):
    index = np.flatnonzero(instance > 0)
    return index, field.ravel()[index].astype(np.float16)


def test_three_fused_bodies_become_three_vertebrae_and_keep_every_voxel():
    instance, field = _column()
    out, notes = split_at_discs(instance, *_rows(instance, field), SP, 0.5, 0.2)
    assert sorted(np.unique(out)) == [0, 1, 2, 3]
    assert np.array_equal(out > 0, instance > 0)  # the disc voxels join the nearest vertebra
    along = [set(np.unique(out[r][out[r] > 0])) for r in range(out.shape[0])]
    assert len({frozenset(a) for a in along if a}) == 3 and all(len(a) <= 1 for a in along)
    assert notes == ["cut 1 instance(s) at discs the disc head sees, into 3 vertebrae"]


def test_a_small_piece_cut_off_stays_with_its_vertebra():
    """A process cut off at its facet joint (far below disc_split_min_part) is not a vertebra."""
    instance, field = _column(bodies=1)
    instance[2:5, 9:11, 5:7] = 1  # a process
    field[2:5, 9, 5:7] = 0.9  # the head fires across its root
    out, notes = split_at_discs(instance, *_rows(instance, field), SP, 0.5, 0.2)
    assert np.array_equal(out, instance) and notes == []


def test_nothing_is_cut_without_the_head_or_with_the_cut_switched_off():
    instance, field = _column()
    index, disc = _rows(instance, field)
    for args in ((index, None, SP, 0.5, 0.2), (index, disc, SP, 0.0, 0.2), (index, disc, SP, 0.95, 0.2)):
        out, notes = split_at_discs(instance, *args)
        assert np.array_equal(out, instance) and notes == []


def test_numbering_counts_the_vertebrae_the_disc_head_separates():
    """Through ``ordered_instances``: the same one-level column is one instance without the head's probabilities
    and three with them."""
    instance, field = _column()
    seg = np.zeros((27, *instance.shape), np.float32)
    seg[0] = 1.0 - (instance > 0)
    seg[20] = instance > 0  # every voxel one level (L1): nothing in the labels separates the bodies
    probs = GridProbabilities.from_dense({"seg": seg})
    assert probs.boundary is None
    one = ordered_instances(probs, SP, 0, 1)
    with_head = GridProbabilities.from_dense({"seg": seg, "boundary": field[None]})
    assert with_head.heads == ("seg", "boundary") and len(with_head.boundary) == len(with_head.index)
    three = ordered_instances(with_head, SP, 0, 1)
    assert len(three.ids) == 3 > len(one.ids)
    assert any("disc head" in n for n in three.notes)
