"""benchmarks/paired_evaluations.py: the pooled lesion AP difference of two evaluations of the same cases, and
case names repeated across the JSONs of one side kept apart (fast, no model)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("paired_evaluations", REPO / "benchmarks" / "paired_evaluations.py")
pe = importlib.util.module_from_spec(_spec)
sys.modules["paired_evaluations"] = pe
_spec.loader.exec_module(pe)


def _case(subject: str, n_reference: int, ranked: list, tp_01: list, tp_03: list) -> dict:
    """An evaluate case record with its ranked candidates (scores) and their true-positive flags per IoU."""
    return {"subject": subject, "status": "ok",
            "numbering": {"id_rate": 1.0}, "segmentation": {"dice": 0.8, "binary_dice": 0.9},
            "lesions": {"n_reference": n_reference, "candidates": {
                "ranked_predictions": [{"id": k + 1, "score": s} for k, s in enumerate(ranked)],
                "thresholds": {"0.1": {"tp_ranked": tp_01}, "0.3": {"tp_ranked": tp_03}}}}}


def test_lesion_ap_difference_is_the_pooled_ap_of_a_minus_that_of_b():
    # two cases, one lesion each. a: both lesions found first at IoU 0.1, one at 0.3; b: a false candidate
    # ranked above each true one at IoU 0.1, none at 0.3
    a = {"x": _case("x", 1, [0.9, 0.2], [True, False], [True, False]),
         "y": _case("y", 1, [0.8], [True], [False])}
    b = {"x": _case("x", 1, [0.9, 0.85], [False, True], [False, False]),
         "y": _case("y", 1, [0.95, 0.1], [False, True], [False, False])}
    # pooled ranking of b at 0.1: 0.95 F, 0.9 F, 0.85 T (precision 1/3), 0.1 T (2/4); all-points AP takes the best
    # precision at or after each recall step: (1/2 + 1/2) / 2. a's: 1
    d01 = pe.lesion_ap_difference(a, b, 0.1, bootstrap_n=200, seed=0)
    assert d01["value"] == pytest.approx(0.5)
    assert (d01["n_cases"], d01["n_reference"]) == (2, 2)
    d03 = pe.lesion_ap_difference(a, b, 0.3, bootstrap_n=200, seed=0)
    assert d03["value"] == pytest.approx(0.5)  # a: the first of the pooled ranking is one of two lesions


def test_cases_of_several_jsons_keep_their_file_and_only_scored_cases_count(tmp_path):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    one.write_text(json.dumps({"cases": {"lowdose_001": _case("lowdose_001", 0, [], [], []),
                                         "missing": {"subject": "missing", "status": "no prediction"}}}))
    two.write_text(json.dumps({"cases": {"lowdose_001": _case("lowdose_001", 1, [0.5], [True], [True])}}))
    cases = pe.pooled_cases(f"{one},{two}")
    assert sorted(cases) == ["0/lowdose_001", "1/lowdose_001"]
    assert cases["1/lowdose_001"]["subject"] == "1/lowdose_001"  # two patients, not one resampled twice
    assert list(pe.pooled_cases(str(one))) == ["lowdose_001"]


def test_each_sides_means_count_only_its_scored_cases():
    cases = {"x": _case("x", 0, [], [], []), "y": _case("y", 0, [], [], [])}
    cases["y"]["numbering"] = {"id_rate": 0.5, "all_correct": False}
    cases["x"]["numbering"]["all_correct"] = True
    assert pe.mean_line(cases, "a") == ("a: 2 cases: id rate 75.0, every vertebra right 50 %, per-vertebra Dice 80.0, "
                                        "binary Dice 90.0")
