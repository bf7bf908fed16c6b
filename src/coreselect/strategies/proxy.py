"""What strategies ask of proxy training runs, and what those runs leave behind.

A strategy that scores examples with proxy runs (static coresets, irreducible-loss and Bayesian online
selection) implements :class:`NeedsProxy`; the experiment runner makes the runs it requests once per
setting and seed (``coreselect.train.proxies``), caches them, and hands the record to :meth:`provide`.

- ``dynamics``: one full-data run recording forgetting events, areas under the margin, loss trajectories and
  its final logits;
- ``early``: ``runs`` short full-data runs, EL2N and GraNd averaged over them at their end;
- ``holdout``: one run on the holdout split; its logits for every training example (irreducible losses,
  validation-model predictions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from torch import Tensor

TrainLossSource = Literal["eval", "steps"]
ProxyKind = Literal["dynamics", "early", "holdout"]


@dataclass(frozen=True)
class ProxyRequest:
    """The proxy runs a strategy scores with; ``model`` None means the target's architecture, ``epochs``
    None the target run's epochs."""

    kind: ProxyKind
    epochs: int | None = None
    model: str | None = None
    runs: int = 1
    record_every: int = 1
    train_losses: TrainLossSource = "steps"  # the trajectories' training losses: free from the steps, or "eval"
    needs_validation: bool = False  # the strategy reads validation-loss trajectories (not part of the identity)

    def identity(self) -> str:
        """What makes two requests the same proxy runs."""
        return repr((self.kind, self.epochs, self.model, self.runs, self.record_every, self.train_losses))


@dataclass
class ProxyRecord:
    """What proxy runs left behind (fields a kind does not produce stay None) and what they cost."""

    seconds: float
    train_targets: Tensor | None = None
    forgetting: Tensor | None = None
    aum: Tensor | None = None  # area under the margin: each example's mean margin over the run's steps
    train_trajectories: Tensor | None = None  # [points, n_train] losses
    val_trajectories: Tensor | None = None  # [points, n_val] losses
    val_targets: Tensor | None = None
    final_logits: Tensor | None = None  # [n_train, C] of the dynamics proxy at the end of its run
    el2n: Tensor | None = None
    grand: Tensor | None = None
    holdout_logits: Tensor | None = None  # [n_train, C] of the model trained on the holdout split


@runtime_checkable
class NeedsProxy(Protocol):
    """A strategy that is given a :class:`ProxyRecord` before training (unless it requests none). Its class
    declares the request for given parameters (``request_for(params)``, read through the registered spec, so a
    runner knows the proxy runs without creating the strategy); ``proxy_request()`` is that of its own."""

    def proxy_request(self) -> ProxyRequest | None: ...

    def provide(self, record: ProxyRecord) -> None: ...
