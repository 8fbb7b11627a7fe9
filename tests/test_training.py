"""The VertebraFormer trainer: pure loss / schedule / geometry tests, then one tiny CPU training end to end
(``tiny_trained_fold``: 2 epochs x 3 iterations through ``vertebraformer train``) checked for strict weight
loading, resume, validation, per-task logging, leave-one-domain-out checkpoints and the stock nnU-Net command."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vertebraformer_nn.plans_facts import anatomical_axes
from vertebraformer_nn.sources import SOURCES
from vertebraformer_nn.trainers import losses as L
from vertebraformer_nn.trainers.case_table import CaseTable
from vertebraformer_nn.trainers.folds import FoldError, check_fold
from vertebraformer_nn.trainers.multitask import MultiTaskStepsMixin
from vertebraformer_nn.trainers.progress import EXTRA_KEYS, TASKS_PNG, MultiTaskLocalLogger
from vertebraformer_nn.trainers.schedule import AxisRotation, lr_at
from vertebraformer_nn.trainers.vertebraformer_trainer import VertebraFormerTrainer

from conftest import MULTISPINE_ID, make_trainer, synthetic_batch


# ------------------------------------------------------------------------------------------ pure losses
def _targets(b=3, shape=(8, 8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    seg = torch.randint(0, 5, (b, 1, *shape), generator=g)
    lesion = (torch.rand((b, 1, *shape), generator=g) > 0.9).long()
    return seg, lesion


def test_unannotated_case_gets_exactly_zero_lesion_gradient():
    seg, lesion = _targets()
    logits = torch.randn(3, 1, 8, 8, 8, requires_grad=True)
    w = torch.tensor([1.0, 0.0, 1.0])
    loss, parts = L.binary_map_loss(logits, lesion, w, dice_weight=1.0)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.count_nonzero(logits.grad[1]) == 0  # exactly zero, not small
    assert torch.count_nonzero(logits.grad[0]) > 0 and torch.count_nonzero(logits.grad[2]) > 0
    # the annotated cases' loss does not depend on what the unannotated case's target says
    lesion2 = lesion.clone()
    lesion2[1] = 1 - lesion2[1]
    assert torch.allclose(L.binary_map_loss(logits, lesion2, w)[0], loss)


def test_lesion_tversky_weighs_missed_voxels_more_and_is_the_dice_at_one_half():
    lesion = torch.zeros(1, 1, 4, 4, 4)
    lesion[0, 0, :2] = 1  # 32 lesion voxels
    w = torch.ones(1)

    def overlap(logits, fn_weight):
        loss, parts = L.binary_map_loss(logits, lesion, w, fn_weight=fn_weight)
        return parts["dice"].item()

    sure = torch.where(lesion > 0, 4.0, -4.0)
    missing = sure.clone()
    missing[0, 0, 0] = -4.0  # 16 lesion voxels missed
    extra = sure.clone()
    extra[0, 0, 2] = 4.0  # 16 false voxels
    p = torch.sigmoid(missing)
    tp, fp, fn = ((p * lesion).sum().item(), (p * (1 - lesion)).sum().item(), ((1 - p) * lesion).sum().item())
    assert overlap(missing, 0.5) == pytest.approx(1 - 2 * tp / (2 * tp + fp + fn), rel=1e-5)  # the soft Dice
    assert overlap(missing, 0.7) == pytest.approx(1 - tp / (tp + 0.3 * fp + 0.7 * fn), rel=1e-5)
    # Tversky 0.7 against the Dice: a miss costs more, a false voxel less
    assert overlap(missing, 0.7) > overlap(missing, 0.5) and overlap(extra, 0.7) < overlap(extra, 0.5)
    # so where the head cannot tell lesion from background (one probability for a region, a quarter of it lesion),
    # BCE + Tversky settles higher than BCE + Dice: more of the lesion is found, at a lower precision
    region = torch.zeros(1, 1, 4, 4, 4)
    region[0, 0, 0] = 1
    z = torch.linspace(-2, 2, 41).view(-1, 1, 1, 1, 1).expand(-1, 1, 4, 4, 4)
    best = {b: z[int(torch.argmin(torch.stack([L.binary_map_loss(zz[None], region, w, fn_weight=b)[0] for zz in z])))]
            [0, 0, 0, 0].item() for b in (0.5, 0.7)}
    assert best[0.7] > best[0.5]
    with pytest.raises(ValueError, match="fn_weight"):
        L.binary_map_loss(sure, lesion, w, fn_weight=1.0)


def test_the_lesion_dice_variants_keep_the_soft_dice_and_their_schedule():
    from vertebraformer_nn.trainers.budget import VertebraFormerTrainer_budget
    from vertebraformer_nn.trainers.registry import TRAINERS

    assert TRAINERS["VertebraFormerTrainer_lesionDice"].SCHEDULE == {"lesion_fn_weight": 0.5}
    assert TRAINERS["VertebraFormerTrainer_budget_lesionDice"].SCHEDULE == {**VertebraFormerTrainer_budget.SCHEDULE,
                                                                          "lesion_fn_weight": 0.5}


def test_masked_losses_are_finite_and_zero_when_nothing_is_annotated():
    seg, lesion = _targets(b=2)
    logits = torch.randn(2, 1, 8, 8, 8, requires_grad=True)
    loss, _ = L.binary_map_loss(logits, lesion, torch.zeros(2))
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(logits.grad) == 0
    # identification on an all-background patch: 0, not NaN
    id_logits = torch.randn(2, 26, 8, 8, 8, requires_grad=True)
    l_id = L.identification_loss(id_logits, torch.zeros_like(seg), torch.ones(2))
    l_id.backward()
    assert l_id.item() == 0.0 and torch.count_nonzero(id_logits.grad) == 0
    # domain: an unknown-domain case (weight 0) contributes nothing
    dl = torch.randn(2, 4, requires_grad=True)
    l_dom = L.domain_loss(dl, torch.tensor([1, 0]), torch.tensor([1.0, 0.0]))
    l_dom.backward()
    assert torch.count_nonzero(dl.grad[1]) == 0 and torch.count_nonzero(dl.grad[0]) > 0


def test_the_disc_target_marks_the_space_between_two_vertebrae_and_nothing_inside_one():
    labels = torch.zeros(1, 1, 16, 6, 6)
    labels[0, 0, 1:5] = 3  # a vertebra, a disc two voxels thick, the next vertebra, then one touching it
    labels[0, 0, 7:11] = 4
    labels[0, 0, 11:15] = 5
    between = L.between_vertebrae(labels, (2, 2, 2))[0, 0, :, 3, 3].tolist()
    assert between == [False] * 5 + [True, True] + [False] * 3 + [True, True] + [False] * 4
    # one voxel of reach misses the middle of a disc two voxels thick: reach comes from mm (7 mm at 3.5 mm: 2)
    assert not L.between_vertebrae(labels, (1, 1, 1))[0, 0, 5:7, 3, 3].any()
    assert L.boundary_reach([3.5, 3.5, 3.5]) == (2, 2, 2) and L.boundary_reach([1.0, 0.8, 7.0]) == (7, 9, 1)
    # a lone vertebra, or the ignore label next to nothing, has no disc; the ignore label beside a vertebra does
    alone = torch.zeros(1, 1, 8, 6, 6)
    alone[0, 0, 2:6] = 7
    assert not L.between_vertebrae(alone, (2, 2, 2)).any()
    alone[0, 0, 6:8] = 27
    assert L.between_vertebrae(alone, (2, 2, 2)).any()


def test_the_disc_loss_is_finite_and_falls_as_the_head_finds_the_discs():
    labels = torch.zeros(2, 1, 12, 6, 6)
    labels[:, 0, 0:5], labels[:, 0, 7:12] = 1, 2
    target = L.between_vertebrae(labels, (2, 2, 2)).float()
    every = torch.ones(2)
    blind = torch.zeros(2, 1, 12, 6, 6, requires_grad=True)
    loss, _ = L.binary_map_loss(blind, target, every)
    loss.backward()
    assert torch.isfinite(loss) and blind.grad.abs().sum() > 0
    seeing = (target * 12 - 6).requires_grad_(True)
    assert float(L.binary_map_loss(seeing, target, every)[0]) < float(loss) / 10
    tp, fp, fn = L.binary_map_counts(seeing, target, every)
    assert (tp, fp, fn) == (float(target.sum()), 0.0, 0.0)


def test_spine_dice_loss_scores_the_union_of_vertebrae():
    seg = torch.zeros(1, 1, 4, 4, 4, dtype=torch.long)
    seg[0, 0, :2] = 7
    logits = torch.zeros(1, 27, 4, 4, 4)
    logits[0, 0, 2:] = 30.0  # background where there is none
    logits[0, 12, :2] = 30.0  # the wrong vertebra, but a vertebra: the binary term is satisfied
    assert L.spine_dice_loss(logits, seg).item() < 1e-4
    logits[0, 0, :2] = 60.0
    assert L.spine_dice_loss(logits, seg).item() > 0.99


@pytest.mark.parametrize("batch_dice", [False, True])
def test_segmentation_loss_equals_nnunet_dc_and_ce_plus_spine_dice(batch_dice):
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    torch.manual_seed(0)
    logits = torch.randn(2, 27, 6, 5, 4, requires_grad=True)
    seg = torch.randint(0, 27, (2, 1, 6, 5, 4)).float()
    nnunet = DC_and_CE_loss({"batch_dice": batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                            weight_ce=1, weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)
    expected = nnunet(logits, seg) + 0.7 * L.spine_dice_loss(logits, seg)
    got = L.segmentation_loss(logits, seg, batch_dice, spine_dice_weight=0.7)
    assert torch.allclose(got, expected, atol=1e-5)
    (g_exp,) = torch.autograd.grad(expected, logits)
    (g_got,) = torch.autograd.grad(got, logits)
    assert torch.allclose(g_got, g_exp, atol=1e-6)
    # with an ignore label nnU-Net leaves those voxels out of both terms
    seg_ign = seg.clone()
    seg_ign[:, :, :2] = 27
    nnunet_ign = DC_and_CE_loss({"batch_dice": batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                                weight_ce=1, weight_dice=1, ignore_label=27, dice_class=MemoryEfficientSoftDiceLoss)
    assert torch.allclose(L.segmentation_loss(logits, seg_ign, batch_dice, 0.0, ignore_label=27),
                          nnunet_ign(logits, seg_ign), atol=1e-5)


def test_identification_loss_matches_dense_cross_entropy_on_vertebra_voxels():
    torch.manual_seed(1)
    id_logits = torch.randn(2, 26, 5, 4, 3)
    seg = torch.randint(0, 27, (2, 1, 5, 4, 3))
    w = torch.tensor([1.0, 0.0])
    target = seg[:, 0] - 1
    ce = torch.nn.functional.cross_entropy(id_logits, target.clamp_min(-1), ignore_index=-1, reduction="none")
    valid = (target >= 0) & (w[:, None, None, None] > 0)
    assert torch.allclose(L.identification_loss(id_logits, seg, w), ce[valid].mean(), atol=1e-6)


def test_identification_loss_uses_label_minus_one_on_vertebra_voxels():
    seg = torch.zeros(1, 1, 2, 2, 2, dtype=torch.long)
    seg[0, 0, 0, 0, 0] = 3  # training label 3 -> id channel 2
    logits = torch.full((1, 26, 2, 2, 2), -20.0)
    logits[0, 2] = 20.0
    assert L.identification_loss(logits, seg, torch.ones(1)).item() < 1e-6
    assert L.identification_counts(logits, seg, torch.ones(1)) == (1.0, 1.0)


def _tiny_net(**switches):
    from vertebraformer_nn.network import VertebraFormer

    from vertebraformer_nn.planners.presets import network_arch_kwargs

    torch.manual_seed(0)
    return VertebraFormer(1, 27, **network_arch_kwargs("cpu", (16, 16, 16), (8, 8, 8), 4, depth=1, **switches))


class _FakeTrainer(MultiTaskStepsMixin):
    """What the loss of ``MultiTaskStepsMixin`` reads of a trainer, without nnU-Net's set-up."""

    def __init__(self, case_table):
        self.case_table, self.lesion_dice_weight, self.lesion_fn_weight = case_table, 1.0, 0.7
        self.label_manager = SimpleNamespace(ignore_label=None)
        self.loss_weights = {"seg": 1.0, "id": 0.5, "lesion": 1.0, "domain": 0.1, "boundary": 0.5}
        self.boundary_reach = (2, 2, 2)

    def loss(self, logits, target):
        return L.segmentation_loss(logits, target, batch_dice=True)


def _case_table(domains=SOURCES):
    return CaseTable.from_dataset_json({"case_info": {
        "a": {"domain": "verse", "annotations": {"lesion_mask": False}},
        "b": {"domain": "dicom", "annotations": {"lesion_mask": True}},
    }}, domains)


@pytest.mark.parametrize("keys", [["a", "a"], ["a", "b"]])
def test_multitask_loss_reaches_every_trained_parameter(keys):
    from vertebraformer_nn.network import all_heads

    net = _tiny_net()
    x = torch.randn(2, 1, 16, 16, 16)
    g = torch.Generator().manual_seed(1)
    target = torch.cat([torch.randint(0, 27, (2, 1, 16, 16, 16), generator=g),
                        (torch.rand((2, 1, 16, 16, 16), generator=g) > 0.8).long()], 1)
    with all_heads(net):
        out = net(x)
    total, parts = VertebraFormerTrainer.compute_losses(_FakeTrainer(_case_table()), out, target, keys)
    total.backward()
    assert set(parts) == {"seg", "id", "lesion", "domain", "boundary"} and torch.isfinite(total)
    missing = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing  # DDP with find_unused_parameters=False needs every one of them
    lesion_grad = net.lesion_head.weight.grad
    if keys == ["a", "a"]:  # no case with a lesion annotation: the lesion head learns nothing from this batch
        assert torch.count_nonzero(lesion_grad) == 0
    else:
        assert torch.count_nonzero(lesion_grad) > 0


def test_nnunets_resolver_finds_every_trainer_through_the_shim(monkeypatch):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from vertebraformer_nn.trainers import shim_folder
    from vertebraformer_nn.trainers.registry import TRAINERS

    monkeypatch.setenv("nnUNet_extTrainer", shim_folder())
    for name, cls in TRAINERS.items():
        assert recursive_find_trainer_class_by_name(name) is cls, name


def test_ablation_trainers_switch_the_network_and_share_its_weights():
    from vertebraformer_nn.network import VertebraFormer
    from vertebraformer_nn.planners.presets import network_arch_kwargs
    from vertebraformer_nn.trainers.registry import TRAINERS

    conf = SimpleNamespace(network_arch_class_name="vertebraformer_nn.network.VertebraFormer",
                           network_arch_init_kwargs=network_arch_kwargs("cpu", [16, 16, 16], [8, 8, 8], 4, depth=1),
                           network_arch_init_kwargs_req_import=[])
    full = TRAINERS["VertebraFormerTrainer"].build_network_architecture(None, conf, 1, 27, False)
    for name, switch in (("VertebraFormerTrainer_budget_noModulation", "use_modulation"),
                         ("VertebraFormerTrainer_noIdentification", "use_identification"),
                         ("VertebraFormerTrainer_noLesion", "use_lesion_head")):
        net = TRAINERS[name].build_network_architecture(None, conf, 1, 27, False)
        assert isinstance(net, VertebraFormer) and getattr(net, switch) is False and getattr(full, switch) is True
        net.load_state_dict(full.state_dict())  # strict: the switch changes what runs, not what exists


def test_switched_off_heads_are_frozen_and_loss_still_works():
    from vertebraformer_nn.network import all_heads

    net = _tiny_net(use_lesion_head=False, use_modulation=False, use_identification=False)
    target = torch.zeros(2, 2, 16, 16, 16, dtype=torch.long)
    target[:, 0, 4:8] = 5
    with all_heads(net):
        out = net(torch.randn(2, 1, 16, 16, 16))
    total, parts = VertebraFormerTrainer.compute_losses(_FakeTrainer(_case_table()), out, target, ["b", "b"])
    total.backward()
    assert parts["lesion"].item() == 0 and parts["id"].item() == 0 and parts["domain"].item() == 0
    assert parts["boundary"].item() > 0  # the disc head stays on: its target comes from the vertebra labels
    assert all(p.grad is None for p in net.lesion_head.parameters())
    assert all(p.grad is not None for p in net.seg_head.parameters())


def test_case_table_reads_case_info_then_properties_in_the_plans_domains():
    table = CaseTable.from_dataset_json(
        {"case_info": {"a": {"domain": "spineweb", "annotations": {"lesion_mask": True}}}}, SOURCES)
    # a case missing from case_info: what the preprocessor recorded (its name of the domain, not an index)
    assert table.add_from_properties("p", {"has_lesion_annotation": True, "domain": "dicom", "domain_index": 0})
    assert not table.add_from_properties("q", {})
    assert table.add_from_properties("a", {"has_lesion_annotation": False})  # case_info wins
    lw, dom, dw = table.lookup(["a", "p", "unknown"])
    assert lw.tolist() == [1.0, 1.0, 0.0] and dom[:2].tolist() == [2, 3] and dw.tolist() == [1.0, 1.0, 0.0]
    assert table.missing_seen == {"unknown"}
    # the plans' domains decide the index: a two-source model knows spineweb as 0 and dicom not at all
    two = CaseTable(table.facts, ("spineweb", "verse"))
    lw, dom, dw = two.lookup(["a", "p"])
    assert dom.tolist() == [0, 0] and dw.tolist() == [1.0, 0.0]


# ------------------------------------------------------------------------------------ geometry, schedule
@pytest.mark.parametrize("axes", [{"si": 0, "ap": 1, "lr": 2}, {"si": 1, "ap": 0, "lr": 2},
                                  {"si": 2, "ap": 1, "lr": 0}])
def test_mirror_and_rotation_axes_are_the_plans_anatomical_axes(axes):
    """The trainer mirrors across the plans' left-right axis and rotates about their head-foot axis, whatever the
    transpose (a stock reader on PIR files gives arrays whose axis 0 is not head-foot)."""
    plans = {"plans_name": "p", "transpose_forward": [0, 1, 2], "image_reader_writer": "SimpleITKIO",
             "vertebraformer": {"anatomical_axes": axes}}
    fake = SimpleNamespace(plans_manager=SimpleNamespace(plans=plans), print_to_log_file=lambda *a: None,
                           configuration_manager=SimpleNamespace(patch_size=[32, 24, 16]))
    rotation, dummy_2d, initial, mirror = \
        VertebraFormerTrainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size(fake)
    assert mirror == (axes["lr"],) == fake.inference_allowed_mirroring_axes and dummy_2d is False
    assert rotation.si_axis == axes["si"] and len(initial) == 3
    rot = AxisRotation(si_axis=2)
    assert rot.range_for(2) == pytest.approx((-np.deg2rad(30), np.deg2rad(30)))
    assert rot.range_for(0) == pytest.approx((-np.deg2rad(8), np.deg2rad(8)))
    np.random.seed(0)
    assert all(abs(rot(dim=0)) <= np.deg2rad(8) for _ in range(200))


def test_axis_rotation_keeps_head_foot_axis_in_spatial_transform():
    """batchgeneratorsv2 builds Rx, Ry, Rz from angles[0..2] about array axes 0..2: a rotation sampled by
    AxisRotation moves the head-foot axis by at most the tilt."""
    from batchgeneratorsv2.transforms.spatial.spatial import create_affine_matrix_3d

    rot = AxisRotation(si_axis=0)
    np.random.seed(1)
    for _ in range(100):
        angles = [rot(dim=i) for i in range(3)]
        m = create_affine_matrix_3d(angles, [1, 1, 1])
        si = m @ np.array([1.0, 0, 0])
        assert np.degrees(np.arccos(abs(si[0]))) <= 8 * math.sqrt(2) + 1e-6


def test_warmup_then_poly_decay():
    assert lr_at(0, 1.0, 100, 10) == pytest.approx(0.1)
    assert lr_at(9, 1.0, 100, 10) == pytest.approx(1.0)
    assert lr_at(10, 1.0, 100, 10) == pytest.approx(1.0)
    assert lr_at(55, 1.0, 100, 10) == pytest.approx(0.5 ** 0.9)
    assert lr_at(99, 1.0, 100, 10) < 0.03
    assert lr_at(0, 1.0, 2, 0) == 1.0


def test_fold_beyond_splits_is_an_error():
    splits = [{"train": ["a"], "val": ["b"]}] * 5 + [{"train": ["a"], "val": ["b"], "held_out_domain": "verse"}]
    assert check_fold(5, splits)["held_out_domain"] == "verse"
    assert check_fold("all", splits) is None
    for bad in (6, 99, -1):
        with pytest.raises(FoldError, match="does not exist"):
            check_fold(bad, splits)
    with pytest.raises(FoldError):
        check_fold(5, None)  # without a splits file nnU-Net makes 5 folds
    with pytest.raises(FoldError):
        check_fold("x", splits)


def test_default_plans_are_the_vertebraformer_plans(tmp_path):
    from vertebraformer_nn.trainers.build import find_plans

    arch = {"architecture": {"network_class_name": "vertebraformer_nn.network.VertebraFormer"}}
    (tmp_path / "nnUNetPlans.json").write_text(json.dumps(
        {"configurations": {"3d_fullres": {"architecture": {"network_class_name": "x.PlainConvUNet"}}}}))
    (tmp_path / "dataset.json").write_text("{}")
    (tmp_path / "VertebraFormerPlans.json").write_text(json.dumps({"configurations": {"3d_fullres": arch}}))
    assert find_plans(str(tmp_path)) == "VertebraFormerPlans"
    (tmp_path / "VertebraFormerCPUPlans.json").write_text(json.dumps(
        {"configurations": {"3d_fullres": arch}, "vertebraformer": {"preset": "cpu"}}))
    assert find_plans(str(tmp_path), "cpu") == "VertebraFormerCPUPlans"
    assert find_plans(str(tmp_path), "cuda") == "VertebraFormerPlans"
    with pytest.raises(SystemExit, match="several"):
        find_plans(str(tmp_path))


def test_command_line_help_imports_no_torch():
    """``vertebraformer --help`` builds every subcommand's parser; the trainers package must not import torch."""
    code = ("import sys; from vertebraformer_nn.cli import build_parser; build_parser(); "
            "import vertebraformer_nn.trainers, vertebraformer_nn.trainers.cli; print(sorted({'torch', 'nnunetv2'} & "
            "set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_logger_has_task_keys_and_stores_plain_floats():
    log = MultiTaskLocalLogger()
    for key in EXTRA_KEYS:
        log.log(key, np.float64(0.5), 0)
    assert all(type(log.get_value(k, 0)) is float for k in EXTRA_KEYS)
    log2 = MultiTaskLocalLogger()
    log2.load_checkpoint({"train_losses": [1.0, 2.0]})  # a checkpoint without our keys: padded with NaN
    assert len(log2.get_value("val_lesion_dice", None)) == 2


# ------------------------------------------------------------------------------------------ end to end
def _plans_and_dataset(fold_folder: Path):
    base = fold_folder.parent
    return json.loads((base / "plans.json").read_text()), json.loads((base / "dataset.json").read_text())


def test_checkpoint_final_loads_strictly_into_a_fresh_network(tiny_trained_fold):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    ckpt = torch.load(tiny_trained_fold / "checkpoint_final.pth", map_location="cpu", weights_only=True)
    assert ckpt["trainer_name"] == "VertebraFormerTrainer_tiny" and ckpt["current_epoch"] == 2
    plans, dataset_json = _plans_and_dataset(tiny_trained_fold)
    pm = PlansManager(plans)
    cm = pm.get_configuration("3d_fullres")
    lm = pm.get_label_manager(dataset_json)
    net = VertebraFormerTrainer.build_network_architecture(pm, cm, 1, lm.num_segmentation_heads, False)
    net.load_state_dict(ckpt["network_weights"], strict=True)
    # test-time mirroring: left-right only (the plans' left-right axis)
    assert tuple(ckpt["inference_allowed_mirroring_axes"]) == (anatomical_axes(plans)["lr"],)
    assert not (tiny_trained_fold / "checkpoint_latest.pth").exists()
    assert (tiny_trained_fold / "checkpoint_best.pth").exists()  # fold 0 is cross-validation


def test_pretrained_weights_load_into_a_network_with_a_head_they_lack(tmp_path):
    from vertebraformer_nn.network import VertebraFormer
    from vertebraformer_nn.planners.presets import network_arch_kwargs
    from vertebraformer_nn.trainers.checkpoints import load_pretrained_weights

    def net(**switches):
        kwargs = network_arch_kwargs("cpu", (16, 32, 32), (4, 8, 8), 4, embed_dim=48, depth=1, num_heads=1,
                                     decoder_min_channels=16, code_dim=8, **switches)
        return VertebraFormer(1, 27, **kwargs)

    torch.manual_seed(0)
    old = net(use_boundary_head=False)
    path = tmp_path / "old.pth"  # as the built-in model ships it: float16 weights only
    torch.save({"network_weights": {k: v.half() for k, v in old.state_dict().items()}}, path)
    new = net()
    assert load_pretrained_weights(new, str(path)) == ["boundary_head"]
    for key, value in old.state_dict().items():
        assert torch.equal(new.state_dict()[key], value.half().float()), key
    wider = VertebraFormer(1, 27, **{**net().arch_config, "stem_channels": 16})
    with pytest.raises(ValueError, match="old.pth: these weights do not fit the network: .*stem"):
        load_pretrained_weights(wider, str(path))


def test_the_built_in_weights_fine_tune_plans_of_another_patch(tmp_path):
    """Plans of a user's dataset rarely give the built-in model's patch: its learned positional embedding, the one
    weight that depends on the patch, is resampled from the token grid of its plans to the network's, the rest loads
    as it is; a checkpoint whose patch cannot be known is refused, naming the file."""
    from vertebraformer_nn.builtin_model import FOLDER, builtin_checkpoint
    from vertebraformer_nn.network import VertebraFormer
    from vertebraformer_nn.trainers.checkpoints import (load_checkpoint_file, load_pretrained_weights,
                                                        resampled_position_embedding)
    from vertebraformer_nn.trainers.cli import pretrained_path

    assert pretrained_path("builtin") == str(builtin_checkpoint()) and pretrained_path("/x.pth") == "/x.pth"
    # the coarse configuration starts from the built-in coarse stage, whose embedding fits the coarse token grid
    coarse = Path(pretrained_path("builtin", "3d_lowres"))
    assert coarse == builtin_checkpoint(coarse=True) and coarse.parents[1].name == FOLDER.name.replace(
        "3d_fullres", "3d_lowres")
    low = json.loads((coarse.parents[1] / "plans.json").read_text())["configurations"]["3d_lowres"]["architecture"]
    grid = [p // t for p, t in zip(low["arch_kwargs"]["patch_size"], low["arch_kwargs"]["token_size"])]
    assert load_checkpoint_file(str(coarse))["network_weights"]["eva.pos_embed"].shape[1] == math.prod(grid)
    weights = load_checkpoint_file(str(builtin_checkpoint()))["network_weights"]
    arch = json.loads((FOLDER / "plans.json").read_text())["configurations"]["3d_fullres"]["architecture"]
    kwargs = arch["arch_kwargs"]
    source = tuple(p // t for p, t in zip(kwargs["patch_size"], kwargs["token_size"]))
    net = VertebraFormer(1, 27, **{**kwargs, "patch_size": [64, 64, 40]})
    assert net.token_grid != source
    assert load_pretrained_weights(net, pretrained_path("builtin")) == []
    own = net.state_dict()
    for key, value in weights.items():
        if key != "eva.pos_embed":
            assert torch.equal(own[key], value.float()), key
    lpe = own["eva.pos_embed"]
    assert lpe.shape == (1, 8 * 8 * 5, kwargs["embed_dim"])
    # the grid's corners keep (about) the source's corner values: the tokens were put back in the encoder's order
    src = weights["eva.pos_embed"].float().reshape(1, *source, -1)
    out = lpe.reshape(1, *net.token_grid, -1)
    assert torch.corrcoef(torch.stack([out[0, 0, 0, 0], src[0, 0, 0, 0]]))[0, 1] > 0.9
    assert torch.corrcoef(torch.stack([out[0, -1, -1, -1], src[0, -1, -1, -1]]))[0, 1] > 0.9
    # the same grid is the identity; a ramp along one axis stays a ramp along that axis
    assert torch.allclose(resampled_position_embedding(src.reshape(1, -1, src.shape[-1]), source, source),
                          src.reshape(1, -1, src.shape[-1]))
    ramp = torch.arange(4.0).reshape(1, 4, 1, 1, 1).expand(1, 4, 2, 3, 1).reshape(1, -1, 1)
    wide = resampled_position_embedding(ramp, (4, 2, 3), (8, 4, 2)).reshape(8, 4, 2)
    assert torch.all(wide[1:] >= wide[:-1]) and torch.allclose(wide, wide[:, :1, :1].expand(8, 4, 2))
    # without its model folder's plans the source grid is unknown
    alone = tmp_path / "checkpoint_final.pth"
    shutil.copy(builtin_checkpoint(), alone)
    with pytest.raises(ValueError, match="checkpoint_final.pth: its positional embedding is for another patch"):
        load_pretrained_weights(VertebraFormer(1, 27, **{**kwargs, "patch_size": [64, 64, 40]}), str(alone))


def test_fine_tuning_starts_from_the_given_weights(copied_results, multispine_preprocessed, capsys):
    """``vertebraformer train ... -pretrained_weights`` (nnUNetv2_train's option): the tiny model trained again from
    its own checkpoint with the disc head taken out, as a model trained before the head existed would be, at a tenth
    of the schedule's peak learning rate."""
    from vertebraformer_nn.cli import main

    fold = copied_results
    ckpt = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=True)
    ckpt["network_weights"] = {k: v for k, v in ckpt["network_weights"].items() if not k.startswith("boundary_head")}
    pretrained = fold.parent.parent / "pretrained.pth"
    torch.save(ckpt, pretrained)
    args = ["train", str(MULTISPINE_ID), "0", "-tr", "VertebraFormerTrainer_tiny", "-p", multispine_preprocessed[1],
            "-device", "cpu", "-pretrained_weights", str(pretrained)]
    assert main(args + ["--c"]) == 2 and "not with --c" in capsys.readouterr().err
    shutil.rmtree(fold)
    assert main(args) == 0
    log = next(fold.glob("training_log_*.txt")).read_text()
    assert f"weights from {pretrained}; initialised anew: boundary_head" in log
    assert "boundary_dice" in log
    assert (fold / "checkpoint_final.pth").is_file()
    # a tenth of the schedule's peak rate (1e-3 for _tiny), in the optimizer the epochs ran with
    assert "fine-tuning at 0.1 x the schedule's peak learning rate: 0.0001" in log
    lrs = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=True)["logging"]["lrs"]
    assert len(lrs) == 2 and max(lrs) == pytest.approx(1e-4)


def test_a_head_is_added_to_a_trained_model_without_changing_its_other_weights(copied_results, multispine_preprocessed,
                                                                              capsys, monkeypatch):
    """``-tr VertebraFormerTrainer_budget_newHeads -pretrained_weights``: the tiny model without its disc head gets
    one; only the head trains (at the full rate), every weight the file held comes out as it went in."""
    from vertebraformer_nn.cli import main

    fold = copied_results
    ckpt = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=True)
    old = {k: v for k, v in ckpt["network_weights"].items() if not k.startswith("boundary_head")}
    ckpt["network_weights"] = old
    pretrained = fold.parent.parent / "pretrained.pth"
    torch.save(ckpt, pretrained)
    monkeypatch.setenv("VERTEBRAFORMER_TRAIN_EPOCHS", "1")
    args = ["train", str(MULTISPINE_ID), "0", "-tr", "VertebraFormerTrainer_budget_newHeads", "-p",
            multispine_preprocessed[1], "-device", "cpu"]
    assert main(args) == 2 and "adds heads to a trained model: start it with -pretrained_weights" in \
        capsys.readouterr().err
    assert main(args + ["-pretrained_weights", str(fold / "checkpoint_final.pth")]) == 2  # it has the head already
    assert "nothing new to train" in capsys.readouterr().err
    assert main(args + ["-pretrained_weights", str(pretrained)]) == 0
    out = next(fold.parent.parent.glob("VertebraFormerTrainer_budget_newHeads__*")) / "fold_0"
    # the refused run above wrote a log of its own when its second differs: read the last run's, the newest
    log = max(out.glob("training_log_*.txt"), key=lambda f: f.stat().st_mtime_ns).read_text()
    assert f"training only boundary_head: every weight of {pretrained} stays as it is" in log
    assert "fine-tuning at" not in log  # the new head starts from its initialisation: the schedule's own rate
    new = torch.load(out / "checkpoint_final.pth", map_location="cpu", weights_only=True)["network_weights"]
    assert set(new) - set(old) == {"boundary_head.weight", "boundary_head.bias"}
    assert all(torch.equal(new[k], v) for k, v in old.items())


def test_the_fine_tuning_rate_factor_can_be_set_without_a_trainer_of_ones_own(monkeypatch):
    from vertebraformer_nn.trainers.checkpoints import LR_FACTOR_ENV, pretrained_lr_factor

    trainer = SimpleNamespace(PRETRAINED_LR_FACTOR=0.1)
    monkeypatch.delenv(LR_FACTOR_ENV, raising=False)
    assert pretrained_lr_factor(trainer) == 0.1 and pretrained_lr_factor(SimpleNamespace()) == 1.0
    monkeypatch.setenv(LR_FACTOR_ENV, "1")
    assert pretrained_lr_factor(trainer) == 1.0
    for bad in ("fast", "0", "-0.5"):
        monkeypatch.setenv(LR_FACTOR_ENV, bad)
        with pytest.raises(ValueError, match=LR_FACTOR_ENV):
            pretrained_lr_factor(trainer)


def test_log_and_progress_plots_carry_the_task_metrics(tiny_trained_fold, multispine_preprocessed):
    from nnunetv2.imageio.reader_writer_registry import recursive_find_reader_writer_by_name

    from vertebraformer_nn.labels import ANATOMICAL_ORDER, IGNORE_LABEL
    from vertebraformer_nn.trainers.validation_summary import binary_spine_dice

    assert (tiny_trained_fold / "progress.png").stat().st_size > 10000  # nnU-Net's own plot
    assert (tiny_trained_fold / TASKS_PNG).stat().st_size > 10000  # the per-task curves beside it
    ckpt = torch.load(tiny_trained_fold / "checkpoint_final.pth", map_location="cpu", weights_only=True)
    for key in EXTRA_KEYS:
        assert len(ckpt["logging"][key]) == 2, key
    assert all(math.isfinite(v) for v in ckpt["logging"]["train_loss_lesion"])
    log = "".join(p.read_text() for p in tiny_trained_fold.glob("training_log_*.txt"))
    assert "task losses train / val: seg" in log and "val metrics: spine_dice" in log
    validation = tiny_trained_fold / "validation"
    summary = json.loads((validation / "summary_vertebraformer.json").read_text())
    plans, dataset_json = _plans_and_dataset(tiny_trained_fold)
    nnunet = json.loads((validation / "summary.json").read_text())["mean"]
    assert summary["dice_per_level"] == {ANATOMICAL_ORDER[int(k) - 1]: v["Dice"] for k, v in nnunet.items()}
    # the per-case binary Dice is what the validation files say
    reader = recursive_find_reader_writer_by_name(plans["image_reader_writer"])()
    gt_folder = Path(os.environ["nnUNet_preprocessed"]) / multispine_preprocessed[0] / "gt_segmentations"
    case, dice = next(iter(summary["binary_spine_dice_per_case"].items()))
    pred, gt = (reader.read_seg(str(f / (case + dataset_json["file_ending"])))[0] for f in (validation, gt_folder))
    assert (gt == IGNORE_LABEL).any()  # the fixture's cut vertebrae are nnU-Net's ignore label, left out
    assert dice == pytest.approx(binary_spine_dice(pred, gt, IGNORE_LABEL)) and np.isfinite(dice)
    assert summary["binary_spine_dice_mean"] == pytest.approx(np.mean(list(summary["binary_spine_dice_per_case"]
                                                                           .values())))


@pytest.fixture
def copied_results(tiny_trained_fold, tmp_path, monkeypatch):
    """A copy of the tiny run's results tree, made nnU-Net's results folder for one test."""
    src = tiny_trained_fold.parent.parent  # nnUNet_results/DatasetXXX
    dst = tmp_path / "results"
    shutil.copytree(src, dst / src.name)
    monkeypatch.setenv("nnUNet_results", str(dst))
    monkeypatch.setenv("nnUNet_n_proc_DA", "1")
    return dst / src.name / tiny_trained_fold.parent.name / "fold_0"


def test_continue_resumes_at_the_saved_epoch(copied_results, multispine_preprocessed):
    from vertebraformer_nn.cli import main

    fold = copied_results
    # emulate a run interrupted after epoch 0: a checkpoint_latest of epoch 1 and no checkpoint_final
    ckpt = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=True)
    first_losses = list(ckpt["logging"]["train_losses"])
    ckpt["current_epoch"] = 1
    ckpt["logging"] = {k: v[:1] for k, v in ckpt["logging"].items()}
    torch.save(ckpt, fold / "checkpoint_latest.pth")
    (fold / "checkpoint_final.pth").unlink()
    shutil.rmtree(fold / "validation")
    status = main(["train", str(MULTISPINE_ID), "0", "-tr", "VertebraFormerTrainer_tiny", "-p",
                   multispine_preprocessed[1], "-device", "cpu", "--c"])
    assert status == 0
    resumed = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=True)
    assert resumed["current_epoch"] == 2
    losses = resumed["logging"]["train_losses"]
    assert len(losses) == 2 and losses[0] == first_losses[0]  # epoch 0 kept, epoch 1 trained again
    assert all(len(v) == 2 for v in resumed["logging"].values())
    assert not (fold / "checkpoint_latest.pth").exists()
    assert (fold / "validation" / "summary.json").is_file()


def test_val_only_writes_validation_outputs(copied_results, multispine_preprocessed):
    from vertebraformer_nn.cli import main

    fold = copied_results
    shutil.rmtree(fold / "validation")
    before = (fold / "checkpoint_final.pth").stat().st_mtime
    status = main(["train", str(MULTISPINE_ID), "0", "-tr", "VertebraFormerTrainer_tiny", "-device", "cpu", "--val",
                   "--npz"])  # no -p: the CLI finds the VertebraFormer plans itself
    assert status == 0
    val = fold / "validation"
    assert list(val.glob("*.nii.gz")) and list(val.glob("*.npz"))
    assert (val / "summary.json").is_file() and (val / "summary_vertebraformer.json").is_file()
    assert (fold / "checkpoint_final.pth").stat().st_mtime == before  # --val trains nothing


def test_cli_refuses_a_fold_beyond_the_splits(multispine_preprocessed, capsys):
    from vertebraformer_nn.cli import main

    status = main(["train", str(MULTISPINE_ID), "99", "-tr", "VertebraFormerTrainer_tiny", "-device", "cpu"])
    assert status == 2
    assert "fold 99 does not exist" in capsys.readouterr().err


def test_leave_one_domain_out_fold_never_writes_checkpoint_best(multispine_preprocessed, tmp_path, monkeypatch):
    """nnU-Net's own on_epoch_end runs; only the writing of checkpoint_best is declined (save_checkpoint hook)."""
    from time import time

    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from vertebraformer_nn.trainers.build import build_trainer

    dataset_name, plans_identifier = multispine_preprocessed
    splits = json.loads((Path(os.environ["nnUNet_preprocessed"]) / dataset_name / "splits_final.json").read_text())
    lodo = [i for i, e in enumerate(splits) if "held_out_domain" in e]
    assert lodo, "the session's MultiSpine-Sim splits have a leave-one-domain-out fold per source"
    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    written = []
    monkeypatch.setattr(nnUNetTrainer, "save_checkpoint", lambda self, filename: written.append(
        (self.fold, os.path.basename(filename))))
    for fold in (0, lodo[0]):
        trainer = build_trainer(str(MULTISPINE_ID), fold, "3d_fullres", "VertebraFormerTrainer_tiny",
                                plans_identifier, "cpu")
        assert trainer.held_out_domain == splits[fold].get("held_out_domain")
        log = trainer.logger
        for epoch, dice in enumerate((0.2, 0.5)):  # an improving pseudo Dice: nnU-Net writes checkpoint_best
            log.log("epoch_start_timestamps", time(), epoch)
            for key in ("train_losses", "val_losses", "lrs", *EXTRA_KEYS):
                log.log(key, 0.1, epoch)
            log.log("mean_fg_dice", dice, epoch)
            log.log("dice_per_class_or_region", [dice], epoch)
            trainer.on_epoch_end()
        assert trainer.current_epoch == 2 and (Path(trainer.output_folder) / "progress.png").is_file()
    # _tiny saves checkpoint_latest every epoch but the last; the leave-one-domain-out fold never a best one
    assert written == [(0, "checkpoint_latest.pth"), (0, "checkpoint_best.pth"), (0, "checkpoint_best.pth"),
                       (lodo[0], "checkpoint_latest.pth")]


@pytest.mark.parametrize("domains", [("dicom", "verse"), ("verse", "ctspine1k", "spineweb", "dicom", "site5", "site6")])
def test_domains_are_the_plans(multispine_preprocessed, tmp_path, domains):
    """A dataset of 2 or 6 sources trains: the domain classifier's size and the domain targets follow the plans'
    domains (their order, not MultiSpine's)."""
    from vertebraformer_nn.plans_facts import PlansFactError

    def edit(plans, n=len(domains)):
        plans.setdefault("vertebraformer", {})["domains"] = list(domains)
        plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["num_domains"] = n

    trainer = make_trainer(multispine_preprocessed, tmp_path, edit)
    assert trainer.domains == domains and trainer.network.modulation.domain_classifier.out_features == len(domains)
    info = trainer.dataset_json["case_info"]
    keys = [next(c for c, i in info.items() if i["domain"] == d) for d in ("dicom", "verse", "ctspine1k")]
    _, dom, dom_w = trainer.case_table.lookup(keys)
    assert dom[:2].tolist() == [domains.index("dicom"), domains.index("verse")]
    assert dom_w.tolist() == [1.0, 1.0, 1.0 if "ctspine1k" in domains else 0.0]
    before = trainer.network.modulation.domain_classifier.weight.detach().clone()
    out = trainer.train_step(synthetic_batch(trainer, keys[:2]))
    assert np.isfinite(out["loss"]) and out["loss_domain"] > 0
    assert not torch.equal(before, trainer.network.modulation.domain_classifier.weight)
    with pytest.raises(PlansFactError, match="re-plan"):  # plans whose network disagrees with their domains
        make_trainer(multispine_preprocessed, tmp_path, lambda plans: edit(plans, 4))


def test_stock_nnunetv2_train_finds_the_trainer_through_the_shim(multispine_preprocessed, tmp_path):
    from vertebraformer_nn.trainers import shim_folder

    exe = Path(sys.executable).parent / "nnUNetv2_train"
    assert exe.exists(), "nnUNetv2_train is installed with nnunetv2, next to this interpreter"
    env = dict(os.environ, nnUNet_results=str(tmp_path), nnUNet_extTrainer=shim_folder(), nnUNet_compile="f",
               nnUNet_n_proc_DA="1", nnUNet_def_n_proc="1")
    proc = subprocess.run([str(exe), str(MULTISPINE_ID), "3d_fullres", "0", "-tr", "VertebraFormerTrainer_smoke",
                           "-p", multispine_preprocessed[1], "-device", "cpu"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    folder = tmp_path / multispine_preprocessed[0] / \
        f"VertebraFormerTrainer_smoke__{multispine_preprocessed[1]}__3d_fullres" / "fold_0"
    ckpt = torch.load(folder / "checkpoint_final.pth", map_location="cpu", weights_only=True)
    assert ckpt["current_epoch"] == 1 and ckpt["trainer_name"] == "VertebraFormerTrainer_smoke"
