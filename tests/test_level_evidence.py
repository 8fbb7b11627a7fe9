"""The numbering's level evidence: the identification head's dense output reduced to one level distribution per
vertebra instance (inference/level_evidence.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vertebraformer_nn.inference.level_evidence import instance_level_log_probs, transitional_as_neighbours
from vertebraformer_nn.labels import ANATOMICAL_ORDER


def test_instance_level_log_probs_on_a_hand_made_map():
    levels = len(ANATOMICAL_ORDER)
    shape = (6, 5, 4)
    inst = np.zeros(shape, dtype=np.int16)
    inst[0:2] = 3  # 40 voxels
    inst[3:6, :, :2] = 7  # 30 voxels
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(levels,) + shape).astype(np.float32)
    logits[ANATOMICAL_ORDER.index("T12")][inst == 3] += 6.0
    logits[ANATOMICAL_ORDER.index("L1")][inst == 7] += 6.0
    logits[ANATOMICAL_ORDER.index("C1")][inst == 0] += 50.0  # background must not leak in

    out = instance_level_log_probs(logits, inst)
    assert set(out) == {3, 7}
    for v in out.values():
        assert v.shape == (levels,) and v.dtype == np.float64 and np.all(np.isfinite(v))
        assert np.log(np.exp(v).sum()) == pytest.approx(0.0, abs=1e-9)
    assert ANATOMICAL_ORDER[int(np.argmax(out[3]))] == "T12"
    assert ANATOMICAL_ORDER[int(np.argmax(out[7]))] == "L1"

    # exactly the log of the mean softmax over the instance's voxels
    v = logits[:, inst == 7].astype(np.float64)
    sm = np.exp(v - v.max(0)) / np.exp(v - v.max(0)).sum(0)
    np.testing.assert_allclose(out[7], np.log(sm.mean(1)), atol=1e-9)

    # torch input and probability input give the same answer
    t_out = instance_level_log_probs(torch.from_numpy(logits), torch.from_numpy(inst.astype(np.int64)))
    probs = torch.softmax(torch.from_numpy(logits).double(), 0).numpy()
    p_out = instance_level_log_probs(probs, inst, inputs="probabilities")
    for k in (3, 7):
        np.testing.assert_allclose(t_out[k], out[k], atol=1e-6)
        np.testing.assert_allclose(p_out[k], out[k], atol=1e-9)

    # one confidently dissenting voxel does not veto the majority (log of mean, not mean of logs)
    spiky = logits.copy()
    i, j, k = 0, 0, 0
    spiky[:, i, j, k] = -30.0
    spiky[ANATOMICAL_ORDER.index("C7"), i, j, k] = 30.0
    assert ANATOMICAL_ORDER[int(np.argmax(instance_level_log_probs(spiky, inst)[3]))] == "T12"

    assert instance_level_log_probs(logits, np.zeros(shape, dtype=int)) == {}
    with pytest.raises(ValueError, match="spatial"):
        instance_level_log_probs(logits, inst[:5])


def test_transitional_levels_take_the_evidence_of_the_level_beside_them_it_favours():
    at = {name: ANATOMICAL_ORDER.index(name) for name in ("T12", "T13", "L1", "L5", "L6", "C3")}
    probs = np.full((2, len(ANATOMICAL_ORDER)), 0.001)
    probs[0, [at["T12"], at["L1"], at["L5"]]] = [0.5, 0.2, 0.2]  # T13 and L6 never said (0.001)
    probs[1, [at["L1"], at["C3"]]] = [0.6, 0.3]
    log_probs = np.log(probs / probs.sum(axis=1, keepdims=True))
    out = transitional_as_neighbours(log_probs)
    assert np.allclose(np.logaddexp.reduce(out, axis=1), 0.0)
    assert out[0, at["T13"]] == pytest.approx(out[0, at["T12"]]) and out[0, at["L6"]] == pytest.approx(out[0, at["L5"]])
    assert out[1, at["T13"]] == pytest.approx(out[1, at["L1"]])  # the larger of T12 and L1
    others = [k for k in range(len(ANATOMICAL_ORDER)) if k not in (at["T13"], at["L6"])]
    assert np.allclose(np.diff(out[:, others], axis=1), np.diff(log_probs[:, others], axis=1))  # the rest as given
    assert np.array_equal(log_probs, np.log(probs / probs.sum(axis=1, keepdims=True)))  # the input untouched
    with pytest.raises(ValueError, match="log_probs must be"):
        transitional_as_neighbours(log_probs[:, :20])
