"""``vertebraformer demo``: its time plan, step markers, unseen-style reference and time-budgeted trainer, and one
end-to-end run at the smallest size (the tiny training schedule), re-run to show that every step is reused."""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from vertebraformer_nn.demo import markers as M
from vertebraformer_nn.demo import timing as T
from vertebraformer_nn.trainers.budget import epochs_within_budget, warmup_for

from conftest import MULTISPINE_ID


# ------------------------------------------------------------------------------------------------ time plan
def test_epochs_within_budget():
    # first epoch of 40 s done after 60 s (20 s start-up) of a 420 s budget: (420 - 60 - 5) // 40 = 8 more
    assert epochs_within_budget(0, 1, 40.0, 60.0, 420.0, 1000) == 9
    assert epochs_within_budget(0, 1, 40.0, 60.0, 420.0, 5) == 5  # never beyond the full schedule
    assert epochs_within_budget(0, 3, 40.0, 500.0, 420.0, 1000) == 3  # out of time: stop after what is done
    assert epochs_within_budget(10, 1, 40.0, 60.0, 420.0, 1000) == 19  # a resumed run counts from its epoch


def test_warmup_shrinks_with_short_runs():
    assert [warmup_for(n, 3) for n in (1, 10, 27, 40, 1000)] == [1, 1, 2, 3, 3]


def test_plan_training_trains_two_folds_only_when_each_gets_enough_time():
    after2 = T.after_training_seconds("cpu", 3, 4, 2)
    enough = 2 * T.MIN_FOLD_TRAIN_S["cpu"] + after2 + 100
    plan = T.plan_training(enough, 100, "cpu", 3, 4)
    assert plan.folds == 2 and plan.seconds_per_fold == pytest.approx(T.MIN_FOLD_TRAIN_S["cpu"])
    plan = T.plan_training(600, 60, "cpu", 3, 4)
    assert plan.folds == 1
    assert plan.seconds_per_fold == pytest.approx(600 - 60 - T.after_training_seconds("cpu", 3, 4, 1))
    assert "second fold" in plan.reason
    assert T.plan_training(enough, 100, "cpu", 3, 4, max_folds=1).folds == 1
    # minutes already spent: training still gets its minimum
    assert T.plan_training(60, 600, "cpu", 3, 4).seconds_per_fold == T.MIN_TRAIN_S
    # a GPU predicts faster: less is kept back for the steps after training
    assert T.after_training_seconds("cuda", 3, 4, 1) < T.after_training_seconds("cpu", 3, 4, 1)


def test_device_auto_picks_a_gpu_when_torch_sees_one(monkeypatch):
    import torch

    from vertebraformer_nn.demo.environment import DemoError, gpu_memory_gb, resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: type("P", (), {"total_memory": 80 * 1024 ** 3}))
    assert resolve_device("auto") == "cuda" and resolve_device("cpu") == "cpu"
    assert gpu_memory_gb() == 24.0  # an 80 GB card plans as nnU-Net's default 24 GB target
    # with a GPU the same 10 minutes train two folds and an ensemble, where the CPU trains one fold
    assert T.plan_training(600, 60, "cuda", 3, 4).folds == 2
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(DemoError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_second_fold_needs_fold_zeros_time_on_a_fixed_schedule():
    after = T.after_training_seconds("cpu", 1, 1, 2)
    ok, budget, _ = T.second_fold_decision(1000, 1000 - after - 50, "cpu", 1, 1, 2, 40.0, fixed_schedule=True)
    assert ok and budget == pytest.approx(50, abs=1e-6)
    ok, _, why = T.second_fold_decision(1000, 1000 - after - 30, "cpu", 1, 1, 2, 40.0, fixed_schedule=True)
    assert not ok and "needs 40 s" in why
    ok, _, _ = T.second_fold_decision(1000, 1000 - after - 50, "cpu", 1, 1, 2, 40.0, fixed_schedule=False)
    assert not ok  # the budgeted trainer needs MIN_FOLD_TRAIN_S
    assert not T.second_fold_decision(10 ** 6, 0, "cpu", 1, 1, 1, 1.0, fixed_schedule=True)[0]


# ------------------------------------------------------------------------------------------------ markers
def test_markers_reuse_only_with_same_params_and_intact_outputs(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.txt").write_text("abc")
    (tmp_path / "b.txt").write_text("xy")
    markers = M.Markers(tmp_path)
    assert markers.why_not_reusable("step", {"n": 1}) == "not run yet"
    record = markers.write("step", {"n": (1, 2)}, 1.234, {"k": "v"}, ["out", "b.txt"])
    assert record["outputs"] == {"out": [1, 3], "b.txt": [1, 2]}
    assert markers.why_not_reusable("step", {"n": (1, 2)}) is None  # tuples compare as their JSON lists
    assert markers.why_not_reusable("step", {"n": (1, 3)}) == "its parameters changed"
    (tmp_path / "out" / ".a.txt.x.tmp").write_text("")  # an interrupted write left behind
    assert "incomplete" in markers.why_not_reusable("step", {"n": (1, 2)})
    (tmp_path / "out" / ".a.txt.x.tmp").unlink()
    (tmp_path / "b.txt").unlink()
    assert "b.txt" in markers.why_not_reusable("step", {"n": (1, 2)})
    markers.path("step").write_text("{not json")
    assert markers.why_not_reusable("step", {"n": (1, 2)}) == "its marker is unreadable"


# ------------------------------------------------------------------------------------------------ reference
def test_unseen_style_reference_ignores_cut_vertebrae_like_the_training_data(tmp_path):
    from vertebraformer_nn.centroids import read_verse_ctd
    from vertebraformer_nn.demo.reference import truth_reference
    from vertebraformer_nn.evaluation.references import IGNORE_VALUE
    from vertebraformer_nn.phantoms import generate

    sim = tmp_path / "sim"
    index = generate(sim, cases_per_source=2, sources=[], extra_styles=["lowdose"], extra_cases=2, progress=False)
    assert truth_reference(sim, "extra_lowdose", tmp_path / "ref") == 2
    for case in index["cases"]:
        name = Path(case["image"]).name[: -len(".nii.gz")]
        ref = sitk.ReadImage(str(tmp_path / "ref" / f"{name}.nii.gz"))
        truth = sitk.ReadImage(str(sim / case["truth"]["vertebrae"]))
        assert case["partial"], "the phantom should have vertebrae cut by the field of view"
        kept = set(case["levels"]) - set(case["partial"])
        assert set(np.unique(sitk.GetArrayFromImage(ref))) - {0} == kept | {IGNORE_VALUE}
        same = np.isin(sitk.GetArrayFromImage(truth), sorted(kept))
        assert np.array_equal(sitk.GetArrayFromImage(ref)[same], sitk.GetArrayFromImage(truth)[same])
        cut = np.isin(sitk.GetArrayFromImage(truth), case["partial"])
        assert np.array_equal(sitk.GetArrayFromImage(ref) == IGNORE_VALUE, cut)
        assert ref.GetOrigin() == truth.GetOrigin() and ref.GetDirection() == truth.GetDirection()
        assert set(read_verse_ctd(tmp_path / "ref" / f"{name}_ctd.json", ref)) == kept
        lesion = (tmp_path / "ref" / f"{name}_lesion.nii.gz").read_bytes()
        assert lesion == (sim / case["truth"]["lesions"]).read_bytes()


# ------------------------------------------------------------------------------------------------ guards
def test_demo_refuses_a_foreign_folder_and_bad_options(tmp_path):
    from vertebraformer_nn.demo.config import DemoConfig
    from vertebraformer_nn.demo.environment import DemoError
    from vertebraformer_nn.demo.pipeline import run_demo

    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DemoError, match="not an earlier demo"):
        run_demo(DemoConfig(out=tmp_path, device="cpu"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
    for bad in (dict(cases_per_source=1), dict(minutes=0), dict(trainer="NoSuchTrainer"), dict(max_folds=3),
                dict(start="pretrained"), dict(unseen_cases=0)):
        with pytest.raises(DemoError):
            DemoConfig(out=tmp_path / "new", **bad).check()
    # the unseen style is scored on 12 cases whatever the sources' size (four made its id rate a guess)
    assert DemoConfig(cases_per_source=2).n_unseen() == DemoConfig(cases_per_source=12).n_unseen() == 12
    # training starts from the built-in model on a CPU (its plans build that network), from scratch on a GPU
    assert [DemoConfig().start_for(d) for d in ("cpu", "cuda")] == ["builtin", "scratch"]
    assert DemoConfig(start="scratch").start_for("cpu") == "scratch"


def test_the_command_line_parser_imports_neither_torch_nor_nnunet():
    """``vertebraformer --help`` answers at once: building every subcommand's parser (demo, predict, evaluate,
    determine-postprocessing ...) imports neither torch nor nnU-Net, in a fresh interpreter."""
    import subprocess
    import sys

    code = ("import sys; from vertebraformer_nn.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'nnunetv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_demo_is_a_subcommand(capsys):
    from vertebraformer_nn.cli import main

    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    assert "--minutes" in out and "--cases-per-source" in out and "--unseen-cases" in out and "-device" in out


# ------------------------------------------------------------------------------------------------ budget trainer
class _FakeScheduler:
    max_epochs, warmup_epochs = 1000, 3


class _Late:
    """The attributes ``fit_epochs_to_budget`` uses, without a trainer."""
    from vertebraformer_nn.trainers.budget import VertebraFormerTrainer_budget as _cls

    fit_epochs_to_budget = _cls.fit_epochs_to_budget
    _set_num_epochs = _cls._set_num_epochs
    _schedule_epochs = _cls._schedule_epochs

    def __init__(self):
        self.lines = []
        self.num_epochs, self.max_epochs, self.configured_warmup = 1000, 1000, 3
        self.time_budget_s, self.lr_scheduler = 100.0, _FakeScheduler()
        self._run_t0, self._epoch_starts, self._run_start_epoch = 0.0, [5.0], 0
        self.current_epoch = 0

    def print_to_log_file(self, *args):
        self.lines.append(" ".join(map(str, args)))


def test_budgeted_epochs_are_refitted_after_every_epoch_both_ways():
    t = _Late()
    t.current_epoch = 1
    t.fit_epochs_to_budget(15.0)  # epoch 0 took 10 s, 15 s used: (100 - 15 - 5) // 10 = 8 more
    assert t.num_epochs == 9 and t.lr_scheduler.max_epochs == 9 and t.lr_scheduler.warmup_epochs == 1
    t._epoch_starts.append(15.5)
    t.current_epoch = 2
    t.fit_epochs_to_budget(22.0)  # epoch 1 took 6.5 s (epoch 0 had start-up costs): (100 - 22 - 5) // 6.5 = 11
    assert t.num_epochs == 13 and t.lr_scheduler.max_epochs == 13
    t._epoch_starts.append(22.5)
    t.current_epoch = 3
    t.fit_epochs_to_budget(26.0)  # faster: 5.25 s per epoch since epoch 1 -> (100 - 26 - 5) // 5.25 = 13 more
    assert t.num_epochs == 16 and "running late" not in t.lines[-1]
    t._epoch_starts.append(26.5)
    t.current_epoch = 4
    t.fit_epochs_to_budget(81.0)  # the machine got busy: 21.8 s per epoch, 81 s used -> stop after this epoch
    assert t.num_epochs == 4 and t.lr_scheduler.max_epochs == 4
    assert "running late" in t.lines[-1]


def test_nnunet_budget_trainer_stretches_nnunets_poly_schedule():
    import torch
    from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

    from vertebraformer_nn.trainers.budget import nnUNetTrainer_budget

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-2)
    fake = type("T", (), {"lr_scheduler": PolyLRScheduler(optimizer, 1e-2, 1000)})()
    nnUNetTrainer_budget._schedule_epochs(fake, 10)
    fake.lr_scheduler.step(5)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5 ** 0.9)


def _trained_for_a_budget(multispine_preprocessed, tmp_path, monkeypatch, tick_s: int, **env):
    """A real (short) ``VertebraFormerTrainer_budget`` run of 1-iteration epochs with ``env`` set, under a fake clock
    that advances ``tick_s`` per reading, starting at ``tick_s``."""
    import vertebraformer_nn.trainers.budget as budget
    from vertebraformer_nn.trainers.build import build_trainer

    _, plans = multispine_preprocessed
    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    for name, value in env.items():
        monkeypatch.setenv(getattr(budget, name), value)
    clock = iter(range(tick_s, 10 ** 9, tick_s))
    monkeypatch.setattr(budget, "time", lambda: float(next(clock)))
    trainer = build_trainer(str(MULTISPINE_ID), 0, "3d_fullres", "VertebraFormerTrainer_budget", plans, "cpu")
    trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch = 1, 1
    trainer.run_training()
    return trainer


def test_budget_trainer_trains_the_epochs_that_fit(multispine_preprocessed, tmp_path, monkeypatch):
    """A real (short) training under a fake clock that advances 10 s per reading: the run starts at 10 s, epoch 0
    runs 20-30 s: a 55 s budget leaves (55 - 20 - 5) // 10 = 3 more epochs; epoch 1 runs 40-50 s, a cycle of 20 s
    with the gap before it: (55 - 40 - 5) // 10 = 1 more, 3 in all; epoch 2 (60-70 s) ends past the budget."""
    from vertebraformer_nn.trainers.schedule import lr_at

    trainer = _trained_for_a_budget(multispine_preprocessed, tmp_path, monkeypatch, 10, BUDGET_ENV="55")
    assert trainer.time_budget_s == 55.0 and trainer.epoch_budget is None
    assert trainer.num_epochs == 3 and trainer.current_epoch == 3
    assert (Path(trainer.output_folder) / "checkpoint_final.pth").is_file()
    lrs = trainer.logger.local_logger.my_fantastic_logging["lrs"]
    # epoch 0 in the initial 3-epoch warm-up; epoch 1 of 4 planned epochs (warm-up 1); epoch 2 of 3
    peak = trainer.initial_lr
    assert lrs == pytest.approx([peak / 3, lr_at(1, peak, 4, 1), lr_at(2, peak, 3, 1)])


def test_epoch_budget_trains_exactly_its_epochs_whatever_the_clock(multispine_preprocessed, tmp_path, monkeypatch):
    """An epoch budget of 3 under a clock on which every epoch takes 2000 s of a 55 s time budget: 3 epochs, the
    schedule stretched to them from the first (warm-up 1, then the poly decay over 3), no refitting."""
    from vertebraformer_nn.trainers.schedule import lr_at

    trainer = _trained_for_a_budget(multispine_preprocessed, tmp_path, monkeypatch, 1000, BUDGET_ENV="55",
                                    EPOCHS_ENV="3")
    assert trainer.epoch_budget == 3 and trainer.num_epochs == 3 and trainer.current_epoch == 3
    assert trainer.lr_scheduler.max_epochs == 3 and trainer.lr_scheduler.warmup_epochs == 1
    peak = trainer.initial_lr
    assert trainer.logger.local_logger.my_fantastic_logging["lrs"] == pytest.approx(
        [lr_at(epoch, peak, 3, 1) for epoch in range(3)])


def test_budget_from_env_rejects_nonsense(monkeypatch):
    from vertebraformer_nn.trainers.budget import BUDGET_ENV, DEFAULT_BUDGET_S, budget_from_env

    monkeypatch.delenv(BUDGET_ENV, raising=False)
    assert budget_from_env() == DEFAULT_BUDGET_S
    for bad in ("ten", "-5", "0"):
        monkeypatch.setenv(BUDGET_ENV, bad)
        with pytest.raises(ValueError, match=BUDGET_ENV):
            budget_from_env()
    from vertebraformer_nn.trainers.budget import EPOCHS_ENV, epochs_from_env

    monkeypatch.delenv(EPOCHS_ENV, raising=False)
    assert epochs_from_env() is None
    monkeypatch.setenv(EPOCHS_ENV, "12")
    assert epochs_from_env() == 12
    for bad in ("2.5", "0", "many"):
        monkeypatch.setenv(EPOCHS_ENV, bad)
        with pytest.raises(ValueError, match=EPOCHS_ENV):
            epochs_from_env()


# ------------------------------------------------------------------------------------------------ end to end
NNUNET_VARS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The demo at its smallest size: 2 cases per source, 1 unseen-style case, the tiny schedule, one fold."""
    from vertebraformer_nn.demo.config import DemoConfig
    from vertebraformer_nn.demo.pipeline import run_demo

    out = tmp_path_factory.mktemp("demo") / "demo_out"
    config = DemoConfig(out=out, cases_per_source=2, unseen_cases=1, minutes=3, device="cpu",
                        trainer="VertebraFormerTrainer_tiny", max_folds=1, bootstrap=200)
    log = []
    before = {v: os.environ.get(v) for v in NNUNET_VARS}
    runs = run_demo(config, log=log.append)
    assert {v: os.environ.get(v) for v in NNUNET_VARS} == before  # the user's nnU-Net folders come back
    return config, out, runs, log


def test_demo_runs_every_step_and_writes_the_report(demo_run):
    config, out, runs, log = demo_run
    from vertebraformer_nn.demo.pipeline import STEPS

    assert list(runs) == list(STEPS) and not any(r.reused for r in runs.values())
    assert all((out / ".steps" / f"{s}.json").is_file() for s in STEPS)
    assert runs["train_fold1"].record["result"] == {"trained": False, "why": "one fold planned"}
    assert runs["ensemble"].record["result"]["ensembled"] is False
    # progress: a start and an end line per step with the seconds it took
    done = [line for line in log if re.search(r"^\[demo \d/9\] .*: done in [\d.]+ s", line)]
    assert len(done) == len(STEPS)
    # nnU-Net's folders of the run were the demo's own, under OUT
    model = out / runs["train"].record["result"]["model_folder"]
    assert model.parent.parent == out / "nnUNet_results" and (model / "fold_0" / "checkpoint_final.pth").is_file()
    assert (out / "nnUNet_raw" / "Dataset599_MultiSpine" / "dataset.json").is_file()

    report = (out / "REPORT.md").read_text()
    for section in ("## What was done", "## Results", "## Pictures", "## What a real run would give",
                    "## Where each file is", "## The same with real data", "## Running again"):
        assert section in report
    assert "weak model" in report and "Not measured here" in report
    # on a CPU fold 0 fine-tunes the built-in model: its weights load into the network of the demo's own plans
    # (another patch than the built-in's here, 2 cases per source: the positional embedding is resampled)
    train = runs["train"].record["result"]
    assert train["weights_from"] == "builtin" and runs["train"].record["params"]["start"] == "builtin"
    assert "fine-tuned" in report and "from the built-in model's weights" in report
    assert any(line.startswith("  weights from the built-in model") for line in log)
    assert "Fold 1 was not trained" in report
    rows = [r for r in report.splitlines() if r.startswith("| fold 0 validation") or r.startswith("| unseen")]
    assert len(rows) >= 2
    number = re.compile(r"\d+(\.\d+)?")
    for row in rows:  # cases, Dice, spine Dice, id rate always numbers; the others "–" where undefined
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert all(number.fullmatch(cells[i]) for i in (2, 3, 4, 6)), row
        assert all(number.fullmatch(c) or c == "–" for c in cells[5:]), row
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert any(link.endswith("_preview.png") for link in links) and any("progress.png" in l for l in links)
    assert all((out / link).is_file() for link in links)
    for link in re.findall(r"\]\((evaluation/[^)]+)\)", report):
        assert (out / link).is_file()
    evaluation = json.loads((out / "evaluation" / "unseen_lowdose_fold0.json").read_text())
    assert evaluation["summary"]["overall"]["n_cases"] == 1
    validation = json.loads((out / "evaluation" / "validation_fold0.json").read_text())
    assert validation["settings"]["cases_from_splits"] == 0


def test_demo_rerun_reuses_every_step_and_redoes_a_damaged_one(demo_run):
    from vertebraformer_nn.demo.pipeline import STEPS, run_demo

    config, out, _, _ = demo_run
    log = []
    t0 = time.time()
    runs = run_demo(config, log=log.append)
    assert time.time() - t0 < 30
    assert all(r.reused for r in runs.values())
    assert sum(": reused (done earlier in" in line for line in log) == len(STEPS)

    (out / "evaluation" / "validation_fold0.md").unlink()  # an incomplete output: that step and the later ones
    log = []
    runs = run_demo(config, log=log.append)
    assert [n for n, r in runs.items() if not r.reused] == ["evaluate", "report"]
    assert any("evaluate (its outputs are incomplete" in line for line in log)
    assert (out / "evaluation" / "validation_fold0.md").is_file()
