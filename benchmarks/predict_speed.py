"""Seconds per case and peak RSS of ``vertebraformer predict`` next to nnU-Net's ``nnUNetv2_predict`` on the CPU.

    python benchmarks/predict_speed.py --prepare /tmp/predbench                 # from a clean clone: build, then measure
    python benchmarks/predict_speed.py --workdir /tmp/predbench --model M --nnunet-model N [--inputs ...] [--skip-large]

Inputs (``--inputs``, default all): ``phantom`` (a whole-spine MultiSpine-Sim phantom CT, DICOM-cohort scanner style,
made once, not trained on), ``example_ct`` (the real ``totalsegmentator/example_ct.nii.gz``), ``dicom`` (the real
DICOM series ``totalsegmentator/example_ct_dicom/``), ``large`` (a synthetic 512x512x600 CT, 0.7x0.7x1.0 mm, int16:
the phantom resampled onto that grid in a body-sized ellipse of soft tissue; written once into the workdir). Real data are found through
``$VERTEBRAFORMER_REAL_DATA`` (default ``../shared/data/real`` beside the repository), as in the tests.

Methods (``--methods``): ``ours`` = ``vertebraformer predict -m M -f 0 -device cpu`` with its CPU defaults (test-time
mirroring off, bf16 autocast, preview drawn); ``nnunet`` = ``nnUNetv2_predict ... -f 0 -device cpu --disable_tta
-npp 2 -nps 2``; ``nnunet_tta`` = the same with nnU-Net's default mirroring on. nnU-Net cannot read DICOM: the series
is converted to NIfTI first (with our image_io, in its own measured subprocess; a row of its own).

Every run is a subprocess in its own session with 2 threads (OMP/MKL), ``nnUNet_compile=f``, ``nnUNet_def_n_proc=2``,
``nnUNet_n_proc_DA=2``, an address-space cap per process (``--mem-cap-gb``, RLIMIT_AS) and a timeout. Peak RSS is the
largest resident memory of all processes of the run together (nnU-Net's preprocessing and export workers included;
:func:`tree_resident_bytes`), polled every 0.2 s; above the cap the run is killed. An out-of-memory (cap, MemoryError, a killed
worker) or a timeout is a result row, not a crash.

Stages: ours from its ``summary.csv`` (read, preprocess, network, numbering, export). nnU-Net reports no timings:
they come from the time each line of its log arrives: start-up (imports, model) until "There are N cases",
read + preprocess until "Predicting", network until "sending off prediction", export (resampling every class
channel, argmax, writing) until "Segmentation export complete". ``--prepare`` builds both models (phantoms,
MultiSpine raw dataset, our CPU plans, VertebraFormerTrainer_tiny; nnU-Net's default ExperimentPlanner with our target
spacing, trained by ``--nnunet-trainer``): speed does not depend on how long a model was trained, only on its
architecture, plans and the input. Not a test: a script whose table goes into the notes.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from vertebraformer_nn.inference.summary import STAGES, read_summary
from vertebraformer_nn.paths import real_data_dir

REPO = Path(__file__).resolve().parents[1]
INPUTS = ("phantom", "example_ct", "dicom", "large")
METHODS = ("ours", "nnunet", "nnunet_tta")
LARGE_SIZE = (512, 512, 600)
LARGE_SPACING = (0.7, 0.7, 1.0)
DATASET_ID = 597
NNUNET_PLANS = "nnUNetPlans_vfspacing"
POLL_S = 0.2
#: Text in a failed run's output that means it ran out of memory.
OOM_MARKERS = ("MemoryError", "Unable to allocate", "can't allocate memory", "Cannot allocate memory", "bad_alloc",
               "insufficient available CPU RAM", "out of memory")
#: nnU-Net log lines that end a stage: (stage, text the line contains).
NNUNET_MARKS = (("startup", "cases in the source folder"), ("preprocess", "Predicting "),
                ("network", "sending off prediction"), ("export", "Segmentation export complete"))


# ---------------------------------------------------------------------------------------------- pure helpers
def parse_stat(text: str) -> tuple:
    """(pid, session id) from ``/proc/<pid>/stat``; the command name may hold spaces and ')'."""
    pid = int(text[: text.index(" ")])
    fields = text[text.rindex(")") + 2:].split()  # fields[0] is the state (stat field 3)
    return pid, int(fields[3])


def parse_status(text: str) -> Dict[str, int]:
    """The resident-set counters of ``/proc/<pid>/status`` in bytes: VmRSS, RssAnon, RssFile, RssShmem."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            out[key] = int(value.split()[0]) * 1024  # kB
    return out


def tree_resident_bytes(statuses: Sequence[Dict[str, int]]) -> int:
    """Resident memory of a group of processes: every process's own pages (anonymous and shared-memory) plus the
    file-backed pages (libraries: torch's are hundreds of MB, mapped by every worker) counted once, as the
    largest process's. Summing VmRSS would count the libraries once per worker process."""
    if not statuses:
        return 0
    own = sum(s.get("RssAnon", 0) + s.get("RssShmem", 0) for s in statuses)
    return own + max(s.get("RssFile", 0) for s in statuses)


def session_resident_bytes(session: int, proc: Path = Path("/proc")) -> int:
    """:func:`tree_resident_bytes` of every process in ``session`` (each run is started in a session of its own)."""
    statuses = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if parse_stat((entry / "stat").read_text())[1] == session:
                statuses.append(parse_status((entry / "status").read_text()))
        except (OSError, ValueError, IndexError):
            continue  # a process that ended while being read
    return tree_resident_bytes(statuses)


def nnunet_stages(events: Sequence[tuple]) -> Dict[str, float]:
    """Stage seconds of an ``nnUNetv2_predict`` run of one case from its log: ``events`` = (seconds since start,
    line). Stages whose end line never came are absent."""
    ends, last = {}, 0.0
    for stage, text in NNUNET_MARKS:
        hit = next((t for t, line in events if text in line and t >= last), None)
        if hit is None:
            break
        ends[stage] = hit - last
        last = hit
    return ends


def failure_status(returncode: Optional[int], output_tail: str, timed_out: bool, capped: bool, cap_gb: float,
                   timeout_s: float) -> str:
    """The status of a finished run: ``ok``, ``out of memory at N GB cap (...)``, ``timeout after N s``, or
    ``failed (exit N): <last line>``."""
    if timed_out:
        return f"timeout after {timeout_s:g} s"
    if capped:
        return f"out of memory at {cap_gb:g} GB cap (process tree RSS passed the cap; killed)"
    if returncode == 0:
        return "ok"
    lines = [ln.strip() for ln in output_tail.splitlines() if ln.strip()]
    oom = [ln for ln in lines if any(m in ln for m in OOM_MARKERS)]
    if oom or returncode == -signal.SIGKILL:
        return f"out of memory at {cap_gb:g} GB cap ({oom[-1][:160] if oom else 'killed by SIGKILL'})"
    return f"failed (exit {returncode}): {lines[-1][:200] if lines else 'no output'}"


def ours_stages(summary_csv: Path) -> tuple:
    """(stage seconds incl. ``total``, status) of the one case in our ``summary.csv``."""
    rows = read_summary(summary_csv)
    if len(rows) != 1:
        raise ValueError(f"{summary_csv}: expected one case, found {len(rows)}")
    row = rows[0]
    seconds = {s: float(row[f"seconds_{s}"]) for s in (*STAGES, "total") if row.get(f"seconds_{s}")}
    return seconds, "ok" if row["status"] == "ok" else f"failed: {row['reason']}"


def nnunet_model_args(folder: Path) -> dict:
    """nnU-Net's ``-d -tr -p -c`` and ``$nnUNet_results`` of a trained model folder
    ``<results>/<Dataset>/<Trainer>__<Plans>__<configuration>``."""
    parts = Path(folder).name.split("__")
    if len(parts) != 3 or not Path(folder).parent.name.startswith("Dataset"):
        raise ValueError(f"{folder}: not an nnU-Net model folder <results>/DatasetXXX_Name/<Trainer>__<Plans>__<conf>")
    return {"results": str(Path(folder).parent.parent), "dataset": Path(folder).parent.name, "trainer": parts[0],
            "plans": parts[1], "configuration": parts[2]}


def format_table(rows: Sequence[dict]) -> str:
    """Markdown table: one row per (input, method) with stage seconds, case total, process wall, peak RSS, status."""
    head = ["input", "method", *STAGES, "case total s", "process wall s", "peak RSS GB", "largest process GB",
            "status"]

    def num(v, fmt=".1f"):
        return "" if v is None else format(v, fmt)

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        s = r.get("seconds", {})
        cells = [r["input"], r["method"], *(num(s.get(k)) for k in STAGES), num(s.get("total")), num(r.get("wall_s")),
                 num(r.get("peak_gb"), ".2f"), num(r.get("largest_gb"), ".2f"), r["status"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- measured runs
@dataclass
class Run:
    returncode: Optional[int]
    wall_s: float
    peak_gb: float
    largest_gb: float
    events: List[tuple] = field(default_factory=list)  # (seconds since start, line)
    timed_out: bool = False
    capped: bool = False

    def tail(self, n: int = 40) -> str:
        return "\n".join(line for _, line in self.events[-n:])


def child_env(threads: int, extra: Optional[dict] = None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), nnUNet_compile="f",
               nnUNet_def_n_proc=str(threads), nnUNet_n_proc_DA=str(threads), PYTHONUNBUFFERED="1",
               PYTHONWARNINGS="ignore", nnUNet_extTrainer=str(REPO / "vertebraformer_nn" / "nnunet_shim"))
    env.update(extra or {})
    return env


def measure(cmd: List[str], env: dict, cap_gb: float, timeout_s: float, log: Path) -> Run:
    """Run ``cmd`` in a session of its own under the caps; wall time, peak resident memory, timestamped output."""
    cap = int(cap_gb * 1024 ** 3)

    def limit():  # in the child, before exec: every process it starts inherits the cap
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", start_new_session=True, preexec_fn=limit)
    run = Run(None, 0.0, 0.0, 0.0)

    def reader():
        with open(log, "w") as f:
            for line in proc.stdout:
                t = time.perf_counter() - t0
                run.events.append((t, line.rstrip("\n")))
                f.write(f"{t:9.2f} {line}")

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    peak = 0
    try:
        while True:  # os.wait4, not Popen.poll: it returns the child's resource usage
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, session_resident_bytes(proc.pid))
            if peak > cap or time.perf_counter() - t0 > timeout_s:
                run.capped, run.timed_out = peak > cap, peak <= cap
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(POLL_S)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # workers the run left behind, or the run when we are stopped
        except ProcessLookupError:
            pass
    run.wall_s = time.perf_counter() - t0
    run.returncode = proc.returncode = os.waitstatus_to_exitcode(status)
    thread.join(timeout=10)
    run.peak_gb = peak / 1024 ** 3
    # KiB on Linux: the largest single process of the tree. A forked child starts with the pages of the process
    # that forked it, so this is never below the RSS of its parent at the fork (this script's, ~1 GB under pytest)
    run.largest_gb = usage.ru_maxrss / 1024 ** 2
    return run


def run_method(name: str, method: str, source: Path, nifti: Path, model: Path, nn_model: Path, work: Path, env: dict,
               cap_gb: float, timeout_s: float, threads: int, tag: str = "") -> dict:
    """One measured run of ``method`` on input ``name`` (``source`` as given to ours, ``nifti`` as given to nnU-Net):
    its table row. Predictions go to ``work/runs[/tag]/name/method``, the log to ``work/logs``."""
    out = work / "runs" / tag / name / method
    shutil.rmtree(out, ignore_errors=True)
    if method == "ours":
        cmd = [sys.executable, "-m", "vertebraformer_nn", "predict", "-i", str(source), "-o", str(out),
               "-m", str(model), "-f", "0", "-device", "cpu", "--disable_progress_bar"]
    else:
        nn = nnunet_model_args(nn_model)
        env = dict(env, nnUNet_results=nn["results"])
        folder = work / "nnunet_inputs" / name
        folder.mkdir(parents=True, exist_ok=True)
        link = folder / f"{name}_0000.nii.gz"
        if not link.exists():
            link.symlink_to(nifti.resolve())
        cmd = [str(Path(sys.executable).parent / "nnUNetv2_predict"), "-i", str(folder), "-o", str(out),
               "-d", nn["dataset"], "-tr", nn["trainer"], "-p", nn["plans"], "-c", nn["configuration"],
               "-f", "0", "-device", "cpu", "-npp", str(threads), "-nps", str(threads),
               "--disable_progress_bar"] + (["--disable_tta"] if method == "nnunet" else [])
    print(f"[{datetime.now():%H:%M:%S}] {tag + ' ' if tag else ''}{name} / {method}: {' '.join(cmd)}", flush=True)
    run = measure(cmd, env, cap_gb, timeout_s,
                  work / "logs" / f"{tag + '_' if tag else ''}{name}_{method}.log")
    status = failure_status(run.returncode, run.tail(), run.timed_out, run.capped, cap_gb, timeout_s)
    if method == "ours" and (out / "summary.csv").is_file():
        seconds, case_status = ours_stages(out / "summary.csv")
        status = case_status if status.startswith("failed") or status == "ok" else status
    else:
        seconds = nnunet_stages(run.events) if method != "ours" else {}
        seconds.pop("startup", None)
        if seconds.get("export") is not None:
            seconds["total"] = sum(seconds.values())
        if status == "ok" and not (out / f"{name}.nii.gz").is_file():
            status = f"failed: no {name}.nii.gz written"
    return {"input": name, "method": method, "seconds": seconds, "wall_s": run.wall_s, "peak_gb": run.peak_gb,
            "largest_gb": run.largest_gb, "status": status}


# ---------------------------------------------------------------------------------------------- inputs
def whole_spine_phantom(target: Path, seed: int = 0) -> Path:
    """A MultiSpine-Sim phantom in the DICOM cohort's scanner style with the 'whole' field of view (skull to
    sacrum), written once as NIfTI; it is not part of the training data."""
    from dataclasses import replace

    from vertebraformer_nn.image_io import write_image
    from vertebraformer_nn.phantoms.orchestrate import CaseBuilder
    from vertebraformer_nn.phantoms.plan import build_plan

    if not target.is_file():
        plan = build_plan(cases_per_source=1, seed=seed)
        case = CaseBuilder(plan).build(replace(plan.of_source("dicom")[0], fov="whole"))
        write_image(case.ct_image(), target)
    return target


def make_large(phantom: Path, target: Path) -> Path:
    """The phantom resampled (linear) onto a 512x512x600 grid of 0.7x0.7x1.0 mm around its centre; around it, soft
    tissue (30 HU) inside an axial ellipse of 350 x 260 mm and air outside, so that the body fills the field of view
    as in an abdominal CT (a crop to the body cannot shrink it much)."""
    import numpy as np
    import SimpleITK as sitk

    from vertebraformer_nn.image_io import read_image, write_image

    if target.is_file():
        return target
    src = read_image(phantom)
    centre = np.array(src.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in src.GetSize()]))
    ref = sitk.Image(list(LARGE_SIZE), sitk.sitkInt16)
    ref.SetSpacing(LARGE_SPACING)
    ref.SetOrigin(tuple(centre - (np.array(LARGE_SIZE) - 1) / 2 * np.array(LARGE_SPACING)))
    out = sitk.Resample(src, ref, sitk.Transform(), sitk.sitkLinear, 30.0, sitk.sitkInt16)
    array = sitk.GetArrayFromImage(out)
    y, x = np.ogrid[:LARGE_SIZE[1], :LARGE_SIZE[0]]
    dy, dx = [(v - (n - 1) / 2) * s for v, n, s in ((y, LARGE_SIZE[1], LARGE_SPACING[1]),
                                                        (x, LARGE_SIZE[0], LARGE_SPACING[0]))]
    array[:, (dx / 175.0) ** 2 + (dy / 130.0) ** 2 > 1] = -1024
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(out)
    return write_image(image, target)


def describe_image(path: Path) -> str:
    """Size, spacing and voxel type of an image file or DICOM series folder (headers only where possible)."""
    import SimpleITK as sitk

    from vertebraformer_nn.image_io import read_image

    if Path(path).is_dir():
        image = read_image(path)
        size, spacing, pixel = image.GetSize(), image.GetSpacing(), image.GetPixelIDValue()
    else:
        r = sitk.ImageFileReader()
        r.SetFileName(str(path))
        r.ReadImageInformation()
        size, spacing, pixel = r.GetSize(), r.GetSpacing(), r.GetPixelID()
    return (f"{'x'.join(map(str, size))} voxels, {'x'.join(f'{s:.3g}' for s in spacing)} mm, "
            f"{sitk.GetPixelIDValueAsString(pixel)}")


def convert_dicom(series: Path, target: Path) -> None:
    """Worker (``--convert-dicom``): the DICOM series as NIfTI, for nnU-Net."""
    from vertebraformer_nn.image_io import read_image, write_image

    write_image(read_image(series), target)


# ---------------------------------------------------------------------------------------------- prepare
def _check(cmd: List[str], env: dict, what: str) -> None:
    print(f"  $ {' '.join(cmd)}", flush=True)
    if subprocess.run(cmd, env=env).returncode != 0:
        sys.exit(f"prepare: {what} failed (command above)")


def prepare(work: Path, cases_per_source: int, nnunet_trainer: str, threads: int) -> dict:
    """Phantoms, raw dataset, our CPU plans + tiny model, nnU-Net's default plans at our spacing + its model, in
    ``work``; each step is skipped when its product is there."""
    from vertebraformer_nn.dataset_conversion import convert_source, finalize
    from vertebraformer_nn.sources import SOURCES
    from vertebraformer_nn.phantoms import generate
    from vertebraformer_nn.planners import plan_and_preprocess

    sim = work / "SIM"
    if not (sim / "ground_truth" / "index.json").is_file():
        print("prepare: phantoms", flush=True)
        generate(sim, cases_per_source=cases_per_source, seed=0, previews=False, progress=True)
    raw = list(Path(os.environ["nnUNet_raw"]).glob(f"Dataset{DATASET_ID}_*"))
    if not raw or not (raw[0] / "dataset.json").is_file():
        print("prepare: raw dataset", flush=True)
        for i, source in enumerate(SOURCES):
            convert_source(source, sim / source, DATASET_ID, append=i > 0)
        if not finalize(DATASET_ID, num_processes=threads).ok:
            sys.exit("prepare: convert finalize failed")
        raw = list(Path(os.environ["nnUNet_raw"]).glob(f"Dataset{DATASET_ID}_*"))
    name = raw[0].name
    pre = Path(os.environ["nnUNet_preprocessed"]) / name
    results = Path(os.environ["nnUNet_results"]) / name
    plans = "VertebraFormerCPUPlans"
    if not (pre / f"{plans}.json").is_file():
        print("prepare: plan and preprocess (CPU preset)", flush=True)
        plans = plan_and_preprocess(DATASET_ID, preset="cpu", num_processes=threads, verbose=False)
    env = child_env(threads, {"VERTEBRAFORMER_TRAIN_BUDGET_S": "1"})  # the budget trainers: one epoch
    ours = results / f"VertebraFormerTrainer_tiny__{plans}__3d_fullres"
    if not (ours / "fold_0" / "checkpoint_final.pth").is_file():
        _check([sys.executable, "-m", "vertebraformer_nn", "train", str(DATASET_ID), "0", "-tr",
                "VertebraFormerTrainer_tiny", "-p", plans, "-device", "cpu"], env, "training ours")
    bin_dir = Path(sys.executable).parent
    if not (pre / f"{NNUNET_PLANS}.json").is_file():
        spacing = json.loads((pre / f"{plans}.json").read_text())["configurations"]["3d_fullres"]["spacing"]
        _check([str(bin_dir / "nnUNetv2_plan_experiment"), "-d", str(DATASET_ID), "-overwrite_target_spacing",
                *map(str, spacing), "-overwrite_plans_name", NNUNET_PLANS], env, "nnU-Net planning")
    if not (pre / f"{NNUNET_PLANS}_3d_fullres").is_dir():
        _check([str(bin_dir / "nnUNetv2_preprocess"), "-d", str(DATASET_ID), "-plans_name", NNUNET_PLANS, "-c",
                "3d_fullres", "-np", str(threads)], env, "nnU-Net preprocessing")
    theirs = results / f"{nnunet_trainer}__{NNUNET_PLANS}__3d_fullres"
    if not (theirs / "fold_0" / "checkpoint_final.pth").is_file():
        _check([str(bin_dir / "nnUNetv2_train"), str(DATASET_ID), "3d_fullres", "0", "-tr", nnunet_trainer, "-p",
                NNUNET_PLANS, "-device", "cpu"], env, "training nnU-Net")
    return {"model": ours, "nnunet_model": theirs}


def write_result(text: str, out_md: Optional[Path], stem: str) -> Path:
    """Write a report to ``out_md``, default ``benchmarks/results/<stem>_<UTC date>.md``; returns the path."""
    target = out_md or REPO / "benchmarks" / "results" / f"{stem}_{datetime.now(timezone.utc):%Y-%m-%d}.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text.rstrip("\n") + "\n")
    print(f"written {target}")
    return target


# ---------------------------------------------------------------------------------------------- main
def machine(load: tuple) -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    flags = Path("/proc/cpuinfo").read_text()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3
    return (f"{cpu}, {os.cpu_count()} cores (bf16 instructions: {'yes' if 'avx512_bf16' in flags or 'amx_bf16' in flags else 'no'}), "
            f"{mem:.0f} GB RAM; load average (1/5/15 min) {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prepare", type=Path, metavar="WORKDIR", help="build data and both models in WORKDIR first")
    p.add_argument("--workdir", type=Path, help="where inputs and predictions go (default: the --prepare folder)")
    p.add_argument("--model", type=Path, help="our trained model folder (<Trainer>__<Plans>__3d_fullres, fold 0)")
    p.add_argument("--nnunet-model", type=Path, help="nnU-Net's trained model folder (fold 0)")
    p.add_argument("--phantom", type=Path, help="the phantom CT (default: a whole-spine phantom made once in "
                   "WORKDIR/inputs)")
    p.add_argument("--inputs", nargs="+", choices=INPUTS, default=list(INPUTS))
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--skip-large", action="store_true", help="leave out the 512x512x600 case")
    p.add_argument("--mem-cap-gb", type=float, default=20.0, help="address-space cap per process and cap of the "
                   "resident memory of the run's processes together (default 20)")
    p.add_argument("--timeout-s", type=float, default=3600.0, help="per run (default 3600)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cases-per-source", type=int, default=2, help="--prepare: phantoms per source (default 2)")
    p.add_argument("--nnunet-trainer", default="nnUNetTrainer_budget",
                   help="--prepare: nnU-Net trainer (default nnUNetTrainer_budget, nnU-Net's default trainer cut to "
                   "one epoch of 50 iterations; nnUNetTrainer_1epoch runs 250, about 20 min on 2 cores)")
    p.add_argument("--out-md", type=Path, help="default benchmarks/results/predict_speed_<date>.md")
    p.add_argument("--convert-dicom", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: measure() still kills its run's processes
    if args.convert_dicom:
        convert_dicom(*args.convert_dicom)
        return 0
    work = args.workdir or args.prepare
    if work is None:
        p.error("give --prepare WORKDIR, or --workdir with --model and --nnunet-model")
    work = work.resolve()
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.environ[var] = str(work / var)
        (work / var).mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    built = prepare(work, args.cases_per_source, args.nnunet_trainer, args.threads) if args.prepare else {}
    model, nn_model = args.model or built.get("model"), args.nnunet_model or built.get("nnunet_model")
    if model is None or nn_model is None:
        p.error("--model and --nnunet-model are needed without --prepare")
    inputs = [i for i in args.inputs if not (args.skip_large and i == "large")]
    real = real_data_dir() / "totalsegmentator"
    phantom = args.phantom or whole_spine_phantom(work / "inputs" / "phantom_whole_spine.nii.gz")
    sources = {"phantom": Path(phantom), "example_ct": real / "example_ct.nii.gz", "dicom": real / "example_ct_dicom"}
    if "large" in inputs:
        print("writing the 512x512x600 input (once) ...", flush=True)
        sources["large"] = make_large(Path(phantom), work / "inputs" / "large_512x512x600.nii.gz")
    env = child_env(args.threads)
    rows = []
    for name in inputs:
        nifti = sources[name]
        if name == "dicom" and any(m.startswith("nnunet") for m in args.methods):
            nifti = work / "inputs" / "dicom_series.nii.gz"
            run = measure([sys.executable, __file__, "--convert-dicom", str(sources[name]), str(nifti)], env,
                          args.mem_cap_gb, args.timeout_s, work / "logs" / "dicom_convert.log")
            rows.append({"input": name, "method": "DICOM -> NIfTI for nnU-Net (our image_io)",
                         "seconds": {"total": run.wall_s}, "wall_s": run.wall_s, "peak_gb": run.peak_gb,
                         "largest_gb": run.largest_gb, "status": failure_status(
                             run.returncode, run.tail(), run.timed_out, run.capped, args.mem_cap_gb, args.timeout_s)})
        for method in args.methods:
            rows.append(run_method(name, method, sources[name], Path(nifti), Path(model), Path(nn_model), work, env,
                                   args.mem_cap_gb, args.timeout_s, args.threads))
            print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    table = format_table(rows)
    report = "\n".join([
        f"# Prediction speed and memory, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "",
        f"Command: `{' '.join([sys.executable, *sys.argv])}`", "",
        f"Machine: {machine(load_start)} at the start; load average at the end "
        f"{'/'.join(f'{v:.2f}' for v in os.getloadavg())}.",
        f"Versions: Python {platform.python_version()}, torch {version('torch')}, nnunetv2 {version('nnunetv2')}, "
        f"SimpleITK {version('SimpleITK')}; {args.threads} threads per run, cap {args.mem_cap_gb:g} GB.", "",
        f"Models: ours `{model}`; nnU-Net `{nn_model}`.", "",
        "Inputs: " + "; ".join(f"{n} `{sources[n]}` ({describe_image(sources[n])})" for n in inputs), "",
        table, "",
        "Seconds per case; case total = the stages; process wall = the whole command (imports, model loading and, "
        "for nnU-Net, spawning its worker processes included). nnU-Net rows: read and preprocessing are one stage "
        "(its preprocessing worker does both; shown under preprocess, with the worker's start-up); numbering does "
        "not exist there; export = resampling every class channel to the input grid, argmax, writing. Peak RSS: "
        "largest resident memory of all processes of the run together, polled every 0.2 s (each process's anonymous "
        "and shared-memory pages, plus file-backed pages (libraries) once); largest process: the maximum RSS of the "
        "biggest single process (wait4). A process forked from another shares its pages copy-on-write but counts "
        "them as its own anonymous memory, so the sum can overstate: in a sampled nnU-Net phantom run two forked "
        "helpers of the main process showed 0.68 GB anonymous memory each, next to three spawned workers of "
        "0.45-0.61 GB; the largest-process column has no such overlap. Ours: CPU defaults (test-time mirroring off, "
        "bf16 autocast), preview PNG included in "
        "export. Weights come from short trainings; speed depends on architecture, plans and input, not on training "
        "length (the numbering and lesion steps depend a little on what is found).",
    ])
    print("\n" + table)
    write_result(report, args.out_md, "predict_speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
