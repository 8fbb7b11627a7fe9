"""Which autocast each device gets (vertebraformer_nn/precision.py)."""
import torch

from vertebraformer_nn import precision


def test_cpu_bf16_follows_environment_then_hardware(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setenv(precision.ENV_CPU_BF16, "0")
    assert precision.autocast_dtype(cpu) is None and precision.describe(cpu) == "float32"
    monkeypatch.setenv(precision.ENV_CPU_BF16, "1")
    assert precision.autocast_dtype(cpu) is torch.bfloat16
    with precision.autocast_for(cpu):
        y = torch.nn.functional.linear(torch.randn(2, 4), torch.randn(3, 4))
    assert y.dtype == torch.bfloat16
    monkeypatch.delenv(precision.ENV_CPU_BF16)
    assert (precision.autocast_dtype(cpu) is torch.bfloat16) == precision.cpu_has_native_bf16()


def test_cuda_float16_and_other_devices_float32(monkeypatch):
    monkeypatch.setenv(precision.ENV_CPU_BF16, "1")
    assert precision.autocast_dtype(torch.device("cuda")) is torch.float16
    assert precision.autocast_dtype(torch.device("mps")) is None
    with precision.autocast_for(torch.device("mps")):  # a no-op context, usable without the device
        pass
