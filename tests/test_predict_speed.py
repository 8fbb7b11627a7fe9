"""The pure helpers of benchmarks/predict_speed.py, and one measured run: fast, no model."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from vertebraformer_nn.inference.summary import SummaryWriter

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("predict_speed", REPO / "benchmarks" / "predict_speed.py")
ps = importlib.util.module_from_spec(_spec)
sys.modules["predict_speed"] = ps  # dataclasses look their module up there
_spec.loader.exec_module(ps)


def test_stages_match_the_summary_columns():
    from vertebraformer_nn.inference.summary import STAGES

    assert ps.STAGES == STAGES


def test_parse_stat_with_spaces_and_parentheses_in_the_name():
    fields = ["S", "1", "4242", "4242"] + ["0"] * 17 + ["12345", "9"]  # state ppid pgrp session ... rss(24)
    assert ps.parse_stat("4243 (pt (worker) 1) " + " ".join(fields)) == (4243, 4242)


STATUS = "Name:\tpython\nVmPeak:\t 999 kB\nVmRSS:\t{rss} kB\nRssAnon:\t{anon} kB\nRssFile:\t{file} kB\n" \
         "RssShmem:\t{shm} kB\nThreads:\t2\n"


def test_parse_status():
    assert ps.parse_status(STATUS.format(rss=1600, anon=1000, file=500, shm=100)) == {
        "VmRSS": 1600 * 1024, "RssAnon": 1000 * 1024, "RssFile": 500 * 1024, "RssShmem": 100 * 1024}


def test_tree_resident_counts_libraries_once():
    main = {"RssAnon": 1000, "RssFile": 500, "RssShmem": 10}
    worker = {"RssAnon": 200, "RssFile": 450, "RssShmem": 0}
    assert ps.tree_resident_bytes([main, worker, worker]) == 1000 + 10 + 200 + 200 + 500
    assert ps.tree_resident_bytes([]) == 0


def test_session_resident_sums_only_the_session(tmp_path):
    def fake(pid, sid, anon_kb, file_kb):
        (tmp_path / str(pid)).mkdir()
        rest = ["S", "1", str(sid), str(sid)] + ["0"] * 18
        (tmp_path / str(pid) / "stat").write_text(f"{pid} (python) " + " ".join(rest))
        (tmp_path / str(pid) / "status").write_text(STATUS.format(rss=anon_kb + file_kb, anon=anon_kb, file=file_kb,
                                                                  shm=0))

    fake(10, 10, 100, 50)
    fake(11, 10, 40, 60)
    fake(12, 99, 1000, 1000)  # another session
    (tmp_path / "self").mkdir()
    (tmp_path / "13").mkdir()  # a process that ended while being read: no files
    assert ps.session_resident_bytes(10, proc=tmp_path) == (100 + 40 + 60) * 1024


def test_nnunet_stages_from_timestamped_log():
    events = [(0.5, "some import warning"), (4.0, "There are 1 cases in the source folder"),
              (4.1, "There are 1 cases that I would like to predict"), (9.0, ""), (9.0, "Predicting x.nii.gz:"),
              (9.1, "perform_everything_on_device: False"), (29.0, "sending off prediction to background worker"),
              (29.1, "done with x.nii.gz"), (41.0, "Segmentation export complete.")]
    assert ps.nnunet_stages(events) == pytest.approx({"startup": 4.0, "preprocess": 5.0, "network": 20.0,
                                                      "export": 12.0})
    # killed during the network: the stages after it are unknown
    assert ps.nnunet_stages(events[:6]) == pytest.approx({"startup": 4.0, "preprocess": 5.0})


def test_failure_status():
    assert ps.failure_status(0, "", False, False, 20, 600) == "ok"
    assert ps.failure_status(None, "", True, False, 20, 600) == "timeout after 600 s"
    assert ps.failure_status(-9, "", False, True, 8, 600).startswith("out of memory at 8 GB cap (process tree")
    assert ps.failure_status(1, "...\nnumpy.core._exceptions._ArrayMemoryError: Unable to allocate 16.2 GiB", False,
                             False, 20, 600) == \
        "out of memory at 20 GB cap (numpy.core._exceptions._ArrayMemoryError: Unable to allocate 16.2 GiB)"
    assert ps.failure_status(-9, "", False, False, 20, 600) == "out of memory at 20 GB cap (killed by SIGKILL)"
    assert ps.failure_status(2, "trace\nValueError: bad plans\n", False, False, 20, 600) == \
        "failed (exit 2): ValueError: bad plans"


def test_ours_stages_reads_our_summary(tmp_path):
    writer = SummaryWriter(tmp_path)
    writer.ok({"case": "example_ct", "vertebrae": [], "lesions": []}, "x.nii.gz",
              {"read": 0.5, "preprocess": 1.25, "network": 10.0, "numbering": 0.75, "export": 2.0})
    seconds, status = ps.ours_stages(writer.path)
    assert status == "ok"
    assert seconds == pytest.approx({"read": 0.5, "preprocess": 1.25, "network": 10.0, "numbering": 0.75,
                                     "export": 2.0, "total": 14.5})
    writer.failed("example_ct", "x.nii.gz", "x.nii.gz: image holds 3 NaN", {"read": 0.1})
    seconds, status = ps.ours_stages(writer.path)
    assert status == "failed: x.nii.gz: image holds 3 NaN" and seconds == pytest.approx({"read": 0.1, "total": 0.1})


def test_nnunet_model_args(tmp_path):
    folder = tmp_path / "res" / "Dataset597_MultiSpine" / "nnUNetTrainer_budget__nnUNetPlans_vfspacing__3d_fullres"
    assert ps.nnunet_model_args(folder) == {
        "results": str(tmp_path / "res"), "dataset": "Dataset597_MultiSpine", "trainer": "nnUNetTrainer_budget",
        "plans": "nnUNetPlans_vfspacing", "configuration": "3d_fullres"}
    with pytest.raises(ValueError, match="not an nnU-Net model folder"):
        ps.nnunet_model_args(tmp_path / "fold_0")


def test_format_table():
    rows = [{"input": "large", "method": "ours", "seconds": {"read": 1.04, "network": 100.0, "total": 101.04},
             "wall_s": 110.0, "peak_gb": 5.123, "largest_gb": 5.0, "status": "ok"},
            {"input": "large", "method": "nnunet", "seconds": {}, "wall_s": 50.0, "peak_gb": 20.5, "largest_gb": None,
             "status": "out of memory at 20 GB cap"}]
    lines = ps.format_table(rows).splitlines()
    assert len(lines) == 4 and lines[1].count("---") == 12
    assert lines[2] == "| large | ours | 1.0 |  | 100.0 |  |  | 101.0 | 110.0 | 5.12 | 5.00 | ok |"
    assert lines[3].endswith("| 50.0 | 20.50 |  | out of memory at 20 GB cap |")


def test_measure_records_output_rss_and_an_out_of_memory(tmp_path):
    env = ps.child_env(1)
    ok = ps.measure([sys.executable, "-c", "import time; b = b'x' * (200 * 2**20); print('hello', flush=True); "
                     "time.sleep(0.6)"], env, cap_gb=4, timeout_s=60, log=tmp_path / "ok.log")
    assert ok.returncode == 0 and [line for _, line in ok.events] == ["hello"]
    # 200 MB touched, seen by polling; wait4's maximum also counts the pages the child had from its parent at the fork
    assert 0.19 <= ok.peak_gb < 1 and ok.largest_gb >= 0.2
    assert "hello" in (tmp_path / "ok.log").read_text()
    big = ps.measure([sys.executable, "-c", "b = bytearray(600 * 2**20)"], env, cap_gb=0.25, timeout_s=60,
                     log=tmp_path / "big.log")
    assert ps.failure_status(big.returncode, big.tail(), big.timed_out, big.capped, 0.25, 60) == \
        "out of memory at 0.25 GB cap (MemoryError)"
    slow = ps.measure([sys.executable, "-c", "import time; time.sleep(30)"], env, cap_gb=4, timeout_s=0.5,
                      log=tmp_path / "slow.log")
    assert slow.timed_out and slow.wall_s < 5


def test_sweep_copies_a_model_folder_at_another_spacing(tmp_path):
    """benchmarks/predict_sweep.py: the plans' spacing changed in a copy, every other file linked, the source
    untouched; the model grid of an input at each spacing."""
    spec = importlib.util.spec_from_file_location("predict_sweep", REPO / "benchmarks" / "predict_sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    import json

    model = tmp_path / "Dataset1_X" / "T__P__3d_fullres"
    (model / "fold_0").mkdir(parents=True)
    plans = {"configurations": {"3d_fullres": {"spacing": [3.5, 3.5, 3.5], "patch_size": [64, 64, 64]}}}
    (model / "plans.json").write_text(json.dumps(plans))
    (model / "fold_0" / "checkpoint_final.pth").write_bytes(b"weights")
    copy = sweep.model_at_spacing(model, tmp_path / "1mm" / model.name, 1.0)
    assert json.loads((copy / "plans.json").read_text())["configurations"]["3d_fullres"] == \
        {"spacing": [1.0, 1.0, 1.0], "patch_size": [64, 64, 64]}
    assert (copy / "fold_0" / "checkpoint_final.pth").resolve() == (model / "fold_0" / "checkpoint_final.pth")
    assert json.loads((model / "plans.json").read_text()) == plans
    with pytest.raises(ValueError, match="no configuration '2d'"):
        sweep.model_at_spacing(model, tmp_path / "x", 1.0, "2d")
    assert sweep.model_grid_voxels((512, 512, 600), (0.7, 0.7, 1.0), 1.0) == 358 * 358 * 600
    row = {"spacing": 1.0, "input": "large", "method": "ours", "voxels": 10 ** 8, "peak_gb": 7.45, "status": "ok"}
    coarse = dict(row, spacing=2.0, voxels=10 ** 8 // 8, peak_gb=7.45 - 35 * 0.875e8 / 1024 ** 3)
    table = sweep.bytes_table([coarse, row])
    assert "| 1 mm | large | ours | 100.0 | 7.45 | 80 | 35 | ok |" in table
    assert "| 2 mm | large | ours | 12.5 |" in table and "|  | ok |" in table  # no coarser run: no slope
