"""Static coresets from example scores: forgetting, EL2N, GraNd and LTC select once, then train.

Each strategy names the proxy runs it needs (:class:`ProxyRequest`), turns their record
(:class:`ProxyRecord`) into one score per training example, and keeps ``budget · n`` of them, per class
(equal quotas, water-filled) or globally: the highest (``rule=top``), or spread over the score range with
the hardest share dropped (``rule=ccs``, coverage-centric selection, which keeps a small coreset from
being all hard and mislabelled examples). CCS is the default of the scores of difficulty (forgetting, EL2N,
GraNd), whose top-k trains below a random subset at every measured size; LTC and SVP keep their papers'
top-k. The experiment runner makes and caches the proxy runs (``coreselect.train.proxies``); in your own
loop, call :meth:`ScoredStatic.provide` with a record, or :meth:`ScoredStatic.use_scores` with any scores of
your own.

Score directions (higher is kept): SVP — higher predictive entropy of a small, briefly trained proxy (or
more forgetting events); forgetting — more forgetting events (never-learned examples count as
one more than the most-forgotten, so they rank first; DeepCore gives them 0); EL2N — larger ‖p − y‖₂;
GraNd — larger last-layer gradient norm; LTC — loss trajectory more positively correlated with the
validation loss of its class.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor

from coreselect.errors import InvalidInputError
from coreselect.notes import LOG
from coreselect.seeding import derive_seed
from coreselect.signals.trajectory import Aggregation, trajectory_correlation
from coreselect.strategies.epochs import EpochStrategy, Selection
from coreselect.strategies.proxy import ProxyKind, ProxyRecord, ProxyRequest, TrainLossSource
from coreselect.strategies.registry import StrategyParams, register
from coreselect.submodular.facility_location import class_quotas


def _per_class(scores: Tensor, targets: Tensor, k: int, class_balanced: bool,
               pick: Callable[[Tensor, int], Tensor]) -> Tensor:
    """``pick(positions, k)`` (a subset of ``positions``) over the whole set, or within each class with equal
    (water-filled) quotas; checks that every example has a score."""
    if scores.shape != targets.shape:
        raise InvalidInputError(f"{len(scores)} scores for {len(targets)} examples")
    if torch.isnan(scores).any():
        raise InvalidInputError("scores hold NaN; every training example needs a score")
    if not class_balanced:
        return pick(torch.arange(len(scores)), k)
    classes = torch.unique(targets)
    members = [torch.nonzero(targets == c).squeeze(1) for c in classes]
    quotas = class_quotas(torch.tensor([len(m) for m in members]), k)
    return torch.cat([pick(m, int(q)) for m, q in zip(members, quotas, strict=True)])


def top_k(scores: Tensor, targets: Tensor, k: int, *, class_balanced: bool = True) -> Tensor:
    """Indices of the ``k`` highest scores, globally or per class with equal (water-filled) quotas."""
    return _per_class(scores, targets, k, class_balanced, lambda m, q: m[torch.topk(scores[m], q).indices])


def _stratified_sample(scores: Tensor, drop_scores: Tensor, k: int, beta: float, strata: int,
                       generator: torch.Generator) -> Tensor:
    """CCS within one group: drop the hardest ``beta`` share by ``drop_scores``, cut the remaining range of
    ``scores`` into ``strata`` bins of equal width, fill the bins from the smallest up with an equal share of what
    is left of ``k``, sampled uniformly inside each bin. Returns positions into ``scores``."""
    n = len(scores)
    order = torch.argsort(drop_scores, descending=True, stable=True)
    dropped = min(int(beta * n), n - k)  # never drop so many that the budget cannot be met
    pool = order[dropped:]
    values = scores[pool].double()
    low, high = float(values.min()), float(values.max())
    width = (high - low) / strata
    bins = torch.zeros(len(pool), dtype=torch.long) if width == 0 else \
        ((values - low) / width).floor().long().clamp(max=strata - 1)
    members = [pool[bins == b] for b in range(strata)]
    members = sorted((m for m in members if len(m)), key=len)
    chosen, remaining = [], k
    for i, group in enumerate(members):
        take = min(len(group), remaining // (len(members) - i))
        chosen.append(group[torch.randperm(len(group), generator=generator)[:take]])
        remaining -= take
    return torch.cat(chosen) if chosen else torch.zeros(0, dtype=torch.long)


def coverage_centric(scores: Tensor, targets: Tensor, k: int, *, beta: float, strata: int = 50,
                     class_balanced: bool = True, generator: torch.Generator | None = None,
                     drop_scores: Tensor | None = None) -> Tensor:
    """Coverage-centric coreset selection (CCS, Zheng et al. 2023) of ``k`` examples by difficulty ``scores``
    (higher is harder): the hardest ``beta`` share dropped (by ``drop_scores``, higher harder, if given: CCS's
    reference code drops by AUM whatever it stratifies), the rest sampled evenly across score strata; per class
    with equal (water-filled) quotas, or over the whole set."""
    generator = generator or torch.Generator().manual_seed(0)
    if drop_scores is not None and (drop_scores.shape != scores.shape or torch.isnan(drop_scores).any()):
        raise InvalidInputError(f"CCS needs one hard-cut score per example without NaN ({len(drop_scores)} for "
                                f"{len(scores)} examples)")
    drop = scores if drop_scores is None else drop_scores  # the scores themselves are checked per class below
    return _per_class(scores, targets, k, class_balanced,
                      lambda m, q: m[_stratified_sample(scores[m], drop[m], q, beta, strata, generator)])


# CCS's default hard cut-off by coreset share (measured on `sizes`, 3 seeds: at 1 % β 0.3 over β 0.1 lifts EL2N by 4.0
# points and forgetting by 1.7, LTC loses 1.4; at 5 % β 0.3 costs EL2N and GraNd 0.8 points, β 0.5 costs 3.7)
CCS_SMALL_SHARE, CCS_SMALL_BETA, CCS_BETA = 0.05, 0.3, 0.1
# At or below this coreset share the top-k rule of a difficulty score is noted to the user: on `sizes` (3 seeds) the
# hardest 30 % by EL2N / GraNd / forgetting train LeNet to 73.8 / 75.4 / 87.5 % (a random subset 88.7 %), the
# hardest 1-5 % to 24-66 % per seed
TOP_K_NOTE_SHARE = 0.3


class StaticParams(StrategyParams):
    """Proxy and selection settings shared by the score-based static coresets."""

    class_balanced: bool = Field(True, description="equal quotas per class (else over the whole set)")
    rule: Literal["top", "ccs"] = Field("top", description="top: the highest scores; ccs: coverage-centric "
                                        "(hardest ccs_beta dropped, the rest sampled evenly over score strata)")
    ccs_beta: float | None = Field(None, ge=0.0, lt=1.0, description="share of the hardest examples CCS drops "
                                   "(default: by coreset share, 0.3 below 5 %, 0.1 from 5 %: the smaller the "
                                   "coreset, the more of the hardest end it drops, as in the CCS paper)")
    ccs_strata: int = Field(50, ge=1, description="score strata of equal width CCS samples across")
    proxy_model: str | None = Field(None, description="architecture that scores (default: the target's; "
                                    "another name gives a transferred coreset)")
    proxy_epochs: int | None = Field(None, ge=1, description="proxy training epochs (default: the run's)")


class ScoredStatic(EpochStrategy):
    """Selects the top ``budget · n`` examples by :meth:`score` once, then trains on them every epoch."""

    params: StaticParams
    # Whether a higher score means a harder example (forgetting, EL2N, GraNd, entropy): CCS drops the hardest.
    # A score of value (LTC's alignment with the validation loss) is not one: its hardest are its lowest.
    higher_is_harder: ClassVar[bool] = True
    proxy_kind: ClassVar[ProxyKind] = "dynamics"  # what the proxy runs record

    def __init__(self, params: StaticParams | None = None) -> None:
        super().__init__(params)
        self.scores: Tensor | None = None
        self.hard_cut: Tensor | None = None  # what CCS drops its hardest share by (higher harder); None: the score
        self.proxy_seconds = 0.0

    def proxy_request(self) -> ProxyRequest:
        """The proxy runs this strategy scores with (NeedsProxy)."""
        return self.request_for(self.params)

    @classmethod
    def request_for(cls, params: StaticParams) -> ProxyRequest:
        """The proxy runs a strategy of this class with ``params`` scores with (what the runner caches by)."""
        return ProxyRequest(cls.proxy_kind, params.proxy_epochs, params.proxy_model, **cls.request_options(params))

    @classmethod
    def request_options(cls, params: StaticParams) -> dict[str, Any]:
        """Further :class:`ProxyRequest` fields of this class's proxy runs (none by default)."""
        return {}

    @abstractmethod
    def score(self, record: ProxyRecord) -> Tensor:
        """One score per training example from the proxy record (higher is kept)."""

    def hard_cut_score(self, record: ProxyRecord) -> Tensor | None:
        """What CCS drops the hardest share by, from the proxy record (higher harder); None: the score itself."""
        return None

    def provide(self, record: ProxyRecord) -> None:
        """Scores from a proxy record (what the runner calls before training)."""
        self.use_scores(self.score(record))
        cut = self.hard_cut_score(record)
        self.hard_cut = None if cut is None else cut.detach().float().cpu()
        self.proxy_seconds = record.seconds

    def use_scores(self, scores: Tensor) -> None:
        """Any per-example scores, higher kept (CCS then cuts the hardest share by these scores too)."""
        self.scores = scores.detach().float().cpu()
        self.hard_cut = None

    def select(self, epoch: int) -> Selection | None:
        if epoch > 0:
            return None
        if self.scores is None:
            raise InvalidInputError(f"strategy {self.name!r} needs example scores: run it with `coreselect train` "
                                    "(it trains and caches the proxy) or call provide()/use_scores() first")
        ctx, p = self.context, self.params
        targets = ctx.train.targets.cpu()
        if p.rule == "ccs":
            generator = torch.Generator().manual_seed(derive_seed(ctx.seed, f"ccs:{self.name}"))
            difficulty = self.scores if self.higher_is_harder else -self.scores
            indices = coverage_centric(difficulty, targets, ctx.budget.epoch_examples, beta=self.ccs_beta(),
                                       strata=p.ccs_strata, class_balanced=p.class_balanced, generator=generator,
                                       drop_scores=self.hard_cut)
        else:
            share = ctx.budget.epoch_examples / len(ctx.train)
            if self.higher_is_harder and share <= TOP_K_NOTE_SHARE:
                LOG.info("%s keeps the hardest %.0f%% of the data (rule=top): at high pruning rates these are mostly "
                         "ambiguous and mislabelled examples and train below a random subset; --param rule=ccs "
                         "(coverage-centric) keeps a spread of difficulty", self.name, 100 * share)
            indices = top_k(self.scores, targets, ctx.budget.epoch_examples, class_balanced=p.class_balanced)
        ctx.log.record(indices)
        return Selection(indices)

    def ccs_beta(self) -> float:
        """The hardest share CCS drops: ``ccs_beta``, or by the coreset's share of the training set."""
        if self.params.ccs_beta is not None:
            return self.params.ccs_beta
        ctx = self.context
        return CCS_SMALL_BETA if ctx.budget.epoch_examples < CCS_SMALL_SHARE * len(ctx.train) else CCS_BETA

    def metrics(self) -> dict[str, float]:
        return {"proxy_s": self.proxy_seconds}


def _required(value: Tensor | None, what: str) -> Tensor:
    if value is None:
        raise InvalidInputError(f"the proxy record has no {what}")
    return value


class DifficultyParams(StaticParams):
    """Settings of a score of difficulty (forgetting, EL2N, GraNd): coverage-centric by default, since their
    hardest examples alone train below a random subset at every coreset size of `sizes` (1-30 %)."""

    rule: Literal["top", "ccs"] = Field("ccs", description="ccs: coverage-centric (hardest ccs_beta dropped, the "
                                        "rest sampled evenly over score strata); top: the highest scores (the "
                                        "score's paper)")


class ForgettingParams(DifficultyParams):
    # Forgetting counts take a few values within a class, so per-class CCS strata collapse to the class's own
    # mix (on `sizes` at 5 %: a random subset's accuracy); over the whole set, as CCS's reference code samples,
    # the classes whose counts spread wider get more of the coreset (+0.3 to +2.2 points over a random subset
    # at 1-30 %, against -0.04 to +1.3 per class). EL2N and GraNd lose 8.6-10.1 points at 1 % that way: per class.
    class_balanced: bool = Field(False, description="equal quotas per class (else over the whole set, the default: "
                                 "forgetting counts take few values within a class)")
    ccs_drop_by: Literal["score", "aum"] = Field("score", description="what CCS drops the hardest share by: the "
                                                 "forgetting counts, or the lowest area under the margin of the "
                                                 "same proxy run (CCS's reference code, for every score)")


@register("forgetting", family="static", params=ForgettingParams,
          summary="forgetting events of a full-data proxy run (Toneva et al.), sampled across their range "
                  "(CCS; rule=top: the most forgotten)")
class Forgetting(ScoredStatic):
    params: ForgettingParams

    def score(self, record: ProxyRecord) -> Tensor:
        return _required(record.forgetting, "forgetting counts")

    def hard_cut_score(self, record: ProxyRecord) -> Tensor | None:
        return -_required(record.aum, "areas under the margin") if self.params.ccs_drop_by == "aum" else None


class EarlyParams(DifficultyParams):
    proxy_runs: int = Field(3, ge=1, description="independent proxy runs averaged")
    proxy_epochs: int | None = Field(2, ge=1, description="epochs each proxy trains before scoring (early)")


@register("el2n", family="static", params=EarlyParams,
          summary="‖p − y‖₂ early in training, averaged over proxy runs (Paul et al.), sampled across its "
                  "range (CCS; rule=top: the largest)")
class EL2N(ScoredStatic):
    params: EarlyParams
    proxy_kind = "early"

    @classmethod
    def request_options(cls, params: EarlyParams) -> dict[str, Any]:  # type: ignore[override]
        return {"runs": params.proxy_runs}

    def score(self, record: ProxyRecord) -> Tensor:
        return _required(record.el2n, "EL2N scores")


@register("grand", family="static", params=EarlyParams,
          summary="last-layer gradient norm early in training, averaged over proxy runs, sampled across its "
                  "range (CCS; rule=top: the largest)")
class GraNd(EL2N):
    def score(self, record: ProxyRecord) -> Tensor:
        return _required(record.grand, "GraNd scores")


class LtcParams(StaticParams):
    differences: bool = Field(True, description="correlate first differences (CLD) instead of raw losses")
    aggregation: Aggregation = Field("class_mean", description="class_mean (CLD) or pair_mean (LTC pairs)")
    record_every: int = Field(1, ge=1, description="epochs between recorded points")
    points: float = Field(1.0, gt=0, le=1, description="use only this leading share of the recorded points")
    train_losses: TrainLossSource = Field("steps", description="steps: the training steps' own losses (free; "
                                          "by measurement on sizes as accurate or more, at every size); eval: an "
                                          "eval-mode forward over the pool per point (the official code's)")


@register("ltc", family="static", params=LtcParams,
          summary="loss trajectories most correlated with the validation loss of their class (LTC / CLD)")
class LossTrajectoryCorrelation(ScoredStatic):
    params: LtcParams
    higher_is_harder = False  # the most aligned are kept; the conflicting (often mislabelled) are the hardest

    @classmethod
    def request_options(cls, params: LtcParams) -> dict[str, Any]:  # type: ignore[override]
        return {"record_every": params.record_every, "train_losses": params.train_losses, "needs_validation": True}

    def score(self, record: ProxyRecord) -> Tensor:
        train = _required(record.train_trajectories, "loss trajectories")
        val = _required(record.val_trajectories, "validation trajectories")
        used = max(3, round(self.params.points * train.shape[0]))
        return trajectory_correlation(train[:used], _required(record.train_targets, "training targets"), val[:used],
                                      _required(record.val_targets, "validation targets"),
                                      differences=self.params.differences, aggregation=self.params.aggregation)


class SvpParams(StaticParams):
    proxy_model: str | None = Field("mlp", description="the small proxy (selection via proxy)")
    proxy_epochs: int | None = Field(5, ge=1, description="brief proxy training")
    criterion: Literal["entropy", "forgetting"] = Field("entropy", description="highest predictive entropy of "
                                                       "the proxy at the end, or most forgetting events")


@register("svp", family="static", params=SvpParams,
          summary="selection via proxy: a small model trained briefly picks by entropy or forgetting")
class SelectionViaProxy(ScoredStatic):
    params: SvpParams

    def score(self, record: ProxyRecord) -> Tensor:
        if self.params.criterion == "forgetting":
            return _required(record.forgetting, "forgetting counts")
        log_p = torch.log_softmax(_required(record.final_logits, "final proxy logits").double(), dim=1)
        return -(log_p.exp() * log_p).sum(1).float()
