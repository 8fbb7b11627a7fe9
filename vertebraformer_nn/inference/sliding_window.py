"""One case's sliding window over every fold, into a ``GridProbabilities``; where its arrays live on a GPU.

:func:`predict_grid` is ``VertebraFormerPredictor.predict_probabilities``: the image padded to the patch where
smaller, as nnU-Net pads it but with what lies beyond a scan (water: ``plans_facts.outside_values``),
nnU-Net's tile positions and Gaussian weights (``tiles``), each tile through every fold's network in turn
(nnU-Net's ``_internal_maybe_mirror_and_predict``: test-time mirroring, autocast as nnU-Net has it on CUDA, bf16 on
the CPU through the network wrapper), probabilities summed into open cells, finished cells reduced (``GridReducer``;
a ``KeptWriter`` receives what ``--save_probabilities`` saves). All folds of a tile run before the next tile, so
memory does not grow with the number of folds (the weights of a fold are swapped in per tile; on a GPU they are
copied there once).

On a GPU (nnU-Net's ``perform_everything_on_device``): the preprocessed image and the open sums live on the device
when they fit in its free memory (:func:`on_device`: their estimated bytes against :data:`DEVICE_SHARE` of
``torch.cuda.mem_get_info``'s free bytes); otherwise the image stays in host memory and each tile is copied over,
the sums stay in host memory. A device run that still runs out of memory is repeated with everything in host
memory (nnU-Net's own fallback). Either way only the reduced result (5 bytes per model-grid voxel plus the spine's
level probabilities) is ever in host memory besides the image, and it arrives cell by cell.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Optional, Sequence, TypeVar

import torch

from ..plans_facts import outside_values
from .grid_probabilities import SIGMOID_HEADS, GridProbabilities, GridReducer
from .tiles import TileAccumulator, TileGrid, open_bytes_per_voxel, tile_weights

__all__ = ["DEVICE_SHARE", "free_device_bytes", "on_device", "with_host_fallback", "pad_to_patch", "predict_grid"]

#: share of the device's free memory that the image and the open sums may take (the rest: the network's
#: activations, the tile's probabilities, the allocator's slack)
DEVICE_SHARE = 0.6

T = TypeVar("T")


def free_device_bytes(device: torch.device) -> Optional[int]:
    """Free memory of a CUDA device in bytes; None where torch cannot say (MPS)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return None


def on_device(device: torch.device, everything_on_device: bool, needed_bytes: int,
              free_bytes: Optional[int]) -> bool:
    """Whether the image and the open sums go to the (non-CPU) device: asked for, and ``needed_bytes`` within
    :data:`DEVICE_SHARE` of ``free_bytes`` (unknown free memory: try, and fall back if it fails)."""
    if device.type == "cpu" or not everything_on_device:
        return False
    return free_bytes is None or needed_bytes <= DEVICE_SHARE * free_bytes


def _out_of_memory(error: BaseException) -> bool:
    return isinstance(error, getattr(torch, "OutOfMemoryError", ())) or "out of memory" in str(error).lower()


def with_host_fallback(attempt: Callable[[bool], T], device_first: bool, device: torch.device,
                       log: Callable[[str], None] = print) -> T:
    """``attempt(True)`` (on the device) when ``device_first``, and ``attempt(False)`` (host memory) when that was
    not asked for or ran out of device memory."""
    if device_first:
        try:
            return attempt(True)
        except RuntimeError as e:
            if not _out_of_memory(e):
                raise
            log(f"prediction on {device} ran out of device memory ({str(e).splitlines()[0][:120]}); "
                "repeating it with the arrays in host memory")
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return attempt(False)


def _autocast(device: torch.device):
    # nnU-Net's choice: autocast on CUDA only (the CPU's bf16 is the network wrapper's, predictor.DenseOutput)
    return torch.autocast(device.type, enabled=True) if device.type == "cuda" else nullcontext()


def pad_to_patch(data: torch.Tensor, patch: Sequence[int], values: Sequence[float]):
    """``data`` (C, X, Y, Z) padded on both sides of each axis to at least ``patch``, as nnU-Net's ``pad_nd_image``
    pads, channel c with ``values[c]`` (``plans_facts.outside_values``: water, not nnU-Net's 0); returns the padded
    tensor and the slicer of the image within it."""
    from acvl_utils.cropping_and_padding.padding import pad_nd_image

    if len(values) != data.shape[0]:
        raise ValueError(f"{len(values)} padding values for an image of {data.shape[0]} channels")
    parts = [pad_nd_image(data[c:c + 1], list(patch), "constant", {"value": float(v)}, True, None)
             for c, v in enumerate(values)]
    return torch.cat([p for p, _ in parts]), (slice(None), *parts[0][1][1:])


@torch.inference_mode()
def predict_grid(predictor, data: torch.Tensor, keep=None, log: Callable[[str], None] = print,
                 reducer: Callable = GridReducer) -> GridProbabilities:
    """The probabilities of one preprocessed image (1, X, Y, Z) on the model grid (module docstring); ``keep``:
    a ``probabilities.KeptWriter`` for ``--save_probabilities``, or None. ``reducer``: what receives the finished
    blocks, called as ``GridReducer`` (another reduction, e.g. ``coarse_stage.LevelGrid``'s dense levels)."""
    patch = [int(p) for p in predictor.configuration_manager.patch_size]
    padded, revert = pad_to_patch(data, patch, outside_values(predictor.plans_manager.plans,
                                                              predictor.configuration_manager.normalization_schemes))
    grid = TileGrid(padded.shape[1:], patch, predictor.tile_step_size)
    layout = predictor.layout
    n_vert = layout["seg"][1] - layout["seg"][0] - 1
    n_id = layout["id"][1] - layout["id"][0] if "id" in layout else 0
    sigmoids = [h for h in SIGMOID_HEADS if h in layout]
    device = torch.device(predictor.device)
    needed = padded.numel() * padded.element_size() + \
        grid.peak_open_voxels() * open_bytes_per_voxel(n_vert + n_id, len(sigmoids))
    first = on_device(device, predictor.perform_everything_on_device, needed,
                      free_device_bytes(device) if device.type != "cpu" else None)
    network = predictor.network.to(device).eval()
    folds = predictor.list_of_parameters
    if len(folds) > 1 and device.type != "cpu":  # swapped per tile: copy them to the device once
        folds = [{k: v.to(device) for k, v in p.items()} for p in folds]
    elif len(folds) == 1:
        network.net.load_state_dict(folds[0])

    def attempt(everything_on_device: bool) -> GridProbabilities:
        where = device if everything_on_device else torch.device("cpu")
        image = padded.to(where)
        if keep is not None:
            keep.reset()  # a device attempt that ran out of memory may have written some rows
        reduced = reducer(data.shape[1:], n_vert + 1, list(layout), keep)
        accumulator = TileAccumulator(grid, reduced, revert[1:], n_vert, n_id, sigmoids, where)
        weight = tile_weights(patch, device)
        with _autocast(device):
            for tile in grid.tiles():
                x = torch.clone(image[(slice(None), *grid.tile_region(tile))][None],
                                memory_format=torch.contiguous_format).to(device)
                for parameters in folds:
                    if len(folds) > 1:
                        network.net.load_state_dict(parameters)
                    logits = predictor._internal_maybe_mirror_and_predict(x)[0].float()
                    seg = torch.softmax(logits[slice(*layout["seg"])], dim=0)
                    ident = torch.softmax(logits[slice(*layout["id"])], dim=0) \
                        if accumulator.needs_identification(seg) else None
                    maps = {h: torch.sigmoid(logits[layout[h][0]]) for h in sigmoids}
                    accumulator.add(tile, weight, seg, ident, maps)
                    del logits, seg, ident, maps
                accumulator.tile_done(tile)
        accumulator.check_finished()
        predictor.last_run = {"sums_on": str(where), "peak_sums_bytes": accumulator.peak_bytes,
                              "tiles": len(grid.tiles()), "estimated_device_bytes": needed}
        return reduced.result()

    return with_host_fallback(attempt, first, device, log)
