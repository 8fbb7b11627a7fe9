"""The facts the plans hold about a model's data (plans_facts), the source vocabulary and the head-foot geometry."""
from __future__ import annotations

import numpy as np
import pytest

from vertebraformer_nn import plans_facts
from vertebraformer_nn.geometry import lateral_axis_after_transpose, superior_axis, superior_axis_after_transpose
from vertebraformer_nn.sources import SOURCES, UNKNOWN_DOMAIN, domain_index


def _direction(columns):
    """Row-major 3x3 direction from the world vectors of image axes i, j, k."""
    return tuple(np.asarray(columns, dtype=float).T.ravel())


@pytest.mark.parametrize("columns, expected", [
    ([[1, 0, 0], [0, 1, 0], [0, 0, 1]], (0, 1)),  # LPS: k runs to the head, numpy axis 0
    ([[-1, 0, 0], [0, -1, 0], [0, 0, -1]], (0, -1)),  # RAI-like: k runs to the feet
    ([[0, 1, 0], [0, 0, -1], [-1, 0, 0]], (1, -1)),  # PIR (VerSe): image axis j runs to the feet, numpy axis 1
    ([[0, 0, 1], [1, 0, 0], [0, 1, 0]], (2, 1)),  # image axis i runs to the head, numpy axis 2
])
def test_superior_axis_reads_the_direction_columns(columns, expected):
    assert superior_axis(_direction(columns)) == expected


def test_superior_axis_picks_the_dominant_component_of_an_oblique_direction():
    a = np.deg2rad(15)
    columns = [[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]]
    assert superior_axis(_direction(columns)) == (0, 1)


def test_superior_axis_after_transpose_follows_nnunet_transpose():
    pir = _direction([[0, 1, 0], [0, 0, -1], [-1, 0, 0]])  # numpy axis 1 is head-foot
    assert superior_axis_after_transpose(pir, [0, 1, 2]) == (1, -1)
    assert superior_axis_after_transpose(pir, [1, 0, 2]) == (0, -1)
    assert superior_axis_after_transpose(pir, [2, 0, 1]) == (2, -1)

    # PIR: image axis k (numpy axis 0) runs to the right, left-right; after the transposes it follows them
    assert [lateral_axis_after_transpose(pir, t) for t in ([0, 1, 2], [1, 0, 2], [2, 0, 1])] == [0, 1, 1]
    # 45 degrees between left-right and head-foot: both closest to one axis, no lateral axis to tell
    tilted = _direction([[1, 0, 1], [0, 1, 0], [-1, 0, 1]])
    assert lateral_axis_after_transpose(tilted, [0, 1, 2]) is None


def test_domain_index():
    assert domain_index("ctspine1k") == SOURCES.index("ctspine1k") == 1
    assert domain_index("elsewhere") == UNKNOWN_DOMAIN
    assert domain_index(None) == UNKNOWN_DOMAIN
    assert domain_index("b", ["a", "b"]) == 1


def test_anatomical_axes_from_the_plans_key():
    plans = {"transpose_forward": [0, 1, 2], "image_reader_writer": "SimpleITKIO",
             "vertebraformer": {"anatomical_axes": {"si": 2, "ap": 0, "lr": 1}, "domains": ["a", "b"]}}
    assert plans_facts.anatomical_axes(plans) == {"si": 2, "ap": 0, "lr": 1}
    assert plans_facts.domains(plans) == ("a", "b")


def test_older_plans_of_a_reorienting_reader_derive_the_axes_from_the_transpose():
    plans = {"transpose_forward": [2, 0, 1], "image_reader_writer": "SimpleITKIOWithReorient", "vertebraformer": {}}
    assert plans_facts.anatomical_axes(plans) == {"si": 1, "ap": 2, "lr": 0}
    assert plans_facts.domains(plans) == SOURCES


def test_older_plans_of_a_plain_reader_are_refused_with_the_command_that_replans():
    plans = {"plans_name": "Old", "transpose_forward": [0, 1, 2], "image_reader_writer": "SimpleITKIO"}
    with pytest.raises(plans_facts.PlansFactError, match="plan-and-preprocess"):
        plans_facts.anatomical_axes(plans)


def test_anatomical_axes_must_be_a_permutation():
    plans = {"vertebraformer": {"anatomical_axes": {"si": 0, "ap": 0, "lr": 1}}}
    with pytest.raises(plans_facts.PlansFactError, match="permutation"):
        plans_facts.anatomical_axes(plans)


def test_outside_values_are_water_through_the_ct_window_and_zero_for_other_schemes():
    window = {"mean": 180.0, "std": 240.0, "percentile_00_5": -384.0, "percentile_99_5": 1955.0}
    plans = {"foreground_intensity_properties_per_channel": {"0": window, "1": dict(window, percentile_00_5=50.0)}}
    ct, other = plans_facts.outside_values(plans, ["CTNormalization", "ZScoreNormalization"])
    # nnU-Net's 0 would be 180 HU, the foreground's (bone's) mean; water is 0 HU
    assert ct == pytest.approx((0.0 - 180.0) / 240.0) and ct * 240.0 + 180.0 == pytest.approx(plans_facts.OUTSIDE_HU)
    assert other == 0.0
    # a window that does not reach down to water clips it, as the normalisation clips the image
    assert plans_facts.outside_values(plans, ["ZScoreNormalization", "CTNormalization"])[1] == \
        pytest.approx((50.0 - 180.0) / 240.0)


def test_outside_values_of_the_built_in_model_are_water():
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from vertebraformer_nn.builtin_model import FOLDER

    plans = PlansManager(str(FOLDER / "plans.json"))
    window = plans.foreground_intensity_properties_per_channel["0"]
    for name in ("3d_fullres", "3d_lowres"):
        (value,) = plans_facts.outside_values(plans.plans, plans.get_configuration(name).normalization_schemes)
        assert value * window["std"] + window["mean"] == pytest.approx(0.0) and value < -0.5


def test_ct_window_is_nnunets_ct_normalisation_and_its_inverse_inside_the_window():
    """plans_facts.CTWindow is the one statement of the window: the predictor's padding, the trainer's intensity
    randomisation and the HU the post-processing search reads back from preprocessed cases all go through it."""
    from nnunetv2.preprocessing.normalization.default_normalization_schemes import CTNormalization

    from vertebraformer_nn.inference.model_grid_hu import from_preprocessed

    window = {"mean": 180.0, "std": 240.0, "percentile_00_5": -384.0, "percentile_99_5": 1955.0}
    plans = {"foreground_intensity_properties_per_channel": {"0": window},
             "configurations": {"3d_fullres": {"normalization_schemes": ["CTNormalization"]},
                                "other": {"normalization_schemes": ["ZScoreNormalization"]}}}
    ct = plans_facts.CTWindow.from_plans(plans)
    hu = np.array([-1000.0, -384.0, 0.0, 180.0, 700.0, 1955.0, 3000.0], dtype=np.float32)
    z = CTNormalization(intensityproperties=window).run(hu.copy())
    assert [ct.normalised(h) for h in hu] == pytest.approx(z.tolist(), abs=1e-6)
    back = from_preprocessed(z.reshape(1, 1, 1, -1), plans, "3d_fullres")  # (C, X, Y, Z)
    assert back.dtype == np.float32
    # exact inside the window, clipped outside it
    assert back.ravel().tolist() == pytest.approx(np.clip(hu, -384.0, 1955.0).tolist(), abs=1e-3)
    assert from_preprocessed(z.reshape(1, 1, 1, -1), plans, "other") is None  # nothing to undo
