"""Model layer: a small zoo created by name, and penultimate features of any ``nn.Module``."""

from coreselect.models.features import PenultimateFeatures, last_linear
from coreselect.models.zoo import MODELS, check_model_fits, create_model

__all__ = ["MODELS", "PenultimateFeatures", "check_model_fits", "create_model", "last_linear"]
