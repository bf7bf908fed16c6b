"""A small zoo of classifiers, each built for a given input shape and number of classes."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from coreselect.errors import InvalidInputError, UnknownNameError


def _image_shape(name: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise InvalidInputError(
            f"{name} takes images shaped C×H×W but the data has per-example shape {tuple(input_shape)}; "
            "use --model mlp for flat features"
        )
    return input_shape  # type: ignore[return-value]


class MLP(nn.Module):
    """Fully connected network on flattened inputs."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: tuple[int, ...] = (256, 128)):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.body(x))


class MaxPool2x2(nn.Module):
    """2×2 max-pooling with stride 2 (odd edges dropped, as ``nn.MaxPool2d(2)``), by the fastest exact kernel: in
    a forward without autograd, the elementwise maximum of the four strided views (on a CPU, about twice as fast
    as ``max_pool2d`` on LeNet's maps, which then dominate its forward); under autograd, ``max_pool2d``, whose
    backward is the faster. Both give the same values."""

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            return F.max_pool2d(x, 2)
        x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]
        rows = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
        return torch.maximum(rows[..., 0::2], rows[..., 1::2])


class LeNet(nn.Module):
    """LeNet-5 (ReLU, max-pooling), padded so that 28×28 inputs keep a 5×5 map before the classifier.

    Its convolution weights are held channels-last, so that the feature maps are too: on a CPU a training step
    then takes about a third less time (the layout, not the arithmetic, changes). Each block pools before its ReLU,
    which computes the same values and gradients (ReLU is monotone, so it commutes with the maximum) on a quarter
    of the elements: a no-grad forward takes about 9 % less time on a CPU, 15 % under bf16 autocast."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        channels, height, width = _image_shape("lenet", input_shape)
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, 5, padding=2), MaxPool2x2(), nn.ReLU(inplace=True),
            nn.Conv2d(6, 16, 5), MaxPool2x2(), nn.ReLU(inplace=True), nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, channels, height, width)).shape[1]
        self.classifier = nn.Sequential(
            nn.Linear(flat, 120), nn.ReLU(inplace=True), nn.Linear(120, 84), nn.ReLU(inplace=True)
        )
        self.fc = nn.Linear(84, num_classes)
        self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.classifier(self.features(x)))


def _conv_bn(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out)]


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU blocks (32, 64, 128 channels) with pooling, then a linear classifier."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        channels, _, _ = _image_shape("cnn", input_shape)
        blocks: list[nn.Module] = []
        for c_in, c_out in ((channels, 32), (32, 64), (64, 128)):
            blocks += [*_conv_bn(c_in, c_out), nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True)]
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a residual connection (1×1 projection when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(c_in, c_out, stride), nn.ReLU(inplace=True), *_conv_bn(c_out, c_out))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet: 3×3 stem without max-pooling, stages of basic blocks, global average pooling."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, widths: tuple[int, ...], depth: tuple[int, ...]):
        super().__init__()
        channels, _, _ = _image_shape("resnet", input_shape)
        layers: list[nn.Module] = [*_conv_bn(channels, widths[0]), nn.ReLU(inplace=True)]
        c_in = widths[0]
        for stage, (width, blocks) in enumerate(zip(widths, depth, strict=True)):
            for b in range(blocks):
                layers.append(BasicBlock(c_in, width, stride=2 if stage > 0 and b == 0 else 1))
                c_in = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


MODELS: dict[str, Callable[[tuple[int, ...], int], nn.Module]] = {
    "mlp": MLP,
    "lenet": LeNet,
    "cnn": SmallCNN,
    "resnet20": lambda shape, classes: ResNet(shape, classes, widths=(16, 32, 64), depth=(3, 3, 3)),
    "resnet18": lambda shape, classes: ResNet(shape, classes, widths=(64, 128, 256, 512), depth=(2, 2, 2, 2)),
}


def create_model(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build the zoo model ``name`` for inputs of ``input_shape`` (without the batch axis)."""
    if name not in MODELS:
        raise UnknownNameError("model", name, MODELS)
    try:
        return MODELS[name](tuple(input_shape), num_classes)
    except RuntimeError as err:  # a layer that cannot take inputs this small (e.g. LeNet's 5×5 kernels on 8×8)
        raise InvalidInputError(f"inputs of shape {tuple(input_shape)} do not fit {name} "
                                f"({str(err).splitlines()[0]}); pick a model for this input size "
                                "(--model cnn or mlp)") from err


def check_model_fits(model: nn.Module, example: Tensor, num_classes: int, name: str = "model") -> None:
    """Raise a clear error unless ``model`` maps a batch shaped like ``example`` to ``num_classes`` logits."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(example)
    except RuntimeError as err:
        raise InvalidInputError(
            f"inputs of shape {tuple(example.shape[1:])} do not fit {name} ({str(err).splitlines()[0]}); "
            "build the model for this data's input shape"
        ) from err
    finally:
        model.train(was_training)
    if out.ndim != 2 or out.shape[1] != num_classes:
        raise InvalidInputError(
            f"{name} returns outputs of shape {tuple(out.shape[1:])} but the data has {num_classes} classes; "
            "give the model one logit per class"
        )
