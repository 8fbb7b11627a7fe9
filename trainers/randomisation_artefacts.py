"""Domain randomisation of what a scan shows: metal with its streaks, and a field of view that ends inside the patch
(issue 16 part 2, training side).

* :class:`MetalStreakTransform`: one or two metal objects (pedicle screws, mostly inside a vertebra: placed on a
  vertebra voxel of the patch when it has one), saturated to the window's top, with the streaks a reconstruction
  draws through them in every axial slice they occupy: bright and dark rays fading with distance (beam hardening,
  photon starvation), and a dark band between two objects. The labels stay: the vertebra is still there.
* :class:`FieldOfViewTransform`: the scan ends inside the patch. Either along head-foot (the scan's first or last
  slice): beyond it the patch holds what nnU-Net's loader puts beyond an image border (image 0, labels -1, which
  nnU-Net's ``RemoveLabelTansform`` then makes background), and a vertebra cut by the new border becomes nnU-Net's
  ignore label on its visible side, as the converters mark vertebrae cut by a real field of view (a network
  cannot tell from inside a patch which level a cut vertebra is). Or a round reconstruction field in the axial
  plane (a spine-centred small field of view): outside it the scanner's fill value (air, the window's bottom)
  and background labels.

Conventions (layout, padding kept, numpy randomness) as in :mod:`.randomisation_intensity`.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform

from .randomisation_intensity import CTTransform, NormalisedCT, Range, in_plane_axes, uniform


def _axial_grid(shape: Sequence[int], spacing: Sequence[float], si_axis: int):
    """Physical coordinates (mm) of the axial plane's two axes, as broadcastable (n_a, 1) and (1, n_b) tensors."""
    a, b = in_plane_axes(si_axis)
    ya = torch.arange(shape[a], dtype=torch.float32)[:, None] * spacing[a]
    yb = torch.arange(shape[b], dtype=torch.float32)[None, :] * spacing[b]
    return ya, yb


def _expand_axial(plane: torch.Tensor, si_axis: int) -> torch.Tensor:
    """An (n_a, n_b) axial-plane tensor as a (X, Y, Z)-broadcastable one with size 1 along head-foot."""
    return plane.unsqueeze(si_axis)


def _along_si(lo: int, hi: int, si_axis: int) -> tuple:
    index: List[slice] = [slice(None)] * 3
    index[si_axis] = slice(lo, hi)
    return tuple(index)


def _vertebra_voxels(seg: Optional[torch.Tensor], ignore_label: Optional[int]) -> Optional[torch.Tensor]:
    if seg is None:
        return None
    labels = seg[0]
    mask = labels > 0
    if ignore_label is not None:
        mask &= labels != ignore_label
    return torch.nonzero(mask)


class MetalStreakTransform(CTTransform):
    """Metal objects with streaks (module docstring). Per object: radius ``radius_mm`` in the axial plane, length
    ``length_mm`` along head-foot; ``n_rays`` rays of random angle and sign, amplitude ``streak_hu`` (scaled per
    ray), width ``width_mm``, fading over ``fade_mm``."""

    def __init__(self, window: NormalisedCT, spacing: Sequence[float], si_axis: int,
                 ignore_label: Optional[int] = None, n_objects: Sequence[int] = (1, 2), radius_mm: Range = (1.5, 4.0),
                 length_mm: Range = (8.0, 40.0), n_rays: Sequence[int] = (3, 10), streak_hu: Range = (150.0, 1200.0),
                 width_mm: Range = (0.5, 2.0), fade_mm: Range = (30.0, 150.0), p_on_vertebra: float = 0.8):
        super().__init__(window, spacing, si_axis)
        self.ignore_label = ignore_label
        self.n_objects, self.n_rays = tuple(n_objects), tuple(n_rays)
        self.radius_mm, self.length_mm, self.streak_hu = tuple(radius_mm), tuple(length_mm), tuple(streak_hu)
        self.width_mm, self.fade_mm, self.p_on_vertebra = tuple(width_mm), tuple(fade_mm), float(p_on_vertebra)

    def get_parameters(self, **data_dict) -> dict:
        image, seg = data_dict["image"], data_dict.get("segmentation")
        shape = tuple(image.shape[1:])
        vertebra = _vertebra_voxels(seg, self.ignore_label)
        objects = []
        for _ in range(np.random.randint(self.n_objects[0], self.n_objects[1] + 1)):
            if vertebra is not None and len(vertebra) and np.random.uniform() < self.p_on_vertebra:
                centre = [float(c) for c in vertebra[np.random.randint(len(vertebra))]]
            else:
                centre = [float(np.random.uniform(0, n - 1)) for n in shape]
            n_rays = np.random.randint(self.n_rays[0], self.n_rays[1] + 1)
            objects.append({"centre_vox": centre, "radius_mm": uniform(self.radius_mm),
                            "length_mm": uniform(self.length_mm), "angles": np.random.uniform(0, np.pi, n_rays),
                            "signs": np.random.choice([-1.0, 1.0], n_rays),
                            "amplitudes": np.random.uniform(0.3, 1.0, n_rays) * uniform(self.streak_hu),
                            "width_mm": uniform(self.width_mm), "fade_mm": uniform(self.fade_mm)})
        return {"objects": objects, "band_hu": -uniform(self.streak_hu)}

    def randomise(self, image, seg, objects=(), band_hu: float = 0.0):
        shape, si = tuple(image.shape[1:]), self.si_axis
        ya, yb = _axial_grid(shape, self.spacing, si)
        a, b = in_plane_axes(si)
        hu = self.window.to_hu(image)
        metal = torch.zeros(shape, dtype=torch.bool)
        centres = []
        for obj in objects:
            c = obj["centre_vox"]
            ca, cb = c[a] * self.spacing[a], c[b] * self.spacing[b]
            centres.append((ca, cb))
            da, db = ya - ca, yb - cb
            r = torch.sqrt(da ** 2 + db ** 2)
            streaks = torch.zeros_like(r)
            for angle, sign, amplitude in zip(obj["angles"], obj["signs"], obj["amplitudes"]):
                distance = torch.abs(da * np.sin(angle) - db * np.cos(angle))  # to the ray through the centre
                streaks += sign * amplitude * torch.exp(-0.5 * (distance / obj["width_mm"]) ** 2)
            streaks *= torch.exp(-r / obj["fade_mm"])
            half = 0.5 * obj["length_mm"] / self.spacing[si]
            lo, hi = max(0, int(np.floor(c[si] - half))), min(shape[si], int(np.ceil(c[si] + half)) + 1)
            if hi <= lo:
                continue
            hu[(slice(None), *_along_si(lo, hi, si))] += _expand_axial(streaks, si)
            inside = _expand_axial(r <= obj["radius_mm"], si).expand(*[hi - lo if i == si else n
                                                                        for i, n in enumerate(shape)])
            metal[_along_si(lo, hi, si)] |= inside
        if len(centres) == 2 and band_hu:
            hu += self._band(shape, ya, yb, centres, band_hu, metal)
        hu[:, metal] = self.window.upper_hu
        return self.window.from_hu(hu)

    def _band(self, shape, ya, yb, centres, band_hu, metal) -> torch.Tensor:
        """The dark band between two metal objects, in the slices that hold both."""
        (a0, b0), (a1, b1) = centres
        length = max(float(np.hypot(a1 - a0, b1 - b0)), 1e-3)
        t = ((ya - a0) * (a1 - a0) + (yb - b0) * (b1 - b0)) / length ** 2
        distance = torch.abs((ya - a0) * (b1 - b0) - (yb - b0) * (a1 - a0)) / length
        band = band_hu * torch.exp(-0.5 * (distance / 2.0) ** 2) * ((t > 0) & (t < 1)).float()
        other = tuple(i for i in range(3) if i != self.si_axis)
        both = metal.any(dim=other) if metal.any() else torch.zeros(shape[self.si_axis], dtype=torch.bool)
        profile = both.float().view(*[shape[self.si_axis] if i == self.si_axis else 1 for i in range(3)])
        return _expand_axial(band, self.si_axis) * profile


class FieldOfViewTransform(BasicTransform):
    """The scan ends inside the patch (module docstring): with probability ``p_head_foot`` a head-foot border
    that keeps ``keep`` of the patch, else a round axial field of ``radius_mm`` around a point near the vertebrae's
    centre (the patch centre without vertebrae)."""

    def __init__(self, window: NormalisedCT, spacing: Sequence[float], si_axis: int, ignore_label: Optional[int],
                 p_head_foot: float = 0.6, keep: Range = (0.35, 0.85), radius_mm: Range = (50.0, 140.0),
                 centre_jitter_mm: float = 20.0):
        super().__init__()
        self.window = window
        self.spacing, self.si_axis, self.ignore_label = tuple(float(s) for s in spacing), int(si_axis), ignore_label
        self.p_head_foot, self.keep, self.radius_mm = float(p_head_foot), tuple(keep), tuple(radius_mm)
        self.centre_jitter_mm = float(centre_jitter_mm)

    def get_parameters(self, **data_dict) -> dict:
        shape = tuple(data_dict["image"].shape[1:])
        if np.random.uniform() < self.p_head_foot:
            n = shape[self.si_axis]
            kept = int(round(uniform(self.keep) * n))
            head = bool(np.random.uniform() < 0.5)  # keep the first slices (border at the foot side) or the last
            return {"outside": self._slab(shape, kept, n, head), "head_foot": True}
        vertebra = _vertebra_voxels(data_dict.get("segmentation"), self.ignore_label)
        a, b = in_plane_axes(self.si_axis)
        if vertebra is not None and len(vertebra):
            centre = vertebra.float().mean(0)
        else:
            centre = torch.tensor([(n - 1) / 2 for n in shape])
        ca = float(centre[a]) * self.spacing[a] + np.random.uniform(-1, 1) * self.centre_jitter_mm
        cb = float(centre[b]) * self.spacing[b] + np.random.uniform(-1, 1) * self.centre_jitter_mm
        ya, yb = _axial_grid(shape, self.spacing, self.si_axis)
        outside = (ya - ca) ** 2 + (yb - cb) ** 2 > uniform(self.radius_mm) ** 2
        return {"outside": _expand_axial(outside, self.si_axis).expand(*shape), "head_foot": False}

    def _slab(self, shape, kept: int, n: int, keep_first: bool) -> torch.Tensor:
        outside = torch.zeros(shape, dtype=torch.bool)
        outside[_along_si(kept, n, self.si_axis) if keep_first else _along_si(0, n - kept, self.si_axis)] = True
        return outside

    def apply(self, data_dict: dict, outside: torch.Tensor = None, head_foot: bool = False, **params) -> dict:
        image, seg = data_dict.get("image"), data_dict.get("segmentation")
        if outside is None or not bool(outside.any()):
            return data_dict
        padded = (seg[0] < 0) if seg is not None else torch.zeros_like(outside)
        if image is not None:
            # beyond a head-foot border: the loader's padding value; outside a round field: the scanner's fill (air)
            fill = 0.0 if head_foot else (self.window.lower_hu - self.window.mean) / self.window.std
            image[:, outside & ~padded] = fill
        if seg is not None:
            if head_foot and self.ignore_label is not None:
                labels = seg[0]
                cut = torch.unique(labels[outside])
                cut = cut[(cut > 0) & (cut != self.ignore_label)]
                if len(cut):
                    labels[torch.isin(labels, cut) & ~outside] = self.ignore_label
            seg[:, outside] = -1
        return data_dict
