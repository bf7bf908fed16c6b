"""The model zoo and the penultimate-feature hook."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from coreselect.errors import InvalidInputError, UnknownNameError
from coreselect.models import MODELS, PenultimateFeatures, check_model_fits, create_model, last_linear
from coreselect.models.zoo import MaxPool2x2


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_zoo_models_give_one_logit_per_class(name: str, shape: tuple[int, int, int]) -> None:
    model = create_model(name, shape, 7).eval()
    x = torch.randn(3, *shape)
    with PenultimateFeatures(model) as hook:
        logits = model(x)
    assert logits.shape == (3, 7)
    head = last_linear(model)
    assert hook.value is not None
    torch.testing.assert_close(head(hook.value), logits)


def test_hook_on_a_users_own_module() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.Tanh(), nn.Linear(5, 3))
    x = torch.randn(4, 3, 4)
    with PenultimateFeatures(model) as hook:
        model(x)
    torch.testing.assert_close(hook.value, torch.tanh(model[1](x.flatten(1))))
    # the hook is removed on exit
    assert not model[3]._forward_hooks


def test_errors() -> None:
    with pytest.raises(UnknownNameError, match="valid names: cnn, lenet, mlp, resnet18, resnet20"):
        create_model("vgg", (1, 28, 28), 10)
    with pytest.raises(InvalidInputError, match="use --model mlp"):
        create_model("lenet", (20,), 10)
    with pytest.raises(InvalidInputError, match=r"no nn\.Linear"):
        PenultimateFeatures(nn.Conv2d(1, 1, 1))
    model = create_model("mlp", (1, 28, 28), 10)
    with pytest.raises(InvalidInputError, match=r"inputs of shape \(3, 32, 32\) do not fit"):
        check_model_fits(model, torch.randn(2, 3, 32, 32), 10)
    with pytest.raises(InvalidInputError, match="data has 4 classes"):
        check_model_fits(model, torch.randn(2, 1, 28, 28), 4)
    assert model.training  # the check restores the mode


def test_mlp_on_tabular_features() -> None:
    model = create_model("mlp", (6,), 3)
    assert model(torch.randn(5, 6)).shape == (5, 3)


@pytest.mark.parametrize("size", [(8, 8), (7, 9), (28, 28)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_max_pooling_equals_max_pool2d_with_and_without_autograd(size: tuple[int, int],
                                                                       channels_last: bool) -> None:
    x = torch.randn(3, 4, *size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    reference = nn.MaxPool2d(2)(x)
    with torch.no_grad():
        torch.testing.assert_close(MaxPool2x2()(x), reference, rtol=0, atol=0)
    leaf = x.clone().requires_grad_(True)
    out = MaxPool2x2()(leaf)
    torch.testing.assert_close(out, reference, rtol=0, atol=0)
    out.backward(torch.ones_like(out))
    assert leaf.grad is not None and float(leaf.grad.sum()) == out.numel()  # one input per window takes it


def test_lenet_computes_what_the_plain_layout_and_pooling_compute() -> None:
    torch.manual_seed(0)
    model = create_model("lenet", (1, 28, 28), 10)
    plain = create_model("lenet", (1, 28, 28), 10)  # the textbook order: ReLU, then pooling; contiguous layout
    plain.features = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                                   nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
    plain.to(memory_format=torch.contiguous_format)
    plain.load_state_dict(model.state_dict())
    assert plain.features[0].weight.is_contiguous() and not model.features[3].weight.is_contiguous()
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x))
    for net in (model, plain):
        nn.functional.cross_entropy(net(x), y).backward()
    for ours, theirs in zip(model.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(ours.grad, theirs.grad)
