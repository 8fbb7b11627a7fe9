"""The planner's presets resolve every size of the network into the plans; plans written by version 0.1.0 (a preset
name and the patch only) still build the network that version built, and its model folders still predict."""
from __future__ import annotations

import json
import shutil
import warnings

import pytest

from vertebraformer_nn.network import ARCH_KWARGS, architecture_dict
from vertebraformer_nn.planners import presets
from vertebraformer_nn.planners.presets import complete_legacy_arch_kwargs, network_arch_kwargs

OLD_CPU = {"patch_size": [88, 56, 48], "token_size": [8, 8, 8], "preset": "cpu", "num_domains": 4}


@pytest.mark.parametrize("preset", sorted(presets.PRESETS))
def test_a_preset_resolves_every_argument_of_the_network(preset):
    kwargs = network_arch_kwargs(preset, (64, 64, 128), (8, 8, 8), num_domains=3)
    assert set(kwargs) == set(ARCH_KWARGS)
    assert architecture_dict(kwargs)["arch_kwargs"] == kwargs  # what the plans hold, JSON values
    json.dumps(kwargs)
    assert kwargs["num_domains"] == 3 and kwargs["modulation_blocks"] == presets.default_modulation_blocks(
        presets.PRESETS[preset]["depth"])
    assert network_arch_kwargs(preset, (64, 64, 128), (8, 8, 8), 3, depth=2)["modulation_blocks"] == [0, 1]
    with pytest.raises(ValueError, match="unknown VertebraFormer preset"):
        network_arch_kwargs("huge", (64, 64, 128), (8, 8, 8), 3)


def test_modulation_sites_spread_over_the_encoder():
    assert presets.default_modulation_blocks(4) == [0, 1, 2, 3]
    assert presets.default_modulation_blocks(12) == [2, 5, 8, 11]
    assert presets.default_modulation_blocks(24) == [5, 11, 17, 23]
    assert presets.default_modulation_blocks(2) == [0, 1]


def test_plans_of_version_0_1_get_the_sizes_that_version_built(monkeypatch):
    with pytest.warns(UserWarning, match="plan-and-preprocess -d <dataset id>"):
        old = complete_legacy_arch_kwargs(OLD_CPU, "VertebraFormerCPUPlans")
    # today's cpu network without the disc head, which version 0.1 did not have
    assert old == network_arch_kwargs("cpu", [88, 56, 48], [8, 8, 8], num_domains=4, use_boundary_head=False)
    # frozen: editing today's preset changes new plans, never what an old model folder builds
    monkeypatch.setitem(presets.PRESETS["cpu"], "embed_dim", 96)
    with pytest.warns(UserWarning):
        assert complete_legacy_arch_kwargs(OLD_CPU)["embed_dim"] == 192
    with pytest.warns(UserWarning):
        base = complete_legacy_arch_kwargs({"patch_size": [64, 64, 64], "preset": "base"})
    assert (base["embed_dim"], base["depth"], base["modulation_blocks"], base["token_size"]) == \
        (396, 12, [2, 5, 8, 11], [8, 8, 8])
    with pytest.raises(ValueError, match="re-plan"):
        complete_legacy_arch_kwargs({"patch_size": [64, 64, 64], "preset": "huge"})
    # explicit entries are returned as they are, without a warning
    new = network_arch_kwargs("cpu", [64, 64, 64], [8, 8, 8], 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert complete_legacy_arch_kwargs(new) == new


def _old_form(plans: dict) -> dict:
    """The plans as version 0.1.0 wrote them: a preset name and the patch in arch_kwargs, a head_foot_axis key,
    neither anatomical axes nor domains."""
    old = json.loads(json.dumps(plans))
    c = old["configurations"]["3d_fullres"]["architecture"]
    c["arch_kwargs"] = {"patch_size": c["arch_kwargs"]["patch_size"], "token_size": c["arch_kwargs"]["token_size"],
                        "preset": "cpu", "num_domains": 4}
    ours = old["vertebraformer"]
    ours.pop("anatomical_axes")
    ours.pop("domains")
    ours["head_foot_axis"] = 0
    return old


def test_a_model_folder_of_version_0_1_still_predicts(tiny_trained_fold, tmp_path):
    """A copy of the tiny model folder with its plans.json in the old form and its checkpoint without the disc head
    (0.1 had none): the predictor builds the same network less that head, the weights load strictly and the
    segmentation logits are the same."""
    import torch

    from vertebraformer_nn.inference.predictor import VertebraFormerPredictor

    model = tiny_trained_fold.parent
    old_model = tmp_path / model.name
    (old_model / "fold_0").mkdir(parents=True)
    shutil.copy(model / "dataset.json", old_model)
    checkpoint = torch.load(tiny_trained_fold / "checkpoint_final.pth", map_location="cpu", weights_only=True)
    checkpoint["network_weights"] = {k: v for k, v in checkpoint["network_weights"].items()
                                     if not k.startswith("boundary_head.")}
    torch.save(checkpoint, old_model / "fold_0" / "checkpoint_final.pth")
    plans = json.loads((model / "plans.json").read_text())
    assert plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["embed_dim"] == 192  # the cpu preset
    (old_model / "plans.json").write_text(json.dumps(_old_form(plans)))

    predictors = {}
    for name, folder in (("new", model), ("old", old_model)):
        predictors[name] = VertebraFormerPredictor(device="cpu", bf16=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            predictors[name].initialize_from_trained_model_folder(str(folder), [0])
        assert any("VertebraFormer-nn 0.1" in str(w.message) for w in caught) == (name == "old")
    x = torch.randn(1, 1, *plans["configurations"]["3d_fullres"]["patch_size"])
    with torch.no_grad():
        logits = {name: p.network(x) for name, p in predictors.items()}
    assert torch.equal(logits["new"][:, :-1], logits["old"])  # the dense heads: the disc head's channel is last
    assert predictors["new"].network.layout == {**predictors["old"].network.layout, "boundary": (54, 55)}
