"""Lightning and the Hugging Face Trainer train real models on a strategy's batches, with exactly the budget's
back-propagated examples, each batch chosen after the previous optimizer step."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from conftest import make_blobs
from coreselect.data import InMemoryDataset
from coreselect.strategies import Budget, create_strategy

STRATEGIES = ["random", "crest", "train-loss", "infobatch"]


def _data(seed: int, n: int = 400) -> InMemoryDataset:
    x, y = make_blobs(n, seed=seed)
    return InMemoryDataset(torch.from_numpy(x), torch.from_numpy(y), num_classes=4)


def _accuracy(model: nn.Module, data: InMemoryDataset) -> float:
    with torch.no_grad():
        return float((model(data.inputs).argmax(1) == data.targets).float().mean())


@pytest.mark.parametrize("name", STRATEGIES)
def test_a_lightning_module_fits_on_a_strategys_batches_and_spends_the_budget(name: str) -> None:
    import lightning.pytorch as pl

    from coreselect.integrations.lightning import LightningSelection

    class Classifier(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
            self.examples: list[int] = []

        def forward(self, x: Tensor) -> Tensor:
            return self.net(x)

        def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
            logits = self(batch.inputs)
            self.examples.append(len(batch.inputs))
            return batch.loss(logits, F.cross_entropy(logits, batch.targets, reduction="none"))

        def configure_optimizers(self):  # type: ignore[no-untyped-def]
            return torch.optim.AdamW(self.parameters(), lr=3e-3)

    torch.manual_seed(0)
    train, test = _data(0), _data(1)
    budget = Budget(0.3, 10, len(train), 16)
    selection = LightningSelection(create_strategy(name), train, budget)
    module = Classifier()
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[selection])
    trainer.fit(module, train_dataloaders=selection.dataloader())
    assert sum(module.examples) == budget.total_examples == selection.feed.spent
    assert selection.feed.step == len(module.examples) == trainer.global_step
    assert selection.feed.context is not None and selection.feed.context.training_signals.steps_recorded
    assert selection.feed.context.peak_learning_rate == 3e-3  # no scheduler: the optimiser's own LR
    assert _accuracy(module.eval(), test) > 0.8  # 4 separable classes; chance is 0.25


@pytest.mark.parametrize("name", STRATEGIES)
def test_a_hugging_face_vit_trains_on_a_strategys_batches_and_spends_the_budget(name: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from transformers import TrainingArguments, ViTConfig, ViTForImageClassification

    from coreselect.integrations.huggingface import LogitsOf, SelectionTrainer

    torch.manual_seed(0)
    train, test = _data(0), _data(1)
    config = ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=32, num_hidden_layers=1,
                       num_attention_heads=2, intermediate_size=64, num_labels=4,
                       attn_implementation="eager")  # CREST's Hessian needs a double backward, which SDPA lacks
    model = ViTForImageClassification(config)
    budget = Budget(0.3, 10, len(train), 16)
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=3e-3, report_to=[], save_strategy="no",
                             logging_strategy="no", use_cpu=True, disable_tqdm=True, seed=0)
    trainer = SelectionTrainer(model=model, args=args, strategy=create_strategy(name), train=train, budget=budget,
                               input_name="pixel_values")
    seen: list[int] = []
    original = trainer.feed.observe
    trainer.feed.observe = lambda ticket: (seen.append(len(ticket)), original(ticket))  # type: ignore[method-assign]
    trainer.train()
    assert sum(seen) == budget.total_examples == trainer.feed.spent
    assert trainer.state.global_step == len(seen) <= args.max_steps
    assert args.max_steps == 10 * math.ceil(round(0.3 * 400) / 16)
    assert trainer.feed.context is not None  # the linear decay's starting LR, though the last step's is near 0
    assert trainer.feed.context.peak_learning_rate == 3e-3 > 10 * trainer.feed.context.learning_rate
    assert _accuracy(LogitsOf(model, "pixel_values").eval(), test) > 0.4  # learned: chance is 0.25


@pytest.mark.parametrize(("schedule", "peak"), [("onecycle", 0.1), ("warmup", 0.05), ("none", 0.02)])
def test_the_feed_reads_the_configured_peak_learning_rate_from_the_loops_scheduler(schedule: str,
                                                                                   peak: float) -> None:
    from coreselect.integrations.feed import learning_rates

    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.02 if schedule == "none" else peak)
    if schedule == "onecycle":  # starts at max_lr / 25
        torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peak, total_steps=10)
    elif schedule == "warmup":  # Hugging Face's kind: a LambdaLR from 0 up to the configured LR
        torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: step / 5)
    current, found = learning_rates(optimizer)
    assert current == optimizer.param_groups[0]["lr"] < peak or schedule == "none"
    assert found == pytest.approx(peak)
    assert learning_rates(None) == (0.0, 0.0)


def test_a_resumed_feed_keeps_the_peak_learning_rate_it_had_seen() -> None:
    from coreselect.integrations.feed import SelectedBatch, SelectionFeed

    train, model = _data(0), nn.Sequential(nn.Flatten(), nn.Linear(64, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    feed = SelectionFeed(create_strategy("random"), train, Budget(0.3, 4, len(train), 16))
    feed.start(model, torch.device("cpu"))
    feed.fill(SelectedBatch(), optimizer)  # a hand-made warm-up that reached 0.1, no scheduler to tell it
    for group in optimizer.param_groups:
        group["lr"] = 0.01
    resumed = SelectionFeed(create_strategy("random"), train, Budget(0.3, 4, len(train), 16))
    resumed.load_state_dict(feed.state_dict())
    resumed.start(model, torch.device("cpu"))
    resumed.fill(SelectedBatch(), optimizer)
    assert resumed.context is not None and resumed.context.peak_learning_rate == 0.1 > resumed.context.learning_rate


def test_a_model_without_second_derivatives_gets_a_one_line_error_from_crest() -> None:
    from transformers import ViTConfig, ViTForImageClassification

    from coreselect.errors import InvalidInputError
    from coreselect.integrations.huggingface import LogitsOf
    from coreselect.train import TrainConfig, Trainer

    config = ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=32, num_hidden_layers=1,
                       num_attention_heads=2, intermediate_size=64, num_labels=4, attn_implementation="sdpa")
    model = LogitsOf(ViTForImageClassification(config), "pixel_values")
    train = _data(0)
    trainer = Trainer(model, create_strategy("crest"), train, train, TrainConfig(epochs=2, budget=0.3, batch_size=16),
                      progress_bar=False)
    with pytest.raises(InvalidInputError, match="attn_implementation='eager'") as caught:
        trainer.fit()
    assert "\n" not in str(caught.value)
