"""VertebraFormerTrainer: nnU-Net 2.8.1's trainer with the VertebraFormer multi-task training (DESIGN.md section 6).

What differs from ``nnUNetTrainer`` (everything else, folders, checkpoint names, validation export, is nnU-Net's),
each at one of nnU-Net's hooks, calling ``super()`` wherever nnU-Net's method does part of the job:

* deep supervision off (the network has none; ``set_deep_supervision_enabled`` is a no-op);
* AdamW (lr 3e-4, weight decay 0.05, betas 0.9/0.98 as Primus) with linear warm-up then poly decay, one
  optimizer for the whole run (:class:`schedule.WarmupPolyLRScheduler`), gradient norm clipped at 1;
* augmentation: mirroring across left-right only (training and test time), rotations about the head-foot axis
  (+-30 deg) with at most 8 deg of tilt about the others, no dummy-2D; the axes are the plans'
  (``plans_facts.anatomical_axes``); domain randomisation (HU, noise, kernel, resolution, contrast, bias field,
  metal, field of view) inserted into nnU-Net's pipeline, each group a setting (:mod:`randomisation`);
* lesion-centred patches at one stated rate (:mod:`dataloading`);
* the multi-task steps and their per-task log (:mod:`multitask`, :mod:`losses`, :mod:`case_table`,
  :mod:`progress`), the domains (count and order of the domain classifier) being the plans'
  (``plans_facts.domains``), the segmentation's ignore label (vertebrae cut by the field of view) left out of every
  vertebra loss and metric;
* checkpoints (:mod:`checkpoints`): loadable with ``torch.load(weights_only=True)``; no ``checkpoint_best`` on a
  leave-one-domain-out fold; a fold beyond ``splits_final.json`` is an error (:mod:`folds`);
* DDP through nnU-Net's path on GPUs, and with gloo on CPUs (:mod:`ddp`);
* ``torch.compile`` stays off: the network changes its output structure through a plain attribute
  (``output_mode``: seg tensor for nnU-Net's predictor and validation, dict for our training step), which
  dynamo guards on and recompiles for, and neither the 3D-RoPE Eva blocks nor the FiLM modulation have been
  shown to compile correctly here (no GPU). Turn it on only after that is shown.
"""
from __future__ import annotations

import os

import torch
from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.ddp_allgather import AllGatherGrad
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

from vertebraformer_nn.planners.presets import complete_legacy_arch_kwargs
from vertebraformer_nn.plans_facts import PlansFactError, anatomical_axes, domains
from vertebraformer_nn.precision import describe as describe_precision

from . import losses as L
from .case_table import CaseTable
from .checkpoints import CheckpointMixin
from .dataloading import LESION_PATCH_FRACTION, LesionSamplingMixin
from .ddp import DDPAnyDeviceMixin
from .folds import fold_held_out_domain
from .multitask import MultiTaskStepsMixin
from .progress import MultiTaskLocalLogger
from .randomisation import DomainRandomisationMixin
from .schedule import AxisRotation, WarmupPolyLRScheduler
from .validation_summary import write_spine_summary


class VertebraFormerTrainer(CheckpointMixin, MultiTaskStepsMixin, LesionSamplingMixin, DomainRandomisationMixin,
                            DDPAnyDeviceMixin, nnUNetTrainer):
    #: attribute overrides applied at the end of __init__'s schedule settings (see variants.py)
    SCHEDULE: dict = {}
    #: network keyword arguments that override the plans' ``arch_kwargs`` (the ablation switches, ablation.py);
    #: applied in training and, since nnU-Net's predictors build the network through the trainer class named in the
    #: checkpoint, in prediction too
    ARCH_OVERRIDES: dict = {}
    #: peak learning rate of a run that starts from pretrained weights (``-pretrained_weights``, the demo's
    #: ``--start builtin``), as a fraction of the schedule's: at the full rate the first epochs undo much of what the
    #: weights knew (benchmarks/results/finetune_rate_2026-12-04)
    PRETRAINED_LR_FACTOR: float = 0.1

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.enable_deep_supervision = False
        self.initial_lr = 3e-4
        self.weight_decay = 5e-2
        self.num_epochs = 1000
        self.warmup_epochs = 50
        self.num_iterations_per_epoch = 250
        self.num_val_iterations_per_epoch = 50
        self.grad_clip = 1.0
        #: weights of the task losses in the total (segmentation = 1)
        self.loss_weights = {"seg": 1.0, "id": 0.5, "lesion": 1.0, "domain": 0.1, "boundary": 0.5}
        self.lesion_dice_weight = 1.0
        #: Tversky weight of a missed lesion voxel in the lesion loss's overlap term (0.5 = soft Dice, losses.py).
        #: 0.7 (Salehi et al. 2017, small MS lesions): lesions are tiny and a briefly trained head finds them but
        #: stays below 0.5 on them (lesion AP 0 at a fixed 0.5), so recall is what limits the AP; the precision this
        #: costs is won back after training, by the candidates' ranking and the threshold chosen on validation
        #: (inference/lesion_candidates.py, determine-postprocessing). ``_lesionDice`` variants keep 0.5.
        self.lesion_fn_weight = 0.7
        #: weight of the binary "any vertebra" soft Dice added to the segmentation loss (losses.segmentation_loss)
        self.spine_dice_weight = 1.0
        self.lesion_patch_fraction = LESION_PATCH_FRACTION
        #: the disc head's reach in voxels of this configuration's grid (losses.boundary_reach)
        self.boundary_reach = L.boundary_reach(self.configuration_manager.spacing)
        for name, value in self.SCHEDULE.items():  # short-schedule variants (variants.py) override these
            setattr(self, name, value)

        self.logger.local_logger = MultiTaskLocalLogger(self.logger.local_logger.verbose)
        self.domains = domains(self.plans_manager.plans)
        n_net = (self.configuration_manager.network_arch_init_kwargs or {}).get("num_domains")
        if n_net is not None and int(n_net) != len(self.domains):
            raise PlansFactError(f"plans {self.plans_manager.plans_name!r}: the network's domain classifier has "
                                 f"{n_net} outputs but the plans name {len(self.domains)} domains {self.domains}; "
                                 f"re-plan the dataset: vertebraformer plan-and-preprocess -d <dataset id>")
        self.case_table = CaseTable.from_dataset_json(dataset_json, self.domains)
        self.held_out_domain = fold_held_out_domain(self.preprocessed_dataset_folder_base, fold)
        if self.held_out_domain is not None:
            self.print_to_log_file(f"Leave-one-domain-out fold: validates on held-out domain {self.held_out_domain!r};"
                                   f" no checkpoint_best is written (checkpoint_final is the model)")

    # ------------------------------------------------------------------ configuration
    def _do_i_compile(self):
        if os.environ.get("nnUNet_compile", "").lower() in ("true", "1", "t"):
            self.print_to_log_file("INFO: torch.compile stays off for VertebraFormer (not shown to work with its "
                                   "switchable output mode and 3D RoPE blocks)")
        return False

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        """nnU-Net's network from the plans (an entry of version 0.1 completed with the sizes it built), with
        :attr:`ARCH_OVERRIDES` applied."""
        arch_kwargs = complete_legacy_arch_kwargs(configuration_manager.network_arch_init_kwargs or {},
                                                  getattr(plans_manager, "plans_name", None))
        return get_network_from_plans(
            configuration_manager.network_arch_class_name, {**arch_kwargs, **cls.ARCH_OVERRIDES},
            configuration_manager.network_arch_init_kwargs_req_import, num_input_channels, num_output_channels,
            allow_init=True, deep_supervision=enable_deep_supervision)

    def set_deep_supervision_enabled(self, enabled: bool):
        pass  # no deep supervision in this network

    def _build_loss(self):
        """The segmentation loss on ``target[:, :1]`` (``self.loss``, as in nnU-Net); the other task losses are
        in compute_losses."""
        batch_dice = self.configuration_manager.batch_dice
        ignore_label = self.label_manager.ignore_label
        gather = AllGatherGrad.apply if self.is_ddp else None

        def seg_loss(seg_logits: torch.Tensor, seg_target: torch.Tensor) -> torch.Tensor:
            return L.segmentation_loss(seg_logits, seg_target, batch_dice, self.spine_dice_weight,
                                       ignore_label=ignore_label, gather=gather)

        return seg_loss

    def configure_optimizers(self):
        params = [p for p in self.network.parameters() if p.requires_grad]  # switched-off components are frozen
        optimizer = torch.optim.AdamW(params, lr=self.initial_lr, weight_decay=self.weight_decay, betas=(0.9, 0.98),
                                      fused=self.device.type == "cuda")
        scheduler = WarmupPolyLRScheduler(optimizer, self.initial_lr, self.num_epochs, self.warmup_epochs)
        return optimizer, scheduler

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        patch_size = self.configuration_manager.patch_size
        if len(patch_size) != 3:
            raise RuntimeError("VertebraFormerTrainer trains 3D configurations only")
        axes = anatomical_axes(self.plans_manager.plans)
        rotation = AxisRotation(axes["si"])
        initial_patch_size = get_patch_size(patch_size, rotation.range_for(0), rotation.range_for(1),
                                            rotation.range_for(2), (0.85, 1.25))
        self.inference_allowed_mirroring_axes = (axes["lr"],)  # a head-foot flip has no valid numbering
        self.print_to_log_file(f"array axes {axes}; mirroring {self.inference_allowed_mirroring_axes}; {rotation}; "
                               f"no dummy-2D augmentation")
        return rotation, False, initial_patch_size, self.inference_allowed_mirroring_axes

    # ------------------------------------------------------------------ training
    def on_train_start(self):
        super().on_train_start()
        self._complete_case_table()
        self.print_to_log_file(f"Training precision on {self.device}: {describe_precision(self.device)}; domains "
                               f"{list(self.domains)}")

    def _complete_case_table(self) -> None:
        """Cases missing from dataset.json's case_info: take the facts the preprocessor put in their properties."""
        from batchgenerators.utilities.file_and_folder_operations import isfile, join, load_pickle

        for case in self.dataset_class.get_identifiers(self.preprocessed_dataset_folder):
            pkl = join(self.preprocessed_dataset_folder, case + ".pkl")
            if not self.case_table.add_from_properties(case, load_pickle(pkl) if isfile(pkl) else {}):
                self.print_to_log_file(f"WARNING: no annotation facts for {case} (not in dataset.json case_info nor "
                                       f"its properties): its lesion and domain losses are weighted 0")

    def do_split(self):
        # a FoldError for a fold that nnU-Net would invent (a random 80:20 split)
        fold_held_out_domain(self.preprocessed_dataset_folder_base, self.fold)
        return super().do_split()

    # ------------------------------------------------------------------ final validation
    def perform_actual_validation(self, save_probabilities: bool = False):
        self.network.eval()
        super().perform_actual_validation(save_probabilities)
        if self.local_rank != 0:
            return
        try:
            result = write_spine_summary(
                os.path.join(self.output_folder, "validation"),
                os.path.join(self.preprocessed_dataset_folder_base, "gt_segmentations"),
                self.dataset_json["file_ending"], self.plans_manager.image_reader_writer_class(),
                self.label_manager.ignore_label, self.held_out_domain)
            self.print_to_log_file(f"Binary spine Dice (validation, mean over cases): "
                                   f"{result['binary_spine_dice_mean']}")
        except Exception as e:  # the extra summary must never lose nnU-Net's own validation
            self.print_to_log_file(f"WARNING: could not write the VertebraFormer validation summary: {e}")
