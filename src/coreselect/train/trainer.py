"""The trainer: drives any strategy until the budget of back-propagated examples is spent.

In a distributed job (``torchrun``; :mod:`coreselect.distributed`) every rank runs the same strategy on the
same gathered signals, so every rank draws the same batch; each rank back-propagates its contiguous part of
it through DistributedDataParallel, with the loss scaled so that the averaged gradient is the whole batch's.
The step's logits and losses are gathered, so strategies and callbacks observe the whole batch on every rank.
Budget, LR schedule and evaluation follow the job's batches (not a rank's part); rank 0 writes checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from coreselect.data.examples import Examples
from coreselect.data.streamed import StreamedDataset
from coreselect.distributed import world
from coreselect.errors import NonFiniteLossError
from coreselect.models.features import PenultimateFeatures
from coreselect.notes import LOG
from coreselect.seeding import derive_seed
from coreselect.signals import per_example_losses, weighted
from coreselect.strategies.protocol import (
    Batch,
    Budget,
    Context,
    NeedsFeatures,
    NeedsStepGradient,
    PlansBatches,
    ReportsMetrics,
    SelectionRound,
    StepOutput,
    Strategy,
    budgeted,
)
from coreselect.train.augment import Augmentation, augmentation
from coreselect.train.callbacks import Callback
from coreselect.train.checkpoint import load_checkpoint, save_checkpoint
from coreselect.train.collapse import Collapse, chance_accuracy, find_collapse
from coreselect.train.config import TrainConfig
from coreselect.train.evaluation import evaluate
from coreselect.train.forward_cost import PROBE_REPEATS, RECHECK_REPEATS, ForwardCost, forward_seconds_per_example
from coreselect.train.precision import autocast_dtype, native_bf16
from coreselect.train.schedule import make_optimizer, set_learning_rate
from coreselect.train.timing import Timings


@dataclass(frozen=True)
class EvalRecord:
    """One evaluation point of a run."""

    step: int
    examples: int
    test_accuracy: float
    test_loss: float
    train_loss: float
    selection_s: float
    training_s: float
    evaluation_s: float
    extras: dict[str, float] = field(default_factory=dict)  # filled by callbacks (diagnostics)


@dataclass
class TrainResult:
    test_accuracy: float
    test_loss: float
    steps: int
    examples: int
    selection_forward_examples: int
    timings: Timings
    history: list[EvalRecord]
    selections: list[SelectionRound]
    resumed_from_step: int | None = None
    forward_s_per_example: float | None = None  # the cost floor of selection: one no-grad forward per example, the
    # median of the run's probes (before training and at each evaluation)
    collapse: Collapse | None = None  # where test accuracy fell back to chance after learning (finite loss)


@dataclass
class _Progress:
    step: int = 0
    examples: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    timings: Timings = field(default_factory=Timings)
    history: list[EvalRecord] = field(default_factory=list)
    forward_cost: ForwardCost = field(default_factory=ForwardCost)


class Trainer:
    """Consumes a strategy's batches with a weighted per-example loss until the budget is spent.

    The LR schedule follows the share of the budget spent, evaluation happens at ``eval_points`` evenly
    spaced points, and each evaluation writes a checkpoint to ``checkpoint_path`` (if given) from which an
    interrupted run resumes exactly. Under ``torchrun`` it trains data-parallel (see the module docstring);
    every rank must construct it with the same arguments.
    """

    def __init__(
        self,
        model: nn.Module,
        strategy: Strategy,
        train: Examples,
        test: Examples,
        config: TrainConfig,
        *,
        val: Examples | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
        checkpoint_path: str | Path | None = None,
        callbacks: Sequence[Callback] = (),
        progress_bar: bool = True,
        description: str = "",
        augment: Augmentation | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.world = world()
        self.network: nn.Module = self.model  # what the training step calls: the model, or its DDP wrapper
        if self.world.distributed:
            self.network = DistributedDataParallel(
                self.model, device_ids=[self.device] if self.device.type == "cuda" else None)
        self.config = config
        self.train_data, self.test_data = train.to(self.device), test.to(self.device)
        self.chance = chance_accuracy(test.targets)  # what predicting the most common test label scores
        self.budget = Budget(config.budget, config.epochs, len(train), config.batch_size)
        if self.budget.total_examples < config.batch_size:
            LOG.warning("budget %g of %d epochs is %d back-propagated example(s), under one batch of %d: the run "
                        "takes a single partial step; raise --budget or --epochs", config.budget, config.epochs,
                        self.budget.total_examples, config.batch_size)
        self.context = Context(
            model=self.model,
            train=self.train_data,
            budget=self.budget,
            seed=seed,
            val=None if val is None else val.to(self.device),
            device=self.device,
            peak_learning_rate=config.lr,
            hands_step_gradients=True,
            forward_dtype=autocast_dtype(config.selection_forwards, self.device),
        )
        self._training_dtype = autocast_dtype(config.precision, self.device)  # resolved once, not every step
        self.strategy = strategy
        # the strategy's duties, read once: an isinstance check against a runtime Protocol costs ~40 µs a step
        self._needs_features = isinstance(strategy, NeedsFeatures)
        self._needs_step_gradient = isinstance(strategy, NeedsStepGradient)
        self.optimizer = make_optimizer(self.model.parameters(), config)
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        self.callbacks = list(callbacks)
        self.progress_bar = progress_bar and self.world.is_main
        self.description = description
        self.state = _Progress()
        self._eval_examples = self._evaluation_schedule()
        self.augment = augment if augment is not None else augmentation(config.augment)
        self.seed = seed

    def _precision(self) -> AbstractContextManager[object]:
        """bf16 autocast around training forwards when the config asks for it."""
        dtype = self._training_dtype
        return nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)

    def _evaluation_schedule(self) -> list[int]:
        """Budget positions (in examples) at which to evaluate, evenly spaced, the last at the end."""
        total, points = self.budget.total_examples, self.config.eval_points
        return sorted({math.ceil(k * total / points) for k in range(1, points + 1)})

    # -- checkpoints -------------------------------------------------------------------------------
    def _checkpoint_state(self) -> dict[str, Any]:
        s = self.state
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "strategy": self.strategy.state_dict(),
            "log": self.context.log.state_dict(),
            "signals": self.context.training_signals.state_dict(),
            "callbacks": [cb.state_dict() for cb in self.callbacks],
            "progress": {
                "step": s.step,
                "examples": s.examples,
                "timings": s.timings.as_dict(),
                "history": [asdict(r) for r in s.history],
                "forward_probes": list(s.forward_cost.probes),
            },
            "threads": torch.get_num_threads(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def _restore(self, ckpt: dict[str, Any]) -> None:
        threads = ckpt.get("threads")
        if threads is not None and threads != torch.get_num_threads():  # results depend on the thread count
            LOG.warning("resuming with the %d CPU threads the run started with (this process had %d)", threads,
                        torch.get_num_threads())
            torch.set_num_threads(threads)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.strategy.load_state_dict(ckpt["strategy"])
        self.context.log.load_state_dict(ckpt["log"])
        if "signals" in ckpt:
            self.context.training_signals.load_state_dict(ckpt["signals"])
        for cb, state in zip(self.callbacks, ckpt.get("callbacks", []), strict=False):
            cb.load_state_dict(state)
        p = ckpt["progress"]
        self.state = _Progress(
            step=p["step"],
            examples=p["examples"],
            timings=Timings(**p["timings"]),
            history=[EvalRecord(**r) for r in p["history"]],
            forward_cost=ForwardCost(list(p.get("forward_probes") or  # a checkpoint of one probe before training:
                                          filter(None, [p.get("forward_s_per_example")]))),  # that one
        )
        torch.set_rng_state(ckpt["torch_rng"])
        if ckpt["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])

    # -- the loop ----------------------------------------------------------------------------------
    def _step(self, batch: Batch) -> StepOutput:
        s = self.state
        self._set_learning_rate()
        with PenultimateFeatures(self.model) if self._needs_features else nullcontext() as captured:
            if self.world.distributed:
                logits, losses, loss = self._forward_distributed(batch)
                value = float(batch.weighted_mean(losses))  # the whole batch's loss, the same on every rank
            else:
                self._read_ahead(batch)
                x, y = self.train_data[batch.indices]
                self.model.train()
                with self._precision():
                    logits = self.network(self._augmented(x)).float()
                losses = per_example_losses(logits, y)
                loss = batch.weighted_mean(losses)
                value = float(loss.detach())
        features = None
        if captured is not None and captured.value is not None:  # this rank's part: gather the whole batch's
            features = self.world.gather_parts(captured.value.detach().float(), len(batch))
        if not math.isfinite(value):  # every rank sees the same value: all stop together
            self._stop_on_non_finite(value)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        gradient = None
        if self._needs_step_gradient and self.strategy.needs_step_gradient:  # under DDP: reduced
            gradient = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
                        for p in self.model.parameters() if p.requires_grad]
        if self.config.clip_norm is not None:  # after backward: under DDP every rank clips the same reduced gradient
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        self.optimizer.step()
        s.loss_sum += value
        s.loss_count += 1
        out = StepOutput(step=s.step, logits=logits.detach(), losses=losses.detach(),
                         learning_rate=self.context.learning_rate, features=features, gradient=gradient)
        self.context.training_signals.record(batch.indices, out.logits, self.train_data.targets[batch.indices],
                                             out.losses, s.step)
        return out

    def _forward_distributed(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """This rank's part of ``batch`` forwarded through DDP: (the whole batch's logits and losses, gathered;
        the loss to back-propagate, scaled so that DDP's gradient average is the gradient of
        ``batch.weighted_mean`` over the whole batch)."""
        start, stop = self.world.bounds(len(batch))
        part = Batch(batch.indices[start:stop], None if batch.weights is None else batch.weights[start:stop])
        x, y = self.train_data[part.indices]
        self.model.train()
        with self._precision():
            local_logits = self.network(self._augmented(x)).float()
        local_losses = per_example_losses(local_logits, y)
        loss = weighted(local_losses, part.weights).sum() * (self.world.size / len(batch))
        logits = self.world.gather_parts(local_logits, len(batch))
        losses = self.world.gather_parts(local_losses, len(batch))
        return logits, losses, loss

    def _read_ahead(self, batch: Batch) -> None:
        """With data read on demand by workers and a strategy that plans its batches: have the workers read this
        batch and the planned ones ahead, so that reading overlaps training."""
        data = self.train_data
        if not isinstance(data, StreamedDataset) or not isinstance(self.strategy, PlansBatches) or \
                data.workers == 0 or data.expects(batch.indices):
            return
        held = data.holds(batch.indices)  # chosen from the candidates just gathered (online strategies)
        if held and data.reading_ahead:
            return
        plan = self.strategy.planned()
        data.read_ahead(plan if held else [batch.indices, *plan])

    def _augmented(self, inputs: Tensor) -> Tensor:
        """The training step's inputs, augmented from a stream of the step (and the rank, under DDP): nothing to
        checkpoint, and a resumed run draws the same augmentations."""
        if self.augment is None:
            return inputs
        stream = f"augment:{self.state.step}" if not self.world.distributed else \
            f"augment:{self.state.step}:{self.world.rank}"
        return self.augment(inputs, torch.Generator().manual_seed(derive_seed(self.seed, stream)))

    def _set_learning_rate(self) -> None:
        progress = self.state.examples / self.budget.total_examples
        self.context.learning_rate = set_learning_rate(self.optimizer, self.config, progress)

    def _stop_on_non_finite(self, value: float) -> None:
        s = self.state
        if self.checkpoint_path is not None and self.checkpoint_path.is_file():
            kept = f"the last good checkpoint (step {s.history[-1].step if s.history else 0}) is kept at " \
                   f"{self.checkpoint_path}"
        else:
            kept = "no checkpoint had been written yet"
        raise NonFiniteLossError(
            f"training loss became {value} at step {s.step + 1}; stopped, {kept}; "
            "lower the learning rate (--lr) or check the inputs for non-finite values"
        )

    def _evaluate(self) -> None:
        s = self.state
        with s.timings.section("evaluation", self.device):
            result = evaluate(self.model, self.test_data, self.config.eval_batch_size)
        record = EvalRecord(
            step=s.step,
            examples=s.examples,
            test_accuracy=result.accuracy,
            test_loss=result.loss,
            train_loss=s.loss_sum / max(s.loss_count, 1),
            selection_s=s.timings.selection,
            training_s=s.timings.training,
            evaluation_s=s.timings.evaluation,
        )
        if isinstance(self.strategy, ReportsMetrics):
            record.extras.update(self.strategy.metrics())
        s.history.append(record)
        s.loss_sum, s.loss_count = 0.0, 0
        if not isinstance(self.train_data, StreamedDataset):  # data read on demand is probed before training only:
            # a probe would read its rows again and drop what the workers are reading ahead for the steps
            s.forward_cost.probes.append(self._forward_probe(repeats=RECHECK_REPEATS))  # untimed, as the first
        self._warn_on_collapse()
        for cb in self.callbacks:
            with s.timings.section("evaluation", self.device):  # diagnostics are not the method's cost
                cb.on_evaluation(self, record)
        if self.checkpoint_path is not None and self.world.is_main:  # one job, one checkpoint
            save_checkpoint(self.checkpoint_path, self._checkpoint_state())

    def _forward_probe(self, repeats: int = PROBE_REPEATS) -> float:
        """Seconds of a selection forward per example here and now: the cost floor's probe, the fastest of
        ``repeats`` timed passes."""
        return forward_seconds_per_example(self.model, self.train_data, batch_size=self.config.eval_batch_size,
                                           dtype=self.context.forward_dtype, repeats=repeats)

    def _warn_on_collapse(self) -> None:
        """Warn once, at the evaluation where test accuracy is first back at chance after the run had learned."""
        collapse = find_collapse(self.state.history, self.chance)
        if collapse is not None and collapse.step == self.state.step and self.world.is_main:
            LOG.warning("%s%s with a finite loss: the run diverged (see coreselect.train.collapse); set "
                        "train.clip_norm (e.g. 5) or lower --lr", f"{self.description}: " if self.description else "",
                        collapse.describe())

    def _warn_on_emulated_bf16(self, probe: float) -> None:
        """Warn, with measured forward speeds, when bf16 is asked for by name on a device that only emulates it
        (``probe``: the seconds per example just measured in the selection forwards' precision)."""
        asked = [name for name in ("precision", "selection_precision") if getattr(self.config, name) == "bf16"]
        if not asked or native_bf16(self.device) or not self.world.is_main:
            return
        speeds = {dtype: probe if dtype == self.context.forward_dtype else forward_seconds_per_example(
                      self.model, self.train_data, dtype=dtype, batch_size=self.config.eval_batch_size)
                  for dtype in (torch.bfloat16, None)}
        LOG.warning("%s bf16 on a device without native bf16 (%s): a forward takes %.1f µs an example in bf16 "
                    "against %.1f in fp32 here; set it to auto (bf16 only where native) or fp32",
                    " and ".join(asked), self.device, 1e6 * speeds[torch.bfloat16], 1e6 * speeds[None])

    def fit(self) -> TrainResult:
        """Train until the budget is spent, resuming from the checkpoint if one exists."""
        resumed_from = None
        ckpt = load_checkpoint(self.checkpoint_path) if self.checkpoint_path is not None else None
        # the cost floor, outside the timed sections and before a strategy hooks into the model
        probe = self._forward_probe()
        self._warn_on_emulated_bf16(probe)
        self.strategy.setup(self.context)
        if ckpt is not None:
            self._restore(ckpt)
            resumed_from = self.state.step
        self.state.forward_cost.probes.append(probe)  # a resumed run adds it to those it had
        for cb in self.callbacks:
            cb.on_train_begin(self)
        s, total = self.state, self.budget.total_examples
        pending = [e for e in self._eval_examples if e > s.examples]
        bar = tqdm(total=total, initial=s.examples, unit="ex", unit_scale=True, desc=self.description,
                   disable=None if self.progress_bar else True, leave=False)  # None: off when not a terminal
        self._set_learning_rate()  # strategies may read the LR before the first step
        batches = budgeted(self.strategy, self.budget, spent=s.examples)
        with bar:
            while s.examples < total:
                self.context.log.step = s.step
                with s.timings.section("selection", self.device):
                    batch = next(batches)
                with s.timings.section("training", self.device):
                    out = self._step(batch)
                with s.timings.section("selection", self.device):
                    self.strategy.observe(batch, out)
                s.step += 1
                s.examples += len(batch)
                bar.update(len(batch))
                for cb in self.callbacks:
                    cb.on_step_end(self, batch, out)
                if pending and s.examples >= pending[0]:
                    while pending and s.examples >= pending[0]:
                        pending.pop(0)
                    self._evaluate()
                    bar.set_postfix(acc=f"{s.history[-1].test_accuracy:.4f}")
        last = s.history[-1]
        result = TrainResult(
            test_accuracy=last.test_accuracy,
            test_loss=last.test_loss,
            steps=s.step,
            examples=s.examples,
            selection_forward_examples=self.context.log.forward_examples,
            timings=s.timings,
            history=list(s.history),
            selections=list(self.context.log.rounds),
            resumed_from_step=resumed_from,
            forward_s_per_example=s.forward_cost.per_example,
            collapse=find_collapse(s.history, self.chance),
        )
        for cb in self.callbacks:
            cb.on_train_end(self, result)
        return result
