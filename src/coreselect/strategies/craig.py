"""CRAIG (Mirzasoleiman, Bilmes, Leskovec, ICML 2020): weighted coresets by facility location on
gradient proxies, re-selected during training."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from coreselect.strategies.epochs import Selection
from coreselect.strategies.gradient_features import EmbeddingName, gradient_proxies
from coreselect.strategies.periodic import PeriodicParams, PeriodicSelection
from coreselect.strategies.registry import register
from coreselect.submodular import facility_location, normalise_weights, per_class_facility_location
from coreselect.submodular.similarity import SimilarityName


class CraigParams(PeriodicParams):
    """CRAIG's settings; defaults follow the official deep-network code (re-selection every epoch), but for the
    weights' cap (``max_weight``)."""

    embedding: EmbeddingName = Field("logit", description="gradient proxy: logit (p − y) or last_layer")
    similarity: SimilarityName = "max_minus"
    optimizer: Literal["lazy", "stochastic"] = "lazy"
    per_class: bool = Field(True, description="solve facility location inside each class")
    proportional: bool = Field(False, description="class quotas proportional to class sizes (else equal)")
    weighted: bool = Field(True, description="weight each pick by its cluster size (mean 1)")
    max_weight: float | None = Field(3.0, gt=1, description="clip weights at this multiple of their mean (1), then "
                                     "rescale to mean 1 (None: the paper's uncapped cluster sizes); 3 by measurement "
                                     "on crest-table: uncapped, one example can carry a batch at the LR peak")


@register("craig", family="adaptive", params=CraigParams,
          summary="facility location on gradient proxies, cluster-size weights, re-selected every k epochs")
class Craig(PeriodicSelection):
    """Selects ``budget · n`` examples whose weighted gradient sum approximates the full gradient."""

    params: CraigParams

    def reselect(self, k: int) -> Selection:
        p, ctx = self.params, self.context
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
        return Selection(indices.cpu(), weights.float().cpu() if p.weighted else None)
