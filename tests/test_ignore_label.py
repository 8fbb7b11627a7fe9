"""nnU-Net's ignore label (``labels.IGNORE_LABEL``: vertebrae cut by the field of view) in every vertebra loss and
metric of the trainer and in its validation step; then a few training iterations on a tiny dataset whose
dataset.json declares the ignore label, planned, preprocessed and trained with nnU-Net's folders in tmp_path."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vertebraformer_nn.labels import IGNORE_LABEL, NUM_TRAINING_LABELS
from vertebraformer_nn.sources import SOURCES
from vertebraformer_nn.trainers import losses as L
from vertebraformer_nn.trainers.case_table import CaseTable
from vertebraformer_nn.trainers.multitask import MultiTaskStepsMixin

LEVELS = NUM_TRAINING_LABELS - 1  # 26 level channels


def _labels_with_ignore(seed=0, shape=(2, 1, 6, 5, 4)):
    g = torch.Generator().manual_seed(seed)
    seg = torch.randint(0, NUM_TRAINING_LABELS, shape, generator=g)
    seg[:, :, :2] = IGNORE_LABEL  # a cut vertebra at the border of the patch
    return seg


def test_segmentation_loss_ignores_what_is_predicted_on_ignored_voxels():
    """The binary spine Dice used to count a vertebra predicted on an ignored voxel as a false positive."""
    torch.manual_seed(0)
    seg = _labels_with_ignore()
    logits = torch.randn(2, NUM_TRAINING_LABELS, 6, 5, 4, requires_grad=True)
    other = logits.detach().clone()
    other[:, 0, :2] = -20.0  # confidently vertebra (not background) on the ignored voxels
    for batch_dice in (False, True):
        a = L.segmentation_loss(logits, seg, batch_dice, spine_dice_weight=1.0, ignore_label=IGNORE_LABEL)
        b = L.segmentation_loss(other, seg, batch_dice, spine_dice_weight=1.0, ignore_label=IGNORE_LABEL)
        assert torch.isfinite(a) and a.item() == pytest.approx(b.item(), abs=1e-6)
        (grad,) = torch.autograd.grad(a, logits)
        assert torch.count_nonzero(grad[:, :, :2]) == 0 and torch.count_nonzero(grad[:, :, 2:]) > 0
    assert L.spine_dice_loss(logits, seg, ignore_label=IGNORE_LABEL).item() == pytest.approx(
        L.spine_dice_loss(other, seg, ignore_label=IGNORE_LABEL).item(), abs=1e-6)


def test_level_loss_and_counts_skip_ignored_voxels():
    """Label 27 - 1 = 26 is no level channel: the loss used to fail with an out-of-range target."""
    torch.manual_seed(1)
    seg = _labels_with_ignore(seed=1)
    id_logits = torch.randn(2, LEVELS, 6, 5, 4, requires_grad=True)
    w = torch.ones(2)
    loss = L.identification_loss(id_logits, seg, w, ignore_label=IGNORE_LABEL)
    cut_away = seg.clone()
    cut_away[seg == IGNORE_LABEL] = 0  # the same voxels as background: no level either
    assert torch.isfinite(loss) and loss.item() == pytest.approx(L.identification_loss(id_logits, cut_away, w).item())
    (grad,) = torch.autograd.grad(loss, id_logits)
    assert torch.count_nonzero(grad[:, :, :2]) == 0
    assert L.identification_counts(id_logits, seg, w, IGNORE_LABEL) == L.identification_counts(id_logits, cut_away, w)
    assert L.identification_counts(id_logits, seg, w, IGNORE_LABEL)[1] == float(((seg > 0) & (seg < 27)).sum())


def test_binary_counts_leave_ignored_voxels_out():
    seg = torch.zeros(1, 1, 4, 4, 4, dtype=torch.long)
    seg[0, 0, :2] = IGNORE_LABEL
    seg[0, 0, 2] = 5
    logits = torch.zeros(1, NUM_TRAINING_LABELS, 4, 4, 4)
    logits[0, 5, :3] = 10.0  # vertebra predicted on the ignored slabs and on the true one
    logits[0, 0, 3] = 10.0
    assert L.binary_counts(logits, seg, IGNORE_LABEL) == (16.0, 0.0, 0.0)
    assert L.binary_counts(logits, seg) == (48.0, 0.0, 0.0)  # without the ignore label 27 is just a label


class _Steps(MultiTaskStepsMixin):
    """The multi-task steps with a network whose output is given (no nnU-Net trainer around them)."""

    def __init__(self, out: dict, ignore_label):
        self.out, self.device = out, torch.device("cpu")
        self.label_manager = SimpleNamespace(ignore_label=ignore_label)
        self.case_table = CaseTable.from_dataset_json({"case_info": {"a": {"domain": "dicom", "annotations": {
            "lesion_mask": True}}}}, SOURCES)
        self.loss_weights = {"seg": 1.0, "id": 0.5, "lesion": 1.0, "domain": 0.1, "boundary": 0.5}
        self.boundary_reach = (1, 1, 1)
        self.lesion_dice_weight = 1.0
        self.lesion_fn_weight = 0.7
        self.loss = lambda logits, target: L.segmentation_loss(logits, target, ignore_label=ignore_label)

    def _forward_all(self, data):
        return self.out


def test_validation_step_masks_ignored_voxels_like_nnunet():
    """nnU-Net's validation_step masks the ignore label out of its pseudo Dice; ours used mask=None (and the one-hot
    of label 27 then fails on 27 channels)."""
    seg = torch.zeros(1, 1, 4, 4, 4, dtype=torch.int16)
    seg[0, 0, :2] = IGNORE_LABEL
    seg[0, 0, 2] = 3
    target = torch.cat([seg, torch.zeros_like(seg)], 1)
    logits = torch.zeros(1, NUM_TRAINING_LABELS, 4, 4, 4)
    logits[0, 3, :3] = 10.0  # level 3 on the true vertebra and on the ignored voxels
    logits[0, 0, 3] = 10.0
    out = {"seg": logits, "id": torch.zeros(1, LEVELS, 4, 4, 4), "lesion": torch.zeros(1, 1, 4, 4, 4),
           "boundary": torch.zeros(1, 1, 4, 4, 4), "domain_logits": torch.zeros(1, len(SOURCES))}
    res = _Steps(out, IGNORE_LABEL).validation_step({"data": torch.zeros(1, 1, 4, 4, 4), "target": target,
                                                     "keys": ["a"]})
    assert res["tp_hard"][2] == 16 and res["fp_hard"].sum() == 0 and res["fn_hard"].sum() == 0
    btp, bfp, bfn, id_c, id_n = res["counts"][:5]
    assert (btp, bfp, bfn, id_n) == (16, 0, 0, 16) and np.isfinite(res["loss"])
    # the disc head: the ignore label beside the vertebra is known to be another vertebra, so their contact is a
    # disc target (one plane on each side); a head at logit 0 (p = 0.5, not above it) finds none of it
    dtp, dfp, dfn = res["counts"][10:]
    assert (dtp, dfp, dfn) == (0, 0, 32)


# ------------------------------------------------------------------------------------------ end to end
DATASET_ID = 777
SPACING = 3.5
SHAPE = (40, 24, 24)  # (z, y, x): head-foot along z


def _write_case(raw: Path, case: str, rng, lesion: bool):
    import SimpleITK as sitk

    def write(arr, folder, name):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing((SPACING,) * 3)
        (raw / folder).mkdir(exist_ok=True)
        sitk.WriteImage(img, str(raw / folder / name))

    ct = rng.normal(40, 20, SHAPE).astype(np.int16)
    seg = np.zeros(SHAPE, np.uint8)
    seg[:5, 8:16, 8:16] = IGNORE_LABEL  # cut by the lower border of the field of view
    for label, z0 in ((20, 7), (21, 17), (22, 27)):  # three whole vertebrae (training labels of T12..L2)
        seg[z0:z0 + 8, 8:16, 8:16] = label
    seg[36:, 8:16, 8:16] = IGNORE_LABEL  # cut by the upper border
    ct[seg > 0] = 400
    write(ct, "imagesTr", f"{case}_0000.nii.gz")
    write(seg, "labelsTr", f"{case}.nii.gz")
    if lesion:
        les = np.zeros(SHAPE, np.uint8)
        les[19:22, 10:13, 10:13] = 1
        ct[les > 0] = 150
        write(les, "lesionsTr", f"{case}.nii.gz")
    return {"domain": "dicom" if lesion else "verse", "annotations": {"vertebra_mask": True, "lesion_mask": lesion}}


@pytest.fixture
def ignore_dataset(nnunet_dirs):
    from vertebraformer_nn.labels import dataset_json_labels

    raw = nnunet_dirs / "nnUNet_raw" / f"Dataset{DATASET_ID}_IgnoreTiny"
    raw.mkdir()
    rng = np.random.default_rng(0)
    cases = [f"case{i}" for i in range(4)]
    info = {c: _write_case(raw, c, rng, lesion=i % 2 == 1) for i, c in enumerate(cases)}
    (raw / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {**dataset_json_labels(), "ignore": IGNORE_LABEL},
        "numTraining": len(cases), "file_ending": ".nii.gz",
        "overwrite_image_reader_writer": "SimpleITKIOWithReorient", "case_info": info}))
    (raw / "splits_final.json").write_text(json.dumps([{"train": cases[:3], "val": cases[3:]}]))
    return raw


def test_training_with_an_ignore_label_end_to_end(ignore_dataset, monkeypatch):
    from vertebraformer_nn.planners import plan_and_preprocess
    from vertebraformer_nn.trainers.build import build_trainer

    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    plans = plan_and_preprocess(DATASET_ID, preset="cpu", num_processes=1, verbose=False, disc_head=True)
    plans_file = ignore_dataset.parents[1] / "nnUNet_preprocessed" / ignore_dataset.name / f"{plans}.json"
    content = json.loads(plans_file.read_text())
    content["configurations"]["3d_fullres"]["batch_size"] = 2  # the CPU preset fills a tiny patch with 20 samples
    plans_file.write_text(json.dumps(content))
    trainer = build_trainer(str(DATASET_ID), 0, "3d_fullres", "VertebraFormerTrainer_tiny", plans, "cpu")
    assert trainer.label_manager.ignore_label == IGNORE_LABEL
    assert trainer.label_manager.num_segmentation_heads == NUM_TRAINING_LABELS
    trainer.run_training()
    assert trainer.dataloader_train.data_loader.has_ignore
    log = trainer.logger.local_logger.my_fantastic_logging
    assert all(np.isfinite(log[k]).all() for k in ("train_losses", "val_losses", "train_loss_id", "val_loss_seg"))
    assert len(log["dice_per_class_or_region"][-1]) == NUM_TRAINING_LABELS - 1  # no "class" for the ignore label
    assert np.isfinite(log["val_spine_dice"]).all() and np.isfinite(log["val_id_accuracy"]).all()
    ckpt = torch.load(Path(trainer.output_folder) / "checkpoint_final.pth", map_location="cpu", weights_only=True)
    assert ckpt["current_epoch"] == 2
