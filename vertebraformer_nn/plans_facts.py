"""What a model's plans say about its data, read in one place by the trainer, the predictor and the evaluation.

The planner decides these facts once, from the dataset (DESIGN.md section 10: the plans and the model folder say
everything about a model), and writes them under ``plans["vertebraformer"]``:

* ``anatomical_axes``: ``{"si": i, "ap": j, "lr": k}``, the axes of the preprocessed (transposed) arrays that run
  head-foot, front-back and left-right;
* ``domains``: the dataset's source names (``sources.SOURCES`` for MultiSpine), whose count the network's domain
  classifier has; an empty list for a dataset whose dataset.json names no domains (no domain classifier, no
  domain loss).

And two facts that follow from nnU-Net's own plans keys: the CT window of ``CTNormalization`` (:class:`CTWindow`,
HU <-> the normalised values the network sees; the trainer's intensity randomisation, the predictor and the
post-processing search read it here) and what a scan holds beyond its border (:func:`outside_values`), where the
sliding window pads an image smaller than the patch.

Plans written before these keys existed were all planned from RAS-reoriented MultiSpine data read with
``SimpleITKIOWithReorient``; for those the facts follow from ``transpose_forward`` and are derived here. Any other
plans without the keys are refused with the command that re-plans them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Sequence, Tuple

from .sources import SOURCES

#: nnU-Net readers that hand out RAS arrays in SimpleITK order (S, A, R) whatever the file's orientation.
REORIENTING_READERS = ("SimpleITKIOWithReorient", "NibabelIOWithReorient")
AXIS_NAMES = ("si", "ap", "lr")


class PlansFactError(ValueError):
    """The plans do not say what is needed; the message says how to re-plan."""


def _ours(plans: Mapping) -> Mapping:
    return plans.get("vertebraformer") or {}


#: Anatomical axes of the arrays a reorienting reader hands out, before nnU-Net's transpose: (S, A, R).
REORIENTED_AXES: Dict[str, int] = {name: i for i, name in enumerate(AXIS_NAMES)}


def axes_from_transpose(transpose_forward, untransposed: Mapping[str, int] = REORIENTED_AXES) -> Dict[str, int]:
    """Anatomical axes of arrays transposed with ``transpose_forward`` (new axis m = old axis
    ``transpose_forward[m]``) whose untransposed axes are ``untransposed`` ((S, A, R): a reorienting reader)."""
    tf = [int(t) for t in transpose_forward]
    if sorted(tf) != [0, 1, 2]:
        raise PlansFactError(f"transpose_forward must be a permutation of 0, 1, 2; got {transpose_forward}")
    return {name: tf.index(int(untransposed[name])) for name in AXIS_NAMES}


def anatomical_axes(plans: Mapping) -> Dict[str, int]:
    """``{"si", "ap", "lr"}`` -> axis of the preprocessed arrays (see the module docstring)."""
    axes = _ours(plans).get("anatomical_axes")
    if axes is not None:
        out = {name: int(axes[name]) for name in AXIS_NAMES}
        if sorted(out.values()) != [0, 1, 2]:
            raise PlansFactError(f"plans {plans.get('plans_name')!r}: anatomical_axes {axes} is not a permutation")
        return out
    if plans.get("image_reader_writer") in REORIENTING_READERS:
        return axes_from_transpose(plans["transpose_forward"])
    raise PlansFactError(
        f"plans {plans.get('plans_name')!r} do not say which array axis runs head-foot (written by an older "
        f"version, reader {plans.get('image_reader_writer')!r}); re-plan the dataset: vertebraformer "
        f"plan-and-preprocess -d <dataset id>")


def domains(plans: Mapping) -> Tuple[str, ...]:
    """The dataset's domains (source names) in the order of the domain classifier's outputs."""
    found = _ours(plans).get("domains")
    if found is not None:
        return tuple(str(d) for d in found)
    return SOURCES  # older plans: MultiSpine's four sources, the only ones planned then


#: What lies beyond a scan's border, in HU: water, the scale's zero, about what surrounds a crop of the spine
#: (muscle, fat, organs). nnU-Net pads with 0 in normalised units, which under ``CTNormalization`` is the
#: foreground's mean HU: about 180 HU for vertebrae, so a crop smaller than the patch was framed in bone (on the
#: real crops verse014 and TPTBox, binary spine Dice 0.48 and 0.13 with that frame, 0.68 and 0.67 with water).
OUTSIDE_HU = 0.0


@dataclass(frozen=True)
class CTWindow:
    """nnU-Net's ``CTNormalization`` of one channel: HU clipped to ``[lower_hu, upper_hu]`` (the plans'
    ``percentile_00_5`` / ``percentile_99_5``), then ``(hu - mean) / std``. :meth:`to_hu` is plain arithmetic (floats,
    numpy arrays, torch tensors); the trainer's ``NormalisedCT`` adds the window's torch forms."""

    lower_hu: float
    upper_hu: float
    mean: float
    std: float

    @classmethod
    def from_plans(cls, plans: Mapping, channel: int = 0):
        props = plans["foreground_intensity_properties_per_channel"][str(channel)]
        return cls(float(props["percentile_00_5"]), float(props["percentile_99_5"]), float(props["mean"]),
                   max(float(props["std"]), 1e-8))

    def normalised(self, hu: float) -> float:
        """One HU value as the network sees it (clipped to the window)."""
        return (min(max(float(hu), self.lower_hu), self.upper_hu) - self.mean) / self.std

    def to_hu(self, z):
        """Normalised values back to HU (exact inside the window)."""
        return z * self.std + self.mean


def outside_values(plans: Mapping, normalization_schemes: Sequence[str]) -> Tuple[float, ...]:
    """Per input channel, the normalised value that stands for what lies beyond the image: :data:`OUTSIDE_HU`
    through the channel's :class:`CTWindow` for a ``CTNormalization`` channel; nnU-Net's 0 for any other scheme,
    whose values have no fixed meaning."""
    return tuple(CTWindow.from_plans(plans, channel).normalised(OUTSIDE_HU) if scheme == "CTNormalization" else 0.0
                 for channel, scheme in enumerate(normalization_schemes))
