"""What the planner reads from a dataset besides nnU-Net's fingerprint (planners/data_facts.py): the domains (a
dataset of 2 or 6 sources plans, one of none too) and the anatomical axes of its arrays, from the reader and the
images' headers. A stock nnU-Net dataset of PIR files read with SimpleITKIO (VerSe's own orientation) is planned
and trained; one of mixed orientations is refused naming its files."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from vertebraformer_nn import labels
from vertebraformer_nn.geometry import anatomical_axes
from vertebraformer_nn.planners.data_facts import OrientationError, dataset_domains, untransposed_axes
from vertebraformer_nn.sources import SOURCES

CONFIG = "3d_fullres"
PIR_ID, MIXED_ID, TWO_ID, SIX_ID = 530, 531, 532, 533


def _direction(code: str):
    """Row-major direction of an image whose axes i, j, k point to the three letters of ``code`` (nibabel-style
    axis codes, e.g. "PIR"); SimpleITK's world is LPS."""
    world = {"L": (1, 0, 0), "R": (-1, 0, 0), "P": (0, 1, 0), "A": (0, -1, 0), "S": (0, 0, 1), "I": (0, 0, -1)}
    return tuple(np.array([world[c] for c in code], dtype=float).T.ravel())


# ------------------------------------------------------------------------------------------ pure rules
def test_domains_come_from_case_info_in_sources_order():
    def ds(*domains):
        return {"case_info": {f"c{i}": {"domain": d} for i, d in enumerate(domains)}}

    assert dataset_domains(ds("dicom", "verse", "verse", "ctspine1k", "spineweb"), [f"c{i}" for i in range(5)]) == \
        list(SOURCES)
    assert dataset_domains(ds("site_b", "site_a", "site_b"), ["c0", "c1", "c2"]) == ["site_a", "site_b"]
    six = ds("hospital_z", "dicom", "verse", "ctspine1k", "spineweb", "hospital_y")
    assert dataset_domains(six, [f"c{i}" for i in range(6)]) == [*SOURCES, "hospital_y", "hospital_z"]
    # only the training cases count; a dataset without case_info has none
    assert dataset_domains(ds("verse", "dicom"), ["c1"]) == ["dicom"]
    assert dataset_domains({}, ["c0"]) == [] and dataset_domains({"case_info": {"c0": {}}}, ["c0"]) == []


@pytest.mark.parametrize("code, expected", [
    ("RAS", {"si": 0, "ap": 1, "lr": 2}),
    ("LPS", {"si": 0, "ap": 1, "lr": 2}),
    ("PIR", {"si": 1, "ap": 2, "lr": 0}),  # VerSe's: array (R, I, P)
    ("ASL", {"si": 1, "ap": 2, "lr": 0}),
    ("SRA", {"si": 2, "ap": 0, "lr": 1}),
])
def test_anatomical_axes_of_a_direction(code, expected):
    assert anatomical_axes(_direction(code)) == expected
    assert sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(_direction(code)) == code


def test_a_direction_oblique_by_45_degrees_has_no_anatomical_axes():
    c = np.sqrt(0.5)
    columns = [[c, c, 0], [-c, c, 0], [0, 0, 1]]  # i and j both halfway between left and back
    with pytest.raises(ValueError, match="too oblique"):
        anatomical_axes(tuple(np.array(columns).T.ravel()))


def _write(path: Path, code: str, shape=(6, 7, 8)) -> str:
    img = sitk.GetImageFromArray(np.zeros(shape, np.int16))
    img.SetDirection(_direction(code))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))
    return str(path)


def test_axes_from_the_reader_or_from_the_headers(tmp_path):
    dataset = {f"c{i}": {"images": [_write(tmp_path / f"c{i}_0000.nii.gz", "PIR")]} for i in range(3)}
    assert untransposed_axes("SimpleITKIO", dataset) == {"si": 1, "ap": 2, "lr": 0}
    assert untransposed_axes("NibabelIO", dataset) == {"si": 1, "ap": 2, "lr": 0}
    # a reorienting reader hands out (S, A, R) whatever the files say; no header is read
    assert untransposed_axes("SimpleITKIOWithReorient", {"x": {"images": ["/nonexistent.nii.gz"]}}) == \
        {"si": 0, "ap": 1, "lr": 2}
    # mixed orientations without reorientation: refused, naming the files of each and the way out
    dataset["odd"] = {"images": [_write(tmp_path / "odd_0000.nii.gz", "RAS")]}
    with pytest.raises(OrientationError) as err:
        untransposed_axes("SimpleITKIO", dataset)
    message = str(err.value)
    assert "PIR (3)" in message and "RAS (1)" in message and str(tmp_path / "odd_0000.nii.gz") in message
    assert "SimpleITKIOWithReorient" in message
    with pytest.raises(OrientationError, match="cannot read its header"):
        untransposed_axes("SimpleITKIO", {"x": {"images": [str(tmp_path / "missing.nii.gz")]}})


# ------------------------------------------------------------------------------------------ datasets
def _raw_root() -> Path:
    return Path(os.environ["nnUNet_raw"])


def _pre_root() -> Path:
    return Path(os.environ["nnUNet_preprocessed"])


def _copy_of_multispine(multispine_raw: Path, dataset_id: int, name: str, domain_of) -> Path:
    """Dataset ``dataset_id``: MultiSpine's training files (linked) with each case's domain renamed by ``domain_of``,
    and its fingerprint (the same images), so only the planner runs."""
    folder = _raw_root() / f"Dataset{dataset_id}_{name}"
    folder.mkdir()
    for sub in ("imagesTr", "labelsTr", "lesionsTr"):
        (folder / sub).symlink_to(multispine_raw / sub)
    ds = json.loads((multispine_raw / "dataset.json").read_text())
    train = sorted(c for c, i in ds["case_info"].items() if i["split"] == "train")
    ds["case_info"] = {c: {**ds["case_info"][c], "domain": domain_of(i, c)} for i, c in enumerate(train)}
    (folder / "dataset.json").write_text(json.dumps(ds))
    (_pre_root() / folder.name).mkdir()
    shutil.copy(_pre_root() / multispine_raw.name / "dataset_fingerprint.json", _pre_root() / folder.name)
    return folder


@pytest.mark.parametrize("dataset_id, domain_of, expected", [
    (TWO_ID, lambda i, c: ("site_b", "site_a")[i % 2], ["site_a", "site_b"]),
    (SIX_ID, lambda i, c: (*SOURCES, "hospital_y", "hospital_z")[i % 6], [*SOURCES, "hospital_y", "hospital_z"]),
])
def test_a_dataset_of_2_or_6_sources_plans_its_domain_count(multispine_raw, multispine_preprocessed, dataset_id,
                                                            domain_of, expected):
    import torch

    from vertebraformer_nn.network import VertebraFormer
    from vertebraformer_nn.planners.planner import VertebraFormerCPUPlanner
    from vertebraformer_nn.plans_facts import domains

    folder = _copy_of_multispine(multispine_raw, dataset_id, f"Sources{len(expected)}", domain_of)
    plans = VertebraFormerCPUPlanner(dataset_id, verbose=False).plan_experiment()
    assert json.loads((_pre_root() / folder.name / "VertebraFormerCPUPlans.json").read_text()) == plans
    assert plans["vertebraformer"]["domains"] == expected == list(domains(plans))
    kwargs = plans["configurations"][CONFIG]["architecture"]["arch_kwargs"]
    assert kwargs["num_domains"] == len(expected)
    net = VertebraFormer(1, labels.NUM_TRAINING_LABELS, **kwargs).eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 1, *kwargs["patch_size"]), heads="all")
    assert out["domain_logits"].shape == (1, len(expected))


@pytest.fixture(scope="module")
def pir_dataset(multispine_raw, multispine_preprocessed):
    """A stock nnU-Net dataset: four MultiSpine training cases rewritten in VerSe's PIR orientation, read with stock
    SimpleITKIO (no reorientation), no case_info, no lesions; planned and preprocessed at the CPU preset.
    (dataset folder, plans)."""
    from vertebraformer_nn.planners import plan_and_preprocess

    source = json.loads((multispine_raw / "dataset.json").read_text())
    cases = sorted(c for c, i in source["case_info"].items() if i["split"] == "train")[:4]
    folder = _raw_root() / f"Dataset{PIR_ID}_StockPIR"
    for case in cases:
        for src, dst in ((f"imagesTr/{case}_0000.nii.gz", f"imagesTr/{case}_0000.nii.gz"),
                         (f"labelsTr/{case}.nii.gz", f"labelsTr/{case}.nii.gz")):
            (folder / dst).parent.mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(sitk.DICOMOrient(sitk.ReadImage(str(multispine_raw / src)), "PIR"), str(folder / dst))
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": labels.dataset_json_labels(), "numTraining": len(cases),
        "file_ending": ".nii.gz", "overwrite_image_reader_writer": "SimpleITKIO"}))
    plans_id = plan_and_preprocess(PIR_ID, preset="cpu", num_processes=1, verbose=False)
    pre = _pre_root() / folder.name
    (pre / "splits_final.json").write_text(json.dumps([{"train": cases[:3], "val": cases[3:]}]))
    return folder, json.loads((pre / f"{plans_id}.json").read_text())


def test_stock_pir_dataset_plans_its_own_axes_and_elongates_head_foot(pir_dataset):
    from vertebraformer_nn.plans_facts import anatomical_axes as planned_axes

    folder, plans = pir_dataset
    tf = plans["transpose_forward"]
    assert plans["image_reader_writer"] == "SimpleITKIO"
    # the arrays are (R, I, P): head-foot is array axis 1, left-right axis 0, before nnU-Net's transpose
    expected = {name: tf.index(axis) for name, axis in {"si": 1, "ap": 2, "lr": 0}.items()}
    assert plans["vertebraformer"]["anatomical_axes"] == expected == planned_axes(plans)
    assert expected != {"si": 0, "ap": 1, "lr": 2}  # what assuming (S, A, R) would have said
    c = plans["configurations"][CONFIG]
    mm = [p * s for p, s in zip(c["patch_size"], c["spacing"])]
    assert mm[expected["si"]] == max(mm) and mm[expected["si"]] > min(mm)  # elongated head-foot
    # no case_info: no domains, a network without domain classifier
    assert plans["vertebraformer"]["domains"] == [] and c["architecture"]["arch_kwargs"]["num_domains"] == 0
    # planned without --disc-head: no disc head (the session's plans ask for one: test_coarse_stage)
    assert c["architecture"]["arch_kwargs"]["use_boundary_head"] is False


def test_mixed_orientations_without_reorientation_are_refused_naming_the_files(pir_dataset, capsys):
    from vertebraformer_nn.cli import main

    pir_folder, _ = pir_dataset
    folder = _raw_root() / f"Dataset{MIXED_ID}_Mixed"
    shutil.copytree(pir_folder, folder)
    odd = sorted((folder / "imagesTr").iterdir())[0]
    sitk.WriteImage(sitk.DICOMOrient(sitk.ReadImage(str(odd)), "LPS"), str(odd))
    (_pre_root() / folder.name).mkdir()
    shutil.copy(_pre_root() / pir_folder.name / "dataset_fingerprint.json", _pre_root() / folder.name)
    assert main(["plan-and-preprocess", "-d", str(MIXED_ID), "--preset", "cpu", "-np", "1"]) == 1
    err = capsys.readouterr().err
    assert "PIR (3)" in err and "LPS (1)" in err and str(odd) in err and "SimpleITKIOWithReorient" in err
    assert not (_pre_root() / folder.name / "VertebraFormerCPUPlans.json").exists()


@pytest.fixture(scope="module")
def pir_trained(pir_dataset):
    """VertebraFormerTrainer_tiny trained on the PIR dataset's one fold: the fold folder."""
    from vertebraformer_nn.cli import main

    folder, plans = pir_dataset
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("nnUNet_n_proc_DA", "1")
        assert main(["train", str(PIR_ID), "0", "-tr", "VertebraFormerTrainer_tiny", "-p", plans["plans_name"],
                     "-device", "cpu"]) == 0
    fold = (Path(os.environ["nnUNet_results"]) / folder.name /
            f"VertebraFormerTrainer_tiny__{plans['plans_name']}__{CONFIG}" / "fold_0")
    assert (fold / "checkpoint_final.pth").is_file()
    return fold


def test_stock_pir_dataset_trains(pir_trained):
    """No case_info (no domains), the ignore label, PIR arrays: the tiny schedule runs to its final checkpoint."""
    from vertebraformer_nn.trainers.checkpoints import load_checkpoint_file

    checkpoint = load_checkpoint_file(str(pir_trained / "checkpoint_final.pth"), map_location="cpu")
    assert checkpoint["current_epoch"] == 2
    assert not any("domain_classifier" in k for k in checkpoint["network_weights"])


def test_stock_pir_dataset_trains_mirroring_left_right_only(pir_dataset, pir_trained):
    from vertebraformer_nn.trainers.checkpoints import load_checkpoint_file

    _, plans = pir_dataset
    checkpoint = load_checkpoint_file(str(pir_trained / "checkpoint_final.pth"), map_location="cpu")
    assert tuple(checkpoint["inference_allowed_mirroring_axes"]) == (plans["vertebraformer"]["anatomical_axes"]["lr"],)
