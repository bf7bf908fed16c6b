"""The configuration of one run, validated, with a stable identity."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from coreselect.data.catalog import DATASETS
from coreselect.errors import UnknownNameError
from coreselect.models.zoo import MODELS
from coreselect.strategies.registry import strategy_spec, validate_params
from coreselect.train.config import TrainConfig
from coreselect.validation import validated

SETTING_FIELDS = ("dataset", "data_root", "model", "val_fraction", "label_noise", "noise_kind", "imbalance")
# Fields added later: left out of identities while at their default, so that earlier runs keep theirs.
LATER_FIELDS: dict[str, Any] = {"holdout_fraction": 0.0, "num_classes": None, "threads": None}
# How a run reads its data, not what it computes (tested to give the same run): never in an identity.
EXECUTION_FIELDS = {"workers"}


class RunConfig(BaseModel):
    """Data, model, strategy, seed and training recipe of one run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = "fashion-mnist"
    data_root: str | None = None
    model: str = "lenet"
    strategy: str = "random"
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = Field(0, ge=0)
    val_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    label_noise: float = Field(0.0, ge=0.0, le=1.0)
    noise_kind: Literal["symmetric", "uniform", "pair"] = "symmetric"
    imbalance: float = Field(1.0, ge=1.0, description="long-tail ratio n_max / n_min of the training part")
    holdout_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="stratified share of the training part "
                                    "held out for irreducible-loss / validation models, never trained on")
    num_classes: int | None = Field(None, ge=1, description="class count when the data declares none; labels "
                                    "outside 0..num_classes-1 are an error")
    threads: int | None = Field(None, ge=1, description="CPU threads the run computes with (results depend on it); "
                                "None: the cores the process may use, fixed when the run starts")
    workers: int | None = Field(None, ge=0, description="read the data on demand through a DataLoader with this "
                                "many worker processes (0: the main process); None: held in memory as tensors when "
                                "it fits in 2 GiB (read on demand in the main process otherwise)")
    train: TrainConfig = Field(default_factory=TrainConfig)

    @classmethod
    def create(cls, **values: Any) -> RunConfig:
        """Validate names and values; a full-data strategy gets budget 1 whatever was asked."""
        train = values.pop("train", None)
        train = train if isinstance(train, TrainConfig) else validated(TrainConfig, train or {}, "training settings")
        config = validated(cls, {**values, "train": train}, "run configuration")
        if config.dataset not in DATASETS:
            raise UnknownNameError("dataset", config.dataset, DATASETS)
        if config.model not in MODELS:
            raise UnknownNameError("model", config.model, MODELS)
        params = validate_params(config.strategy, config.params).model_dump(mode="json", exclude_defaults=True)
        if strategy_spec(config.strategy).full_data and config.train.budget != 1.0:
            train = config.train.model_copy(update={"budget": 1.0})
        return config.model_copy(update={"params": params, "train": train})

    @property
    def run_id(self) -> str:
        """Hash of the whole configuration: the same command resumes and finds the same run."""
        left_out: dict[str, Any] = {k: True for k in self._defaulted_later_fields() | EXECUTION_FIELDS}
        if train_defaults := self.train.defaulted_later_fields():
            left_out["train"] = train_defaults
        return hashlib.sha256(self.model_dump_json(exclude=left_out).encode()).hexdigest()[:16]

    def _defaulted_later_fields(self) -> set[str]:
        return {k for k, default in LATER_FIELDS.items() if getattr(self, k) == default}

    @property
    def setting_key(self) -> str:
        """Identity of the comparison this run belongs to: everything but strategy, budget and seed."""
        setting = {k: getattr(self, k) for k in (*SETTING_FIELDS, *LATER_FIELDS)
                   if k not in self._defaulted_later_fields()}
        train = self.train.model_dump(exclude={"budget", *self.train.defaulted_later_fields()})
        return json.dumps({**setting, "train": train}, sort_keys=True)

    @property
    def method_label(self) -> str:
        """The strategy with the parameters that differ from its defaults."""
        params = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.strategy}({params})" if params else self.strategy


def setting_label(setting: str | dict) -> str:
    """A setting in a few words: dataset / model / epochs, the training settings off their defaults, then noise,
    imbalance and holdout when present."""
    s = json.loads(setting) if isinstance(setting, str) else setting
    parts = [s["dataset"], s["model"], f"{s['train']['epochs']} epochs"]
    defaults = TrainConfig().model_dump()
    parts += [f"{k.replace('_', ' ')} {format(v, 'g') if isinstance(v, float) else v}"
              for k, v in s["train"].items() if k not in ("epochs", "budget") and v != defaults.get(k)]
    if s.get("label_noise", 0.0) > 0:
        parts.append(f"{100 * s['label_noise']:g}% {s.get('noise_kind', 'symmetric')} noise")
    if s.get("imbalance", 1.0) != 1.0:
        parts.append(f"imbalance {s['imbalance']:g}")
    if s.get("holdout_fraction", 0.0) > 0:
        parts.append(f"holdout {s['holdout_fraction']:g}")
    return " · ".join(parts)
