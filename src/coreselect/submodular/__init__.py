"""Submodular selection: facility location with lazy, naive and stochastic greedy, per class, bounded memory."""

from coreselect.submodular.embeddings import Embedding, EuclideanPoints, LastLayerGradients
from coreselect.submodular.facility_location import (
    Coreset,
    class_quotas,
    facility_location,
    normalise_weights,
    per_class_facility_location,
    per_class_facility_locations,
)
from coreselect.submodular.greedy import OPTIMIZERS, GreedyResult, greedy_facility_location
from coreselect.submodular.kernel import DenseKernel, EmbeddingKernel, dense_similarity, make_kernel
from coreselect.submodular.similarity import SIMILARITIES

__all__ = [
    "OPTIMIZERS",
    "SIMILARITIES",
    "Coreset",
    "DenseKernel",
    "Embedding",
    "EmbeddingKernel",
    "EuclideanPoints",
    "GreedyResult",
    "LastLayerGradients",
    "class_quotas",
    "dense_similarity",
    "facility_location",
    "greedy_facility_location",
    "make_kernel",
    "normalise_weights",
    "per_class_facility_location",
    "per_class_facility_locations",
]
