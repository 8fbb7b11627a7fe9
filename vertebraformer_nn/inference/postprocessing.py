"""Every tuned constant of prediction, in one place: the numbering's instance and decoder parameters and the lesion
candidates, their score, the threshold and the smallest size (DESIGN.md section 10: nothing that defines a model's
output is a constant in code).

:class:`Postprocessing` holds them with their documented defaults: the values chosen on MultiSpine-Sim phantoms
before any model folder had its own. A model folder may carry ``postprocessing.json`` beside ``plans.json`` (as
nnU-Net's ``postprocessing.pkl``/``.json``), written by ``vertebraformer determine-postprocessing``
(``postprocessing_search``) from the model's own cross-validation cases. :func:`resolve` decides what a prediction
uses, each value with where it came from:

1. the defaults of :class:`Postprocessing`;
2. replaced by the model folder's ``postprocessing.json`` (:func:`model_file`; a model installed from nnU-Net's
   zip has it in ``crossval_results_folds_<folds>/``, where ``determine-postprocessing`` also writes it so that
   ``nnUNetv2_export_model_to_zip`` carries it), or by the file named with ``--postprocessing FILE`` (which then
   wins; a value the file lacks keeps its default, and says so);
3. replaced by command-line overrides (``--lesion-threshold``, ``--set NAME=VALUE``).

A missing model file is not an error (the defaults apply, with a note); an unreadable or invalid one is, naming the
file and the problem. Every ``<case>.json`` carries the resolved values, their sources and the notes.

Fields whose metadata holds ``candidates`` are searched by ``determine-postprocessing`` (a few values around the
default each, coordinate-wise; see ``postprocessing_search``); the others are fixed by their reason (anatomy or a
computational guard).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

FILE_NAME = "postprocessing.json"
FORMAT = "vertebraformer-postprocessing"
VERSION = 1
DEFAULT_SOURCE = "default"
OVERRIDE_SOURCE = "command line"


#: what may rank lesion candidates (the ``lesion_score`` field; lesion_candidates.py computes each)
LESION_SCORES = ("max", "mean", "integrated")


class PostprocessingError(ValueError):
    """A post-processing file or value that cannot be used; the message names it and says why."""


def _searched(default, candidates: Tuple, doc: str):
    return field(default=default, metadata={"candidates": tuple(candidates), "doc": doc})


def _fixed(default, doc: str):
    return field(default=default, metadata={"candidates": (), "doc": doc})


def _export(default, doc: str):
    """A value of the step that writes the labels on the input's grid: fixed (the search scores levels and lesions on
    the model's grid, which it does not change) and reported apart."""
    return field(default=default, metadata={"candidates": (), "doc": doc, "step": "export"})


def _quality(default, doc: str):
    """A threshold of the quality flags: fixed (never searched: it changes no label) and reported apart."""
    return field(default=default, metadata={"candidates": (), "doc": doc, "step": "quality"})


@dataclass(frozen=True)
class Postprocessing:
    """The tuned constants of prediction with their defaults; each field's ``doc`` says why its value."""

    # --- numbering: vertebra instances (instances.py) ---------------------------------------------------------
    level_smoothing_mm: float = _searched(7.0, (4.0, 7.0, 10.0), (
        "A foreground voxel whose level probability is below confident_level takes the level whose probability, "
        "Gaussian-smoothed over the foreground with this sigma (mm), is largest; 0 = the plain argmax. A briefly "
        "trained model's voxel-wise levels are salt and pepper inside a body, and every speck of another level cut "
        "the body into pieces: 19-26 instances where the truth had 5-13 (quick benchmark, 8-minute models). 7 mm, "
        "about a quarter of a vertebra's height, was chosen on the demo's unseen-style cases (id rate 46 -> 58 %; "
        "4 mm: 52 %, 10 mm: 57 %) and gave on the benchmark's fold-0 cases id rate 18 -> 47 % (8-minute model) and "
        "41 -> 78 % (19-minute model)."))
    confident_level: float = _searched(0.9, (0.8, 0.9, 0.97), (
        "Voxels the network gives a level with at least this probability keep it: smoothing a confident prediction "
        "only moves the boundaries between touching vertebrae (on the real verse004 mask, one-hot, 7 mm relabelled "
        "213 of 9517 voxels), while weak models never reach it."))
    level_vote_floor: float = _fixed(0.01, (
        "Computational guard of the level smoothing, not tuned: a voxel votes for a level in its neighbourhood only "
        "with a probability of at least this, so each level is smoothed around the few vertebrae that carry it, not "
        "over the whole spine (on a 1 mm grid, 26 full-spine filters took most of the numbering's time). Votes below "
        "1 % move a neighbourhood's weighted mean by less than 1 % of its weight."))
    min_volume_mm3: float = _searched(500.0, (250.0, 500.0, 1000.0), (
        "Pieces below this volume are fragments: joined to a touching piece, or dropped when isolated. About a "
        "tenth of the smallest vertebra (C1/C3, ~5 ml) and 12 voxels at 3.5 mm: large enough to drop speckle and "
        "rim flips of the argmax, small enough to keep a vertebra cut by the field of view."))
    min_relative_volume: float = _searched(0.1, (0.05, 0.1, 0.2), (
        "Pieces below this fraction of the median instance volume are fragments too (a detached spinous process "
        "tip, a false positive beside the spine): as an instance of its own it would shift the numbering of "
        "everything below it. C1 (~5 ml) is well above a tenth of a thoracolumbar median (~25 ml). Pieces on the "
        "array border are spared: a vertebra cut by the field of view is small and still a level of its own. "
        "Applied again among the spine's own instances once those off its axis are gone (spine_extent.fragments): "
        "pieces of the iliac wings pull the first median down."))
    merge_contact_ratio: float = _searched(1.0, (0.7, 1.0, 1.5), (
        "Two pieces whose contact area exceeds this multiple of the smaller one's volume^(2/3) are one vertebra. "
        "A cut through a vertebra spans its whole cross-section; touching vertebrae meet at most across the body's "
        "endplate. Measured on the real verse004 mask at 3.5 mm: touching neighbours 0.12-0.67, a vertebra cut in "
        "half at mid-height 1.9-2.7 (1.13 for its flattened, Genant grade 3 fractured L1)."))
    max_merged_growth: float = _searched(1.5, (1.3, 1.5, 2.0), (
        "... unless their union would exceed this multiple of the median volume of the 4 nearest instances "
        "(neighbouring vertebrae differ by <~20 %): then one of them already holds part of the next vertebra."))
    # --- numbering: cuts at the discs the disc head sees (disc_split.py) -------------------------------------
    disc_split_threshold: float = _searched(0.5, (0.0, 0.5, 0.7), (
        "An instance is cut where the disc head's probability is at least this (the head's own decision boundary): "
        "when its other voxels fall into two or more parts of at least disc_split_min_part of it, each part is a "
        "vertebra. A model without the disc head is never cut. 0 = off. Measured with a disc head fine-tuned onto "
        "the built-in model (40 epochs): unseen-style phantoms id rate 76.8 -> 83.2 % (lowdose), 90.5 % both "
        "(thickslice); real CT verse014 2 -> 4 of 5 levels, example_ct 3 -> 2 of 7 (over-split), 6 -> 7 of 15 in all "
        "(benchmarks/results/disc_head_2026-12-03/)."))
    disc_split_min_part: float = _fixed(0.2, (
        "Anatomy, not tuned: a part keeps at least this fraction of the instance's volume to be a vertebra of its "
        "own (three fused lumbar bodies are near thirds; an articular process cut off at its facet joint, a "
        "spinous process tip or an endplate rim are a few percent) and joins the nearest part otherwise."))
    # --- numbering: cuts at the discs the CT shows (ct_discs.py, disc_split.py) ---------------------------------
    ct_disc_min_score: float = _fixed(20.0, (
        "Instances are cut and joined at the discs the input CT shows along the spine (ct_discs.py): a disc is a peak "
        "of at least this many HU of the endplates' narrow brightness along the curve through the bodies. Read only "
        "where the input's slices are at most 2.5 mm apart along the spine (3 mm where its noise is at most 28 HU) "
        "and the discs at most 28 mm apart (thin thoracic and cervical discs, one peak each), used only when at least "
        "3 are found evenly spaced; "
        "determine-postprocessing reads them in the raw training images as predict does in its input. 0 = off. "
        "10-30 read the same discs on the chest series, 40 misses some. With the built-in model: on 76 unseen-style "
        "phantoms id rate +3.1 points [1.0, 8.1] (better in 4 cases, worse in none), the real chest series one "
        "instance per body, the other real CT unchanged (benchmarks/results/ct_discs_2026-12-06/)."))
    top_fused_ratio: float = _fixed(1.3, (
        "Once the instances are cut at the CT's discs, the head-most instance (of those at least half the median "
        "volume) holding at least this many times the median volume of the three below it is cut where its lower part "
        "holds one of them, at its narrowest slice there: the vertebra the field of view cut above it had joined it, "
        "and its centre lay too high for its own level (instance_repair.split_top_fused). Vertebrae grow towards the "
        "foot, so only the head end. 1.3: 60 unseen-style phantoms +2.3 id rate points (5 better, 1 worse), the "
        "built-in model on the demo's 12 +4.2 (benchmarks/results/top_fused_2026-12-06). 0 = off."))
    ct_disc_rib_bearing_strength: float = _fixed(0.0, (
        "Where the discs the CT shows were used (ct_disc_min_score: at least 3, evenly spaced, at most 28 mm apart, "
        "so a thoracic or cervical spine), anchor_rib_bearing_strength is at least this: the rib finder's false "
        "ribs lie beside lumbar vertebrae (their transverse processes, the twelfth rib beside L1), which such a "
        "pitch leaves out of view. 0 = off."))
    # --- numbering: split and fused bodies (instance_repair.py) -------------------------------------------------
    split_height_ratio: float = _searched(1.7, (0.0, 1.5, 1.7, 2.0), (
        "An instance at least this many times as tall (along the head-foot axis) as the median of its neighbours (up "
        "to two on each side) holds two fused vertebrae: it is cut at its narrowest cross-section in its middle half, "
        "when each part keeps at least split_min_part of it. Neighbouring vertebrae differ in height by <~25 %, two "
        "of them fused are ~2x; C2 with its dens is ~2x its neighbours too, but its dens is far below split_min_part. "
        "0 = off."))
    split_min_part: float = _fixed(0.3, (
        "Anatomy, not tuned: each part of a split keeps at least this fraction of the instance's volume (two fused "
        "bodies are near halves; a dens, a spinous process tip or a cut-off endplate are not)."))
    split_max_neck: float = _fixed(0.7, (
        "Anatomy, not tuned: ... and when that cross-section is at most this fraction of the instance's median one "
        "(a disc between two bodies, with the gap between their laminae, is narrower than either body; a uniformly "
        "wide instance is one tall vertebra or a flipped half already joined to its neighbour, not two fused)."))
    split_max_height_mm: float = _fixed(100.0, (
        "Anatomy, not tuned: an instance taller than this (head-foot) holds several vertebrae whatever its "
        "neighbours (no vertebra, processes included, is taller than two of the largest pitches, ~66 mm; thick "
        "slices blur the discs and fuse a whole column): it is cut at necks as above, again while a part is still "
        "this tall. 0 = off."))
    split_even_pitch_mm: float = _fixed(30.0, (
        "Anatomy, not tuned (the typical pitch of the mid-thoracic to lumbar spine, 25-33 mm, level_anatomy.py): an "
        "instance taller than split_max_height_mm without a neck is cut into round(length / this) parts (at least 2) "
        "of equal length along its own head-foot direction. On real CT the discs between fused bodies are tilted "
        "against every slice (lordosis, an oblique grid), so no slice is a neck: verse014's T12-L3 came as one 112 mm "
        "instance. Measured on the real-CT variants (benchmarks/results/even_split_2026-12-04/): 9.1 -> 9.5 levels "
        "right of 15; with it under split_height_ratio too (parts by the neighbours' height) 5.7, with "
        "split_max_height_mm 70 or 80 mm 7.7-8.8. 0 = off (such an instance stays whole)."))
    split_volume_ratio: float = _searched(2.5, (0.0, 2.0, 2.5, 3.0), (
        "Once pieces have joined their vertebra, an instance split_height_ratio times as tall as its neighbours (two on "
        "each side) and at least this many times their median volume is two vertebrae fused without a neck (the discs "
        "tilted against every slice: verse014's L4 and L5, 84 mm and 4.3 x): it is cut into parts of equal length "
        "along its own head-foot direction, one per neighbour height, each at least 20 mm "
        "(instance_repair.split_fused_instances). 2.5: on 59 unseen phantoms id rate +1.9 points (2 cases better, none "
        "worse), verse014 5 of 5; 2.0 and 1.7 made 1 and 4 phantoms worse "
        "(benchmarks/results/fused_split_2026-12-04). 0 = off."))
    level_run_height_ratio: float = _searched(0.0, (0.0, 1.2, 1.4, 1.7), (
        "Once pieces have joined their vertebra, an instance at least this many times as tall as its neighbours (two "
        "on each side) whose slabs carry, head to foot, runs of levels in the spine's order (each at least 10 mm, "
        "each part at least half the median instance) is cut where the runs meet (instance_repair.split_level_runs): "
        "vertebrae the network told apart by level, joined across a bridged disc. Off by default: on the built-in "
        "model's 59 unseen phantoms 1.2 named +0.8 [0.0, 3.8] points more right (2 cases better, none worse), 1.3 "
        "+0.1, 24 held-out phantoms and the real CT unchanged; on the quick protocol's fine-tuned networks 1.2 gave "
        "+3.9 [-0.1, 9.3] (fold 0) and +0.8 (fold 5). But neighbours differ in height by up to ~25 %, and at 1.2 a "
        "single vertebra whose level flips half-way is cut; a model's own search may choose it "
        "(benchmarks/results/level_runs_2026-12-05). 0 = off."))
    merge_half_height: float = _searched(0.65, (0.0, 0.55, 0.65, 0.75), (
        "Two consecutive touching instances each at most this fraction of the median height of the instances around "
        "them, together at most 1.3 x that median, are one vertebra cut across (a weak model's two levels on the "
        "upper and lower half of one body): merged, so the decoder does not give them two levels and shift every "
        "level below. A whole vertebra is ~1x its neighbours, half of one ~0.5x. 0 = off."))

    merge_piece_fraction: float = _fixed(0.2, (
        "Anatomy, not tuned: an instance inside the field of view smaller than this fraction of the median volume of "
        "its neighbours (two on each side along the spine, once the instances off its axis are gone) joins the "
        "instance it shares most faces with (instance_repair.absorb_pieces). Neighbouring vertebrae differ in volume "
        "by <~30 % and a fractured one keeps more than half of its; a facet, a lamina or an endplate rim argmaxed "
        "to a level of its own is about a tenth. Measured with the built-in model "
        "(benchmarks/results/merge_pieces_2026-12-04/): real-CT variants 9.5 -> 9.9 levels right of 15 (better in 5 "
        "variants, worse in 1), verse014's original scan 3 -> 4 of 5; 24 unseen-style phantoms id rate +2.5 points "
        "[-1.3, 15.0] (one case better, one worse). 0 = off (such a piece stays an instance)."))

    merge_overlap_fraction: float = _fixed(0.7, (
        "Anatomy, not tuned: two touching instances side by side (centres farther apart across the head-foot axis "
        "than along it) whose head-foot extents overlap by at least this fraction of the shorter one, and which "
        "together are at most 1.3x as tall as the taller, are one vertebra cut front from back (a body and its arch "
        "argmaxed to two levels) and are merged (instance_repair.merge_side_by_side). Consecutive vertebrae lie one "
        "above the other and overlap only by the processes that reach over the next level, a fifth to a third of "
        "the shorter. Measured with the built-in model (benchmarks/results/side_by_side_2026-12-04/): the chest "
        "series 14 -> 12 labels for about 12 vertebrae in view; real-CT variants 9.9 -> 10.1 levels right of 15 (2 "
        "better, none worse); 24 unseen-style phantoms id rate +0.4 points [-0.6, 2.8] (one case better, one "
        "worse). 0 = off."))

    # --- numbering: the spine in the field of view (spine_extent.py) -------------------------------------------
    spine_min_volume_ml: float = _fixed(10.0, (
        "Less predicted vertebra volume than this in the whole scan (after fragments are cleaned) is no spine: no "
        "vertebra is written and the case is flagged 'fail' (spine not found). The smallest vertebra (a child's C3) "
        "is ~5 ml and a partial field of view still holds a few whole ones; specks of false positives in a scan "
        "without a spine stay below it."))
    instance_min_foreground: float = _fixed(0.5, (
        "An instance whose mean foreground probability (1 - background) is below this is not a vertebra (a "
        "diffuse, uncertain false positive) and is dropped. A vertebra's voxels hold > 0.9 even from briefly "
        "trained models; 0.5 is the decision boundary against background."))
    min_pitch_fraction: float = _fixed(0.6, (
        "Anatomy, not tuned: the shortest plausible centroid distance between consecutive vertebrae is this "
        "fraction of the typical adult one of their levels (level_anatomy.py; real masks: 17-22 mm in the neck, "
        "27-36 mm in the lumbar spine, people differ by ~1.3x). It bounds the count (a field of view of E mm holds "
        "at most the vertebrae whose shortest pitches fit in E: the smallest instances beyond are dropped) and "
        "penalises in the decoder labels that put vertebrae closer than their levels allow (Gaussian in the log "
        "ratio with gap_log_sigma). 0 = neither."))
    max_off_axis_mm: float = _fixed(40.0, (
        "Anatomy, not tuned: an instance whose centre lies further than this from the spine's axis in the axial "
        "plane is not a vertebra and is dropped (spine_extent.off_axis: iliac wings, shoulder blades, ribs). "
        "Consecutive vertebrae of a curved spine lie close in the axial plane (a lordosis or scoliosis builds "
        "over many levels); an iliac wing's centre lies 60-100 mm, a shoulder blade's more than 100 mm from the "
        "midline. "
        "0 = off."))

    # --- numbering: anatomical anchors from the image (anchors.py) ---------------------------------------------
    anchor_bone_hu: float = _fixed(200.0, (
        "Anatomy, not tuned: voxels at or above this HU outside the predicted vertebrae are bone for the anchors "
        "(ribs, sacrum and pelvis, skull base). Cortical and trabecular bone read 150-1500 HU, muscle and organs "
        "below 100 (contrast-filled vessels, renal cortex and bowel up to ~400 pass too: anchors.py tells a rib by its "
        "shape at the vertebra's height, not by its HU). Where the predicted vertebrae's median HU is lower (thin, "
        "osteoporotic bone), that median is the threshold, down to 120 HU and to soft tissue + 3 noise SDs "
        "(anchors.bone_threshold)."))
    rib_min_reach_mm: float = _fixed(60.0, (
        "Anatomy, not tuned: bone touching a vertebra at its own height is a rib when it reaches at least this far "
        "from the vertebra's centroid axis in the axial plane (ribs: 90-120 mm half width; a lumbar transverse "
        "process ends 40-50 mm from the midline and belongs to its vertebra anyway)."))
    pelvis_min_volume_ml: float = _fixed(50.0, (
        "Anatomy, not tuned: bone directly below the last vertebra (within 30 mm, in-plane within 35 mm of its "
        "axis) is the sacrum when its connected bone holds at least this volume and reaches rib_min_reach_mm from "
        "that axis (sacral alae, iliac wings): then the last vertebra is L5 (or L6). A vertebra left unsegmented "
        "below holds 20-60 ml but reaches less far."))
    skull_min_volume_ml: float = _fixed(40.0, (
        "Anatomy, not tuned: bone directly above the first vertebra (within 30 mm, in-plane within 35 mm of its "
        "axis) is the skull base when its connected bone holds at least this volume, lies mostly above the first "
        "vertebra and is several times that vertebra's volume (anchors.py): then the first vertebra is C1 "
        "(C1 alone, if left unsegmented, holds 10-20 ml)."))

    max_pieces_before_dust: int = _fixed(2000, (
        "Computational guard, not tuned: more argmax pieces than this means salt-and-pepper output, and specks "
        "below min_volume_mm3 are cleared before the piece graph is built (a whole spine of 26 vertebrae with a few "
        "flipped fragments each stays far below it; the graph of 10^5 pieces would take minutes)."))

    # --- numbering: the joint decoder (decoder.py) -------------------------------------------------------------
    transitional_prior: float = _searched(0.1, (0.03, 0.1, 0.3), (
        "Prior probability of a transitional level (T13, L6): each occurs in roughly 5-10 % of people, so the "
        "level evidence must carry it (about 10:1 against the neighbouring level) before it is chosen."))
    skip_prior: float = _searched(0.1, (0.03, 0.1, 0.3), (
        "Prior probability per skipped (missing) level: vertebrae are rarely missed, even where a gap allows it."))
    gap_log_sigma: float = _fixed(0.25, (
        "Anatomy, not tuned: spread of log(gap ratio / expected ratio); neighbouring inter-vertebral distances "
        "differ by 5-20 % (growth from C to L, centre-of-mass noise at coarse spacing)."))
    skip_tolerance: float = _fixed(0.4, (
        "Anatomy, not tuned: skipping k levels needs a gap of at least (k + 1 - tolerance) typical distances: 1.6 "
        "for one missing vertebra, far outside normal variation, while a missing vertebra gives ~2."))
    max_skip: int = _fixed(3, "At most this many consecutive levels skipped at one place.")
    coarse_level_weight: float = _searched(1.0, (0.0, 0.5, 1.0, 2.0), (
        "Weight of the coarse whole-field stage's level evidence (the sibling 3d_lowres model, coarse_stage.py) in "
        "the decoder: each instance's level log-probabilities are its own plus this times the coarse model's over "
        "its voxels (a product of experts). The coarse model sees the whole field of view with its anchors at once, "
        "where a fine patch sees ~30 cm; 1 = both count alike. 0 = off (predict --no-coarse also skips running it)."))
    coarse_transitional: float = _searched(1.0, (0.0, 1.0), (
        "1: the coarse stage's evidence for T13 and L6 is that of the level beside each it favours more (T12 or L1; "
        "L5), so it neither supports nor penalises a sequence with a transitional vertebra: its T13 and L6 channels "
        "never exceed 0.09 on any case (the built-in model's coarse stage and the quick protocol's alike: such "
        "vertebrae are rare in training), and a sequence with a T13 paid for it (a T10-L1 crop and a C7-T13 spine "
        "with VerSe held out lost every level to it). The fine evidence and the anchors decide them. On five quick-"
        "protocol draws' saved probabilities, fold 5 (VerSe held out) +3.6 to +7.2 points of id rate in 9 of 10 sets, "
        "13 cases better, none worse, fold 0 unchanged; the built-in model's 72 unseen phantoms 2 cases worse (its "
        "false ribs then insert a T13: its postprocessing.json says 0), the real CT unchanged "
        "(benchmarks/results/coarse_transitional_2026-12-08). 0 = the coarse stage's own."))
    anchor_rib_strength: float = _searched(4.0, (0.0, 2.0, 4.0, 8.0), (
        "Log-prior (nats) against every level but T12 and T13 for the last rib-bearing vertebra (anchors.py), when a "
        "vertebra without ribs follows it. 4 nats: the level evidence must favour another level ~55:1 to overrule "
        "the image. 0 = off."))
    anchor_sacrum_strength: float = _searched(4.0, (0.0, 2.0, 4.0, 8.0), (
        "Log-prior (nats) against every level but L5 and L6 for the last vertebra when the sacrum and pelvis lie "
        "directly below it (anchors.py). 0 = off."))
    anchor_skull_strength: float = _searched(4.0, (0.0, 2.0, 4.0, 8.0), (
        "Log-prior (nats) against every level but C1 for the first vertebra when the skull base lies directly above "
        "it (anchors.py). 0 = off."))
    anchor_dens_strength: float = _searched(4.0, (0.0, 2.0, 4.0, 8.0), (
        "Log-prior (nats) against every level but C2 for a vertebra whose dens rises into the ring of the one above "
        "it (anchors.py). 0 = off."))
    anchor_rib_bearing_strength: float = _searched(0.0, (0.0, 4.0, 8.0), (
        "Log-prior (nats) against every level but T1-T13 for each vertebra that bears a rib whose head lies at its own "
        "height (anchors.py: only thoracic vertebrae do). Off by default: the rib finder is not yet reliable enough. "
        "At 8 the real chest series is numbered T1-T12 instead of C7-T11 (the network's evidence named its first "
        "of 12 rib-bearing instances C7 by 4.9 nats), but on 60 unseen-style phantoms the id rate falls 2 points "
        "and on the real CT's ten variants 0.3 levels: bone the finder takes for a rib beside lumbar vertebrae (a "
        "miscalibrated scanner's speckle, metal streaks, an iliac wing at the edge of the field of view, the twelfth "
        "rib beside L1) then outweighs the network (benchmarks/results/rib_bearing_2026-12-05). A value for "
        "determine-postprocessing to try on a model's validation cases."))
    end_drop_cost: float = _searched(8.0, (0.0, 4.0, 8.0, 12.0), (
        "Cost (nats) of deciding that the first or the last instance is not a vertebra of the sequence (a piece of "
        "skull above C1, of sacrum below L5, a rib's head that the instance steps kept): the decoder may leave out "
        "one instance at each end and then pays this, plus the strength of an anchor on it. Where a wrong "
        "instance at an end would shift every level, its own evidence disagrees with the place it would take by "
        "far more (21 nats on a phantom neck). 8: on 59 phantoms of unseen seeds and styles, id rate +1.7 [0.0, "
        "8.5] points and Dice +1.6 [0.3, 6.9] against 0, no case worse; 4 (without end_drop_max_fraction) numbered "
        "3 cases worse (benchmarks/results/end_drop_2026-12-04). 0 = off: every instance is numbered."))
    end_drop_max_fraction: float = _fixed(0.5, (
        "Only an end instance smaller than this fraction of the median volume of the others may be left out "
        "(end_drop_cost): a piece of skull, sacrum or rib head, not a vertebra the network segmented whole whose "
        "evidence fits nowhere (on phantoms and real CT the pieces worth leaving out held 0.04-0.52 x the median, "
        "the whole vertebrae wrongly left out 0.58-3.0 x)."))
    cut_l6_is_sacrum: float = _fixed(1.0, (
        "1: a last instance the decoder names L6, with the field of view ending within 10 mm below it and no sacrum "
        "anchor, is left out as the sacrum's first segment (numbering.sacrum_top): a network trained without a sacrum "
        "label names a cut S1 below L5 \"L6\", and a sacrum in view is far more common than a transitional L6. "
        "verse014 0.804 -> 0.818 binary spine Dice; 95 of 96 unseen-style phantoms unchanged "
        "(benchmarks/results/sacrum_top_2026-12-06). 0 = off: it stays L6, flagged transitional_unconfirmed."))
    double_volume_ratio: float = _searched(1.5, (0.0, 1.5, 2.0), (
        "An instance at least this many times the median volume of its neighbours (two on each side) may hold two "
        "vertebrae that no cut separated (a fused cervical pair is too short for split_fused_instances): beside it "
        "the decoder may skip one level whatever the gap ratio, at the usual skip_prior. Whole spines of 24 came as "
        "15-21 instances whose skull and sacrum anchors could not both hold without such skips. 1.5: on 59 unseen "
        "phantoms id rate +3.0 [1.3, 7.4] points, 8 cases better, none worse; the real CT unchanged "
        "(benchmarks/results/double_instances_2026-12-04). 0 = off."))
    double_run_ratio: float = _searched(1.2, (0.0, 1.2, 1.3), (
        "An instance at least this many times the median volume of its neighbours (two on each side, at least three "
        "in all: numbering.DOUBLE_RUN_MIN_NEIGHBOURS) whose voxels' "
        "levels run, head to foot, in the spine's order (two runs of at least 10 mm: instance_repair."
        "ordered_level_runs) may hold two vertebrae too, as for double_volume_ratio: a pair the network told apart by "
        "level but whose pieces joined across a wide contact, smaller than double_volume_ratio asks (a cervical C4+C5 "
        "came 1.4 x its neighbours, and the decoder shifted the whole spine above it against its dens anchor). 1.2: "
        "on the saved probabilities of four quick-protocol draws (16 test sets) and the built-in model's 72 unseen "
        "phantoms, id rate +0.3 to +2.8 points in 14 sets, 19 cases better and 1 worse (with fewer than three "
        "neighbours a 3-vertebra lumbar crop lost a level); the real CT unchanged "
        "(benchmarks/results/double_runs_2026-12-07). 0 = off (the volume alone)."))
    double_split: float = _searched(1.0, (0.0, 1.0), (
        "1: an instance the decoded sequence gives two levels (one skipped beside it, where double_volume_ratio says "
        "it may hold two vertebrae, and at least double_volume_ratio x the median volume of all instances) is cut in "
        "two halves along its own head-foot direction after decoding and numbered with both levels, so the skipped "
        "vertebra is named somewhere. 0 = off: the instance keeps one level. On 59 unseen phantoms per-vertebra Dice "
        "+0.4 [0.0, 1.1] points, id rate +0.3 [-0.4, 1.4] (5 cases better, 3 worse); 24 held-out phantoms Dice +0.4, "
        "id rate unchanged; real CT unchanged (benchmarks/results/level_runs_2026-12-05)."))
    shared_level_prior: float = _fixed(0.05, (
        "Prior probability that two consecutive instances are pieces of one vertebra (a body cut across, a body "
        "and its arch apart): the decoder may give both the same level, and they are numbered as one vertebra, "
        "where their centres lie closer than shared_level_max_pitch x the typical pitch of that level. On the real "
        "crop TPTBox (L2-L4, 70 mm) the built-in model's instances came as six pieces for three vertebrae, each "
        "with a level of its own (T12-L5): with it, L3 and L4 are one instance each and right (L2-L4 3 of 3 by "
        "overlap, 1 before); real-CT variants 10.4 -> 10.8 levels right of 15; 60 unseen-style phantoms unchanged "
        "(benchmarks/results/shared_level_2026-12-06). 0 = off: levels strictly increase."))
    shared_level_max_pitch: float = _fixed(0.5, (
        "Anatomy, not tuned: two consecutive instances may share a level (shared_level_prior) only when their "
        "centres lie closer than this fraction of the typical pitch of that level (level_anatomy.py): consecutive "
        "vertebrae lie at least min_pitch_fraction (0.6) x it apart, pieces of one vertebra far closer. On the 60 "
        "phantoms 0.7 changed 4 cases (2 better, 2 worse, one a piece joined to an instance of two fused vertebrae), "
        "0.6 also 4 (one 0.92 -> 0.0: a shifted neck), 0.5 none."))
    shared_level_max_height: float = _fixed(0.25, (
        "Anatomy, not tuned: two consecutive instances may also share a level (shared_level_prior) when their centres "
        "lie at one height, less than this fraction of the level's typical pitch apart along the head-foot axis, "
        "however far apart across: pieces side by side, C1's ring in two halves, a body and a process beside it. "
        "Consecutive vertebrae lie most of a pitch apart in height even in a curved spine. Not for a pair with an "
        "instance on the field of view's border (a process of the vertebra beyond it). On the quick protocol's kept "
        "probabilities (2026-12-07) fold 0 id rate 76.4 -> 78.6, fold 5 75.6 -> 77.0, no case worse; 60 unseen-style "
        "phantoms and the real CT unchanged; reading the height with the 0.5 of shared_level_max_pitch instead joined "
        "a neck's T1 to T2 (a phantom 0.92 -> 0.0) (benchmarks/results/side_by_side_levels_2026-12-07). 0 = off."))
    gap_window: int = _fixed(2, (
        "Typical distance at a gap = median of up to this many gaps on each side (not the gap itself), so the "
        "reference follows the growth of vertebrae from neck to lumbar spine."))

    # --- quality flags (quality.py): they change no label, they say when not to trust them ---------------------
    unsure_margin: float = _quality(1.1, (
        "The numbering is unsure when the best label sequence is less than exp(this) times as likely as the second "
        "best (k-best Viterbi over the same lattice): 1.1 nats = 3:1."))
    min_mean_confidence: float = _quality(0.5, (
        "Low confidence: the vertebrae's mean decoder confidence (posterior marginal of their level) is below this."))
    volume_factor: float = _quality(4.0, (
        "Implausible size: a whole vertebra (not cut by the field of view) more than this factor smaller or larger "
        "than the typical volume of its level (level_anatomy.py). People differ by ~2x in volume; 4x is a "
        "vertebra of another region, a fragment or two fused."))
    max_pitch_factor: float = _quality(1.7, (
        "Implausible spacing: consecutive vertebrae (no level skipped) farther apart than this times, or closer "
        "than min_pitch_fraction times, the typical pitch of their levels."))

    # --- the labels on the input's grid (bone_boundary.py) -----------------------------------------------------
    bone_edge_band_mm: float = _export(2.0, (
        "Within this distance (mm; at least one input voxel, only along axes where the input is finer than the "
        "model's grid) of the predicted spine's boundary the CT decides: voxels above the mid-point between the "
        "median HU just inside and just outside join the nearest vertebra they connect to, those below leave. "
        "The network's boundary comes from the model's grid (3.5 mm for the CPU preset) and misses cortex while "
        "taking in tissue beside it. "
        "Chosen on the built-in model's predictions (benchmarks/results/bone_edge_2026-12-05/): binary spine Dice "
        "on 71 phantoms of four sets +0.8 to +2.3 points (62 cases better, 9 worse; 3 mm: -0.1 to +1.9), on real CT "
        "verse014 0.728 -> 0.778, TPTBox 0.672 -> 0.706, example_ct 0.764 -> 0.817 (3 mm: 0.784, 0.704, 0.817). "
        "The body centroids (<case>_ctd.json) stay those of the network's labels. 0 = off (the network's "
        "boundary as interpolated)."))
    bone_edge_grow_mm: float = _export(0.0, (
        "Bone at or above the bone edge's threshold within this distance (mm; along the same axes) of the "
        "predicted spine joins the vertebra it connects to through such bone; bone_edge_band_mm stops at the band. "
        "For a network that stops short of the bone: the built-in model, trained on phantoms, leaves out the front "
        "of real vertebral bodies, and its postprocessing.json sets 6 (benchmarks/results/bone_growth_2026-12-06/: "
        "binary spine Dice on real CT verse014 0.778 -> 0.804, TPTBox 0.706 -> 0.750, example_ct 0.817 -> 0.833, "
        "higher on all 30 real case-variants; on 96 phantoms, where its boundary is already on the bone edge, "
        "-0.9 points, the rib heads taken in). Values at or below bone_edge_band_mm change nothing (0: the band "
        "alone)."))

    # --- lesions: candidates (lesion_candidates.py), their score, the written map (lesions.py) -----------------------
    lesion_candidate_floor: float = _searched(0.05, (0.02, 0.05, 0.1), (
        "Lesion candidates reach down to this probability: every local maximum of the lesion map above it is a "
        "candidate with a score, listed in <case>.json and ranked in the lesion AP, whether or not it is written "
        "as a lesion. A briefly trained head is right about where and wrong about how much (lesion AP 0 at a "
        "fixed 0.5: no instance existed below it); a trained head's background stays below 0.01, so 0.05 keeps "
        "the candidates to places the head singles out. Never above lesion_threshold."))
    lesion_smoothing_mm: float = _searched(0.0, (0.0, 2.0, 4.0), (
        "Gaussian sigma (mm) of the probability map in which the candidates' peaks and basins are found (their "
        "extent and score read the map itself); 0 = none. The split rule below already merges a peak that does "
        "not stand out from its neighbour, so smoothing is off unless validation finds that it helps."))
    lesion_split_ratio: float = _searched(0.7, (0.5, 0.7, 0.9), (
        "Two peaks are two candidates when the probability on the best path between them (the saddle) drops "
        "below this fraction of the lower peak; otherwise the lower one joins the higher (h-maxima of the log "
        "probability, then a watershed). 0.7: two touching lesions with their own cores split, while a plateau "
        "with ripples of a few percent stays one lesion; relative, so a weak head's scaled-down map splits "
        "like a confident one's."))
    lesion_extent_fraction: float = _searched(0.2, (0.1, 0.2, 0.3, 0.5), (
        "A candidate's extent: the voxels of its basin whose probability is at least this fraction of its peak "
        "(and at least lesion_candidate_floor), connected to the peak. The head's response is narrower than the "
        "lesion: on 36 phantoms of unseen styles the built-in model's extents at half the peak held 0.38x the "
        "true lesion's volume (median), at 0.2 0.85x, at 0.1 1.28x; 0.2 gave the best median IoU (0.45) and "
        "lesion AP@0.3 +10 points over 0.5 there, +7 / +3 on the quick protocol's fine-tuned networks "
        "(benchmarks/results/lesion_extent_2026-12-05)."))
    lesion_score: str = _searched("max", LESION_SCORES, (
        "What ranks the candidates (the lesion AP's order): 'max' = peak probability, 'mean' = mean probability "
        "over the extent, 'integrated' = probability summed over the extent in mm3 (an expected volume). 'max' "
        "by default: it does not depend on size, and the written lesions (peak above lesion_threshold) are then "
        "exactly the top of the ranking, so the operating point lies on the precision-recall curve; 'mean' "
        "punishes a lesion for its uncertain rim, 'integrated' ranks large diffuse responses first."))
    lesion_min_volume_mm3: float = _searched(100.0, (30.0, 100.0, 250.0), (
        "Candidates whose extent is smaller are dropped as noise: about a 6 mm sphere (MultiSpine-Sim lesions "
        "have radii of 5 mm and more). 30 mm3 went with extents at half the peak (0.38x a lesion's volume); at "
        "lesion_extent_fraction 0.2 the same responses are about 2x larger and more of the small ones pass 30 "
        "(chest CT: 13 -> 23 candidates; 7 at 100). 100 changes no AP by more than 0.1 point on the phantoms "
        "and drops 12-26 % of their candidates."))
    lesion_threshold: float = _searched(0.5, (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), (
        "Candidates whose peak probability exceeds this value are written as lesions (<case>_lesion.nii.gz, "
        "<case>.json lesions[]); the others stay candidates. The operating point only: it changes precision and "
        "recall, never the ranking or the AP, so determine-postprocessing chooses it by the F1 score at IoU 0.1 "
        "and 0.3, after the candidate values above, on the peaks weighted by the CT as predict weighs them "
        "(lesion_ct_contrast; the search on the model grid, predict on the input's). 0.5: the sigmoid's decision "
        "boundary, right for a briefly trained head whose lesions stay below 0.5 (the demo's); the built-in "
        "model's head, trained longer with the recall-weighted loss, writes 3 false lesions per true one there and "
        "had its F1 best at 0.8; with the candidates judged on the CT (lesion_ct_contrast) at 0.7, where it writes "
        "22 lesions on 36 phantoms, all true."))

    # --- lesions judged on the CT at the input's resolution (lesion_contrast.py) -----------------------------------
    lesion_ct_contrast: float = _export(1.0, (
        "1: each candidate's score and peak are multiplied by min(1, |contrast| / SD), its contrast being its mean "
        "HU minus the median of the predicted vertebra's bone 2-6 mm around it (below 400 HU), SD that bone's "
        "spread (0.5 without such bone; 0 on metal: a tenth of its voxels at 2000 HU or more): a lytic or blastic "
        "lesion differs from the bone it replaces, a false response of the head often does not, and the head "
        "answers to screws as to blastic lesions. So the ranking (the AP) and the written lesions "
        "(lesion_threshold compares the weighted peak) follow what the CT shows. Chosen on 36 phantoms of unseen "
        "styles with the built-in model: lesion AP@0.3 49.8 -> 57.0 (61.5 with lesion_ct_band_mm), written "
        "lesions' precision at IoU 0.3 0.48 -> 0.95; the quick protocol's networks (not chosen on), with the band: "
        "fold 0 34.3 -> 50.0, fold 5 25.0 -> 39.1 (benchmarks/results/lesion_contrast_2026-12-05). "
        "0 = off (the head's scores alone)."))
    lesion_ct_band_mm: float = _export(3.0, (
        "Within this distance (mm) of a candidate's extent and inside a predicted vertebra, where its contrast is "
        "at least one SD of the bone around it, the extent becomes the voxels on the lesion's side of the half-way "
        "HU between that bone and the candidate (the CT smoothed by 1 mm), connected to its own: the head's extent "
        "comes from the model's grid, the lesion's edge is where its density meets the bone's. 3 mm chosen on the "
        "36 phantoms above (2 mm: 1.9 points lower, 5 mm: no higher): AP@0.3 +2.0 alone, +4.5 with the contrast "
        "weight; 0 = off."))

    def __post_init__(self):
        problems = [f"{name} = {getattr(self, name)!r}: {why}" for name, why in _problems(self)]
        if problems:
            raise PostprocessingError("invalid post-processing value(s): " + "; ".join(problems))

    # -------------------------------------------------------------------------------------------- helpers
    @property
    def transitional_log_prior(self) -> float:
        return math.log(self.transitional_prior)

    @property
    def skip_log_prior(self) -> float:
        return math.log(self.skip_prior)

    def to_dict(self) -> Dict[str, float]:
        return asdict(self)




def show(value) -> str:
    """A parameter value as messages print it: numbers with ``:g``, choices as they are."""
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def candidates(name: str) -> Tuple:
    """The values ``determine-postprocessing`` tries for ``name`` (empty: not searched)."""
    return _FIELDS[name].metadata["candidates"]


def documentation(name: str) -> str:
    return _FIELDS[name].metadata["doc"]


#: values that only need to be >= 0 (0 switches an anchor, the coarse evidence or a threshold off)
_NON_NEGATIVE = ("spine_min_volume_ml", "split_volume_ratio", "max_off_axis_mm", "split_max_height_mm",
                 "split_even_pitch_mm", "merge_piece_fraction",
                 "anchor_bone_hu", "rib_min_reach_mm", "pelvis_min_volume_ml", "skull_min_volume_ml",
                 "coarse_level_weight", "coarse_transitional", "anchor_rib_strength", "anchor_sacrum_strength",
                 "anchor_skull_strength", "anchor_dens_strength", "anchor_rib_bearing_strength", "end_drop_cost",
                 "end_drop_max_fraction", "ct_disc_min_score", "ct_disc_rib_bearing_strength",
                 "cut_l6_is_sacrum",
                 "double_volume_ratio", "double_run_ratio",
                 "level_run_height_ratio", "double_split",
                 "unsure_margin", "bone_edge_band_mm", "bone_edge_grow_mm", "lesion_ct_contrast",
                 "lesion_ct_band_mm")


def _problems(p: Postprocessing) -> List[Tuple[str, str]]:
    out = []
    for name in ("level_smoothing_mm", "min_volume_mm3", "min_relative_volume", *_NON_NEGATIVE):
        if not getattr(p, name) >= 0:
            out.append((name, "must be >= 0"))
    for name in ("merge_contact_ratio", "max_merged_growth", "gap_log_sigma", "volume_factor", "max_pitch_factor"):
        if not getattr(p, name) > 0:
            out.append((name, "must be > 0"))
    for name in ("transitional_prior", "skip_prior", "lesion_threshold", "lesion_candidate_floor",
                 "lesion_split_ratio", "lesion_extent_fraction"):
        if not 0 < getattr(p, name) < 1:
            out.append((name, "must lie in (0, 1)"))
    if 0 < p.lesion_threshold < p.lesion_candidate_floor < 1:
        out.append(("lesion_threshold", f"must not lie below lesion_candidate_floor = {p.lesion_candidate_floor:g} "
                                        "(lower that too)"))
    if p.lesion_score not in LESION_SCORES:
        out.append(("lesion_score", f"must be one of {', '.join(LESION_SCORES)}"))
    for name in ("split_min_part", "instance_min_foreground", "min_mean_confidence", "split_max_neck",
                 "disc_split_threshold", "merge_overlap_fraction"):
        if not 0 <= getattr(p, name) < 1:
            out.append((name, "must lie in [0, 1)"))
    if not 0 < p.disc_split_min_part <= 0.5:
        out.append(("disc_split_min_part", "must lie in (0, 0.5]"))
    for name in ("split_height_ratio", "top_fused_ratio"):  # 1 or less would cut vertebrae of ordinary size
        if not (getattr(p, name) == 0 or getattr(p, name) > 1):
            out.append((name, "must be 0 (off) or > 1"))
    for name in ("merge_half_height", "shared_level_prior", "shared_level_max_pitch", "shared_level_max_height",
                 "min_pitch_fraction"):
        if not 0 <= getattr(p, name) < 1:
            out.append((name, "must lie in [0, 1) (0 = off)"))
    if not 0 < p.confident_level <= 1:
        out.append(("confident_level", "must lie in (0, 1]"))
    if not 0 <= p.level_vote_floor < 1:
        out.append(("level_vote_floor", "must lie in [0, 1)"))
    for name in ("lesion_min_volume_mm3", "lesion_smoothing_mm"):
        if not getattr(p, name) >= 0:
            out.append((name, "must be >= 0"))
    if not 0 <= p.skip_tolerance < 1:
        out.append(("skip_tolerance", "must lie in [0, 1)"))
    for name in ("max_pieces_before_dust", "max_skip", "gap_window"):
        value = getattr(p, name)
        if not float(value).is_integer() or value < (0 if name == "max_skip" else 1):
            out.append((name, "must be a whole number >= " + ("0" if name == "max_skip" else "1")))
    return out


#: The documented defaults.
DEFAULTS = Postprocessing()
NAMES = tuple(f.name for f in fields(Postprocessing))
#: the fields of each step, in the order of the dataclass: vertebra instances, the decoder, lesions
INSTANCE_NAMES = NAMES[:NAMES.index("max_pieces_before_dust") + 1]
DECODER_NAMES = NAMES[len(INSTANCE_NAMES):NAMES.index("gap_window") + 1]
NUMBERING_NAMES = INSTANCE_NAMES + DECODER_NAMES
_FIELDS = {f.name: f for f in fields(Postprocessing)}
#: the thresholds of the quality flags (they change no label)
QUALITY_NAMES = tuple(n for n in NAMES if _FIELDS[n].metadata.get("step") == "quality")
#: the values of the labels' export to the input grid
EXPORT_NAMES = tuple(n for n in NAMES if _FIELDS[n].metadata.get("step") == "export")
LESION_NAMES = tuple(n for n in NAMES[len(NUMBERING_NAMES):] if n not in QUALITY_NAMES + EXPORT_NAMES)


def coerce(name: str, value):
    """A value for field ``name`` from JSON or the command line, in the field's type; PostprocessingError naming
    the field for anything else."""
    if name not in _FIELDS:
        raise PostprocessingError(f"unknown post-processing parameter {name!r}; known: {', '.join(NAMES)}")
    kind = type(getattr(DEFAULTS, name))
    if kind is str:  # a choice (lesion_score): one of the field's candidates
        if str(value) not in candidates(name):
            raise PostprocessingError(f"{name} = {value!r} must be one of {', '.join(candidates(name))}")
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PostprocessingError(f"{name} = {value!r} is not a number") from None
    if kind is int:
        if not number.is_integer():
            raise PostprocessingError(f"{name} = {value!r} must be a whole number")
        return int(number)
    return number


def with_values(base: Postprocessing, values: Mapping[str, object]) -> Postprocessing:
    """``base`` with ``values`` (name -> value, coerced and checked)."""
    return replace(base, **{name: coerce(name, v) for name, v in values.items()})


# ------------------------------------------------------------------------------------------------ file
def read_file(path) -> Dict[str, float]:
    """The ``parameters`` of a ``postprocessing.json`` (only those it names); PostprocessingError naming the file
    when it is not one or holds an unknown or invalid value."""
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise PostprocessingError(f"{path}: not a readable post-processing file ({e})") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT or not isinstance(
            content.get("parameters"), dict):
        raise PostprocessingError(f"{path}: not a post-processing file (needs \"format\": \"{FORMAT}\" and a "
                                  "\"parameters\" object)")
    if int(content.get("version", 0)) > VERSION:
        raise PostprocessingError(f"{path}: written by a newer version (format version {content['version']})")
    try:
        values = {name: coerce(name, v) for name, v in content["parameters"].items()}
        with_values(DEFAULTS, values)
    except PostprocessingError as e:
        raise PostprocessingError(f"{path}: {e}") from None
    return values


def file_content(parameters: Postprocessing, determined: Optional[dict] = None) -> dict:
    """What ``postprocessing.json`` holds: every parameter, and how they were determined."""
    return {"format": FORMAT, "version": VERSION, "parameters": parameters.to_dict(),
            "determined": determined or {}}


# ------------------------------------------------------------------------------------------------ resolution
@dataclass(frozen=True)
class Resolved:
    """The values a prediction uses, where each came from, and notes for the case reports."""

    values: Postprocessing
    sources: Dict[str, str]
    notes: Tuple[str, ...] = ()

    def report(self) -> dict:
        return {"values": self.values.to_dict(), "sources": dict(self.sources), "notes": list(self.notes)}

    def describe(self) -> str:
        """One line: which values came from where."""
        by_source: Dict[str, List[str]] = {}
        for name, source in self.sources.items():
            if source != DEFAULT_SOURCE:
                by_source.setdefault(source, []).append(name)
        if not by_source:
            return "the documented defaults"
        return "; ".join(f"{', '.join(names)} from {source}" for source, names in by_source.items()) + \
            "; the others default"


def transport_folder(model_folder, folds) -> Path:
    """``crossval_results_folds_<folds>/`` of a model folder: where nnU-Net keeps the post-processing chosen on those
    folds, and what its ``nnUNetv2_export_model_to_zip`` carries (the model folder's own ``postprocessing.json``
    it leaves behind)."""
    return Path(model_folder) / f"crossval_results_folds_{'_'.join(str(f) for f in folds)}"


def _ours(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def model_file(model_folder) -> Tuple[Optional[Path], Optional[str]]:
    """(the post-processing file of a model folder, a note): its ``postprocessing.json``; else, in a model
    installed from nnU-Net's zip, the one of ours in a ``crossval_results_folds_*`` folder (see
    :func:`transport_folder`); else none, with a note."""
    folder = Path(model_folder)
    if (folder / FILE_NAME).is_file():
        return folder / FILE_NAME, None
    carried = [p for p in sorted(folder.glob(f"crossval_results_folds_*/{FILE_NAME}")) if _ours(p)]
    if len(carried) == 1:
        return carried[0], None
    if carried:
        return None, (f"no {FILE_NAME} in the model folder {folder}, and several in its crossval_results_folds_* "
                      f"folders: the documented defaults apply (name one with --postprocessing FILE)")
    return None, (f"no {FILE_NAME} in the model folder {folder}: the documented defaults apply "
                  "(vertebraformer determine-postprocessing chooses the model's own)")


def resolve(model_folder=None, file=None, overrides: Optional[Mapping[str, object]] = None) -> Resolved:
    """What a prediction uses (module docstring): defaults <- the model folder's ``postprocessing.json`` or
    ``file`` <- ``overrides``. Raises PostprocessingError for a named file that is missing, or any invalid file
    or value."""
    sources = {name: DEFAULT_SOURCE for name in NAMES}
    notes: List[str] = []
    values: Dict[str, object] = {}
    if file is not None:
        path = Path(file)
        if not path.is_file():
            raise PostprocessingError(f"{path}: no such post-processing file")
    elif model_folder is not None:
        path, note = model_file(model_folder)
        notes += [note] if note else []
    else:
        path = None
    if path is not None:
        values.update(read_file(path))
        sources.update({name: str(path) for name in values})
        lacking = [n for n in NAMES if n not in values]
        if lacking:
            notes.append(f"{path} does not set {', '.join(lacking)}: defaults")
    for name, value in (overrides or {}).items():
        values[name] = coerce(name, value)
        sources[name] = OVERRIDE_SOURCE
    return Resolved(with_values(DEFAULTS, values), sources, tuple(notes))


def parse_assignments(items) -> Dict[str, float]:
    """``["name=value", ...]`` (``--set``) -> {name: value}; PostprocessingError naming a bad item."""
    out = {}
    for item in items or []:
        name, sep, value = str(item).partition("=")
        if not sep:
            raise PostprocessingError(f"--set {item!r}: expected NAME=VALUE (names: {', '.join(NAMES)})")
        out[name.strip()] = coerce(name.strip(), value.strip())
    return out
