"""What the disc head costs a training step: the CPU preset's network at its patch (88x56x48, batch 2), the
trainer's own multi-task loss (MultiTaskStepsMixin.compute_losses) and AdamW, with and without the head,
alternating, median of 7 steps after 2 warm-up steps each, float32, 2 threads."""
import statistics, time
from types import SimpleNamespace
import torch
from vertebraformer_nn.network import VertebraFormer, all_heads
from vertebraformer_nn.planners.presets import network_arch_kwargs
from vertebraformer_nn.sources import SOURCES
from vertebraformer_nn.trainers import losses as L
from vertebraformer_nn.trainers.case_table import CaseTable
from vertebraformer_nn.trainers.multitask import MultiTaskStepsMixin

PATCH = (88, 56, 48)


class Steps(MultiTaskStepsMixin):
    def __init__(self):
        self.case_table = CaseTable.from_dataset_json({"case_info": {
            "b": {"domain": "dicom", "annotations": {"lesion_mask": True}}}}, SOURCES)
        self.lesion_dice_weight, self.lesion_fn_weight = 1.0, 0.7
        self.label_manager = SimpleNamespace(ignore_label=27)
        self.loss_weights = {"seg": 1.0, "id": 0.5, "lesion": 1.0, "domain": 0.1, "boundary": 0.5}
        self.boundary_reach = L.boundary_reach([3.5, 3.5, 3.5])

    def loss(self, logits, target):
        return L.segmentation_loss(logits, target, batch_dice=False, ignore_label=27)


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    nets = {h: VertebraFormer(1, 27, **network_arch_kwargs("cpu", PATCH, (8, 8, 8), 4, use_boundary_head=h))
            for h in (False, True)}
    opts = {h: torch.optim.AdamW(n.parameters(), 1e-4) for h, n in nets.items()}
    steps = Steps()
    x = torch.randn(2, 1, *PATCH)
    seg = torch.zeros(2, 1, *PATCH, dtype=torch.long)
    for k in range(6):  # six vertebrae of 10 voxels, 4-voxel discs, along the first axis
        seg[:, 0, 4 + 14 * k:14 + 14 * k, 14:42, 12:36] = 17 + k
    target = torch.cat([seg, torch.zeros_like(seg)], 1)
    times = {False: [], True: []}
    for i in range(9):
        for h in (False, True):
            t = time.perf_counter()
            with all_heads(nets[h]):
                out = nets[h](x)
            total, _ = steps.compute_losses(out, target, ["b", "b"])
            opts[h].zero_grad()
            total.backward()
            opts[h].step()
            if i >= 2:
                times[h].append(time.perf_counter() - t)
    for h in (False, True):
        n = sum(p.numel() for p in nets[h].parameters())
        print(f"disc head {'on ' if h else 'off'}: {n / 1e6:.3f} M parameters, training step "
              f"{statistics.median(times[h]):.3f} s (median of {len(times[h])})")
    print(f"ratio on/off: {statistics.median(times[True]) / statistics.median(times[False]):.3f}")


if __name__ == "__main__":
    main()
