"""Knowing when not to trust a case (issue 16 part 4; pure Python): a flag and its reasons, per case, in
``<case>.json`` (``quality``) and ``summary.csv`` (``quality``, ``quality_reasons``).

* ``fail``: ``spine_not_found`` (nothing written is a vertebra);
* ``warning``, any of: ``low_confidence`` (the vertebrae's mean decoder confidence below ``min_mean_confidence``, or
  the best labelling less than exp(``unsure_margin``) times as likely as the second best), ``implausible_size`` (a
  whole vertebra ``volume_factor`` times smaller or larger than typical for its level), ``implausible_spacing``
  (consecutive vertebrae closer than ``min_pitch_fraction`` or farther than ``max_pitch_factor`` times the typical
  distance of their levels), ``too_many_for_field_of_view`` (more instances were found than the field of view can
  hold: the smallest were dropped), ``no_anchor`` (no anchor that fixes a level in view, ``anchors.LEVEL_ANCHORS``:
  the levels rest on the network's evidence, and on ribs that say thoracic where seen),
  ``transitional_unconfirmed`` (an L6 named with no sacrum found below it, or a T13 with no last rib found: a
  transitional vertebra is rare, and the sacrum's first segment or levels one off look the same to the
  network; verse014's S1 came out as "L6", and is now left out where the scan ends in it, ``numbering.sacrum_top``);
* ``ok`` otherwise.

Thresholds are post-processing values (``postprocessing.QUALITY_NAMES`` and ``min_pitch_fraction``), typical sizes
are ``level_anatomy``'s. Each reason carries a sentence that says what was seen.
"""
from __future__ import annotations

import math
from typing import List, Mapping, Optional, Sequence

from .. import labels as L
from .anchors import LEVEL_ANCHORS
from .level_anatomy import TYPICAL_VOLUME_ML, expected_distance
from .postprocessing import DEFAULTS, Postprocessing

__all__ = ["FLAGS", "REASONS", "assess", "summary_fields"]

FLAGS = ("ok", "warning", "fail")
REASONS = ("spine_not_found", "low_confidence", "implausible_size", "implausible_spacing",
           "too_many_for_field_of_view", "no_anchor", "transitional_unconfirmed")
#: a transitional level and the anchor that would confirm it (anchors.ANCHOR_LEVELS: each allows its level)
CONFIRMING_ANCHOR = {"T13": "last_rib", "L6": "sacrum"}


def _reason(code: str, detail: str) -> dict:
    return {"reason": code, "detail": detail}


def assess(vertebrae: Sequence[Mapping], *, spine_found: bool = True, margin: float = math.inf,
           anchors: Sequence[str] = (), count: Optional[Mapping] = None, anchors_looked_for: bool = True,
           params: Postprocessing = DEFAULTS) -> dict:
    """The flag and reasons of a case.

    ``vertebrae``: head to foot, each with ``name``, ``confidence``, ``volume_mm3``, ``centre_mm`` and ``on_border``
    (cut by the field of view: its size says nothing); ``margin``: best minus second-best labelling score (nats);
    ``anchors``: kinds found; ``count``: ``spine_extent.CountBound.report()`` with ``exceeded``; ``anchors_looked_for``:
    False where no decoder ran (argmax numbering), so a missing anchor is no reason."""
    reasons: List[dict] = []
    if not spine_found or not vertebrae:
        return {"flag": "fail", "reasons": [_reason("spine_not_found", "no vertebra found in the scan")]}
    confidences = [float(v["confidence"]) for v in vertebrae if v.get("confidence") is not None]
    mean_conf = sum(confidences) / len(confidences) if confidences else 1.0
    if mean_conf < params.min_mean_confidence:
        reasons.append(_reason("low_confidence", f"mean level confidence {mean_conf:.2f} < "
                                                 f"{params.min_mean_confidence:g}"))
    elif margin < params.unsure_margin:
        reasons.append(_reason("low_confidence", f"the best labelling is only {math.exp(margin):.1f}x as likely as "
                                                 f"the second best (margin {margin:.2f} nats)"))
    sizes = []
    for v in vertebrae:
        if v.get("on_border") or "volume_mm3" not in v:  # cut by the field of view, or no size (argmax records)
            continue
        typical = 1000.0 * TYPICAL_VOLUME_ML[v["name"]]
        ratio = float(v["volume_mm3"]) / typical
        if not 1.0 / params.volume_factor <= ratio <= params.volume_factor:
            sizes.append(f"{v['name']} {v['volume_mm3'] / 1000:.1f} ml (typical {typical / 1000:.0f})")
    if sizes:
        reasons.append(_reason("implausible_size", "; ".join(sizes)))
    spacing = []
    for upper, lower in zip(vertebrae, vertebrae[1:]):
        if "centre_mm" not in upper or "centre_mm" not in lower:
            continue
        s, t = L.ANATOMICAL_ORDER.index(upper["name"]), L.ANATOMICAL_ORDER.index(lower["name"])
        expected = expected_distance(s, t)
        gap = math.dist(upper["centre_mm"], lower["centre_mm"])
        if gap < params.min_pitch_fraction * expected or gap > params.max_pitch_factor * expected:
            spacing.append(f"{upper['name']}-{lower['name']} {gap:.0f} mm (typical {expected:.0f})")
    if spacing:
        reasons.append(_reason("implausible_spacing", "; ".join(spacing)))
    if count and count.get("exceeded"):
        reasons.append(_reason("too_many_for_field_of_view",
                               f"{count['instances_found']} instances in a field of view of "
                               f"{count['field_of_view_mm']:.0f} mm, which holds at most {count['max_vertebrae']}: "
                               f"the smallest were dropped"))
    if anchors_looked_for and not set(anchors) & set(LEVEL_ANCHORS):
        reasons.append(_reason("no_anchor", "no anatomical anchor that fixes a level (skull base, dens, last rib, "
                                            "sacrum) in view: the levels rest on the network's evidence"
                                            + (" and on the ribs, which say thoracic" if "rib_bearing" in anchors
                                               else " alone")))
    unconfirmed = [f"{v['name']} named with no {CONFIRMING_ANCHOR[v['name']].replace('_', ' ')} found"
                   for v in vertebrae
                   if v["name"] in CONFIRMING_ANCHOR and CONFIRMING_ANCHOR[v["name"]] not in anchors]
    if anchors_looked_for and unconfirmed:
        reasons.append(_reason("transitional_unconfirmed", "; ".join(unconfirmed) + ": a transitional vertebra is "
                               "rare; the sacrum's first segment, or levels one off, can look the same"))
    return {"flag": "warning" if reasons else "ok", "reasons": reasons}


def summary_fields(quality: Optional[Mapping]) -> dict:
    """The ``summary.csv`` columns of a report's ``quality``."""
    if not quality:
        return {"quality": "", "quality_reasons": ""}
    return {"quality": str(quality.get("flag", "")),
            "quality_reasons": ";".join(str(r.get("reason", "")) for r in quality.get("reasons") or [])}
