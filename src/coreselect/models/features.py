"""Penultimate features of any model, through a forward hook on its last ``nn.Linear``."""

from __future__ import annotations

from types import TracebackType

from torch import Tensor, nn

from coreselect.errors import InvalidInputError


def last_linear(model: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` in registration order: the classifier head for the usual model layouts."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InvalidInputError(
            f"{type(model).__name__} has no nn.Linear layer; pass the classifier head explicitly as `layer=`"
        )
    return linears[-1]


class PenultimateFeatures:
    """Context manager capturing the input of the classifier head on each forward pass.

    >>> with PenultimateFeatures(model) as features:
    ...     logits = model(x)
    ...     h = features.value          # (batch, d) input of the last linear layer
    """

    def __init__(self, model: nn.Module, layer: nn.Module | None = None) -> None:
        self.layer = layer if layer is not None else last_linear(model)
        self.value: Tensor | None = None
        self._handle = None

    def _hook(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        self.value = inputs[0].flatten(1)

    def __enter__(self) -> PenultimateFeatures:
        self._handle = self.layer.register_forward_hook(self._hook)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
