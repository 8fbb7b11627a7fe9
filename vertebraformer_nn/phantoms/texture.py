"""Procedural texture: a smooth random field with a chosen grain, as random Fourier features.

f(p) = amplitude * sqrt(2 / K) * sum_k a_k cos(2 pi w_k . p + phi_k), with K random spatial frequencies w_k (cycles
per mm, around 1 / grain, shorter along a chosen axis for an elongated grain) and phases phi_k: a stationary,
roughly Gaussian field of standard deviation ``amplitude``. It is a function of position, not of a grid, so the
same bone shows the same trabeculae in every scan of a subject and on any orientation. Sampling it on voxels is
done right: each wave is attenuated by the voxel's own averaging, a_k = exp(-2 pi^2 |w_k|^2 s^2) for a
Gaussian of sigma s (about a third of the voxel), so a coarse scan sees the mottled average, not aliasing.
Used for trabecular bone (render.py) and parenchyma (softtissue.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Texture:
    freqs: np.ndarray  # (K, 3) cycles per mm, in the frame the texture is evaluated in
    phases: np.ndarray  # (K,)
    amplitude: float

    def __call__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, voxel_mm: float) -> np.ndarray:
        """The field at points (x, y, z) (mm, float32 arrays of one shape), averaged over voxels of ``voxel_mm``."""
        s = voxel_mm / 3.0
        gain = np.exp(-2.0 * np.pi ** 2 * s * s * np.sum(self.freqs ** 2, axis=1))
        keep = gain > 0.02  # waves the voxels average away cost nothing
        out = np.zeros(np.shape(x), np.float32)
        two_pi = np.float32(2.0 * np.pi)
        for (fx, fy, fz), ph, g in zip(self.freqs[keep], self.phases[keep], gain[keep]):
            out += np.float32(g) * np.cos(two_pi * (np.float32(fx) * x + np.float32(fy) * y + np.float32(fz) * z)
                                          + np.float32(ph))
        return out * np.float32(self.amplitude * np.sqrt(2.0 / len(self.phases)))


def _waves(rng: np.random.Generator, n: int, grain_mm: float, elongation: float):
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    freq = direction / (grain_mm * rng.uniform(0.6, 1.6, size=(n, 1)))
    freq[:, 2] /= elongation
    return freq, rng.uniform(0.0, 2.0 * np.pi, size=n)


def make_texture(rng: np.random.Generator, amplitude: float, grain_mm: float, elongation: float = 1.0,
                 n: int = 24, detail: int = 0) -> Texture:
    """A texture of standard deviation ``amplitude`` whose blobs are about ``grain_mm`` across, ``elongation``
    times longer along z (vertical trabeculae), of ``n`` waves drawn from ``rng`` and ``detail`` more from a child
    stream (``rng.spawn``): a few dozen waves show as a lattice of crossing stripes, a hundred as a mottled field, and
    the child leaves ``rng``'s own draws, and everything sampled from it after, as they were."""
    freqs, phases = _waves(rng, n, grain_mm, elongation)
    if detail:
        more = _waves(rng.spawn(1)[0], detail, grain_mm, elongation)
        freqs, phases = np.concatenate([freqs, more[0]]), np.concatenate([phases, more[1]])
    return Texture(freqs, phases, float(amplitude))
