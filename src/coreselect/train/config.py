"""Validated training hyper-parameters."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

OptimizerName = Literal["sgd", "adamw"]
ScheduleName = Literal["onecycle", "cosine", "step", "constant"]


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
