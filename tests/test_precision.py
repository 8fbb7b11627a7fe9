"""Mixed precision (vertebraformer_nn/precision.py) as the training step uses it: which dtype the network really
computes in on the CPU, what the losses see, and that the environment switch decides it."""
import pytest
import torch

from vertebraformer_nn import precision

from conftest import make_trainer, synthetic_batch


def _conv_dtype(device: torch.device) -> torch.dtype:
    with precision.autocast_for(device):
        return torch.nn.functional.conv3d(torch.randn(1, 2, 4, 4, 4), torch.randn(3, 2, 3, 3, 3)).dtype


@pytest.mark.parametrize("setting, bf16", [("0", False), ("off", False), ("False", False), ("1", True),
                                           ("on", True), ("", None), ("nonsense", None)])
def test_environment_switch_decides_the_cpu_autocast(monkeypatch, setting, bf16):
    monkeypatch.setenv(precision.ENV_CPU_BF16, setting)
    if bf16 is None:  # unset or unreadable: the hardware decides
        bf16 = precision.cpu_has_native_bf16()
    cpu = torch.device("cpu")
    assert _conv_dtype(cpu) == (torch.bfloat16 if bf16 else torch.float32)
    assert precision.describe(cpu) == ("bfloat16 autocast" if bf16 else "float32")


@pytest.fixture(scope="module")
def step_trainer(multispine_preprocessed, tmp_path_factory):
    return make_trainer(multispine_preprocessed, tmp_path_factory.mktemp("precision"))


@pytest.mark.parametrize("bf16", [True, False])
def test_training_step_computes_in_the_chosen_precision(step_trainer, monkeypatch, bf16):
    """The CPU training step runs the network's matrix products in bfloat16 when enabled (float32 otherwise), hands
    the losses float32 logits (the level logits stay bfloat16 until the level loss picks its voxels), keeps the
    weights in float32 and updates them."""
    monkeypatch.setenv(precision.ENV_CPU_BF16, "1" if bf16 else "0")
    trainer = step_trainer
    net = trainer.network
    linear = next(m for m in net.modules() if isinstance(m, torch.nn.Linear))
    seen = []
    hook = linear.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    heads = {}
    compute_losses = trainer.compute_losses

    def spy(out, target, keys):
        heads.update({k: v.dtype for k, v in out.items() if torch.is_tensor(v)})
        return compute_losses(out, target, keys)

    monkeypatch.setattr(trainer, "compute_losses", spy)
    keys = list(trainer.dataset_json["case_info"])[:2]
    before = linear.weight.detach().clone()
    try:
        out = trainer.train_step(synthetic_batch(trainer, keys))
    finally:
        hook.remove()
    low = torch.bfloat16 if bf16 else torch.float32
    assert seen and set(seen) == {low}
    assert heads["seg"] == heads["lesion"] == torch.float32 and heads["id"] == low
    assert linear.weight.dtype == torch.float32 and not torch.equal(before, linear.weight)
    assert all(torch.isfinite(torch.as_tensor(v)) for v in out.values())
