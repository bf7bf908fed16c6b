"""Peak memory of stable coresets against CREST, each measured in its own run (one compressed epoch of
Fashion-MNIST at budget 0.1, same model and seed).

On the CPU the measure is the process's peak resident memory (Linux VmHWM, reset once data and model are
loaded), also given above the resident size at that point (the working memory of selection and training);
on a GPU it is ``torch.cuda.max_memory_allocated``.

    .venv/bin/python benchmarks/peak_memory.py [--model lenet] [--strategies stable crest] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import json, sys, torch
from coreselect.data import load_dataset, prepare_splits
from coreselect.models import create_model
from coreselect.strategies import create_strategy
from coreselect.train import TrainConfig, Trainer

strategy, model_name, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
device = "cuda" if torch.cuda.is_available() else "cpu"
splits = prepare_splits(load_dataset("fashion-mnist"), val_fraction=0.1)
torch.manual_seed(0)
model = create_model(model_name, splits.train.input_shape, splits.train.num_classes)
trainer = Trainer(model, create_strategy(strategy), splits.train, splits.test,
                  TrainConfig(epochs=epochs, budget=0.1, eval_points=1), device=device, progress_bar=False)

def status_bytes(field):
    line = next(l for l in open("/proc/self/status") if l.startswith(field + ":"))
    return int(line.split()[1]) * 1024

if device == "cuda":
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
else:
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak resident size to the current one
    base = status_bytes("VmRSS")
trainer.fit()
peak = torch.cuda.max_memory_allocated() if device == "cuda" else status_bytes("VmHWM")
print(json.dumps({"device": device, "base": base, "peak": peak}))
"""


def measure(strategy: str, model: str, epochs: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, strategy, model, str(epochs)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--strategies", nargs=2, default=["stable", "crest"])
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    results = {s: measure(s, args.model, args.epochs) for s in args.strategies}
    for name, r in results.items():
        print(f"{name:8s} ({r['device']}): peak {r['peak'] / 2**20:8.1f} MiB, above the loaded data and model "
              f"{(r['peak'] - r['base']) / 2**20:8.1f} MiB")
    a, b = (results[s] for s in args.strategies)
    print(f"peak ratio {args.strategies[0]} / {args.strategies[1]}: {a['peak'] / b['peak']:.3f} (whole process), "
          f"{(a['peak'] - a['base']) / max(b['peak'] - b['base'], 1):.3f} (working memory)")


if __name__ == "__main__":
    main()
