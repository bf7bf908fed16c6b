"""Validated training hyper-parameters."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from coreselect.train.precision import PrecisionName

OptimizerName = Literal["sgd", "adamw"]
ScheduleName = Literal["onecycle", "cosine", "step", "constant"]
AugmentName = Literal["none", "crop-flip"]
# Fields added later: left out of run identities while at their default, so that earlier runs keep theirs.
LATER_TRAIN_FIELDS: dict[str, object] = {"augment": "none", "precision": "fp32", "clip_norm": None,
                                         "selection_precision": None}


class TrainConfig(BaseModel):
    """How to train; ``budget`` is the fraction of full training's back-propagated examples."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(20, ge=1, description="epochs of full training the budget is a fraction of")
    budget: float = Field(
        1.0, gt=0.0, le=1.0, description="fraction of full training's back-propagated examples, in (0, 1]"
    )
    batch_size: int = Field(128, ge=1)
    optimizer: OptimizerName = "sgd"
    lr: float = Field(0.1, gt=0.0, description="peak learning rate")
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0.0)
    schedule: ScheduleName = "onecycle"
    warmup: float = Field(0.3, ge=0.0, lt=1.0, description="share of the run spent warming the LR up")
    eval_points: int = Field(20, ge=1, description="evaluations (and checkpoints) over the run")
    eval_batch_size: int = Field(256, ge=1)
    augment: AugmentName = Field("none", description="augmentation of training batches (never of selection "
                                 "forwards): none, or crop-flip (CIFAR-style random crop with padding 4 and flip)")
    precision: PrecisionName = Field("fp32", description="fp32, or bf16 autocast for training and selection "
                                     "forwards (losses, gradients of the selection and weights stay in fp32), or "
                                     "auto: bf16 where the device computes it natively, else fp32")
    selection_precision: PrecisionName | None = Field(
        None, description="precision of selection's forwards and of the proxy / holdout models it trains, if not "
        "``precision`` (bf16: autocast, about 1.6x faster forwards on a CPU with AMX, many times slower on one "
        "without native bf16; auto: bf16 only where native); what selection computes from the forwards stays fp32")
    clip_norm: float | None = Field(None, gt=0.0, description="clip each step's gradient to this global L2 norm "
                                    "before the optimizer steps (None: no clipping); keeps short runs on small "
                                    "coresets from diverging at the LR peak")

    @property
    def selection_forwards(self) -> PrecisionName:
        """The precision selection forwards (and proxy models) run in: ``selection_precision``, else ``precision``."""
        return self.selection_precision or self.precision

    def defaulted_later_fields(self) -> set[str]:
        """The fields added later that are at their default (left out of run identities)."""
        return {k for k, default in LATER_TRAIN_FIELDS.items() if getattr(self, k) == default}
