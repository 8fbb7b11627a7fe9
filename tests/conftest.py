"""Session-wide fixtures: one phantom run and one converted MultiSpine dataset, shared by every test."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from vertebraformer_nn.paths import real_data_dir

REPO = Path(__file__).resolve().parents[1]

# Tests run on the CPU; nnU-Net compiles nothing there, but say so explicitly for every subprocess too.
os.environ.setdefault("nnUNet_compile", "f")


@pytest.fixture(scope="session")
def real_data() -> Path:
    root = real_data_dir()
    if not (root / "MANIFEST.md").is_file():
        pytest.skip(f"real test data not found at {root} (set VERTEBRAFORMER_REAL_DATA)")
    return root


SIM_CASES_PER_SOURCE = 3
SIM_SEED = 0


@pytest.fixture(scope="session")
def sim_root(tmp_path_factory) -> Path:
    """MultiSpine-Sim, generated once per session: the four sources plus ground truth."""
    from vertebraformer_nn.phantoms import generate

    out = tmp_path_factory.mktemp("sim")
    generate(out, cases_per_source=SIM_CASES_PER_SOURCE, seed=SIM_SEED, progress=False)
    return out


@pytest.fixture(scope="session")
def nnunet_env(tmp_path_factory):
    """nnU-Net's three folders in a session temp dir, set in os.environ for the whole session."""
    base = tmp_path_factory.mktemp("nnunet")
    old = {v: os.environ.get(v) for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for var in old:
        (base / var).mkdir()
        os.environ[var] = str(base / var)
    yield base
    for var, value in old.items():
        if value is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = value


@pytest.fixture
def nnunet_dirs(tmp_path, monkeypatch):
    """nnU-Net's three folders for one test (monkeypatched, so the session's folders come back afterwards)."""
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / var).mkdir()
        monkeypatch.setenv(var, str(tmp_path / var))
    return tmp_path


MULTISPINE_ID = 501


@pytest.fixture(scope="session")
def multispine_raw(sim_root, nnunet_env) -> Path:
    """The phantom sources converted into Dataset501_MultiSpine and finalized, once per session."""
    from vertebraformer_nn.dataset_conversion import convert_source, finalize

    for i, source in enumerate(("verse", "ctspine1k", "spineweb", "dicom")):
        convert_source(source, sim_root / source, MULTISPINE_ID, append=i > 0)
    finalize(MULTISPINE_ID)
    (folder,) = (nnunet_env / "nnUNet_raw").glob(f"Dataset{MULTISPINE_ID}_*")
    return folder


@pytest.fixture(scope="session")
def multispine_preprocessed(multispine_raw):
    """Dataset501_MultiSpine planned and preprocessed once per session at the CPU preset:
    (dataset folder name, plans identifier), e.g. ("Dataset501_MultiSpine", "VertebraFormerCPUPlans")."""
    from vertebraformer_nn.planners import plan_and_preprocess

    # with the disc head (off by default), so that the session's tiny model exercises every head's path
    plans_identifier = plan_and_preprocess(MULTISPINE_ID, preset="cpu", num_processes=2, verbose=False, disc_head=True)
    return multispine_raw.name, plans_identifier


@pytest.fixture(scope="session")
def tiny_trained_fold(multispine_preprocessed):
    """VertebraFormerTrainer_tiny trained on fold 0 of the CPU-preset MultiSpine data through ``vertebraformer
    train`` (CPU, one augmentation worker): the fold's output folder (…/<Trainer>__<Plans>__3d_fullres/fold_0)."""
    from vertebraformer_nn.cli import main

    dataset_name, plans_identifier = multispine_preprocessed
    old = os.environ.get("nnUNet_n_proc_DA")
    os.environ["nnUNet_n_proc_DA"] = "1"
    try:
        status = main(["train", str(MULTISPINE_ID), "0", "-tr", "VertebraFormerTrainer_tiny", "-p", plans_identifier,
                       "-device", "cpu"])
    finally:
        if old is None:
            os.environ.pop("nnUNet_n_proc_DA", None)
        else:
            os.environ["nnUNet_n_proc_DA"] = old
    assert status == 0
    folder = (Path(os.environ["nnUNet_results"]) / dataset_name /
              f"VertebraFormerTrainer_tiny__{plans_identifier}__3d_fullres" / "fold_0")
    assert folder.is_dir()
    return folder


@pytest.fixture(scope="session")
def tiny_trained_fold_1(tiny_trained_fold):
    """Fold 1 of the same tiny model as ``tiny_trained_fold`` (trained after it, the same way): the fold's output
    folder (…/<Trainer>__<Plans>__3d_fullres/fold_1), for ensembling tests."""
    from vertebraformer_nn.cli import main

    model_folder = tiny_trained_fold.parent
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("nnUNet_n_proc_DA", "1")
        assert main(["train", str(MULTISPINE_ID), "1", "-tr", "VertebraFormerTrainer_tiny", "-p",
                     model_folder.name.split("__")[1], "-device", "cpu"]) == 0
    folder = model_folder / "fold_1"
    assert (folder / "checkpoint_final.pth").is_file()
    return folder


@pytest.fixture(scope="session")
def tiny_trained_coarse(multispine_preprocessed, tmp_path_factory):
    """VertebraFormerTrainer_tiny trained on fold 0 of the coarse whole-field configuration (3d_lowres, planned by
    ``multispine_preprocessed`` too) through ``vertebraformer train ... -c 3d_lowres``, then moved out of
    ``$nnUNet_results``: the model folder (…/<Trainer>__<Plans>__3d_lowres), the sibling of no fine model until a
    test puts a copy beside one (so the other tests predict without a coarse stage)."""
    import shutil

    from vertebraformer_nn.cli import main

    dataset_name, plans_identifier = multispine_preprocessed
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("nnUNet_n_proc_DA", "1")
        assert main(["train", str(MULTISPINE_ID), "0", "-c", "3d_lowres", "-tr", "VertebraFormerTrainer_tiny", "-p",
                     plans_identifier, "-device", "cpu"]) == 0
    trained = (Path(os.environ["nnUNet_results"]) / dataset_name /
               f"VertebraFormerTrainer_tiny__{plans_identifier}__3d_lowres")
    assert (trained / "fold_0" / "checkpoint_final.pth").is_file()
    kept = tmp_path_factory.mktemp("coarse_model") / trained.name
    shutil.move(str(trained), str(kept))
    return kept


@pytest.fixture(scope="session")
def phantom_slab(multispine_raw, tmp_path_factory) -> Path:
    """``slab.nii.gz``: 24 head-foot slices through the middle of one phantom CT of the raw dataset (the whole
    axial extent: air, fat, bone), a prediction of seconds."""
    from vertebraformer_nn.image_io import read_image, write_image

    image = read_image(sorted((multispine_raw / "imagesTr").glob("*_0000.nii.gz"))[0])
    mid = image.GetSize()[2] // 2
    return write_image(image[:, :, mid - 12: mid + 12], tmp_path_factory.mktemp("slab") / "slab.nii.gz")


@pytest.fixture(scope="module")
def tiny_model_copy(tiny_trained_fold, request):
    """A copy of the tiny model's folder with fold 0 (checkpoint, progress plot, validation summary), beside it in
    ``$nnUNet_results`` under a trainer-like name of the requesting test module's own, for tests that write into a
    model folder (post-processing files): what they write never reaches the model the other tests use. Removed
    after the module."""
    import shutil

    model = tiny_trained_fold.parent
    trainer, plans, configuration = model.name.split("__")
    tag = request.module.__name__.rsplit(".", 1)[-1].replace("test_", "").replace("_", "")
    copy = model.parent / f"{trainer}{tag.capitalize()}Copy__{plans}__{configuration}"
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir()
    for item in model.iterdir():
        if item.is_file():
            shutil.copy(item, copy / item.name)
    shutil.copytree(tiny_trained_fold, copy / "fold_0")
    yield copy
    shutil.rmtree(copy)


def make_trainer(multispine_preprocessed, results_folder, edit_plans=None, trainer: str = "VertebraFormerTrainer_tiny",
                 fold=0):
    """A trainer on the session's CPU-preset MultiSpine plans (optionally edited by ``edit_plans(plans)``), writing
    into ``results_folder``, initialised (network, optimizer, loss; no data loaders): for tests of single steps."""
    import json

    import torch
    from nnunetv2.paths import nnUNet_preprocessed

    from vertebraformer_nn.trainers.registry import TRAINERS

    dataset_name, plans_identifier = multispine_preprocessed
    base = Path(str(nnUNet_preprocessed)) / dataset_name
    plans = json.loads((base / f"{plans_identifier}.json").read_text())
    if edit_plans is not None:
        edit_plans(plans)
    plans["continue_training"] = False
    old = os.environ.get("nnUNet_results")
    os.environ["nnUNet_results"] = str(results_folder)
    try:
        t = TRAINERS[trainer](plans, "3d_fullres", fold, json.loads((base / "dataset.json").read_text()),
                              torch.device("cpu"))
    finally:
        if old is None:
            os.environ.pop("nnUNet_results")
        else:
            os.environ["nnUNet_results"] = old
    t.initialize()
    return t


def synthetic_batch(trainer, keys, seed: int = 0) -> dict:
    """A batch of the trainer's patch size for ``keys`` in the loader's layout (data float32; target int16, channel
    0 vertebra labels: three stacked blocks of levels 20-22, channel 1 a lesion inside them), images of noise."""
    import torch

    g = torch.Generator().manual_seed(seed)
    patch = list(trainer.configuration_manager.patch_size)
    target = torch.zeros(len(keys), 2, *patch, dtype=torch.int16)
    h, c1, c2 = patch[0] // 6, slice(patch[1] // 4, 3 * patch[1] // 4), slice(patch[2] // 4, 3 * patch[2] // 4)
    for i, level in enumerate((20, 21, 22)):
        target[:, 0, patch[0] // 4 + i * h: patch[0] // 4 + (i + 1) * h, c1, c2] = level
    centre = [p // 2 for p in patch]
    target[:, 1, centre[0]:centre[0] + 3, centre[1]:centre[1] + 3, centre[2]:centre[2] + 3] = 1
    return {"data": torch.randn(len(keys), 1, *patch, generator=g), "target": target, "keys": list(keys)}
