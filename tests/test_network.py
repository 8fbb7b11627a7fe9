"""The VertebraFormer network: explicit construction, shapes, output modes, modulation (identity at initialisation,
not after a step), frozen switched-off heads, strict weight loading, Eva's own forward with FiLM hooks, nnU-Net
construction and trainability (a tiny batch is overfit). Small nets, one thread: fast."""
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
    ARCH_KWARGS,
    HEAD_KEYS,
    NETWORK_CLASS_NAME,
    VertebraFormer,
    all_heads,
    architecture_dict,
    output_mode,
)
from vertebraformer_nn.planners.presets import network_arch_kwargs

NUM_CLASSES = 27  # background + 26 levels
TINY = dict(embed_dim=48, depth=2, num_heads=1, decoder_min_channels=16, code_dim=8)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)


def tiny_arch(patch=(32, 32, 32), token=(8, 8, 8), num_domains=4, **kwargs) -> dict:
    """Every argument of a small network: the cpu preset with TINY's sizes and ``kwargs`` on top."""
    return network_arch_kwargs("cpu", patch, token, num_domains, **{**TINY, **kwargs})


def tiny_net(patch=(32, 32, 32), token=(8, 8, 8), num_classes=NUM_CLASSES, **kwargs) -> VertebraFormer:
    return VertebraFormer(1, num_classes, **tiny_arch(patch, token, **kwargs))


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
        "boundary": (2, 1, *patch),
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
        assert layout == {"seg": (0, 27), "id": (27, 53), "lesion": (53, 54), "boundary": (54, 55)}
        assert net.num_dense_channels == 55
        from vertebraformer_nn.inference.grid_probabilities import DENSE_HEADS

        assert tuple(layout) == DENSE_HEADS  # the order prediction reads the channels in
        for head in ("id", "lesion", "boundary"):
            assert torch.equal(dense[:, slice(*layout[head])], out[head])
        assert torch.equal(dense[:, slice(*layout["seg"])], seg)

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
    off = tiny_net(use_identification=False, use_lesion_head=False, use_modulation=False,
                   use_boundary_head=False).eval()
    with torch.no_grad():
        out = off(x, heads="all")
        assert out["id"] is None and out["lesion"] is None and out["code"] is None and out["domain_logits"] is None
        assert out["boundary"] is None
        assert off.dense_layout() == {"seg": (0, 27)} and off(x, heads="dense").shape[1] == 27


def _step(net, x, seg_t, domain_t, lr=1e-2):
    """One AdamW step on the segmentation and domain-code losses."""
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    with all_heads(net):
        out = net(x)
    loss = F.cross_entropy(out["seg"], seg_t)
    if out["domain_logits"] is not None:
        loss = loss + F.cross_entropy(out["domain_logits"], domain_t)
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_modulation_is_identity_at_init_and_not_after_a_step():
    on = tiny_net(use_modulation=True).train()
    off = tiny_net(use_modulation=False).train()
    off.load_state_dict(on.state_dict(), strict=True)
    x = torch.randn(2, 1, 32, 32, 32)
    with torch.no_grad():
        ref_on, ref_off = on(x, heads="all"), off(x, heads="all")
    for key in ("seg", "id", "lesion"):
        assert torch.equal(ref_on[key], ref_off[key]), key  # bit for bit: FiLM is (1, 0) exactly
    for film in (on.modulation.encoder_film, on.modulation.decoder_film):
        assert len(film) > 0
        for gen in film:
            gamma, beta = gen(ref_on["code"])
            assert torch.equal(gamma, torch.ones_like(gamma)) and torch.equal(beta, torch.zeros_like(beta))

    _step(on, x, torch.randint(0, NUM_CLASSES, (2, 32, 32, 32)), torch.tensor([0, 3]))
    moved = [n for n, p in on.modulation.named_parameters() if "film" in n and torch.count_nonzero(p) > 0]
    assert any(n.startswith("encoder_film") for n in moved) and any(n.startswith("decoder_film") for n in moved)
    off.load_state_dict(on.state_dict(), strict=True)  # the same weights, modulation not applied
    with torch.no_grad():
        after_on, after_off = on(x), off(x)
        code = on(x, heads="all")["code"]
    assert not torch.allclose(after_on, after_off, atol=1e-6)
    gamma, beta = on.modulation.encoder_film[0](code)
    assert not torch.equal(gamma, torch.ones_like(gamma)) and torch.count_nonzero(beta) > 0


def test_encoder_runs_evas_forward_with_film_after_the_planned_blocks():
    """The FiLM hooks give exactly Eva's blocks with a FiLM after each modulated block (the computation written
    out here by hand); no other block is touched."""
    net = tiny_net(depth=3, modulation_blocks=[1]).eval()
    assert [len(b._forward_hooks) for b in net.eva.blocks] == [0, 1, 0]
    with torch.no_grad():
        for p in net.modulation.film_parameters():
            p.add_(0.1 * torch.randn_like(p))
        x = torch.randn(2, 1, 32, 32, 32)
        tokens = net.down_projection(x).flatten(2).transpose(1, 2)
        code = net.modulation.compute_code(tokens)
        t, rope = tokens + net.eva.pos_embed, net.eva.rope.get_embed()
        for i, block in enumerate(net.eva.blocks):
            t = block.forward(t, rope=rope)  # forward() itself: no hooks
            if i == 1:
                t = net.modulation.modulate_tokens(0, t, code)
        expected = net.eva.norm(t)
        with net._encoder_code(code):
            got, _ = net.eva(tokens)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert net._code is None  # the code does not outlive its forward pass


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
    # loaded weights give the source's outputs for every head the destination computes
    src = nets[(True, True, True)].eval()
    with torch.no_grad():
        for p in src.modulation.film_parameters():
            p.add_(0.05 * torch.randn_like(p))
        x = torch.randn(1, 1, 32, 32, 32)
        ref = src(x, heads="all")
        for combo, dst in nets.items():
            dst.load_state_dict(src.state_dict(), strict=True)
            out = dst.eval()(x, heads="all")
            if combo[0]:  # modulation on: the same network for the heads it computes
                for key, enabled in (("seg", True), ("id", combo[1]), ("lesion", combo[2]), ("code", True)):
                    assert (out[key] is None) != enabled and (not enabled or torch.equal(out[key], ref[key])), key
            else:
                assert not torch.allclose(out["seg"], ref["seg"])  # the (perturbed) modulation is not applied
    # plain tensors only: the state_dict round-trips through torch.save with weights_only loading
    import io

    buf = io.BytesIO()
    torch.save(nets[combos[0]].state_dict(), buf)
    buf.seek(0)
    nets[combos[-1]].load_state_dict(torch.load(buf, weights_only=True), strict=True)


def test_the_disc_head_exists_only_when_planned_and_older_weights_load_strictly_without_it():
    """Plans and checkpoints written before the disc head have no ``use_boundary_head``: the network built from them
    has no such module, so their weights load strictly; with the head, only its own parameters are new."""
    old_kwargs = {k: v for k, v in tiny_arch().items() if k != "use_boundary_head"}
    old = VertebraFormer(1, NUM_CLASSES, **old_kwargs)
    assert old.boundary_head is None and "boundary" not in old.dense_layout()
    assert old.arch_config["use_boundary_head"] is False
    fresh = tiny_net(use_boundary_head=False)
    fresh.load_state_dict(old.state_dict(), strict=True)
    with_head = tiny_net()
    extra = set(with_head.state_dict()) - set(old.state_dict())
    assert extra and all(k.startswith("boundary_head.") for k in extra)
    # its logit starts at the prior (a few percent of a patch lies between vertebrae), as the lesion head's
    assert torch.allclose(torch.sigmoid(with_head.boundary_head.bias), torch.tensor(0.03))


def test_geometry_errors_are_clear():
    with pytest.raises(ValueError, match="not divisible by token_size"):
        tiny_net(patch=(32, 30, 32))
    with pytest.raises(ValueError, match="not divisible by token_size"):
        tiny_net(patch=(16, 32, 32), token=(32, 8, 8))
    with pytest.raises(ValueError, match="powers of two"):
        tiny_net(token=(8, 6, 8))
    with pytest.raises(ValueError, match="multiple of 6"):
        tiny_net(embed_dim=64, num_heads=2)
    net = tiny_net()
    with pytest.raises(ValueError, match="accepts only that patch"):
        net(torch.randn(1, 1, 48, 32, 32))


def test_a_timm_that_cannot_build_the_3d_rope_is_named_before_the_build(monkeypatch):
    """timm >= 1.0.23 beside dynamic-network-architectures 0.4.4 fails deep in timm with a tensor-size error (seen in a
    prebuilt GPU image whose timm pip had not resolved); the network says which package to change instead."""
    from vertebraformer_nn.network import vertebraformer

    vertebraformer.check_timm("1.0.22")
    vertebraformer.check_timm("0.9.16")
    with pytest.raises(RuntimeError, match=r"timm 1\.0\.31 is installed.*pip install 'timm<1\.0\.23'"):
        vertebraformer.check_timm("1.0.31")
    monkeypatch.setattr(vertebraformer.timm, "__version__", "1.0.23")
    with pytest.raises(RuntimeError, match="3D rotary"):
        tiny_net()


def test_get_network_from_plans_builds_it_from_the_dotted_path():
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    arch = architecture_dict(tiny_arch([16, 32, 32], [4, 8, 8]))
    arch = json.loads(json.dumps(arch))  # what plans.json holds
    assert sorted(arch["arch_kwargs"]) == sorted(ARCH_KWARGS)
    assert arch["network_class_name"] == NETWORK_CLASS_NAME == "vertebraformer_nn.network.VertebraFormer"
    for deep_supervision in (True, False, None):
        net = get_network_from_plans(
            arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"], 1, NUM_CLASSES,
            allow_init=True, deep_supervision=deep_supervision,
        )
        assert isinstance(net, VertebraFormer)
    net.eval()
    assert net.arch_config == arch["arch_kwargs"]  # the network is what the plans say, nothing filled in
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
        architecture_dict(tiny_arch([16, 30, 32], [4, 8, 8]))


def test_a_few_optimizer_steps_reduce_the_combined_loss():
    """Every head trains end to end: seg (CE), id (CE on vertebra voxels), lesion and disc (BCE), domain code
    (CE)."""
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
            + F.binary_cross_entropy_with_logits(out["boundary"], 1 - lesion_t)
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


def test_constructor_takes_every_size_explicitly():
    """No defaults: a missing size is an error naming it, in the constructor and in the plans' entry."""
    full = tiny_arch()
    for key in ("embed_dim", "num_domains", "lesion_prior", "modulation_blocks", "use_lesion_head"):
        kwargs = {k: v for k, v in full.items() if k != key}
        with pytest.raises(TypeError, match=key):
            VertebraFormer(1, NUM_CLASSES, **kwargs)
        with pytest.raises(ValueError, match=f"miss {key}"):
            architecture_dict(kwargs)
    with pytest.raises(ValueError, match="unknown preset"):
        architecture_dict({**full, "preset": "cpu"})  # a preset name is the planner's, never the network's
    assert set(ARCH_KWARGS) == set(full)


def test_a_dataset_without_domains_has_no_domain_classifier():
    net = tiny_net(num_domains=0)
    assert net.modulation.domain_classifier is None
    assert not any("domain_classifier" in k for k in net.state_dict())
    out = net(torch.randn(2, 1, 32, 32, 32), heads="all")
    assert out["domain_logits"] is None and out["code"].shape == (2, 8)  # the code is still there, for the FiLM
    assert tiny_net(num_domains=6)(torch.randn(1, 1, 32, 32, 32), heads="all")["domain_logits"].shape == (1, 6)


@pytest.mark.parametrize("switches", [dict(use_modulation=False), dict(use_identification=False),
                                      dict(use_lesion_head=False)])
def test_switched_off_components_get_no_gradient_and_stay_frozen(switches):
    net = tiny_net(patch=(16, 32, 32), token=(4, 8, 8), **switches).train()
    off = {"use_modulation": net.modulation, "use_identification": net.id_head,
           "use_lesion_head": net.lesion_head}[next(iter(switches))]
    frozen = {n: p.detach().clone() for n, p in off.named_parameters()}
    trained = {n: p.detach().clone() for n, p in net.seg_head.named_parameters()}
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.1)  # all of them, as a careless caller would
    x = torch.randn(2, 1, 16, 32, 32)
    with all_heads(net):
        for _ in range(2):
            out = net(x)
            loss = sum(v.float().square().mean() for v in out.values() if v is not None)
            opt.zero_grad()
            loss.backward()
            assert all(p.grad is None for p in off.parameters())
            opt.step()
    assert all(torch.equal(p, frozen[n]) for n, p in off.named_parameters())  # not even weight decay moved them
    assert not all(torch.equal(p, trained[n]) for n, p in net.seg_head.named_parameters())


def test_a_tiny_batch_is_overfit_in_a_few_dozen_steps():
    """Two 16^3 samples with two structures each class's intensity marks: after 80 steps of Dice + CE both
    structures are segmented (Dice > 0.9). A network that cannot learn (a broken skip, a detached head, modulation
    that zeroes features) fails this."""
    net = VertebraFormer(1, 3, **tiny_arch((16, 16, 16), (4, 4, 4), num_domains=2, embed_dim=96, num_heads=2,
                                           decoder_min_channels=32, stem_channels=16)).train()
    g = torch.Generator().manual_seed(0)
    target = torch.zeros(2, 16, 16, 16, dtype=torch.long)
    target[0, 4:10, 4:12, 2:8] = 1
    target[0, 10:14, 10:14, 10:14] = 2
    target[1, 8:14, 2:9, 6:14] = 2
    x = 0.3 * torch.randn(2, 1, 16, 16, 16, generator=g) + target[:, None].float()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=0.0)
    onehot = F.one_hot(target, 3).permute(0, 4, 1, 2, 3).float()
    for _ in range(80):
        logits = net(x)
        p = logits.softmax(1)
        dice = 2 * (p * onehot).sum((0, 2, 3, 4)) / ((p + onehot).sum((0, 2, 3, 4)) + 1e-5)
        loss = F.cross_entropy(logits, target) + 1 - dice[1:].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = net.eval()(x).argmax(1)
    for c in (1, 2):
        d = 2 * ((pred == c) & (target == c)).sum() / ((pred == c).sum() + (target == c).sum())
        assert d > 0.9, (c, float(d))
