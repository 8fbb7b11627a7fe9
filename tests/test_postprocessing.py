"""Post-processing with the model (``inference.postprocessing``, ``inference.postprocessing_search``): the one
dataclass of tuned constants, how a prediction resolves its values (defaults <- model folder file or named file <-
command line), the rule that changes a value, and ``vertebraformer determine-postprocessing`` end to end on the
session's tiny model (a copy of it: the file it writes must not reach the other tests' model folder)."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from vertebraformer_nn.inference import postprocessing as PP
from vertebraformer_nn.inference.postprocessing_search import MARGIN, choose, sign_test


# ------------------------------------------------------------------------------------------------ the values
def test_every_field_is_documented_and_searched_fields_include_their_default():
    for name in PP.NAMES:
        assert len(PP.documentation(name)) > 40, name
        if PP.candidates(name):
            assert getattr(PP.DEFAULTS, name) in PP.candidates(name), name
    assert PP.DEFAULTS.transitional_log_prior == pytest.approx(-2.302585)
    assert set(PP.LESION_NAMES) <= set(PP.NAMES) and "lesion_threshold" not in PP.NUMBERING_NAMES


def test_invalid_values_are_refused_naming_them():
    with pytest.raises(PP.PostprocessingError, match=r"lesion_threshold = 1.5: must lie in \(0, 1\)"):
        replace(PP.DEFAULTS, lesion_threshold=1.5)
    with pytest.raises(PP.PostprocessingError, match=r"top_fused_ratio = 0.8: must be 0 \(off\) or > 1"):
        replace(PP.DEFAULTS, top_fused_ratio=0.8)
    with pytest.raises(PP.PostprocessingError, match="max_skip = 1.5 must be a whole number"):
        PP.with_values(PP.DEFAULTS, {"max_skip": 1.5})
    with pytest.raises(PP.PostprocessingError, match="unknown post-processing parameter 'sigma'"):
        PP.coerce("sigma", 3)
    with pytest.raises(PP.PostprocessingError, match="expected NAME=VALUE"):
        PP.parse_assignments(["level_smoothing_mm"])
    assert PP.parse_assignments(["level_smoothing_mm=5", "max_skip=2"]) == {"level_smoothing_mm": 5.0, "max_skip": 2}


def _write(path: Path, parameters: dict, **extra) -> Path:
    path.write_text(json.dumps({"format": PP.FORMAT, "version": 1, "parameters": parameters, **extra}))
    return path


def test_resolution_order_sources_and_notes(tmp_path):
    missing = PP.resolve(tmp_path)
    assert missing.values == PP.DEFAULTS and set(missing.sources.values()) == {"default"}
    assert len(missing.notes) == 1 and "no postprocessing.json in the model folder" in missing.notes[0]

    model_file = _write(tmp_path / PP.FILE_NAME, {"lesion_threshold": 0.4, "level_smoothing_mm": 5})
    resolved = PP.resolve(tmp_path, overrides={"lesion_threshold": 0.6})
    assert (resolved.values.lesion_threshold, resolved.values.level_smoothing_mm) == (0.6, 5.0)
    assert resolved.sources["lesion_threshold"] == "command line"
    assert resolved.sources["level_smoothing_mm"] == str(model_file) and resolved.sources["skip_prior"] == "default"
    assert "does not set" in resolved.notes[0]
    assert "level_smoothing_mm from" in resolved.describe() and "lesion_threshold from command line" in \
        resolved.describe()

    named = _write(tmp_path / "other.json", {"lesion_threshold": 0.3})
    resolved = PP.resolve(tmp_path, named)  # a named file replaces the model folder's, it does not add to it
    assert resolved.values.lesion_threshold == 0.3 and resolved.values.level_smoothing_mm == 7.0
    with pytest.raises(PP.PostprocessingError, match="no such post-processing file"):
        PP.resolve(tmp_path, tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text(json.dumps({"parameters": {}}))
    with pytest.raises(PP.PostprocessingError, match="bad.json: not a post-processing file"):
        PP.resolve(None, tmp_path / "bad.json")
    _write(tmp_path / "bad.json", {"lesion_threshold": 2})
    with pytest.raises(PP.PostprocessingError, match=r"bad.json: .*lesion_threshold = 2.0: must lie in \(0, 1\)"):
        PP.resolve(None, tmp_path / "bad.json")


# ------------------------------------------------------------------------------------------------ the rule
def test_sign_test_and_the_rule_that_changes_a_value():
    assert sign_test(5, 0) == pytest.approx(1 / 32) and sign_test(4, 0) == pytest.approx(1 / 16)
    base = [10.0] * 6
    # better by a point on 5 cases of 6, none worse: p = 1/32 and a pooled gain above the margin -> changed
    better = [11.0] * 5 + [10.0]
    value, rows, why = choose(7.0, {7.0: (0.50, base), 4.0: (0.50 + 2 * MARGIN, better), 10.0: (0.49, base)})
    assert value == 4.0 and why.startswith("changed") and [r["passes"] for r in rows] == [False, True, False]
    # the same gain on only 4 cases: p = 1/16 > 0.05 -> kept
    assert choose(7.0, {7.0: (0.50, base), 4.0: (0.55, [11.0] * 4 + [10.0] * 2)})[0] == 7.0
    # 5 cases better but one worse: p = 7/64 -> kept
    assert choose(7.0, {7.0: (0.50, base), 4.0: (0.55, [11.0] * 5 + [9.0])})[0] == 7.0
    # every case better but the pooled gain below the margin -> kept
    assert choose(7.0, {7.0: (0.50, base), 4.0: (0.50 + MARGIN / 2, [10.1] * 6)})[0] == 7.0
    # two candidates pass: the better pooled score wins
    assert choose(7.0, {7.0: (0.5, base), 4.0: (0.6, [11.0] * 6), 10.0: (0.7, [11.0] * 6)})[0] == 10.0


# ------------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def model_copy(tiny_model_copy) -> Path:
    return tiny_model_copy


def _main(*args) -> int:
    from vertebraformer_nn.cli import main

    return main([str(a) for a in args])


def _report(model, case, out, *extra) -> dict:
    assert _main("predict", "-i", case, "-o", out, "-m", model, "-f", "0", "-device", "cpu", "--no_preview",
                 "--disable_progress_bar", *extra) == 0
    return json.loads((out / "slab.json").read_text())


def test_determine_postprocessing_writes_a_file_that_predict_uses(model_copy, phantom_slab, tmp_path, capsys,
                                                                  monkeypatch):
    from vertebraformer_nn.inference.validation_cases import validation_folds

    assert _main("determine-postprocessing", "-m", model_copy, "-f", "5") == 2  # a held-out-domain fold
    assert "holds the verse domain out" in capsys.readouterr().err
    assert _main("determine-postprocessing", "-m", model_copy, "--parameters", "gap_window") == 2
    assert "not searched parameter(s) gap_window" in capsys.readouterr().err

    assert _main("determine-postprocessing", "-m", model_copy, "--parameters", "level_smoothing_mm",
                 "disc_split_threshold", "skip_prior", "lesion_threshold") == 0
    path = model_copy / PP.FILE_NAME
    content = json.loads(path.read_text())
    assert content["format"] == PP.FORMAT and PP.with_values(PP.DEFAULTS, content["parameters"])
    determined = content["determined"]
    val = validation_folds(model_copy, [0])[0]
    assert determined["folds"] == [0] and sorted(c["case"] for c in determined["cases"]) == sorted(val)
    assert [s["parameter"] for s in determined["steps"]] == ["level_smoothing_mm", "disc_split_threshold",
                                                             "skip_prior", "lesion_threshold"]
    smoothing, disc = determined["steps"][:2]
    assert [r["value"] for r in smoothing["candidates"]] == [4.0, 7.0, 10.0]
    assert [r["value"] for r in disc["candidates"]] == [0.0, 0.5, 0.7]  # the fixture's model has the disc head
    assert all(0 <= r["score"] <= 1 for r in smoothing["candidates"] if r["score"] is not None)
    # fewer than five cases can never pass the sign test: every value stays the default, and the file says why
    assert len(val) < 5 and determined["changed"] == {} and all(s["why"].startswith("kept") for s in
                                                                 determined["steps"])
    carried = model_copy / "crossval_results_folds_0" / PP.FILE_NAME  # where nnU-Net's model export looks
    assert carried.read_text() == path.read_text()
    saved = sorted(p.name for p in (model_copy / "fold_0" / "validation").glob("*_vfprobs.npz"))
    assert saved == sorted(f"{c}_vfprobs.npz" for c in val)
    with np.load(model_copy / "fold_0" / "validation" / saved[0]) as f:
        assert "boundary" in f.files  # what the disc cut's candidates are scored with
    # a second run reuses the saved probabilities of the unchanged checkpoint
    capsys.readouterr()
    assert _main("determine-postprocessing", "-m", model_copy, "-f", "0", "--parameters", "lesion_threshold") == 0
    assert "reused" in capsys.readouterr().out
    # the search reads each case's CT from the raw image as predict reads its input: beyond the plans' CT window
    # (air below it; implants above it), which the preprocessed image is clipped to, and on the model grid (bone
    # where the reference has vertebrae)
    from vertebraformer_nn.inference.validation_cases import collect_validation_cases
    from vertebraformer_nn.plans_facts import CTWindow

    window = CTWindow.from_plans(json.loads((model_copy / "plans.json").read_text()))
    for case in collect_validation_cases(model_copy, [0], device="cpu", log=lambda _: None):
        inside = (case.hu > window.lower_hu + 50) & (case.hu < window.upper_hu - 50)
        assert case.hu.min() < window.lower_hu and inside.mean() > 0.2
        assert case.hu[case.reference > 0].mean() > case.hu[case.reference == 0].mean() + 100
    # without the raw images: the preprocessed image's HU, inside the window, and the log says why
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "no_raw"))
    said = []
    for case in collect_validation_cases(model_copy, [0], device="cpu", log=said.append):
        assert window.lower_hu - 1 <= case.hu.min() and case.hu.max() <= window.upper_hu + 1
    assert any("no raw image" in line and "from the preprocessed image" in line for line in said)

    # predict uses the file: every value from it; an override wins; a named file replaces it
    _write(path, {**content["parameters"], "lesion_threshold": 0.45}, determined=determined)
    report = _report(model_copy, phantom_slab, tmp_path / "a")
    used = report["postprocessing"]
    assert used["values"]["lesion_threshold"] == 0.45 and report["lesion_threshold"] == 0.45
    assert set(used["sources"].values()) == {str(path)} and used["notes"] == []
    args = json.loads((tmp_path / "a" / "prediction_args.json").read_text())
    assert args["postprocessing"]["values"]["lesion_threshold"] == 0.45
    report = _report(model_copy, phantom_slab, tmp_path / "b", "--lesion-threshold", "0.9", "--set",
                     "level_smoothing_mm=4")
    used = report["postprocessing"]
    assert (used["values"]["lesion_threshold"], used["values"]["level_smoothing_mm"]) == (0.9, 4.0)
    assert used["sources"]["lesion_threshold"] == used["sources"]["level_smoothing_mm"] == "command line"
    assert used["sources"]["skip_prior"] == str(path)
    named = _write(tmp_path / "named.json", {"lesion_threshold": 0.35})
    used = _report(model_copy, phantom_slab, tmp_path / "c", "--postprocessing", named)["postprocessing"]
    assert used["values"]["lesion_threshold"] == 0.35 and used["sources"]["lesion_threshold"] == str(named)
    assert used["values"]["skip_prior"] == PP.DEFAULTS.skip_prior and used["sources"]["skip_prior"] == "default"

    # without the model folder's file, a model installed from nnU-Net's zip still has the carried copy ...
    path.unlink()
    used = _report(model_copy, phantom_slab, tmp_path / "carried")["postprocessing"]
    assert set(used["sources"].values()) == {str(carried)} and used["values"] == content["parameters"]
    # ... and without either: the documented defaults, with a note in the report
    shutil.rmtree(carried.parent)
    report = _report(model_copy, phantom_slab, tmp_path / "d")
    assert report["postprocessing"]["values"] == PP.DEFAULTS.to_dict()
    assert any("no postprocessing.json in the model folder" in n for n in report["notes"])
    # a broken file stops predict before any case, naming it
    path.write_text("{broken")
    assert _main("predict", "-i", phantom_slab, "-o", tmp_path / "e", "-m", model_copy, "-f", "0", "-device",
                 "cpu") == 2
    assert "postprocessing.json: not a readable post-processing file" in capsys.readouterr().err
    path.unlink()
    assert sitk.ReadImage(str(tmp_path / "d" / "slab.nii.gz")).GetSize() == sitk.ReadImage(str(phantom_slab)).GetSize()


def test_an_ensemble_uses_its_one_model_s_values_or_the_defaults_with_a_note(tmp_path):
    """``ensemble`` knows the model from what ``predict`` recorded in each probabilities file."""
    import numpy as np

    from vertebraformer_nn.inference import probabilities as P
    from vertebraformer_nn.inference.ensemble import _postprocessing, find_cases

    model_a, model_b = tmp_path / "model_a", tmp_path / "model_b"
    model_a.mkdir()
    _write(model_a / PP.FILE_NAME, {"lesion_threshold": 0.4})
    seg = np.zeros((27, 2, 2, 2), np.float32)
    seg[0] = 1
    for folder, model in (("f0", model_a), ("f1", model_a), ("g1", model_b)):
        (tmp_path / folder).mkdir()
        P.save(P.probabilities_file(tmp_path / folder, "case"), P.compact({"seg": seg}),
               {"case": "case", "prediction": {"model": str(model)}})
    same = _postprocessing(find_cases([tmp_path / "f0", tmp_path / "f1"]), None, None)
    assert same.values.lesion_threshold == 0.4 and same.sources["lesion_threshold"] == str(model_a / PP.FILE_NAME)
    mixed = _postprocessing(find_cases([tmp_path / "f0", tmp_path / "g1"]), None, {"skip_prior": 0.2})
    assert mixed.values.lesion_threshold == PP.DEFAULTS.lesion_threshold and mixed.values.skip_prior == 0.2
    assert any("2 model folders" in n for n in mixed.notes)
