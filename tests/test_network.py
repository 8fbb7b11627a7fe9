"""The VertebraFormer network: shapes, output modes, modulation, weight loading, nnU-Net construction
and end-to-end trainability. Small nets, one thread: fast."""
from __future__ import annotations

import inspect
import itertools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vertebraformer_nn.labels import ANATOMICAL_ORDER
from vertebraformer_nn.network import (
    HEAD_KEYS,
    NETWORK_CLASS_NAME,
    VertebraFormer,
    all_heads,
    architecture_dict,
    output_mode,
)

NUM_CLASSES = 27  # background + 26 levels
TINY = dict(preset="cpu", embed_dim=48, depth=2, num_heads=1, decoder_min_channels=16, code_dim=8)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)


def tiny_net(patch=(32, 32, 32), token=(8, 8, 8), **kwargs) -> VertebraFormer:
    return VertebraFormer(1, NUM_CLASSES, patch_size=patch, token_size=token, **{**TINY, **kwargs})


def shapes(out):
    return {k: None if v is None else tuple(v.shape) for k, v in out.items()}


@pytest.mark.parametrize(
    "patch, token",
    [((32, 32, 32), (8, 8, 8)), ((16, 32, 48), (4, 8, 8)), ((16, 16, 32), (2, 4, 8)), ((8, 16, 16), (2, 2, 2))],
)
def test_output_shapes_isotropic_and_anisotropic(patch, token):
    net = tiny_net(patch, token).eval()
    x = torch.randn(2, 1, *patch)
    with torch.no_grad(), all_heads(net):
        out = net(x)
    assert shapes(out) == {
        "seg": (2, NUM_CLASSES, *patch),
        "id": (2, len(ANATOMICAL_ORDER), *patch),
        "lesion": (2, 1, *patch),
        "domain_logits": (2, 4),
        "code": (2, 8),
    }
    assert net.token_grid == tuple(p // t for p, t in zip(patch, token))


def test_forward_returns_seg_only_and_flag_returns_every_head():
    net = tiny_net().eval()
    x = torch.randn(2, 1, 32, 32, 32)
    with torch.no_grad():
        seg = net(x)
        assert isinstance(seg, torch.Tensor) and seg.shape == (2, NUM_CLASSES, 32, 32, 32)
        with all_heads(net) as same:
            assert same is net and net.output_mode == "all"
            out = net(x)
        assert net.output_mode == "seg"  # restored
        assert tuple(out) == HEAD_KEYS
        assert torch.equal(out["seg"], seg)
        dense = net(x, heads="dense")
        layout = net.dense_layout()
        assert layout == {"seg": (0, 27), "id": (27, 53), "lesion": (53, 54)} and net.num_dense_channels == 54
        assert torch.equal(dense[:, slice(*layout["seg"])], seg)
        assert torch.equal(dense[:, slice(*layout["id"])], out["id"])
        assert torch.equal(dense[:, slice(*layout["lesion"])], out["lesion"])

        # the flag is reached through DDP-like (.module) and compile-like (._orig_mod) wrappers
        class Wrapper(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.module = inner

            def forward(self, x):
                return self.module(x)

        with output_mode(Wrapper(net), "all"):
            assert isinstance(Wrapper(net)(x), dict)
        with pytest.raises(ValueError, match="output mode"):
            net(x, heads="everything")

    # switched-off heads: None in the dict, absent from the dense packing
    off = tiny_net(use_identification=False, use_lesion_head=False, use_modulation=False).eval()
    with torch.no_grad():
        out = off(x, heads="all")
        assert out["id"] is None and out["lesion"] is None and out["code"] is None and out["domain_logits"] is None
        assert off.dense_layout() == {"seg": (0, 27)} and off(x, heads="dense").shape[1] == 27


def test_modulation_is_identity_at_init_and_acts_when_perturbed():
    on = tiny_net(use_modulation=True).eval()
    off = tiny_net(use_modulation=False).eval()
    off.load_state_dict(on.state_dict(), strict=True)
    x = torch.randn(2, 1, 32, 32, 32)
    with torch.no_grad():
        ref_on, ref_off = on(x, heads="all"), off(x, heads="all")
        for key in ("seg", "id", "lesion"):
            assert torch.equal(ref_on[key], ref_off[key]), key
        for film in (on.modulation.encoder_film, on.modulation.decoder_film):
            assert len(film) > 0
            for gen in film:
                gamma, beta = gen(ref_on["code"])
                assert torch.equal(gamma, torch.ones_like(gamma)) and torch.equal(beta, torch.zeros_like(beta))

        # perturb the encoder sites only, then the decoder sites only: each changes the output
        for sites in (on.modulation.encoder_film, on.modulation.decoder_film):
            state = {k: v.clone() for k, v in on.state_dict().items()}
            for p in sites.parameters():
                p.add_(0.05 * torch.randn_like(p))
            assert not torch.allclose(on(x), ref_on["seg"], atol=1e-5)
            on.load_state_dict(state)
            assert torch.equal(on(x), ref_on["seg"])


def test_code_depends_on_the_image_not_on_a_domain_id():
    net = tiny_net().eval()
    # no domain argument anywhere in the forward signature
    assert list(inspect.signature(net.forward).parameters) == ["x", "heads"]
    a = torch.randn(1, 1, 32, 32, 32)
    b = 3.0 * torch.randn(1, 1, 32, 32, 32) + 1.0  # another "scanner": other level and contrast
    with torch.no_grad():
        code_ab = net(torch.cat([a, b]), heads="all")["code"]
        code_aa = net(torch.cat([a, a]), heads="all")["code"]
        code_a = net(a, heads="all")["code"]
    assert not torch.allclose(code_ab[0], code_ab[1])
    # per-sample: a sample's code does not depend on its batch mates (no batch statistics)
    assert torch.allclose(code_ab[0], code_aa[1], atol=1e-6) and torch.allclose(code_a[0], code_aa[0], atol=1e-6)


def test_state_dict_loads_strictly_across_every_switch_combination():
    combos = list(itertools.product([True, False], repeat=3))
    nets = {c: tiny_net(use_modulation=c[0], use_identification=c[1], use_lesion_head=c[2]) for c in combos}
    keys = {c: tuple(n.state_dict()) for c, n in nets.items()}
    assert len(set(keys.values())) == 1
    for src, dst in itertools.product(combos, repeat=2):
        nets[dst].load_state_dict(nets[src].state_dict(), strict=True)
    # a disabled component is frozen (DDP / AdamW see only what is trained), an enabled one is not
    net = nets[(False, False, False)]
    for module in (net.modulation, net.id_head, net.lesion_head):
        assert not any(p.requires_grad for p in module.parameters())
    assert all(p.requires_grad for p in nets[(True, True, True)].parameters())
    # plain tensors only: the state_dict round-trips through torch.save with weights_only loading
    import io

    buf = io.BytesIO()
    torch.save(nets[combos[0]].state_dict(), buf)
    buf.seek(0)
    nets[combos[-1]].load_state_dict(torch.load(buf, weights_only=True), strict=True)


def test_geometry_errors_are_clear():
    with pytest.raises(ValueError, match="not divisible by token_size"):
        tiny_net(patch=(32, 30, 32))
    with pytest.raises(ValueError, match="not divisible by token_size"):
        tiny_net(patch=(16, 32, 32), token=(32, 8, 8))
    with pytest.raises(ValueError, match="powers of two"):
        tiny_net(token=(8, 6, 8))
    with pytest.raises(ValueError, match="multiple of 6"):
        tiny_net(embed_dim=64, num_heads=2)
    with pytest.raises(ValueError, match="unknown VertebraFormer preset"):
        tiny_net(preset="huge")
    net = tiny_net()
    with pytest.raises(ValueError, match="accepts only that patch"):
        net(torch.randn(1, 1, 48, 32, 32))


def test_get_network_from_plans_builds_it_from_the_dotted_path():
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    arch = architecture_dict([16, 32, 32], [4, 8, 8], **TINY, num_domains=4)
    arch = json.loads(json.dumps(arch))  # what plans.json holds
    assert arch["network_class_name"] == NETWORK_CLASS_NAME == "vertebraformer_nn.network.VertebraFormer"
    for deep_supervision in (True, False, None):
        net = get_network_from_plans(
            arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"], 1, NUM_CLASSES,
            allow_init=True, deep_supervision=deep_supervision,
        )
        assert isinstance(net, VertebraFormer)
    net.eval()
    json.dumps(net.arch_config)  # the resolved configuration is JSON too
    # nnU-Net's stock set_deep_supervision_enabled writes network.decoder.deep_supervision: harmless
    net.decoder.deep_supervision = True
    with torch.no_grad():
        assert net(torch.randn(1, 1, 16, 32, 32)).shape == (1, NUM_CLASSES, 16, 32, 32)
    # the planner's VRAM proxy must not raise, for the built patch or any other
    est = net.compute_conv_feature_map_size((16, 32, 32))
    assert isinstance(est, int) and est > 0
    assert net.compute_conv_feature_map_size([32, 64, 64]) > est
    assert net.compute_conv_feature_map_size(np.array([17, 33, 30])) > 0
    with pytest.raises(ValueError, match="not divisible"):
        architecture_dict([16, 30, 32], [4, 8, 8])


def test_a_few_optimizer_steps_reduce_the_combined_loss():
    """Every head trains end to end: seg (CE), id (CE on vertebra voxels), lesion (BCE), domain code (CE)."""
    patch = (16, 32, 32)
    net = tiny_net(patch, (4, 8, 8)).train()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, *patch, generator=g)
    seg_t = torch.randint(0, NUM_CLASSES, (2, *patch), generator=g)
    lesion_t = (torch.rand(2, 1, *patch, generator=g) > 0.9).float()
    domain_t = torch.tensor([0, 3])
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=0.0)

    def loss_fn(out):
        fg = seg_t > 0
        id_t = torch.where(fg, seg_t - 1, torch.full_like(seg_t, -100))  # background ignored
        return (
            F.cross_entropy(out["seg"], seg_t)
            + F.cross_entropy(out["id"], id_t, ignore_index=-100)
            + F.binary_cross_entropy_with_logits(out["lesion"], lesion_t)
            + F.cross_entropy(out["domain_logits"], domain_t)
        )

    losses = []
    with all_heads(net):
        for step in range(6):
            opt.zero_grad()
            loss = loss_fn(net(x))
            loss.backward()
            if step == 0:
                missing = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
                assert not missing, missing
            opt.step()
            losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1, losses
