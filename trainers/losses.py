"""Pure multi-task losses and metrics of the VertebraFormer trainer (no nnU-Net state, testable on random tensors).

Per-case masking (DESIGN.md section 6). Every loss here takes a per-case weight vector ``w`` of shape (B,)
(1 = the case has this annotation, 0 = it does not). A case's contribution is *multiplied* by its weight,
never skipped: the graph always contains every head, so DDP (``find_unused_parameters=False``) sees a
gradient (possibly exactly zero) for every trained parameter, and an unannotated case contributes exactly
zero gradient. Pooled quantities (the soft Dice's tp/fp/fn, the cross-entropy's voxel count) are pooled over
the annotated cases only: nnU-Net's batch Dice pools the whole batch, which would let an unannotated case's
"no lesion here" leak into the pooled denominator.

Ignore label (nnU-Net's, ``labels.IGNORE_LABEL``: voxels of vertebrae cut by the field of view, whose level and
even whose border the network cannot see from inside a patch). Every vertebra loss and metric leaves those voxels
out when given ``ignore_label``: the segmentation loss (cross-entropy, per-class and binary "any vertebra" Dice),
the level loss, the binary and level counts. The lesion loss keeps them: a lesion mask annotates lesions wherever
they are visible, whatever the vertebra labels say about the border, so its supervision there is valid.

Shapes: ``seg_target`` (B, 1, *S) training labels (0 background, 1..26 vertebrae, possibly the ignore label);
``lesion_target`` (B, 1, *S) 0/1; logits as the network's ``all_heads`` dict documents.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F

IGNORE_INDEX = -1


def _expand(w: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) weights broadcast against a (B, ...) tensor."""
    return w.reshape(w.shape[0], *([1] * (like.ndim - 1))).to(like.dtype)


def known_voxels(labels: torch.Tensor, ignore_label: Optional[int]) -> Optional[torch.Tensor]:
    """Boolean mask of the voxels whose label is known (not ``ignore_label``); None when there is no ignore label."""
    return None if ignore_label is None else labels != ignore_label


def spine_dice_loss(seg_logits: torch.Tensor, seg_target: torch.Tensor, smooth: float = 1e-5,
                    ignore_label: Optional[int] = None) -> torch.Tensor:
    """1 - soft Dice of "any vertebra" (1 - softmax background) against label > 0, pooled over the batch,
    ``ignore_label`` voxels left out.

    Part of :func:`segmentation_loss` (which computes it from its own softmax); kept alone for tests and tools."""
    labels = seg_target[:, 0]
    known = known_voxels(labels, ignore_label)
    is_vertebra = (labels > 0) if known is None else (labels > 0) & known
    return _spine_dice(torch.softmax(seg_logits.float(), 1)[:, 0], is_vertebra, smooth, known)


def _spine_dice(p_background: torch.Tensor, is_vertebra: torch.Tensor, smooth: float,
                known: Optional[torch.Tensor] = None) -> torch.Tensor:
    p_fg = 1 - p_background
    if known is not None:  # a vertebra predicted on an ignored voxel is no false positive
        p_fg = p_fg * known.to(p_fg.dtype)
    g = is_vertebra.to(p_fg.dtype)
    tp = (p_fg * g).sum()
    return 1 - (2 * tp + smooth) / (p_fg.sum() + g.sum() + smooth)


def segmentation_loss(seg_logits: torch.Tensor, seg_target: torch.Tensor, batch_dice: bool = False,
                      spine_dice_weight: float = 1.0, smooth: float = 1e-5,
                      ignore_label: Optional[int] = None, gather: Optional[Callable] = None) -> torch.Tensor:
    """nnU-Net's segmentation loss (cross-entropy + memory-efficient soft Dice over the foreground classes,
    ``do_bg=False``, weights 1 and 1) plus ``spine_dice_weight`` x the binary "any vertebra" soft Dice, from
    ONE log-softmax.

    Same value as ``DC_and_CE_loss(..., dice_class=MemoryEfficientSoftDiceLoss) + spine_dice_loss`` (tested),
    about half the cost: nnU-Net's pair computes a softmax for the Dice and a log-softmax for the
    cross-entropy, the spine Dice a third, and the Dice scatters a 27-channel one-hot; on two CPU cores those
    full-resolution passes over 27 channels were a third of a training step. Here the per-class sums come from
    the probability of each voxel's own class (a gather) accumulated per class (a scatter-add), so no one-hot
    exists. Why the spine term at all: the 26 vertebra classes are each a small share of a patch (about 2 %
    together at the CPU preset), and without it the first hundred steps collapsed to all-background.

    ``batch_dice`` pools the per-class sums over the batch (nnU-Net's batch Dice); ``gather`` (under DDP,
    nnU-Net's ``AllGatherGrad.apply``) first stacks them across ranks, as nnU-Net does. ``ignore_label``
    voxels count in neither term, as in nnU-Net."""
    logits = seg_logits.float()
    b, c = logits.shape[:2]
    target = seg_target[:, 0].long()
    valid = known_voxels(target, ignore_label)
    if valid is not None:
        target = torch.where(valid, target, torch.zeros_like(target))
    log_p = torch.log_softmax(logits, 1)
    p = log_p.exp()
    log_p_true = log_p.gather(1, target[:, None])[:, 0]  # (B, *S)
    if valid is None:
        ce = -log_p_true.mean()
    else:
        ce = -(log_p_true * valid).sum() / valid.sum().clamp_min(1)
    p_true = log_p_true.exp()
    flat_t = target.reshape(b, -1)
    w = torch.ones_like(p_true) if valid is None else valid.to(p_true.dtype)
    intersect = torch.zeros(b, c, dtype=p.dtype, device=p.device).scatter_add(1, flat_t, (p_true * w).reshape(b, -1))
    sum_gt = torch.zeros(b, c, dtype=p.dtype, device=p.device).scatter_add(1, flat_t, w.reshape(b, -1))
    sum_pred = (p * w[:, None]).sum(tuple(range(2, p.ndim))) if valid is not None else p.sum(tuple(range(2, p.ndim)))
    intersect, sum_gt, sum_pred = intersect[:, 1:], sum_gt[:, 1:], sum_pred[:, 1:]  # do_bg=False
    if batch_dice:
        if gather is not None:
            intersect, sum_gt, sum_pred = (gather(v).reshape(-1, c - 1) for v in (intersect, sum_gt, sum_pred))
        intersect, sum_gt, sum_pred = intersect.sum(0), sum_gt.sum(0), sum_pred.sum(0)
    dice = (2 * intersect + smooth) / (sum_gt + sum_pred + smooth).clamp_min(1e-8)
    loss = ce - dice.mean()
    if spine_dice_weight:  # ignored voxels were set to background above: neither target nor prediction there
        loss = loss + spine_dice_weight * _spine_dice(p[:, 0], target > 0, smooth, valid)
    return loss


def _levels(seg_target: torch.Tensor, ignore_label: Optional[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(level target = training label - 1, mask of the vertebra voxels with a known level)."""
    labels = seg_target[:, 0].long()
    known = known_voxels(labels, ignore_label)
    vertebra = labels > 0
    return labels - 1, vertebra if known is None else vertebra & known


def identification_loss(id_logits: torch.Tensor, seg_target: torch.Tensor, w: torch.Tensor,
                        ignore_label: Optional[int] = None) -> torch.Tensor:
    """Cross-entropy of the level head on vertebra voxels: target = training label - 1; background and
    ``ignore_label`` voxels (no level known) left out.

    Mean over the vertebra voxels of the weighted cases (0 when the batch has none; never NaN). The vertebra
    voxels are picked out before the (26-channel) log-softmax, so its cost scales with the spine, not the
    patch (the spine is a few percent of a patch)."""
    target, vertebra = _levels(seg_target, ignore_label)
    voxel_w = _expand(w, target).expand_as(target)
    picked = vertebra & (voxel_w > 0)
    rows = id_logits.movedim(1, -1)[picked].float()  # (N, levels): only the vertebra voxels
    if rows.shape[0] == 0:
        return id_logits.sum() * 0.0
    ce = F.cross_entropy(rows, target[picked], reduction="none")
    ww = voxel_w[picked].to(ce.dtype)
    return (ce * ww).sum() / ww.sum().clamp_min(1.0)


def binary_map_loss(logits: torch.Tensor, target: torch.Tensor, w: torch.Tensor,
                    dice_weight: float = 1.0, smooth: float = 1e-5,
                    fn_weight: float = 0.5) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Binary cross-entropy (+ ``dice_weight`` x soft Tversky loss) of a one-channel sigmoid head (the lesion head,
    the disc head), per-case masked (weight ``w`` (B,); the disc head's target is known in every case: ones).

    BCE: per-case voxel mean, weighted mean over the cases (divided by max(sum w, 1)).
    Soft Tversky index (Salehi et al. 2017) 2 tp / (2 tp + 2 (1 - b) fp + 2 b fn) with b = ``fn_weight``: at 0.5
    the soft Dice, above it a missed lesion voxel costs more than a false one (recall over precision). tp/fp/fn
    summed over the weighted cases only, and only counted when those cases' patches hold lesion voxels (a
    lesion-free batch gets BCE only: the index of an empty target is undefined and would push every probability to
    zero). The segmentation's ignore voxels count here (module docstring). Returns (loss, parts)."""
    if not 0 < fn_weight < 1:
        raise ValueError(f"fn_weight must lie in (0, 1), got {fn_weight}")
    logits = logits.float()
    target = target.to(logits.dtype)
    reduce_dims = tuple(range(1, logits.ndim))
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=reduce_dims)  # (B,)
    wf = w.to(logits.dtype)
    n = wf.sum()
    bce_term = (bce * wf).sum() / n.clamp_min(1.0)
    if dice_weight:
        p = torch.sigmoid(logits)
        ww = _expand(wf, p)
        tp = (p * target * ww).sum()
        fp = (p * (1 - target) * ww).sum()
        fn = ((1 - p) * target * ww).sum()
        dice = (2 * tp + smooth) / (2 * tp + 2 * (1 - fn_weight) * fp + 2 * fn_weight * fn + smooth).clamp_min(1e-8)
        has_positive = ((target * ww).sum() > 0).to(logits.dtype)
        dice_term = (1 - dice) * has_positive
    else:
        dice_term = logits.sum() * 0.0
    loss = bce_term + dice_weight * dice_term
    return loss, {"bce": bce_term.detach(), "dice": dice_term.detach()}


#: how far (mm) a voxel may lie from two different vertebrae to count as between them: the disc head's target
#: covers discs up to twice this thick (lumbar discs are 8-12 mm)
BOUNDARY_REACH_MM = 7.0


def boundary_reach(spacing) -> Tuple[int, ...]:
    """:data:`BOUNDARY_REACH_MM` in voxels per axis of a grid of ``spacing`` mm (at least one)."""
    return tuple(max(1, int(round(BOUNDARY_REACH_MM / float(s)))) for s in spacing)


def _two_labels_near(labels: torch.Tensor, reach) -> torch.Tensor:
    """Voxels with two different vertebra labels within ``reach`` voxels per axis (a box)."""
    vertebra = labels > 0
    kernel = tuple(2 * int(r) + 1 for r in reach)
    pad = tuple(int(r) for r in reach)
    highest = F.max_pool3d(torch.where(vertebra, labels, 0.0), kernel, stride=1, padding=pad)
    lowest = -F.max_pool3d(torch.where(vertebra, -labels, -1e4), kernel, stride=1, padding=pad)
    return (highest > 0) & (lowest < highest)


@torch.no_grad()
def between_vertebrae(seg_target: torch.Tensor, reach) -> torch.Tensor:
    """The disc head's target (B, 1, *S) bool: the space between two vertebrae, i.e. the background voxels with two
    different vertebra labels within ``reach`` voxels per axis (a disc up to twice as thick), and the vertebra voxels
    that touch another vertebra (a bridged or thin disc). Never the inside of a vertebra: numbering removes these
    voxels from an instance and counts what falls apart. The ignore label counts as a label of its own: the border
    of a vertebra cut by the field of view with its neighbour is known."""
    labels = seg_target.float()
    gap = _two_labels_near(labels, reach) & (labels == 0)
    return gap | (_two_labels_near(labels, (1,) * len(reach)) & (labels > 0))


def domain_loss(domain_logits: torch.Tensor, domain_target: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the domain classifier (the domain-code loss); ``domain_target`` (B,) long, cases with
    an unknown domain carry weight 0 (their target is clamped to a valid index and multiplied by zero)."""
    logits = domain_logits.float()
    target = domain_target.long().clamp(0, logits.shape[1] - 1)
    ce = F.cross_entropy(logits, target, reduction="none")
    wf = w.to(ce.dtype)
    return (ce * wf).sum() / wf.sum().clamp_min(1.0)


def zero_like_graph(*tensors: Optional[torch.Tensor]) -> torch.Tensor:
    """0 * sum of the given outputs: a zero that keeps every head in the graph (for DDP)."""
    present = [t.float().sum() for t in tensors if t is not None]
    if not present:
        raise ValueError("no tensor given")
    return sum(present) * 0.0


# ---------------------------------------------------------------------------------------------- metrics
@torch.no_grad()
def identification_counts(id_logits: torch.Tensor, seg_target: torch.Tensor, w: torch.Tensor,
                          ignore_label: Optional[int] = None) -> Tuple[float, float]:
    """(correct, total) voxel counts of the level head's argmax on the vertebra voxels (known level) of weighted
    cases."""
    target, vertebra = _levels(seg_target, ignore_label)
    valid = vertebra & (_expand(w, target) > 0)
    pred = id_logits.argmax(1)
    return float(((pred == target) & valid).sum()), float(valid.sum())


@torch.no_grad()
def binary_map_counts(logits: torch.Tensor, target: torch.Tensor, w: torch.Tensor) -> Tuple[float, float, float]:
    """(tp, fp, fn) voxel counts of a one-channel sigmoid head's ``sigmoid > 0.5`` over the weighted cases (the
    lesion head: the lesion-annotated ones)."""
    pred = logits > 0
    target = target > 0
    m = _expand(w, pred) > 0
    tp = (pred & target & m).sum()
    fp = (pred & ~target & m).sum()
    fn = (~pred & target & m).sum()
    return float(tp), float(fp), float(fn)


@torch.no_grad()
def domain_counts(domain_logits: torch.Tensor, domain_target: torch.Tensor, w: torch.Tensor) -> Tuple[float, float]:
    """(correct, total) cases of the domain classifier among the cases with a known domain."""
    valid = w > 0
    pred = domain_logits.argmax(1)
    return float(((pred == domain_target.long()) & valid).sum()), float(valid.sum())


@torch.no_grad()
def binary_counts(seg_logits: torch.Tensor, seg_target: torch.Tensor,
                  ignore_label: Optional[int] = None) -> Tuple[float, float, float]:
    """(tp, fp, fn) of "any vertebra" (argmax != background) against label > 0, ``ignore_label`` voxels left out:
    the binary spine Dice."""
    labels = seg_target[:, 0]
    known = known_voxels(labels, ignore_label)
    pred = seg_logits.argmax(1) > 0
    target = labels > 0
    if known is not None:
        pred, target = pred & known, target & known
    return float((pred & target).sum()), float((pred & ~target).sum()), float((~pred & target).sum())


def ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")
