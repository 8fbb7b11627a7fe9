"""The quick protocol's plan (benchmarks/protocol_plan.py, protocol_setup.py): what it trains and predicts with and
without the coarse whole-field stage, its time plan against its limit, and the predict commands. No model."""
from __future__ import annotations

import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the protocol's scripts import each other by name, as when run as scripts

import multispine_protocol as mp  # noqa: E402
import protocol_plan as pp  # noqa: E402
import protocol_report as pr  # noqa: E402
from vertebraformer_nn.trainers.budget import (BUDGET_ENV, EPOCHS_ENV,  # noqa: E402  (before the bench fixture's env)
                                               VertebraFormerTrainer_budget)
from protocol_setup import BASELINE_SHARES, CONTRASTS, MODELS, QUICK, Protocol, without_coarse_stage  # noqa: E402

#: the counts of the quick protocol's data (24 phantoms per source, seed 1)
QUICK_COUNTS = pp.Counts(81, {0: 16, 5: 22})


def test_quick_protocol_asks_what_the_issue_asks():
    assert QUICK.cases_per_source >= 20 and QUICK.seed != 0 and QUICK.min_test_cases >= 16
    assert QUICK.max_minutes == 75 and set(QUICK.folds) == {0, 5}


def test_with_the_coarse_stage_every_arm_runs_and_its_model_trains_on_both_folds():
    assert QUICK.methods_for(0) == ["vf", "vf_nocoarse", "vf_argmax", "nnunet", "nnunet_argmax"]
    assert QUICK.methods_for(5) == ["vf", "vf_nocoarse", "vf_argmax", "vf_nomod", "nnunet", "nnunet_argmax"]
    assert QUICK.models(0) == ["vf", "vf_coarse", "nnunet_seg", "nnunet_lesion"]
    assert QUICK.models(5) == ["vf", "vf_nomod", "vf_coarse", "nnunet_seg", "nnunet_lesion"]
    assert MODELS["vf_coarse"].trainer == MODELS["vf"].trainer  # predict finds it as the fine model's sibling
    assert MODELS["vf_coarse"].configuration == "3d_lowres"
    assert QUICK.budget_of("vf_coarse") == QUICK.coarse_budget_s and QUICK.budget_of("vf") == QUICK.budget_s


def test_without_the_coarse_configuration_its_model_and_arm_are_skipped():
    for fold in QUICK.folds:
        assert "vf_nocoarse" not in QUICK.methods_for(fold, coarse=False)
        assert "vf_coarse" not in QUICK.models(fold, coarse=False)
        assert "vf" in QUICK.methods_for(fold, coarse=False)
    steps = [name for name, _ in pp.time_plan(QUICK, QUICK_COUNTS, coarse=False)]
    assert not any("coarse" in s for s in steps)
    assert "train_vf_fold0" in steps and "predict_vf_argmax_fold5" in steps


def test_contrasts_stand_in_for_the_skipped_arm():
    assert without_coarse_stage("vf_nocoarse", coarse=False) == "vf"
    assert without_coarse_stage("vf_nocoarse", coarse=True) == "vf_nocoarse"
    pairs = [(without_coarse_stage(c.a, False), without_coarse_stage(c.b, False)) for c in CONTRASTS]
    assert ("vf", "vf") in pairs  # the coarse contrast: nothing to compare, reported as skipped
    assert ("vf", "vf_argmax") in pairs and ("vf", "vf_nomod") in pairs


def test_quick_time_plan_fits_its_limit_with_margin():
    for counts in (pp.estimate_counts(QUICK), QUICK_COUNTS):
        plan = pp.time_plan(QUICK, counts, coarse=True)
        total = pp.check_plan(QUICK, plan)
        assert 30 < total < QUICK.max_minutes - 3, pp.format_plan(QUICK, plan, counts, True)
        trainings = [s for s, _ in plan if s.startswith("train_")]
        assert len(trainings) == 9 and "train_vf_coarse_fold5" in trainings
    text = pp.format_plan(QUICK, plan, QUICK_COUNTS, True)
    assert "total" in text and "75" in text and "train_vf_coarse" in text


def test_a_plan_over_the_limit_stops_before_the_run_and_during_it():
    long = replace(QUICK, epochs=40)
    with pytest.raises(pp.ProtocolStop, match="over its limit of 75 min.*--epochs"):
        pp.check_plan(long, pp.time_plan(long, QUICK_COUNTS))
    plan = pp.time_plan(QUICK, QUICK_COUNTS)
    assert pp.check_plan(QUICK, plan, {"data": 60.0}) < QUICK.max_minutes
    with pytest.raises(pp.ProtocolStop, match="before training"):  # the data step took 40 minutes
        pp.check_plan(QUICK, plan, {"data": 2400.0}, when="before training vf on fold 0")
    assert pp.check_plan(replace(long, max_minutes=None), pp.time_plan(long, QUICK_COUNTS)) > 75


def test_quick_protocol_trains_vertebraformer_for_epochs_and_nnunet_for_its_time():
    assert QUICK.epochs_of("vf") == QUICK.epochs_of("vf_nomod") == 6 and QUICK.epochs_of("vf_coarse") == 3
    assert QUICK.epochs_of("nnunet_seg") is None and QUICK.epochs_of("nnunet_lesion") is None
    assert QUICK.same_time_as("nnunet_seg") == ("vf", 0.75) and QUICK.same_time_as("vf") is None
    assert sum(BASELINE_SHARES.values()) == pytest.approx(1.0)  # the separate models together: VertebraFormer's time
    costs = pp.Costs()
    slow = {"3d_fullres": 1.0, "3d_lowres": 1.0}
    fast = {"3d_fullres": 0.5, "3d_lowres": 0.5}
    vf_slow, vf_fast = (pp.train_seconds(QUICK, "vf", s) - costs.train_overhead for s in (slow, fast))
    assert vf_slow == pytest.approx(6 * 50 * 1.0 * costs.epoch_overhead) and vf_slow == pytest.approx(2 * vf_fast)
    assert pp.train_seconds(QUICK, "nnunet_lesion", slow) == pytest.approx(
        0.25 * pp.train_seconds(QUICK, "vf", slow))
    # the plan's epoch (kept free of torch) is the budget trainer's
    assert pp.ITERATIONS_PER_EPOCH == VertebraFormerTrainer_budget.SCHEDULE["num_iterations_per_epoch"]
    wall = replace(QUICK, epochs=None)  # the wall-clock protocol: budgets, nobody's time shared, speed ignored
    assert wall.same_time_as("nnunet_seg") is None and wall.epochs_of("vf") is None
    assert pp.train_seconds(wall, "vf", slow) == wall.budget_s + costs.train_overhead


def test_a_slow_machines_training_step_stops_the_plan_before_the_trainings():
    plan = pp.time_plan(QUICK, QUICK_COUNTS)  # before the speed step: the 2026-11-24 machine's speed
    assert "speed" in dict(plan) and pp.check_plan(QUICK, plan) < QUICK.max_minutes
    slow = pp.time_plan(QUICK, QUICK_COUNTS, speed={"3d_fullres": 2.5, "3d_lowres": 2.5})  # 5x slower
    with pytest.raises(pp.ProtocolStop, match="over its limit.*--epochs"):
        pp.check_plan(QUICK, slow, when="after planning")
    assert "6 epochs" in pp.format_plan(QUICK, slow, QUICK_COUNTS, True)


def test_the_budget_each_training_reads(bench):
    assert bench.budget_env(MODELS["vf"], 0) == {EPOCHS_ENV: "6"}
    assert bench.budget_env(MODELS["vf_coarse"], 0) == {EPOCHS_ENV: "3"}
    # VertebraFormer not yet trained on the fold: the wall-clock budget; once trained: its share of that time
    assert bench.budget_env(MODELS["nnunet_seg"], 0) == {BUDGET_ENV: str(QUICK.budget_s)}
    bench.record["train_vf_fold0"] = {"seconds": 620.0, "result": {"train_seconds": 600.0}}
    assert bench.budget_env(MODELS["nnunet_seg"], 0) == {BUDGET_ENV: "450.0"}
    assert bench.budget_env(MODELS["nnunet_lesion"], 0) == {BUDGET_ENV: "150.0"}
    assert bench.budget_env(MODELS["nnunet_seg"], 5) == {BUDGET_ENV: str(QUICK.budget_s)}


def test_predictions_and_evaluations_take_longer_on_a_slower_machine():
    """2026-12-07: a machine training at 1.47 s per iteration predicted in 1.78 x the plan's time (2802 s for 1576
    planned); the plan had them at the 0.8 s machines' pace whatever the speed step measured."""
    def inference(plan):
        return sum(v for k, v in plan if k.startswith(("probabilities_", "predict_", "evaluate_")))

    measured = {"3d_fullres": 1.6, "3d_lowres": 1.5}  # twice the reference machine's 0.8 s
    assert inference(pp.time_plan(QUICK, QUICK_COUNTS, speed=measured)) == pytest.approx(
        2 * inference(pp.time_plan(QUICK, QUICK_COUNTS)))
    at_reference = {"3d_fullres": pp.Costs().inference_iteration_s, "3d_lowres": 9.9}
    assert inference(pp.time_plan(QUICK, QUICK_COUNTS, speed=at_reference)) == pytest.approx(
        inference(pp.time_plan(QUICK, QUICK_COUNTS)))


def test_too_few_test_cases_stop_after_the_data_step():
    counts = pp.counts_from_data(QUICK, {"training_cases": 68, "fold_sizes": [{"train": 54, "val": 14}] * 5
                                         + [{"train": 50, "val": 18, "held_out_domain": "verse"}]})
    assert counts.test_cases == {0: 14, 5: 18}
    with pytest.raises(pp.ProtocolStop, match=r"fold\(s\) 0 \(14\).*--cases-per-source"):
        pp.check_test_cases(QUICK, counts.test_cases)
    pp.check_test_cases(QUICK, QUICK_COUNTS.test_cases)


def test_paired_difference_resamples_both_methods_together():
    a = {f"c{i}": {"subject": f"s{i}", "numbering": {"id_rate": 0.5 + 0.1 * (i % 3)}} for i in range(8)}
    b = {f"c{i}": {"subject": f"s{i}", "numbering": {"id_rate": 0.3 + 0.1 * (i % 3)}} for i in range(8)}
    b["c9"] = {"subject": "s9", "numbering": {"id_rate": 1.0}}  # evaluated by one method only: not paired
    diff = pr.paired_difference(a, b, "numbering", "id_rate", bootstrap=200, seed=1)
    assert diff["value"] == pytest.approx(0.2) and diff["n_cases"] == 8
    assert diff["ci"] == pytest.approx([0.2, 0.2])  # a constant difference: what the cases share cancels


@pytest.fixture
def bench(tmp_path, monkeypatch):
    """A Benchmark over an empty working folder, its commands captured instead of run."""
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_compile", "nnUNet_def_n_proc"):
        monkeypatch.setenv(key, "unused")  # the Benchmark points them at its folder; restored afterwards
    (tmp_path / "work" / "nnUNet_raw" / "Dataset590_MultiSpine").mkdir(parents=True)
    b = mp.Benchmark(Protocol(**asdict(QUICK)), tmp_path / "work", tmp_path / "out")
    b.record["plan_ours"] = {"seconds": 1.0, "result": {"plans": "VertebraFormerPlans"}}
    commands = []
    monkeypatch.setattr(mp, "run", lambda cmd, env=None: commands.append(cmd) or {"seconds": 0.0})
    monkeypatch.setattr(mp.Benchmark, "case_seconds", staticmethod(lambda folder: {}))
    b.commands = commands
    return b


def test_quick_protocol_fine_tunes_the_built_in_model_and_nnunet_starts_from_random_weights(bench, monkeypatch):
    """Each training's child gets the weights it starts from: "builtin" for VertebraFormer's models (the child picks
    the checkpoint of the model's configuration, ``trainers.cli.pretrained_path``), nothing for nnU-Net's; with
    ``start="scratch"`` nothing for any."""
    summary = {"epochs": 1, "iterations": 50, "batch_size": 2, "patch_size": [8, 8, 8], "train_seconds": 1.0}
    monkeypatch.setattr(mp.json, "loads", lambda text: summary)
    monkeypatch.setattr(mp.Path, "read_text", lambda self: "{}")
    for key in ("vf", "vf_coarse", "vf_nomod", "nnunet_seg"):
        bench.do_train(MODELS[key], 5)
    assert [cmd[-1] for cmd in bench.commands] == ["builtin", "builtin", "builtin", ""]  # the start, last
    assert [cmd[-2] for cmd in bench.commands] == ["3d_fullres", "3d_lowres", "3d_fullres", "3d_fullres"]
    assert [QUICK.pretrained_of(k) for k in ("vf", "vf_coarse", "nnunet_lesion")] == ["builtin", "builtin", None]
    assert replace(QUICK, start="scratch").pretrained_of("vf") is None
    # the report says where the weights came from and what that means for fold 5 and the nnU-Net rows
    said = pr.budget_sentence(QUICK)
    assert "started from the built-in model's weights" in said
    assert "fold 5 holds VerSe out of the fine-tuning only" in said and "not the two methods" in said
    assert "built-in" not in pr.budget_sentence(replace(QUICK, start="scratch"))


@pytest.mark.parametrize("coarse", [True, False])
def test_predict_commands_of_the_arms(bench, coarse):
    bench.coarse = coarse
    for key in ("vf", "vf_argmax", "vf_nomod"):
        bench.do_predict(mp.METHODS[key], 5)
    vf, argmax, nomod = bench.commands
    assert "--no-coarse" not in vf  # predict's default: the sibling 3d_lowres model when it exists
    assert ("--no-coarse" in argmax) is coarse and ("--no-coarse" in nomod) is coarse  # only where predict knows it
    assert argmax[argmax.index("--numbering") + 1] == "argmax" and vf[vf.index("--numbering") + 1] == "decoder"
    fine = "VertebraFormerTrainer_budget__VertebraFormerPlans__3d_fullres"
    assert vf[vf.index("-m", vf.index("predict")) + 1].endswith(fine)
    assert bench.model_folder(MODELS["vf_coarse"]).name == fine.replace("3d_fullres", "3d_lowres")


def test_the_speed_step_probes_each_configuration_vertebraformer_trains_and_the_plan_counts_those():
    assert QUICK.speed_probes() == ["vf", "vf_coarse"]
    assert QUICK.speed_probes(coarse=False) == ["vf"]  # plans without the coarse configuration train no coarse model
    fine_only = replace(QUICK, methods=["vf_nocoarse", "nnunet"])  # the fine model only, beside nnU-Net's
    assert fine_only.speed_probes() == ["vf"]
    assert replace(QUICK, epochs=None).speed_probes() == []  # wall-clock budgets need no step time
    probe = pp.Costs().speed_probe
    assert dict(pp.time_plan(QUICK, QUICK_COUNTS))["speed"] == pytest.approx(2 * probe)
    assert dict(pp.time_plan(fine_only, QUICK_COUNTS))["speed"] == pytest.approx(probe)
    assert "speed" not in dict(pp.time_plan(replace(QUICK, methods=["nnunet"]), QUICK_COUNTS))


def test_the_test_subjects_in_style_are_scored_for_vertebraformers_methods_and_planned():
    """After the run's own predictions, VertebraFormer's methods (not nnU-Net's separate models, whose networks run
    in their probabilities steps) predict and evaluate the same test subjects scanned in their sources' styles; the
    plan counts those steps and still fits the limit."""
    assert QUICK.style_methods(0) == ["vf", "vf_nocoarse", "vf_argmax"]
    assert QUICK.style_methods(5) == ["vf", "vf_nocoarse", "vf_argmax", "vf_nomod"]
    assert QUICK.style_methods(5, coarse=False) == ["vf", "vf_argmax", "vf_nomod"]
    plan = pp.time_plan(QUICK, QUICK_COUNTS)
    steps = [s for s, _ in plan]
    style = [s for s in steps if "style" in s]
    assert style[0] == "data_style" and steps.index("data_style") > steps.index("evaluate_nnunet_argmax_fold5")
    assert "predict_style_vf_nomod_fold5" in style and not any("nnunet" in s for s in style)
    assert dict(plan)["predict_style_vf_fold0"] == pytest.approx(pp.predict_seconds("vf", 16, True))
    assert pp.check_plan(QUICK, plan) < QUICK.max_minutes
    assert not any("style" in s for s, _ in pp.time_plan(replace(QUICK, methods=["nnunet"]), QUICK_COUNTS))


def test_the_style_arm_predicts_the_twins_with_the_same_model(bench):
    bench.do_predict_style(mp.METHODS["vf_argmax"], 5)
    cmd, = bench.commands
    assert cmd[cmd.index("-i") + 1] == str(bench.work / "in_style" / "inputs" / "fold5")
    assert cmd[cmd.index("-o") + 1] == str(bench.work / "in_style" / "predictions" / "vf_argmax_fold5")
    assert cmd[cmd.index("-m", cmd.index("predict")) + 1] == str(bench.model_folder(MODELS["vf"]))
    assert cmd[cmd.index("--numbering") + 1] == "argmax" and "--no-coarse" in cmd


def test_the_report_pairs_each_subject_in_style_with_its_randomised_scan(bench):
    """The style section's contrast is (in style - the run's test case) per subject, from the evaluations' JSON,
    which the run keeps in its work folder and copies into every report's folder."""
    import json

    bench.p.folds = [5]
    bench.splits = lambda: [{}] * 5 + [{"held_out_domain": "verse"}]
    bench.p.methods = ["vf"]
    for step, rate in (("evaluate", 0.5), ("evaluate_style", 0.9)):
        cases = {f"c{i}": {"subject": f"s{i}", "numbering": {"id_rate": rate + 0.01 * i, "all_correct": rate > 0.6},
                           "segmentation": {"dice": rate, "binary_dice": 0.8}} for i in range(6)}
        name = f"vf_fold5{'_in_style' if step == 'evaluate_style' else ''}.json"
        (bench.work / mp.EVALUATIONS).mkdir(parents=True, exist_ok=True)
        (bench.work / mp.EVALUATIONS / name).write_text(json.dumps({"cases": cases}))
        bench.record[f"{step}_vf_fold5"] = {"seconds": 1.0, "result": {"json": f"{mp.EVALUATIONS}/{name}",
                                                                        "clean": None}}
    import shutil

    shutil.copytree(bench.work / mp.EVALUATIONS, bench.out / mp.EVALUATIONS)
    (row,) = pr.style_rows(bench)
    assert row[:2] == ["fold 5: cross-domain (verse held out)", "VertebraFormer"] and row[-1] == "6"
    assert row[2].startswith("40.0")  # id rate, points
    section = "\n".join(pr.style_section(bench))
    assert "in its source's own style" in section and "| 6 |" in section
