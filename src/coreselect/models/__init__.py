"""Model layer: a small zoo created by name, penultimate features of any ``nn.Module``, posterior draws."""

from coreselect.models.features import PenultimateFeatures, last_linear
from coreselect.models.posterior import PerturbTarget, has_normalisation, perturbed, perturbed_parameters
from coreselect.models.zoo import MODELS, check_model_fits, create_model

__all__ = ["MODELS", "PenultimateFeatures", "PerturbTarget", "check_model_fits", "create_model", "has_normalisation",
           "last_linear", "perturbed", "perturbed_parameters"]
