"""Instances cut at the discs the disc head sees (``inference.disc_split``): pure, no model."""
from __future__ import annotations

import numpy as np

from vertebraformer_nn.inference.disc_split import split_at_discs
from vertebraformer_nn.inference.grid_probabilities import GridProbabilities
from dataclasses import replace

from vertebraformer_nn import labels as L
from vertebraformer_nn.inference.numbering import ordered_instances
from vertebraformer_nn.inference.postprocessing import DEFAULTS
from vertebraformer_nn.inference.postprocessing_search import _CaseScorer
from vertebraformer_nn.inference.validation_cases import ValidationCase

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
    # the column is 108 mm tall without a neck: the even cut (instance_repair) would cut it without the head too
    params = replace(DEFAULTS, split_even_pitch_mm=0.0)
    one = ordered_instances(probs, SP, 0, 1, params=params)
    with_head = GridProbabilities.from_dense({"seg": seg, "boundary": field[None]})
    assert with_head.heads == ("seg", "boundary") and len(with_head.boundary) == len(with_head.index)
    three = ordered_instances(with_head, SP, 0, 1, params=params)
    assert len(three.ids) == 3 > len(one.ids)
    assert any("disc head" in n for n in three.notes)


def test_determine_postprocessing_scores_the_cut_with_the_disc_head():
    """The search's per-case scorer reads the disc head from a case's saved probabilities: T12, L1 and L2 fused into
    one argmax level are three hits with the cut and at most one without it."""
    instance, field = _column()
    seg = np.zeros((27, *instance.shape), np.float32)
    seg[0] = 1.0 - (instance > 0)
    seg[L.TRAINING_LABEL_OF_CODE[L.VERSE_CODE["L1"]]] = instance > 0
    ident = np.full((26, *instance.shape), 0.01, np.float32)
    reference = np.zeros(instance.shape, np.uint8)
    for b, name in enumerate(("T12", "L1", "L2")):  # index 0 is the head end (superior sign -1)
        rows = slice(1 + 11 * b, 10 + 11 * b)
        reference[rows][instance[rows] > 0] = L.VERSE_CODE[name]
        ident[L.ANATOMICAL_ORDER.index(name), rows] = 0.75
    ident /= ident.sum(0, keepdims=True)
    case = ValidationCase("c", 0, None, reference, np.zeros(instance.shape, bool), None, SP, (0, -1))
    scorer = _CaseScorer(case, {"seg": seg, "id": ident, "boundary": field[None]})
    no_even_cut = replace(DEFAULTS, split_even_pitch_mm=0.0)  # which finds these uniform bodies too (3 hits)
    cut = scorer.numbering(replace(no_even_cut, disc_split_threshold=0.5))
    off = scorer.numbering(replace(no_even_cut, disc_split_threshold=0.0))
    assert cut == (3, 3) and off[0] <= 1
