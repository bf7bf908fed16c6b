"""CRAIG (Mirzasoleiman, Bilmes, Leskovec, ICML 2020): weighted coresets by facility location on
gradient proxies, re-selected during training."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from coreselect.strategies.epochs import EpochStrategy, Selection
from coreselect.strategies.proxies import EmbeddingName, gradient_proxies, uniform_subset
from coreselect.strategies.registry import register
from coreselect.submodular import facility_location, normalise_weights, per_class_facility_location
from coreselect.submodular.similarity import SimilarityName


class CraigParams(BaseModel):
    """CRAIG's settings; defaults follow the official deep-network code."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    embedding: EmbeddingName = Field("logit", description="gradient proxy: logit (p − y) or last_layer")
    select_every: int = Field(1, ge=1, description="compressed epochs between selections")
    warm_start_epochs: int = Field(0, ge=0, description="compressed epochs on uniform random subsets first")
    similarity: SimilarityName = "max_minus"
    optimizer: Literal["lazy", "stochastic"] = "lazy"
    per_class: bool = Field(True, description="solve facility location inside each class")
    proportional: bool = Field(False, description="class quotas proportional to class sizes (else equal)")
    weighted: bool = Field(True, description="weight each pick by its cluster size (mean 1)")


@register("craig", family="adaptive", params=CraigParams,
          summary="facility location on gradient proxies, cluster-size weights, re-selected every k epochs")
class Craig(EpochStrategy):
    """Selects ``budget · n`` examples whose weighted gradient sum approximates the full gradient."""

    name = "craig"

    def __init__(self, params: CraigParams | None = None) -> None:
        super().__init__()
        self.params = params or CraigParams()

    def select(self, epoch: int) -> Selection | None:
        p, ctx = self.params, self.context
        k = ctx.budget.epoch_examples
        if epoch < p.warm_start_epochs:
            indices = uniform_subset(ctx, k, self.generator)
            ctx.log.record(indices)
            return Selection(indices)
        if (epoch - p.warm_start_epochs) % p.select_every:
            return None
        ground = gradient_proxies(ctx, embedding=p.embedding)
        if p.per_class:
            coreset = per_class_facility_location(
                ground, ctx.train.targets, k, proportional=p.proportional, similarity=p.similarity,
                optimizer=p.optimizer, generator=self.generator,
            )
            indices, weights = coreset.indices, coreset.weights
        else:
            result = facility_location(ground, k, similarity=p.similarity, optimizer=p.optimizer,
                                       generator=self.generator)
            indices, weights = result.indices, normalise_weights(result.weights)
        indices, weights = indices.cpu(), weights.float().cpu()
        ctx.log.record(indices, weights)
        return Selection(indices, weights if p.weighted else None)
