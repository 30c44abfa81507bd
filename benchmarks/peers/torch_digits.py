"""A whole run against PyTorch: the digits MLP in relbench, in plain PyTorch and in
PyTorch + TorchUncertainty.

    python -m benchmarks.peers.torch_digits --torch-python /work/peers/torch/bin/python

All three train the same model on the same examples: scikit-learn's 8x8 digits
(relbench's ``digits`` dataset, all 10 classes, its train and test splits, written once
to a ``.npz`` that the PyTorch sides read), an MLP 64-256-256-10 with ReLU, Adam at 1e-3
(no weight decay), batch 128, 30 epochs, and report side by side, each the median of
``--rounds`` alternating runs: seconds per training epoch (compilation and evaluation
excluded: relbench's from the ``train/steps_per_second`` it logs, every interval but the
first; PyTorch's from epochs 2..30), and test accuracy, NLL and ECE (15 equal-width
bins of the top-label confidence on every side). Goal: relbench's seconds per epoch
<= 0.7x PyTorch's.

* ``pytorch``: a hand-written ``torch.nn`` loop over shuffled index batches, ECE from
  torchmetrics' ``MulticlassCalibrationError``: the fastest PyTorch loop, the one the
  goal is held to.
* ``torch_uncertainty``: TorchUncertainty's ``ClassificationRoutine`` trained and tested
  by its ``TUTrainer`` (Lightning, a ``DataLoader``, no logger, checkpoint, progress bar
  or validation loop), its own test metrics (``cls/Acc``, ``cls/NLL``, ``cal/ECE``):
  how a TorchUncertainty user runs a baseline. Run when ``torch_uncertainty`` imports
  in the side environment, skipped with the reason otherwise.

**PyTorch is never a dependency.** It runs in a side environment and is called as a
subprocess (``--torch-python``). To make one on x86_64 with Python 3.11:

    python3.11 -m venv /work/peers/torch
    /work/peers/torch/bin/pip install torch==2.14.1 torchvision==0.29.1
    /work/peers/torch/bin/pip install torchmetrics scikit-learn torch-uncertainty \
        lightning rich huggingface_hub timm

TorchUncertainty imports ``torchvision`` (and ``rich``, ``huggingface_hub``, ``timm``,
which it does not declare) at import time. The registry's torchvision 0.29.1 with torch
2.14.1 is a CUDA build (about 5.5 GB in the venv, run on the CPU here); the smaller CPU
wheel of torch 2.13.0 has no torchvision that loads beside it (0.28.0 links
``libc10_cuda.so``), so with it only the ``pytorch`` side runs.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import tempfile
import textwrap

import ml_collections
import numpy as np

from benchmarks.loop_overhead import timed_run
from relbench import configs, data

REPO = pathlib.Path(__file__).resolve().parents[2]
EPOCHS, BATCH, LEARNING_RATE, HIDDEN = 30, 128, 1e-3, (256, 256)

#: What both PyTorch sides share: the arguments, the arrays, the model.
TORCH_PREAMBLE = """
import json, sys, time
import numpy as np, torch

arrays = np.load(sys.argv[1])
epochs, batch, lr = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
hidden = [int(h) for h in sys.argv[5].split(",")]
if int(sys.argv[6]):
    torch.set_num_threads(int(sys.argv[6]))
torch.manual_seed(0)

def tensors(split):
    y = torch.tensor(arrays[f"{split}_y"]).long()
    return torch.tensor(arrays[f"{split}_x"]).reshape(len(y), -1), y

x, y = tensors("train")
widths = [x.shape[1], *hidden]
layers = []
for a, b in zip(widths[:-1], widths[1:]):
    layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
model = torch.nn.Sequential(*layers, torch.nn.Linear(widths[-1], 10))
generator = torch.Generator().manual_seed(0)

def report(seconds, accuracy, nll, ece):
    print(json.dumps({
        "seconds_per_epoch": float(np.median(seconds[1:])),
        "accuracy": float(accuracy), "nll": float(nll), "ece": float(ece),
        "threads": torch.get_num_threads(),
    }))
"""

#: The ``pytorch`` side: a plain training loop.
TORCH_RUN = TORCH_PREAMBLE + textwrap.dedent(
    """
    from torchmetrics.classification import MulticlassCalibrationError

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    seconds = []
    for epoch in range(epochs):
        start = time.perf_counter()
        model.train()
        for rows in torch.randperm(len(y), generator=generator).split(batch):
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x[rows]), y[rows]).backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
    model.eval()
    with torch.no_grad():
        tx, ty = tensors("test")
        logits = model(tx)
    ece = MulticlassCalibrationError(num_classes=10, n_bins=15, norm="l1")
    accuracy = (logits.argmax(-1) == ty).float().mean()
    nll = torch.nn.functional.cross_entropy(logits, ty)
    report(seconds, accuracy, nll, ece(logits.softmax(-1), ty))
    """
)

#: The ``torch_uncertainty`` side: its routine, trainer and test metrics.
TORCH_UNCERTAINTY_RUN = TORCH_PREAMBLE + textwrap.dedent(
    """
    from lightning.pytorch.callbacks import Callback
    from torch.utils.data import DataLoader, TensorDataset
    from torch_uncertainty import TUTrainer
    from torch_uncertainty.routines import ClassificationRoutine

    class EpochSeconds(Callback):
        def __init__(self):
            self.seconds = []

        def on_train_epoch_start(self, trainer, module):
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            self.seconds.append(time.perf_counter() - self.start)

    routine = ClassificationRoutine(
        model=model,
        num_classes=10,
        loss=torch.nn.CrossEntropyLoss(),
        optim_recipe=torch.optim.Adam(model.parameters(), lr=lr),
        num_bins_calibration_error=15,
    )
    timer = EpochSeconds()
    trainer = TUTrainer(
        accelerator="cpu", devices=1, max_epochs=epochs, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[timer], num_sanity_val_steps=0, limit_val_batches=0,
    )
    train = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True, generator=generator)
    trainer.fit(routine, train_dataloaders=train)
    test = DataLoader(TensorDataset(*tensors("test")), batch_size=512)
    metrics = trainer.test(routine, dataloaders=test, verbose=False)[0]
    report(timer.seconds, metrics["test/cls/Acc"], metrics["test/cls/NLL"], metrics["test/cal/ECE"])
    """
)
SIDES = {"pytorch": TORCH_RUN, "torch_uncertainty": TORCH_UNCERTAINTY_RUN}


def relbench_config() -> ml_collections.ConfigDict:
    config = configs.load(str(REPO / "experiments/digits_mlp.py"))
    with config.unlocked():
        config.dataset.held_out_classes = ()
        config.model.hidden_sizes = HIDDEN
        config.optimizer.update(name="adam", learning_rate=LEARNING_RATE, weight_decay=0.0)
        config.optimizer.warmup_steps = 0
        config.train.global_batch_size = BATCH
        config.train.num_epochs = float(EPOCHS)
        config.train.log_every_steps = 10  # about one epoch (1257 examples)
        config.train.checkpoint_every_steps = 10**9  # only the final save
        config.evaluation.shift_suite = ""
    return config


def relbench_run() -> dict:
    config = relbench_config()
    steps_per_epoch = len(data.make("digits").train) / BATCH
    results, steps_per_second = timed_run(config)
    test = results["test"]
    return {
        "seconds_per_epoch": steps_per_epoch / steps_per_second,
        **{name: test[name] for name in ("accuracy", "nll", "ece")},
    }


def write_digits(path: pathlib.Path) -> None:
    dataset = data.make("digits")
    train = dataset.train.read(np.arange(len(dataset.train)))
    test_source = dataset.eval_sets["test"].source
    test = test_source.read(np.arange(len(test_source)))
    np.savez(
        path,
        train_x=train["input"].astype(np.float32),
        train_y=train["label"],
        test_x=test["input"].astype(np.float32),
        test_y=test["label"],
    )


def torch_run(python: str, script: str, arrays: pathlib.Path, threads: int) -> dict:
    """One run of a PyTorch side's ``script`` in the side environment's ``python``."""
    hidden = ",".join(map(str, HIDDEN))
    command = [python, "-c", script, str(arrays), str(EPOCHS), str(BATCH), str(LEARNING_RATE)]
    out = subprocess.run(
        [*command, hidden, str(threads)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def missing_torch_uncertainty(python: str) -> str | None:
    """Why ``torch_uncertainty`` does not import in ``python``'s environment, or None."""
    code = "import torch_uncertainty.routines, torch_uncertainty.utils.trainer"
    done = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return done.stderr.strip().splitlines()[-1] if done.returncode else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-python", default="/work/peers/torch/bin/python")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="torch.set_num_threads for the PyTorch side (0: PyTorch's default)",
    )
    args = parser.parse_args()
    if not pathlib.Path(args.torch_python).exists():
        print(
            f"no PyTorch environment at {args.torch_python}; make one as this "
            "benchmark's docstring says, and pass --torch-python"
        )
        raise SystemExit(2)
    sides = dict(SIDES)
    missing = missing_torch_uncertainty(args.torch_python)
    if missing:
        print(f"torch_uncertainty skipped: {missing} (see this benchmark's docstring)")
        del sides["torch_uncertainty"]
    runs: dict[str, list[dict]] = {"relbench": [], **{name: [] for name in sides}}
    with tempfile.TemporaryDirectory() as folder:
        arrays = pathlib.Path(folder) / "digits.npz"
        write_digits(arrays)
        for _ in range(args.rounds):
            runs["relbench"].append(relbench_run())
            for name, script in sides.items():
                runs[name].append(torch_run(args.torch_python, script, arrays, args.torch_threads))
    print(
        f"digits MLP 64-{'-'.join(map(str, HIDDEN))}-10, Adam {LEARNING_RATE}, batch "
        f"{BATCH}, {EPOCHS} epochs; median of {args.rounds} alternating runs"
    )
    print(f"{'':18s} {'s/epoch':>9s} {'accuracy':>9s} {'nll':>7s} {'ece':>7s}")
    median = {}
    for name, results in runs.items():
        median[name] = {
            k: statistics.median(r[k] for r in results) for k in results[0] if k != "threads"
        }
        m = median[name]
        print(
            f"{name:18s} {m['seconds_per_epoch']:9.4f} {m['accuracy']:9.4f} "
            f"{m['nll']:7.4f} {m['ece']:7.4f}"
        )
    print(f"PyTorch threads: {runs['pytorch'][0]['threads']}")
    for name in sides:
        ratio = median["relbench"]["seconds_per_epoch"] / median[name]["seconds_per_epoch"]
        goal = " (goal <= 0.7)" if name == "pytorch" else ""
        print(f"relbench / {name} seconds per epoch: {ratio:.3f}{goal}")


if __name__ == "__main__":
    main()
