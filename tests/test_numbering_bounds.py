"""What the numbering may claim (issue 15 parts 3-4, issue 16 part 4), pure functions on synthetic maps: instances
repaired after a fused or cut body (instance_repair.py), never more vertebrae than the field of view holds and none
without a spine (spine_extent.py, level_anatomy.py), the decoder's margin and its anchors (decoder.py, anchors.py),
the quality flags (quality.py)."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from test_numbering import SPACING, level, log_probs, names, phantom, probabilities
from vertebraformer_nn.inference.anchors import Anchor, anchor_log_prior
from vertebraformer_nn.inference.decoder import decode_levels
from vertebraformer_nn.inference.instance_repair import (absorb_pieces, even_parts, head_foot_direction,
                                                         instance_heights, level_runs, merge_half_instances,
                                                         merge_side_by_side, ordered_level_runs,
                                                         split_fused_instances, split_level_runs,
                                                         split_tall_instances, split_top_fused)
from vertebraformer_nn.inference.instances import instance_geometry
from vertebraformer_nn.inference.level_anatomy import expected_distance, max_vertebrae_in
from vertebraformer_nn.inference.numbering import decode_instances, number_vertebrae, ordered_instances
from vertebraformer_nn.inference.postprocessing import DEFAULTS
from vertebraformer_nn.inference.quality import assess, summary_fields
from vertebraformer_nn.inference.spine_extent import (count_bound, fragments, midline_offsets, midline_weight,
                                                      off_axis, spine_chain, spine_found, vertebra_share,
                                                      weak_instances)
from vertebraformer_nn.labels import ANATOMICAL_ORDER


def _levels(decoding):
    return [ANATOMICAL_ORDER[s] for s in decoding.levels]


# --- instances: fused and cut bodies ------------------------------------------------------------------------
def _stack(heights, neck_at=None, width=8):
    """Instances stacked along axis 0 (1-voxel discs), ids 1..n; ``neck_at``: {id: row within it} narrowed to a
    2x2 waist (a disc between two fused bodies)."""
    total = sum(h + 1 for h in heights) + 2
    out = np.zeros((total, width, width), np.int32)
    row = 1
    for i, h in enumerate(heights, start=1):
        out[row:row + h] = i
        if neck_at and i in neck_at:
            r = row + neck_at[i]
            out[r] = 0
            out[r, 3:5, 3:5] = i
        row += h + 1
    return out


def test_a_fused_pair_is_split_at_its_neck_and_a_dens_like_top_is_not():
    fused = _stack([6, 6, 13, 6, 6], neck_at={3: 6})
    split, notes = split_tall_instances(fused, (3.5,) * 3, 0)
    assert len(np.unique(split[split > 0])) == 6 and notes
    uniform = _stack([6, 6, 13, 6, 6])  # no neck: one tall vertebra, not two
    assert len(np.unique(split_tall_instances(uniform, (3.5,) * 3, 0)[0])) - 1 == 5
    assert (split_tall_instances(fused, (3.5,) * 3, 0, ratio=0.0)[0] == fused).all()  # 0 = off


def _widths_column(heights, widths, size: int = 12) -> np.ndarray:
    """Boxes stacked along axis 0 (1-voxel discs, no neck anywhere), ids 1..n, each ``widths[i]`` wide in-plane."""
    out = np.zeros((sum(h + 1 for h in heights) + 2, size, size), np.int32)
    row = 1
    for i, (h, w) in enumerate(zip(heights, widths), start=1):
        lo = (size - w) // 2
        out[row:row + h, lo:lo + w, lo:lo + w] = i
        row += h + 1
    return out


def test_an_instance_as_tall_and_as_large_as_two_neighbours_is_cut_in_two_without_a_neck():
    # 28 mm vertebrae of 6x6 voxels and, among them, one 60 mm tall and 8x8 wide (3.8 x their volume): two fused
    column = _widths_column([8, 8, 8, 17, 8, 8], [6, 6, 6, 8, 6, 6])
    split, notes = split_fused_instances(column, (3.5,) * 3, 0, 1.7, 2.5)
    ids, heights, _ = instance_heights(split, (3.5,) * 3, 0)
    assert len(ids) == 7 and notes and "into 2 of equal length" in notes[0]
    assert sorted(heights)[-2:] == pytest.approx([31.5, 31.5], abs=3.6)  # two halves of 60 mm, within a voxel
    # as tall but no larger than two of them (the same width): one tall vertebra, or a flipped half joined to it
    same_width = _widths_column([8, 8, 8, 17, 8, 8], [8] * 6)
    assert len(np.unique(split_fused_instances(same_width, (3.5,) * 3, 0, 1.7, 2.5)[0])) - 1 == 6
    # parts below 20 mm are no thoracolumbar vertebrae (pieces of a crop cut into bands): kept whole; 0 = off
    assert split_fused_instances(column, (1.0,) * 3, 0, 1.7, 2.5)[1] == []
    assert split_fused_instances(column, (3.5,) * 3, 0, 1.7, 0.0)[1] == []


def test_the_head_most_instance_loses_the_cut_vertebra_above_it_and_the_foot_end_is_left_alone():
    # five 8-row bodies of 6x6 voxels (head at higher rows); the top one goes on through a 1-row neck of 3x3 into 4
    # rows of the next vertebra up, which the field of view cut: 1.5 x the volume of the three below it
    column = np.pad(_widths_column([8] * 5, [6] * 5, size=12), ((0, 6), (0, 0), (0, 0)))
    top = np.flatnonzero((column == 5).any(axis=(1, 2)))[-1]
    column[top + 1, 4:7, 4:7] = 5
    column[top + 2:top + 6, 3:9, 3:9] = 5
    cut, notes = split_top_fused(column, (3.5,) * 3, 0, 1, 1.3)
    assert len(notes) == 1 and "1.5 x the volume of the 3 below it" in notes[0]
    assert np.array_equal(np.flatnonzero((cut == 6).any(axis=(1, 2))), np.arange(top + 2, top + 6))  # above the neck
    assert (cut == 5).sum() == 8 * 36 + 9 and np.array_equal(cut[column != 5], column[column != 5])
    # the head at lower indices: the same cut, mirrored
    mirrored, _ = split_top_fused(column[::-1], (3.5,) * 3, 0, -1, 1.3)
    assert np.array_equal(mirrored[::-1], cut)
    # below the ratio, or off: unchanged
    assert split_top_fused(column, (3.5,) * 3, 0, 1, 1.6)[1] == []
    assert split_top_fused(column, (3.5,) * 3, 0, 1, 0)[1] == []
    # the same instance at the foot end (L5 with the sacrum's top, or simply the largest): left alone
    assert split_top_fused(column[::-1], (3.5,) * 3, 0, 1, 1.3)[1] == []


def test_level_runs_ignore_a_stray_level_shorter_than_a_vertebra():
    # 3.5 mm slabs from the foot up: L2 for 4, a 1-slab stray L1, L2 again, then L1 for 4
    levels = np.array([22] * 4 + [21] + [22] * 3 + [21] * 4)
    runs = level_runs(levels, np.arange(len(levels)) * 3.5, 3.5)
    assert [level for level, _ in runs] == [22, 21] and runs[1][1] == pytest.approx(8 * 3.5)
    assert len(level_runs(np.array([22] * 2 + [21] * 2), np.arange(4) * 3.5, 3.5)) == 1  # 7 mm each: one run


def _level_column(heights, levels_of):
    """(instance map, flat index of its foreground, level per foreground voxel): :func:`_stack` of ``heights`` along
    axis 0 (the head towards higher rows), each instance's rows carrying the levels ``levels_of[id]`` gives, a list
    of (rows, training label) from its lowest row up."""
    column = _stack(heights)
    level_map = np.zeros(column.shape, np.int64)
    for i in range(1, len(heights) + 1):
        rows = np.flatnonzero((column == i).any(axis=(1, 2)))
        start = rows[0]
        for count, label in levels_of[i]:
            level_map[start:start + count][column[start:start + count] == i] = label
            start += count
    index = np.flatnonzero(column.ravel())
    return column, index, level_map.ravel()[index]


def test_a_tall_instance_is_cut_where_its_levels_change_in_the_spines_order():
    # T10-T12 one above the other (head towards higher rows), then an instance twice as tall whose lower half says L2
    # and upper half L1 (two vertebrae that met across a bridged disc), then L3
    label = {name: ANATOMICAL_ORDER.index(name) + 1 for name in ("T10", "T11", "T12", "L1", "L2", "L3")}
    levels = {1: [(8, label["L3"])], 2: [(8, label["L2"]), (9, label["L1"])], 3: [(8, label["T12"])],
              4: [(8, label["T11"])], 5: [(8, label["T10"])]}
    column, index, voxel_levels = _level_column([8, 17, 8, 8, 8], levels)
    split, notes = split_level_runs(column, index, voxel_levels, (3.5,) * 3, 0, 1, 1.4)
    ids, heights, _ = instance_heights(split, (3.5,) * 3, 0)
    assert len(ids) == 6 and heights.tolist() == [28.0, 28.0, 31.5, 28.0, 28.0, 28.0]
    assert notes == ["split an instance 60 mm tall (2.1 x its neighbours) into 2 where its voxel-wise levels change "
                     "(L1, L2, head to foot): vertebrae joined across a bridged disc"]
    assert (split > 0).sum() == (column > 0).sum()  # nothing lost
    # the head towards lower rows: the same levels are now out of the spine's order, and nothing is cut
    assert split_level_runs(column, index, voxel_levels, (3.5,) * 3, 0, -1, 1.4)[1] == []
    assert split_level_runs(column, index, voxel_levels, (3.5,) * 3, 0, 1, height_ratio=0.0)[1] == []  # 0 = off
    # one vertebra whose level flips half-way is no taller than its neighbours: kept whole
    levels[2] = [(4, label["L2"]), (4, label["L1"])]
    column, index, voxel_levels = _level_column([8, 8, 8, 8, 8], levels)
    assert split_level_runs(column, index, voxel_levels, (3.5,) * 3, 0, 1, 1.4)[1] == []


def _fused_column(bodies: int, height: int = 9, width: int = 8) -> np.ndarray:
    """One instance (id 1): ``bodies`` boxes ``height`` voxels tall along axis 0, joined by 1-voxel 2x2 necks (discs
    that thick slices blurred into bone), with no neighbour on either side."""
    out = np.zeros((bodies * (height + 1) + 2, width, width), np.int32)
    for b in range(bodies):
        row = 1 + b * (height + 1)
        out[row:row + height] = 1
        if b:
            out[row - 1, 3:5, 3:5] = 1
    return out


def test_a_column_taller_than_any_vertebra_is_split_whatever_its_neighbours():
    column = _fused_column(6)  # 59 rows, 206 mm at 3.5 mm, no neighbours to compare with
    split, notes = split_tall_instances(column, (3.5,) * 3, 0)
    heights = instance_heights(split, (3.5,) * 3, 0)[1]
    # cut at the middle neck (103 mm each), then each half again: no part is still taller than 100 mm
    assert len(heights) == 4 and heights.max() <= DEFAULTS.split_max_height_mm
    assert sum("more than the 100 mm of any one vertebra" in n for n in notes) == 3
    assert (split > 0).sum() == (column > 0).sum()  # nothing lost
    assert (split_tall_instances(column, (3.5,) * 3, 0, max_height_mm=0.0)[0] == column).all()  # 0 = off
    # no neck: parts of equal length, as many as the typical pitch makes (126 mm / 30 mm), or one piece when that
    # rule is off (and the loop ends either way)
    block = np.zeros((40, 8, 8), np.int32)
    block[2:38] = 1
    evened, notes = split_tall_instances(block, (3.5,) * 3, 0)
    assert np.bincount(evened[evened > 0]).tolist()[1:] == [9 * 64] * 4
    assert notes == ["split an instance 126 mm tall (more than the 100 mm of any one vertebra), without a narrow "
                     "cross-section, into 4 of equal length along the spine: fused vertebrae"]
    assert len(np.unique(split_tall_instances(block, (3.5,) * 3, 0, even_pitch_mm=0.0)[0])) == 2


def _tilted_column(bodies: int, pitch_mm: float, degrees: float, spacing: float = 2.0):
    """(instance map with one id, body index per voxel): ``bodies`` vertebrae 40 mm deep and 30 mm wide, one
    every ``pitch_mm`` along a spine tilted ``degrees`` from axis 0 towards axis 1, their discs filled (the model's
    foreground runs through them, as on verse014), so that every slice across axis 0 cuts two bodies and none is a
    neck."""
    shape = (int(bodies * pitch_mm / spacing) + 30, 70, 20)
    grid = np.stack(np.meshgrid(*[np.arange(n) * spacing for n in shape], indexing="ij"), axis=-1)
    a = np.radians(degrees)
    along, across = np.array([np.cos(a), np.sin(a), 0.0]), np.array([-np.sin(a), np.cos(a), 0.0])
    start = np.array([20.0, 40.0, 0.0])
    t, u = (grid - start) @ along, (grid - start) @ across
    inside = (t >= 0) & (t < bodies * pitch_mm) & (np.abs(u) <= 20) & (np.abs(grid[..., 2] - 20) <= 15)
    return inside.astype(np.int32), np.where(inside, np.floor(t / pitch_mm).astype(int), -1)


def test_fused_bodies_tilted_against_the_slices_are_cut_evenly_along_the_spine():
    column, body = _tilted_column(4, 33.0, 30.0)  # 132 mm along the spine, 30 degrees off the array axis
    direction = head_foot_direction(np.argwhere(column) * 2.0, 0)
    assert np.degrees(np.arccos(direction[0])) == pytest.approx(30.0, abs=3.0)
    part, n = even_parts(column.astype(bool), (2.0,) * 3, 0, 30.0)
    assert n == 4
    # each part is one body: planes across the spine (equal parts along the array axis would be 78 % one body)
    of_part = body[np.nonzero(column)]
    for k in range(n):
        assert np.bincount(of_part[part == k]).max() >= 0.95 * (part == k).sum()
    split, notes = split_tall_instances(column, (2.0,) * 3, 0)
    assert len(np.unique(split[split > 0])) == 4 and "into 4 of equal length" in notes[0]
    assert (split > 0).sum() == column.sum()  # nothing lost


def test_two_touching_halves_are_merged_and_whole_vertebrae_are_not():
    halves = _stack([6, 6, 2, 3, 6, 6])
    rows = np.flatnonzero((halves == 3).any(axis=(1, 2)))
    halves[rows[-1] + 1] = 3  # close the disc between the two halves: they touch
    merged, notes = merge_half_instances(halves, (3.5,) * 3, 0)
    assert len(np.unique(merged[merged > 0])) == 5 and notes
    whole = _stack([6, 6, 6, 6, 6])
    assert merge_half_instances(whole, (3.5,) * 3, 0)[1] == []


def _absorb(instance_map, fraction=DEFAULTS.merge_piece_fraction):
    ids, centres, volumes = instance_geometry(instance_map, (3.5,) * 3)
    edges = np.concatenate([np.unique(instance_map[0]), np.unique(instance_map[-1])])
    return absorb_pieces(instance_map, ids, centres, volumes, np.isin(ids, edges), 0, fraction)


def _side_by_side(instance_map, spacing=(3.5,) * 3, overlap=DEFAULTS.merge_overlap_fraction):
    ids, centres, volumes = instance_geometry(instance_map, spacing)
    return merge_side_by_side(instance_map, ids, centres, volumes, spacing, 0, overlap)


def test_a_piece_far_smaller_than_its_neighbours_joins_the_vertebra_it_touches_most():
    column = _stack([6, 6, 6, 6, 6])  # ids 1..5 down axis 0, rows 1-6, 8-13, 15-20, 22-27, 29-34
    column[16:19, 0, 0:3] = 6  # a lamina of 9 voxels (2 % of body 3), touching it along 3 x 3 faces ...
    column[14, 0, 0] = 6  # ... and body 2 across one face, through the disc
    absorbed, notes = _absorb(column)
    assert set(np.unique(absorbed[column == 6])) == {3}
    assert (absorbed[column != 6] == column[column != 6]).all() and len(notes) == 1 and "joined 1 piece(s)" in notes[0]
    assert (_absorb(column, 0.0)[0] == column).all()  # 0 = off
    apart = np.pad(_stack([6, 6, 6, 6, 6]), ((0, 0), (0, 0), (0, 3)))
    apart[17, 0, 9] = 6  # touching no other instance: left to the fragment rule
    assert (_absorb(apart)[0] == apart).all()
    cut = _stack([1, 6, 6, 6, 6])  # a vertebra cut by the field of view is small, and still a level of its own
    cut[0] = cut[1]
    assert (_absorb(cut)[0] == cut).all()
    assert _absorb(_stack([6, 6, 4, 6, 6]))[1] == []  # a flattened (fractured) body keeps 2/3 of its neighbours'


def _lumbar_spine_beside_wing_pieces() -> np.ndarray:
    """T12..L5 (ids 1-6: 10x10x8 voxels, 34 ml, 10 voxels = 35 mm apart) and 8 pieces of iliac wing (ids 8-15: 1.2 ml,
    ~100 mm to each side, from L3 down), whose many small pieces pull the instance stage's median down; id 7 free."""
    box_map = np.zeros((70, 40, 80), dtype=np.int32)
    for i in range(6):
        box_map[2 + 10 * i:10 + 10 * i, 15:25, 35:45] = i + 1
    for k, row in enumerate((40, 46, 52, 58)):
        box_map[row:row + 3, 18:21, 5:8] = 8 + 2 * k
        box_map[row:row + 3, 18:21, 72:75] = 9 + 2 * k
    return box_map


_LUMBAR = ["T12", "L1", "L2", "L3", "L4", "L5"]


def _numbered_with_piece(box_map, **changes):
    """:func:`_lumbar_spine_beside_wing_pieces` with a piece (id 7) argmaxed to L3, numbered with ``changes`` to the
    default post-processing."""
    seg, idp = probabilities(box_map, _LUMBAR + ["L3"] + ["L5"] * 8)
    return number_vertebrae(seg, SPACING, 0, -1, id_probs=idp, params=replace(DEFAULTS, **changes))


def test_numbering_does_not_give_a_piece_of_a_vertebra_a_level_of_its_own():
    """verse014's L1 came in pieces: a facet argmaxed to a level of its own, 0.15 x the vertebrae beside it, stayed an
    instance (the instance stage's 0.1 x the median of all pieces was pulled down by pieces of ribs and pelvis) and
    moved every level below it."""
    box_map = _lumbar_spine_beside_wing_pieces()
    box_map[23:28, 26:32, 38:42] = 7  # 5 ml behind L2 ...
    box_map[25:27, 25, 39:41] = 7  # ... joined to it by a stalk of 4 voxels
    result = _numbered_with_piece(box_map)
    assert names(result) == _LUMBAR
    assert set(np.unique(result.labels[box_map == 7])) == {level("L2") + 1}
    # beside L2's rows, the side-by-side rule takes it first; without that rule the small-piece rule does
    absorbed = _numbered_with_piece(box_map, merge_overlap_fraction=0.0)
    assert names(absorbed) == _LUMBAR
    assert any(n.startswith("joined 1 piece(s) of 5.") and "below 0.2 x the volume of their neighbours" in n
               for n in absorbed.notes)
    # without either, the decoder still gives it L2's level: it lies at L2's height (shared_level_max_height)
    kept = _numbered_with_piece(box_map, merge_piece_fraction=0.0, merge_overlap_fraction=0.0)
    assert names(kept) == _LUMBAR and set(np.unique(kept.labels[box_map == 7])) == {level("L2") + 1}
    assert any("mm in height) both numbered L2: pieces of one vertebra" in n for n in kept.notes)
    off = _numbered_with_piece(box_map, merge_piece_fraction=0.0, merge_overlap_fraction=0.0,
                               shared_level_max_height=0.0)
    assert names(off) == ["T12", "T13", "L1", "L2", "L3", "L4", "L5"]  # the piece took a level, L1 became T13


def test_a_body_and_its_arch_side_by_side_are_one_vertebra_and_stacked_vertebrae_stay_apart():
    """The chest series' bodies came apart from their arches (the same rows, 26 mm apart front to back), each piece
    a level of its own."""
    column = _stack([6, 6, 6])  # ids 1..3 down axis 0 (rows 1-6, 8-13, 15-20), 8 x 8 voxels
    column[8:14, :, 6:8] = 4  # the arch of vertebra 2: its rows, behind its body
    merged, notes = _side_by_side(column)
    assert set(np.unique(merged[column == 4])) == {2} and (merged[column != 4] == column[column != 4]).all()
    assert len(notes) == 1 and "merged 1 pair(s)" in notes[0] and "100%" in notes[0]
    assert (_side_by_side(column, overlap=0.0)[0] == column).all()  # 0 = off
    cut = np.zeros((12, 8, 8), np.int32)  # the field of view starts at row 0, and there ...
    cut[0:9, :, 0:6] = 3  # ... a whole vertebra's body has beside it ...
    cut[0:4, :, 6:8] = 4  # ... the processes of the one above, whose body lies outside the scan
    assert (_side_by_side(cut)[0] == cut).all()
    inside = np.pad(cut, ((2, 2), (0, 0), (0, 0)))  # the same inside the scan: one vertebra
    assert set(np.unique(_side_by_side(inside)[0])) == {0, 3}
    # two vertebrae one above the other whose extents overlap (a tall, fused instance on an oblique grid): apart
    tilted = np.zeros((40, 8, 12), np.int32)
    tilted[0:30, :, 0:6] = 1  # rows 0-29, centre row 14.5
    tilted[20:34, :, 6:12] = 2  # rows 20-33: 10 of its 14 rows beside 1, but its centre 12 rows above, 6 columns over
    assert (_side_by_side(tilted, (1.0,) * 3)[0] == tilted).all()
    # two consecutive vertebrae whose processes overlap a third: apart
    stacked = _stack([6, 6])
    stacked[7, :, 6:8] = 1  # vertebra 1 reaches into the disc row beside vertebra 2's rows ...
    stacked[8:10, :, 6:8] = 1  # ... and over two of its six rows
    assert _side_by_side(stacked)[1] == []


def test_numbering_gives_a_body_and_its_arch_one_level():
    box_map = _lumbar_spine_beside_wing_pieces()
    box_map[22:30, 25:34, 35:45] = 7  # an arch behind L2, in its rows (22-29) and touching it, 0.9x its volume
    result = _numbered_with_piece(box_map)
    assert names(result) == _LUMBAR
    assert set(np.unique(result.labels[box_map == 7])) == {level("L2") + 1}
    # without the side-by-side merge the decoder gives it L2's level (at L2's height); without both, one of its own
    assert names(_numbered_with_piece(box_map, merge_overlap_fraction=0.0)) == _LUMBAR
    assert len(names(_numbered_with_piece(box_map, merge_overlap_fraction=0.0, shared_level_max_height=0.0))) == 7


# --- the spine in the field of view -------------------------------------------------------------------------
def test_count_bound_follows_the_field_of_view():
    # at 0.6 x the typical pitch the shortest run is in the neck: C1..T2, eight pitches of 0.6 x 18-23 mm = 92 mm
    assert max_vertebrae_in(100.0, 0.6) == 9
    assert max_vertebrae_in(10.0, 0.6) == 1 and max_vertebrae_in(5000.0, 0.6) == 26
    assert max_vertebrae_in(100.0, 0.0) == 26
    bound = count_bound([5, 50, 40, 3, 60], 30.0, 0.6)  # 30 mm: at most 3
    assert bound.exceeded and bound.max_count == 3 and bound.keep.tolist() == [False, True, True, False, True]
    assert not count_bound([5, 50], 300.0, 0.6).exceeded
    assert expected_distance(level("T12"), level("L1")) == pytest.approx(30.0)


def test_too_many_instances_for_the_field_of_view_drops_the_smallest_and_says_so():
    levels = ANATOMICAL_ORDER[9:19]  # T3..T12, 14 mm apart at 2 mm voxels: 148 mm of field of view
    seg, _, _ = phantom(levels)
    squeezed = replace(DEFAULTS, min_pitch_fraction=0.9)  # a floor of 0.9 x the typical pitch: 9 fit in 148 mm
    result = number_vertebrae(seg, (2.0,) * 3, 0, -1, params=squeezed)
    bound = result.report["count_bound"]
    assert bound == {"field_of_view_mm": 148.0, "max_vertebrae": 9, "instances_found": 10, "exceeded": True}
    assert len(result.instances) == 9 and any("1 smallest of 10 instances dropped" in n for n in result.notes)
    assert "too_many_for_field_of_view" in [r["reason"] for r in result.quality["reasons"]]
    assert not number_vertebrae(seg, (2.0,) * 3, 0, -1).report["count_bound"]["exceeded"]  # 12 fit at 0.6


def test_a_scan_without_a_spine_gets_no_vertebra_and_fails():
    seg, _, _ = phantom(["T8"], heights=[1])  # a 1-voxel-thick speck: ~0.3 ml of "vertebra"
    result = number_vertebrae(seg, SPACING, 0, -1)
    assert result.instances == [] and not result.labels.any()
    assert result.report["spine_found"] is False and any(n.startswith("spine not found") for n in result.notes)
    assert result.quality["flag"] == "fail" and result.quality["reasons"][0]["reason"] == "spine_not_found"
    assert not spine_found([], 10.0) and spine_found([6000.0, 5000.0], 10.0)


def test_weak_instances_are_those_mostly_background():
    instance_map = np.array([[[1, 1, 2, 2, 0]]])
    background = np.array([[[0.1, 0.2, 0.7, 0.6, 1.0]]])
    assert weak_instances(instance_map, background, 0.5) == [2]
    assert weak_instances(instance_map, background, 0.0) == []


def _column(n, *, pitch=30.0, sway=(0.0, 0.0)):
    """Centres (mm) of ``n`` vertebrae along axis 0, ``pitch`` apart, the axial plane swaying by up to ``sway``
    mm (a lordosis, a scoliosis) over the column."""
    t = np.arange(n, dtype=float)
    bend = np.sin(np.pi * t / max(n - 1, 1))
    return np.stack([pitch * t, sway[0] * bend, sway[1] * bend], axis=1)


def test_off_axis_drops_iliac_wings_and_shoulders_but_no_vertebra_of_a_curved_spine():
    spine = _column(10, sway=(35.0, 30.0))  # 35 mm lordosis, 30 mm scoliosis over 270 mm
    wings = np.array([[0.0, 10.0, 90.0], [0.0, 10.0, -90.0], [30.0, 5.0, 85.0], [30.0, 5.0, -80.0],
                      [45.0, 0.0, -95.0]])  # two iliac wings, each in pieces, one side in three
    shoulders = np.array([[240.0, 20.0, 150.0], [250.0, 20.0, -150.0]])
    centres = np.concatenate([spine, wings, shoulders])
    volumes = np.concatenate([np.full(10, 30000.0), np.full(5, 90000.0), np.full(2, 60000.0)])  # wings the largest
    far = off_axis(centres, volumes, 0, 40.0)
    assert far.tolist() == [False] * 10 + [True] * 7
    assert sorted(spine_chain(centres, volumes, 0, 40.0).tolist()) == list(range(10))
    assert not off_axis(centres, volumes, 0, 0.0).any()  # 0 = off
    assert not off_axis(centres[:2], volumes[:2], 0, 40.0).any()  # too few to tell
    # a half vertebra beside its other half (a split body) is on the axis
    halves = np.concatenate([spine, [[120.0, 0.0, 30.0]]])
    assert not off_axis(halves, np.full(11, 1.0), 0, 40.0).any()


def test_a_spine_fused_into_one_instance_is_the_axis_not_the_fragments_beside_it():
    # thick slices: the column is one 200 mm instance; three fragments 50 mm behind it make a longer chain by count
    centres = np.array([[100.0, 0.0, 0.0], [60.0, 50.0, 0.0], [80.0, 50.0, 0.0], [100.0, 50.0, 0.0]])
    volumes = np.array([230000.0, 1500.0, 700.0, 900.0])
    assert off_axis(centres, volumes, 0, 40.0).tolist() == [False, True, True, True]
    # three whole vertebrae behind it would be the longer chain (a count, not volume, as for the iliac wings)
    assert off_axis(centres, [230000.0, 30000.0, 30000.0, 30000.0], 0, 40.0).tolist() == [True, False, False, False]
    assert vertebra_share([800.0, 8000.0, 90000.0]).tolist() == pytest.approx([0.1, 1.0, 1.0])


def test_numbering_finds_a_spine_thick_slices_fused_into_one_piece():
    box_map = np.zeros((66, 30, 40), dtype=np.int32)
    box_map[2:64, 10:20, 5:15] = 1  # bodies T11..L5 fused into one 217 mm column, necks at the discs
    for row in range(11, 64, 10):
        box_map[row, 10:20, 5:15] = 0
        box_map[row, 14:16, 9:11] = 1
    for k, row in enumerate((20, 30, 40)):  # three fragments of the posterior elements, 60 mm behind
        box_map[row:row + 3, 10:13, 30:33] = 2 + k
    seg, idp = probabilities(box_map, ["L2", "L2", "L3", "L3"])
    result = number_vertebrae(seg, SPACING, 0, -1, id_probs=idp)
    assert result.report["spine_found"] and len(result.instances) >= 3
    assert set(np.unique(result.labels[box_map == 1])) - {0}  # the column is labelled ...
    assert set(np.unique(result.labels[box_map >= 2])) == {0}  # ... and the fragments beside it are not
    assert any("more than the 100 mm of any one vertebra" in n for n in result.notes)


def test_numbering_drops_instances_beside_the_spine_and_says_so():
    box_map = np.zeros((64, 40, 70), dtype=np.int32)
    for i in range(6):  # T12..L5, 10 voxels (35 mm) apart, in the middle
        box_map[2 + 10 * i:10 + 10 * i, 15:25, 30:40] = i + 1
    box_map[44:60, 12:28, 2:14] = 7  # the iliac wings, ~100 mm to each side of L4-L5
    box_map[44:60, 12:28, 56:68] = 8
    levels = ["T12", "L1", "L2", "L3", "L4", "L5"]
    seg, idp = probabilities(box_map, levels + ["L5", "L5"])
    result = number_vertebrae(seg, SPACING, 0, -1, id_probs=idp)
    assert names(result) == levels
    assert set(np.unique(result.labels[box_map >= 7])) == {0}
    assert any("2 instance(s) more than 40 mm from the spine's axis" in n for n in result.notes)
    # the other steps that would take the wings for something else off as well: the end drop, the fused split, the
    # cut of an instance the sequence gives two levels, one level for the two at one height
    kept = number_vertebrae(seg, SPACING, 0, -1, id_probs=idp, params=replace(
        DEFAULTS, max_off_axis_mm=0.0, end_drop_cost=0.0, split_volume_ratio=0.0, double_split=0.0,
        shared_level_max_height=0.0))
    assert len(kept.instances) == 8


def test_the_spine_is_sought_near_the_body_midline_not_along_a_hip_in_more_pieces():
    """example_ct with denser bone: a chain of 8 pieces of the right hip outnumbered the 5 lumbar instances."""
    # axis 2 runs left-right; the body spans voxels 5-54 of 3.5 mm, its midline about 103 mm
    hu = np.full((40, 30, 60), -1000.0)
    hu[:, 5:25, 5:55] = 40.0
    spine = _column(5, sway=(10.0, 5.0)) + [0.0, 0.0, 103.0]  # 5 lumbar vertebrae on the midline
    hip = np.array([[z, 20.0, 198.0 + 4 * k] for k, z in enumerate(np.linspace(0.0, 120.0, 8))])  # 8 pieces, 10 cm right
    centres = np.concatenate([spine, hip])
    volumes = np.concatenate([np.full(5, 50000.0), np.full(8, 12000.0)])
    assert off_axis(centres, volumes, 0, 40.0).tolist() == [True] * 5 + [False] * 8  # by count alone: the hip
    midline = midline_offsets(hu, centres, SPACING, 2)
    assert midline[:5].max() < 10 and midline[5:].min() > 90
    assert off_axis(centres, volumes, 0, 40.0, midline).tolist() == [False] * 5 + [True] * 8
    assert midline_offsets(np.full((4, 4, 4), -1000.0), centres, SPACING, 2) is None  # no body: no midline
    assert midline_weight([0.0, 30.0, 60.0, 90.0]).tolist() == pytest.approx([1.0, 0.941, 0.5, 0.165], abs=1e-3)


def test_fragments_are_small_against_the_spine_unless_cut_by_the_border():
    volumes = [30000.0, 45000.0, 1200.0, 50000.0, 700.0]
    assert fragments(volumes, [False] * 5, 0.1).tolist() == [False, False, True, False, True]
    assert fragments(volumes, [False, False, False, False, True], 0.1).tolist() == [False, False, True, False, False]
    assert not fragments(volumes, [False] * 5, 0.0).any()  # 0 = off
    assert not fragments(volumes[3:], [False] * 2, 0.1).any()  # too few to tell


def test_a_piece_below_the_last_vertebra_is_not_numbered_when_wing_pieces_pulled_the_first_median_down():
    """example_ct blurred by 2 mm: pieces of the iliac wings (small, many) kept the instance stage's median low, so
    a 1 ml piece below L5 survived it, was numbered L6 and moved every level up; among the spine's own instances it
    is a fragment."""
    box_map = _lumbar_spine_beside_wing_pieces()
    box_map[63:65, 18:21, 38:41] = 7  # a 0.8 ml piece below L5, on the spine's axis
    levels = ["T12", "L1", "L2", "L3", "L4", "L5"]
    seg, idp = probabilities(box_map, levels + ["L5"] + ["L5"] * 8)
    result = number_vertebrae(seg, SPACING, 0, -1, id_probs=idp)
    assert names(result) == levels
    assert set(np.unique(result.labels[box_map >= 7])) == {0}
    assert any("dropped 1 piece(s) of 0.8 ml, below 0.1 x the median of the spine's instances" in n
               for n in result.notes)
    kept = number_vertebrae(seg, SPACING, 0, -1, id_probs=idp, params=replace(DEFAULTS, min_relative_volume=0.0,
                                                                            end_drop_cost=0.0))
    assert len(kept.instances) == 7


# --- the decoder: anchors, margin ---------------------------------------------------------------------------
def test_anchors_fix_levels_the_evidence_leaves_open():
    # evidence that cannot tell T12-L4 from L1-L5 (both equally likely per instance)
    upper, lower = ["T12", "L1", "L2", "L3", "L4"], ["L1", "L2", "L3", "L4", "L5"]
    ambiguous = [{a: 0.45, b: 0.45} for a, b in zip(upper, lower)]
    plain = decode_levels(log_probs(ambiguous))
    assert plain.margin < DEFAULTS.unsure_margin  # unsure, and it says so
    sacrum = anchor_log_prior([Anchor("sacrum", 4)], 5)
    assert _levels(decode_levels(log_probs(ambiguous), unary=sacrum)) == lower
    rib = anchor_log_prior([Anchor("last_rib", 0)], 5)
    anchored = decode_levels(log_probs(ambiguous), unary=rib)
    assert _levels(anchored) == upper and anchored.margin > plain.margin
    with pytest.raises(ValueError, match="unary"):
        decode_levels(log_probs(ambiguous), unary=np.zeros((2, 26)))


@pytest.mark.parametrize("levels,gaps", [
    (["T10", "T11", "T12", "T13", "L1", "L2", "L3", "L4", "L5"], None),  # T13 with its last rib
    (["T12", "L1", "L2", "L3", "L4", "L5", "L6"], None),  # L6 above the sacrum
    (["T10", "T11", "L1", "L2", "L3"], [26, 56, 31, 32]),  # T12 missing: a gap of two pitches
])
def test_decoding_with_anchors_keeps_t13_l6_and_a_missing_vertebra(levels, gaps):
    anchors = []
    if "T13" in levels:
        anchors.append(Anchor("last_rib", levels.index("T13")))
    if levels[-1] in ("L5", "L6"):
        anchors.append(Anchor("sacrum", len(levels) - 1))
    evidence = [{n: 0.8} for n in levels]
    decoding = decode_levels(log_probs(evidence), gaps, unary=anchor_log_prior(anchors, len(levels)))
    assert _levels(decoding) == levels
    assert decoding.second is not None and decoding.margin > 0 and 0 < decoding.path_probability <= 1


def test_second_best_is_the_runner_up_of_the_lattice():
    evidence = [{"T7": 0.6, "T8": 0.35}]
    decoding = decode_levels(log_probs(evidence))
    assert _levels(decoding) == ["T7"] and ANATOMICAL_ORDER[decoding.second[0]] == "T8"
    assert decoding.margin == pytest.approx(math.log(0.6 / 0.35))


NECK = ["C1", "C2", "C3", "C4", "C5", "C6", "C7"]


def test_an_end_instance_that_fits_no_place_is_left_out_when_that_is_allowed():
    # a piece above C1 whose voxels say T11 (a phantom neck, ctspine1k_HN_P045): kept, every level below it shifts
    evidence = [{"T11": 0.9}] + [{n: 0.9} for n in NECK]
    shifted = decode_levels(log_probs(evidence), params=replace(DEFAULTS, end_drop_cost=0.0))
    assert _levels(shifted)[1:] != NECK and shifted.dropped == (0, 0)
    dropping = replace(DEFAULTS, end_drop_cost=8.0)
    decoding = decode_levels(log_probs(evidence), params=dropping)
    assert decoding.dropped == (1, 0) and _levels(decoding) == NECK and len(decoding.confidence) == len(NECK)
    assert decoding.margin > 0 and 0 < decoding.path_probability <= 1 and (decoding.confidence > 0.5).all()
    # the same at the foot end (a last instance that says C1 would be T1 against 5.4 nats of its evidence), and
    # never when every instance fits
    cheap = replace(DEFAULTS, end_drop_cost=4.0)
    foot = decode_levels(log_probs([{n: 0.9} for n in NECK] + [{"C1": 0.9}]), params=cheap)
    assert foot.dropped == (0, 1) and _levels(foot) == NECK
    clean = decode_levels(log_probs([{n: 0.9} for n in NECK]), params=cheap)
    assert clean.dropped == (0, 0) and _levels(clean) == NECK
    # an instance whose best place costs less than end_drop_cost stays
    assert decode_levels(log_probs(evidence), params=replace(DEFAULTS, end_drop_cost=80.0)).dropped == (0, 0)


def test_beside_an_instance_that_may_hold_two_vertebrae_one_level_may_be_skipped():
    # C1 (the skull above it) to T1 in 7 instances at even gaps: C3 and C4 came as one instance, whose evidence says C3
    evidence = [{n: 0.6} for n in ["C1", "C2", "C3", "C5", "C6", "C7", "T1"]]
    skull = anchor_log_prior([Anchor("skull", 0)], len(evidence))
    plain = decode_levels(log_probs(evidence), [20.0] * 6, unary=skull)
    assert _levels(plain) != ["C1", "C2", "C3", "C5", "C6", "C7", "T1"]  # no gap says a level is missing
    double = np.array([False, False, True, False, False, False, False])
    decoding = decode_levels(log_probs(evidence), [20.0] * 6, unary=skull, double=double)
    assert _levels(decoding) == ["C1", "C2", "C3", "C5", "C6", "C7", "T1"] and decoding.skips == [(2, 1)]
    assert any("level C4 skipped between C3 and C5, one of which is large enough to hold two" in n
               for n in decoding.notes)
    with pytest.raises(ValueError, match="double"):
        decode_levels(log_probs(evidence), double=[True])


def test_a_merged_pair_the_network_told_apart_by_level_may_hold_two_vertebrae():
    # C1 to T1 with C4 and C5 in one box 1.4 x the others' volume (under double_volume_ratio's 1.5): its head rows
    # say C4, its foot rows C5, so the pieces meet across a wide contact and stay one instance
    boxes = ["C1", "C2", "C3", "C4", "C6", "C7", "T1"]
    _, _, box_map = phantom(boxes, heights=[5, 5, 5, 7, 5, 5, 5])
    rows = np.flatnonzero((box_map == 4).any(axis=(1, 2)))  # the head first
    box_map[rows[4:]] = np.where(box_map[rows[4:]] == 4, 8, box_map[rows[4:]])
    seg, idp = probabilities(box_map, boxes + ["C5"])
    off = number_vertebrae(seg, SPACING, 0, -1, id_probs=idp, params=replace(DEFAULTS, double_run_ratio=0.0))
    assert len(off.instances) == 7 and names(off) != ["C1", "C2", "C3", "C4", "C6", "C7", "T1"]
    on = number_vertebrae(seg, SPACING, 0, -1, id_probs=idp, params=replace(DEFAULTS, double_run_ratio=1.2))
    assert names(on) in (["C1", "C2", "C3", "C4", "C6", "C7", "T1"], ["C1", "C2", "C3", "C5", "C6", "C7", "T1"])
    # the instances once, each ratio at the decoder (as determine-postprocessing reuses them): the same answers
    found = ordered_instances(seg, SPACING, 0, -1, idp, replace(DEFAULTS, double_run_ratio=0.0))
    for ratio, expected in ((0.0, off), (1.2, on), (1.5, off)):
        assert names(decode_instances(found, replace(DEFAULTS, double_run_ratio=ratio))) == names(expected)
    # the same box whose levels do not run in the spine's order (C5 above C4) is one vertebra: no skip beside it
    flipped = np.where(box_map == 8, 4, np.where(box_map == 4, 8, box_map))
    seg, idp = probabilities(flipped, boxes + ["C5"])
    flipped_on, flipped_off = (number_vertebrae(seg, SPACING, 0, -1, id_probs=idp,
                                                params=replace(DEFAULTS, double_run_ratio=r)) for r in (1.2, 0.0))
    assert len(flipped_on.instances) == 7 and names(flipped_on) == names(flipped_off)
    assert found.two_runs.tolist() == [False, False, False, True, False, False, False]
    # the same pair in a 3-vertebra crop (C3, C4+C5, C6): beside two neighbours the ratio is not read
    crop = ["C3", "C4", "C6"]
    _, _, box_map = phantom(crop, heights=[5, 7, 5])
    rows = np.flatnonzero((box_map == 2).any(axis=(1, 2)))
    box_map[rows[4:]] = np.where(box_map[rows[4:]] == 2, 4, box_map[rows[4:]])
    seg, idp = probabilities(box_map, crop + ["C5"])
    assert not ordered_instances(seg, SPACING, 0, -1, idp, DEFAULTS).two_runs.any()


def test_level_runs_in_the_spines_order_are_read_per_instance():
    label = {name: ANATOMICAL_ORDER.index(name) + 1 for name in ("L1", "L2", "L3")}
    levels = {1: [(8, label["L3"])], 2: [(4, label["L2"]), (4, label["L1"])], 3: [(2, label["L2"]), (6, label["L1"])]}
    column, index, voxel_levels = _level_column([8, 8, 8], levels)
    ids = np.array([1, 2, 3])
    assert ordered_level_runs(column, ids, index, voxel_levels, (3.5,) * 3, 0, 1).tolist() == [False, True, False]
    # the head towards lower rows: L1 below L2 is not the spine's order
    assert not ordered_level_runs(column, ids, index, voxel_levels, (3.5,) * 3, 0, -1).any()


def test_an_instance_the_sequence_gives_two_levels_is_cut_in_two_and_both_are_named():
    # C1 to T1 with C3 and C4 in one box 2.4 x as tall (and as large) as the others, whose evidence says C3 only
    boxes = ["C1", "C2", "C3", "C5", "C6", "C7", "T1"]
    seg, idp, box_map = phantom([{n: 0.6} for n in boxes], heights=[5, 5, 12, 5, 5, 5, 5])
    result = number_vertebrae(seg, SPACING, 0, -1, id_probs=idp)
    assert names(result) == ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "T1"]
    assert [i["instance_id"] for i in result.instances] == list(range(1, 9))
    fused = np.flatnonzero((box_map == 3).any(axis=(1, 2)))  # its rows, the head first (axis 0 grows to the feet)
    assert (result.labels[fused[:6]][box_map[fused[:6]] == 3] == level("C3") + 1).all()
    assert (result.labels[fused[6:]][box_map[fused[6:]] == 3] == level("C4") + 1).all()
    halves = result.instances[2:4]
    assert halves[0]["centre_mm"][0] < halves[1]["centre_mm"][0]  # the head half above the foot half
    assert sum(h["volume_mm3"] for h in halves) == pytest.approx(12 * 36 * 3.5 ** 3)
    assert any("in two halves along the spine, numbered C3 and C4" in n for n in result.notes)
    whole = number_vertebrae(seg, SPACING, 0, -1, id_probs=idp, params=replace(DEFAULTS, double_split=0.0))  # off
    assert names(whole) == boxes and (whole.labels[box_map == 3] == level("C3") + 1).all()


def test_an_anchor_on_an_end_instance_makes_leaving_it_out_dearer():
    # C2..C7 below a first instance whose voxels say T11: as C1 it pays 5.4 nats of its evidence, left out 4
    evidence = [{"T11": 0.9}] + [{n: 0.9} for n in NECK[1:]]
    params = replace(DEFAULTS, end_drop_cost=4.0)
    assert decode_levels(log_probs(evidence), params=params).dropped == (1, 0)
    # the skull base right above it says it is C1: left out, it would pay the anchor's 4 nats as well
    skull = anchor_log_prior([Anchor("skull", 0)], len(evidence), params)
    anchored = decode_levels(log_probs(evidence), params=params, unary=skull)
    assert anchored.dropped == (0, 0) and _levels(anchored) == NECK


def test_an_instance_left_out_is_unlabelled_and_reported():
    boxes = [{"T11": 0.9}] + NECK
    seg, idp, box_map = phantom(boxes, heights=[2] + [5] * 7)  # a piece 0.4 x the others' volume above C1
    result = number_vertebrae(seg, SPACING, 0, -1, id_probs=idp)  # the defaults: 8 nats, below 0.5 x the median
    assert names(result) == NECK and result.report["left_out"] == {"head": 1, "foot": 0}
    assert (result.labels[box_map == 1] == 0).all() and (result.labels[box_map == 2] == level("C1") + 1).all()
    assert [i["instance_id"] for i in result.instances] == list(range(1, 8))
    assert any("head-most instance" in n and "says T11" in n for n in result.notes)
    kept = number_vertebrae(seg, SPACING, 0, -1, id_probs=idp, params=replace(DEFAULTS, end_drop_cost=0.0))  # off
    assert len(kept.instances) == 8 and kept.report["left_out"] == {"head": 0, "foot": 0}
    # the same evidence on a whole vertebra's volume: it is numbered, whatever its evidence says
    seg, idp, _ = phantom(boxes)
    whole = number_vertebrae(seg, SPACING, 0, -1, id_probs=idp)
    assert len(whole.instances) == 8 and whole.report["left_out"] == {"head": 0, "foot": 0}


def test_the_pitch_floor_penalises_levels_closer_than_anatomy_allows():
    # two lumbar-looking instances 12 mm apart: no adult lumbar pitch is that short, cervical ones nearly are
    evidence = [{"L3": 0.5, "C3": 0.4}, {"L4": 0.5, "C4": 0.4}]
    assert _levels(decode_levels(log_probs(evidence), [12.0])) == ["C3", "C4"]
    no_floor = replace(DEFAULTS, min_pitch_fraction=0.0)
    assert _levels(decode_levels(log_probs(evidence), [12.0], no_floor)) == ["L3", "L4"]


# --- quality flags ------------------------------------------------------------------------------------------
def _vertebra(name, centre, volume_ml=None, confidence=0.9, on_border=False):
    from vertebraformer_nn.inference.level_anatomy import TYPICAL_VOLUME_ML

    volume = 1000.0 * (TYPICAL_VOLUME_ML[name] if volume_ml is None else volume_ml)
    return {"name": name, "confidence": confidence, "centre_mm": [centre, 0.0, 0.0], "volume_mm3": volume,
            "on_border": on_border}


def test_quality_flags_and_their_reasons():
    spine = [_vertebra("L1", 0), _vertebra("L2", 32), _vertebra("L3", 65)]
    assert assess(spine, anchors=["sacrum"]) == {"flag": "ok", "reasons": []}
    reasons = lambda q: [r["reason"] for r in q["reasons"]]  # noqa: E731
    assert reasons(assess(spine)) == ["no_anchor"]
    # ribs say thoracic, not which level: still no anchor of the sequence, and the reason says what there was
    ribs_only = assess(spine, anchors=["rib_bearing"])
    assert reasons(ribs_only) == ["no_anchor"] and "ribs" in ribs_only["reasons"][0]["detail"]
    assert assess(spine, anchors=["rib_bearing", "sacrum"])["flag"] == "ok"
    assert assess(spine, anchors_looked_for=False)["flag"] == "ok"
    assert reasons(assess(spine, anchors=["sacrum"], margin=0.5)) == ["low_confidence"]
    unsure = [_vertebra(v["name"], v["centre_mm"][0], confidence=0.3) for v in spine]
    assert reasons(assess(unsure, anchors=["sacrum"])) == ["low_confidence"]
    tiny = [_vertebra("L1", 0, volume_ml=5), *spine[1:]]
    assert reasons(assess(tiny, anchors=["sacrum"])) == ["implausible_size"]
    cut = [_vertebra("L1", 0, volume_ml=5, on_border=True), *spine[1:]]
    assert assess(cut, anchors=["sacrum"])["flag"] == "ok"  # a vertebra cut by the field of view is no size
    far = [spine[0], _vertebra("L2", 80), _vertebra("L3", 112)]
    assert reasons(assess(far, anchors=["sacrum"])) == ["implausible_spacing"]
    count = {"exceeded": True, "instances_found": 9, "field_of_view_mm": 100.0, "max_vertebrae": 6}
    assert reasons(assess(spine, anchors=["sacrum"], count=count)) == ["too_many_for_field_of_view"]
    # a transitional level without the anchor that would confirm it (verse014's S1 read as "L6")
    lumbar = [_vertebra(n, 32 * k) for k, n in enumerate(["L4", "L5", "L6"])]
    assert reasons(assess(lumbar, anchors=["last_rib"])) == ["transitional_unconfirmed"]
    assert "L6 named with no sacrum found" in assess(lumbar, anchors=["last_rib"])["reasons"][0]["detail"]
    assert assess(lumbar, anchors=["sacrum"])["flag"] == "ok"
    assert assess(lumbar, anchors_looked_for=False)["flag"] == "ok"  # argmax numbering: no anchor looked for
    thoracic = [_vertebra(n, 30 * k) for k, n in enumerate(["T12", "T13", "L1"])]
    assert reasons(assess(thoracic, anchors=["sacrum"])) == ["transitional_unconfirmed"]
    assert assess(thoracic, anchors=["last_rib"])["flag"] == "ok"
    failed = assess([], spine_found=False)
    assert failed["flag"] == "fail" and summary_fields(failed) == {"quality": "fail",
                                                                   "quality_reasons": "spine_not_found"}
    assert summary_fields(None) == {"quality": "", "quality_reasons": ""}
