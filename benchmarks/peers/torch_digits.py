"""A whole run against PyTorch: the digits MLP in relbench and in plain PyTorch.

    python -m benchmarks.peers.torch_digits --torch-python /work/peers/torch/bin/python

Both train the same model on the same examples: scikit-learn's 8x8 digits (relbench's
``digits`` dataset, all 10 classes, its train and test splits, written once to a
``.npz`` that the PyTorch side reads), an MLP 64-256-256-10 with ReLU, Adam at 1e-3 (no
weight decay), batch 128, 30 epochs, and report side by side, each the median of
``--rounds`` alternating runs: seconds per training epoch (compilation and evaluation
excluded: relbench's from the ``train/steps_per_second`` it logs, every interval but the
first; PyTorch's from epochs 2..30), and test accuracy, NLL and ECE (15 equal-width
bins of the top-label confidence on both sides; PyTorch's from torchmetrics'
``MulticlassCalibrationError``). Goal: relbench's seconds per epoch <= 0.7x PyTorch's.

**PyTorch is never a dependency.** It runs in a side environment and is called as a
subprocess (``--torch-python``). To make one (CPU wheel from the package registry):

    python3.11 -m venv /work/peers/torch
    /work/peers/torch/bin/pip install torch==2.13.0 torchmetrics scikit-learn
    /work/peers/torch/bin/pip install torch-uncertainty lightning   # optional, see below

TorchUncertainty (with ``lightning``) installs, but it imports ``torchvision`` at import
time, and no torchvision build matches the CPU torch wheel here (the registry's
torchvision 0.28.0, the one pinned to torch 2.13.0, links ``libc10_cuda.so`` and fails
to load beside the CPU build; a stub ``torchvision`` gets no further than
TorchUncertainty's dataset classes, which subclass its types), so the PyTorch side is
plain ``torch.nn`` with torchmetrics' calibration error (the metric TorchUncertainty's
``CalibrationError`` wraps); for a deterministic MLP TorchUncertainty's routine adds no
layer of its own.
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

TORCH_RUN = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np, torch
    from torchmetrics.classification import MulticlassCalibrationError

    arrays = np.load(sys.argv[1])
    epochs, batch, lr = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    hidden = [int(h) for h in sys.argv[5].split(",")]
    if int(sys.argv[6]):
        torch.set_num_threads(int(sys.argv[6]))
    torch.manual_seed(0)
    x = torch.tensor(arrays["train_x"]).reshape(len(arrays["train_y"]), -1)
    y = torch.tensor(arrays["train_y"]).long()
    widths = [x.shape[1], *hidden]
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(widths[-1], 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
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
        tx = torch.tensor(arrays["test_x"]).reshape(len(arrays["test_y"]), -1)
        ty = torch.tensor(arrays["test_y"]).long()
        logits = model(tx)
    ece = MulticlassCalibrationError(num_classes=10, n_bins=15, norm="l1")
    print(json.dumps({
        "seconds_per_epoch": float(np.median(seconds[1:])),
        "accuracy": float((logits.argmax(-1) == ty).float().mean()),
        "nll": float(torch.nn.functional.cross_entropy(logits, ty)),
        "ece": float(ece(logits.softmax(-1), ty)),
        "threads": torch.get_num_threads(),
    }))
    """
)


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


def torch_run(python: str, arrays: pathlib.Path, threads: int) -> dict:
    hidden = ",".join(map(str, HIDDEN))
    command = [python, "-c", TORCH_RUN, str(arrays), str(EPOCHS), str(BATCH), str(LEARNING_RATE)]
    out = subprocess.run(
        [*command, hidden, str(threads)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


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
    runs: dict[str, list[dict]] = {"relbench": [], "pytorch": []}
    with tempfile.TemporaryDirectory() as folder:
        arrays = pathlib.Path(folder) / "digits.npz"
        write_digits(arrays)
        for _ in range(args.rounds):
            runs["relbench"].append(relbench_run())
            runs["pytorch"].append(torch_run(args.torch_python, arrays, args.torch_threads))
    print(
        f"digits MLP 64-{'-'.join(map(str, HIDDEN))}-10, Adam {LEARNING_RATE}, batch "
        f"{BATCH}, {EPOCHS} epochs; median of {args.rounds} alternating runs"
    )
    print(f"{'':10s} {'s/epoch':>9s} {'accuracy':>9s} {'nll':>7s} {'ece':>7s}")
    median = {}
    for name, results in runs.items():
        median[name] = {
            k: statistics.median(r[k] for r in results) for k in results[0] if k != "threads"
        }
        m = median[name]
        print(
            f"{name:10s} {m['seconds_per_epoch']:9.4f} {m['accuracy']:9.4f} "
            f"{m['nll']:7.4f} {m['ece']:7.4f}"
        )
    ratio = median["relbench"]["seconds_per_epoch"] / median["pytorch"]["seconds_per_epoch"]
    print(f"PyTorch threads: {runs['pytorch'][0]['threads']}")
    print(f"relbench / PyTorch seconds per epoch: {ratio:.3f} (goal <= 0.7)")


if __name__ == "__main__":
    main()
