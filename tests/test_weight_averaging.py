"""Weight averaging over a run's last part (trainers/weight_averaging.py): when it starts, what the mean is, and
that a real trainer's checkpoint_final holds it while the last weights are kept beside it."""
import os

import pytest
import torch

from vertebraformer_nn.trainers import weight_averaging as W
from vertebraformer_nn.trainers.checkpoints import load_checkpoint_file

from conftest import make_trainer, synthetic_batch


@pytest.mark.parametrize("fraction, epochs, first", [(0.5, 6, 3), (0.5, 3, 1), (0.01, 10, 1), (0.99, 4, 3),
                                                      (None, 6, None), (0.5, 1, None)])
def test_first_averaged_epoch(fraction, epochs, first):
    """At least one epoch before the mean starts and at least one in it; none in a one-epoch run."""
    assert W.first_averaged_epoch(fraction, epochs) == first


@pytest.mark.parametrize("value, expected", [(None, 0.25), ("0.5", 0.5), ("1", None)])
def test_fraction_from_the_environment(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv(W.AVERAGE_FROM_ENV, raising=False)
    else:
        monkeypatch.setenv(W.AVERAGE_FROM_ENV, value)
    assert W.average_from_env(0.25) == expected


@pytest.mark.parametrize("value", ["0", "1.5", "half"])
def test_a_fraction_outside_0_1_is_refused_by_name(monkeypatch, value):
    monkeypatch.setenv(W.AVERAGE_FROM_ENV, value)
    with pytest.raises(ValueError, match=W.AVERAGE_FROM_ENV):
        W.average_from_env(None)


def test_running_mean_of_parameters_and_float_buffers_only():
    module = torch.nn.Linear(3, 2)
    module.register_buffer("steps", torch.zeros((), dtype=torch.long))
    mean = W.RunningMean()
    for value in (1.0, 2.0, 6.0):
        with torch.no_grad():
            module.weight.fill_(value)
            module.bias.fill_(-value)
            module.steps.fill_(int(value))
        mean.add(module)
    assert mean.count == 3 and "steps" not in mean.mean
    mean.load_into(module)
    assert torch.allclose(module.weight, torch.full((2, 3), 3.0)) and torch.allclose(module.bias, torch.full((2,), -3.0))
    assert int(module.steps) == 6  # integer state is the last one's


@pytest.fixture(scope="module")
def averaging_trainer(multispine_preprocessed, tmp_path_factory):
    return make_trainer(multispine_preprocessed, tmp_path_factory.mktemp("averaging"))


def test_checkpoint_final_holds_the_mean_of_the_last_part(averaging_trainer, monkeypatch):
    """A two-epoch run averaging from half way: the step of epoch 0 stays out, the two of epoch 1 enter the mean;
    nnU-Net's on_train_end then writes the mean as checkpoint_final and the last weights beside it."""
    monkeypatch.setenv(W.AVERAGE_FROM_ENV, "0.5")
    trainer = averaging_trainer
    trainer.weight_average_from = W.average_from_env(trainer.weight_average_from)
    trainer._weight_mean = W.RunningMean()
    trainer.num_epochs = 2
    keys = list(trainer.dataset_json["case_info"])[:2]
    net = trainer._plain_module()
    seen = []
    for epoch, seed in ((0, 0), (1, 1), (1, 2)):
        trainer.current_epoch = epoch
        trainer.train_step(synthetic_batch(trainer, keys, seed=seed))
        seen.append({k: v.detach().float().clone() for k, v in net.state_dict().items() if v.is_floating_point()})
    assert trainer._weight_mean.count == 2
    trainer.current_epoch = 2
    trainer.on_train_end()
    final = load_checkpoint_file(os.path.join(trainer.output_folder, "checkpoint_final.pth"))["network_weights"]
    last = load_checkpoint_file(os.path.join(trainer.output_folder, W.UNAVERAGED))["network_weights"]
    changed = [k for k in seen[1] if not torch.equal(seen[1][k], seen[2][k])]
    assert changed  # the steps moved the weights, so mean and last differ
    for k in changed:
        assert torch.allclose(final[k].float(), 0.5 * (seen[1][k] + seen[2][k]), atol=1e-6)
        assert torch.equal(last[k].float(), seen[2][k])
    assert torch.allclose(net.state_dict()[changed[0]].float(), final[changed[0]].float())  # validation sees the mean
