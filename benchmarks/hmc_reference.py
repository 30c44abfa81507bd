"""The gold-standard posterior on two moons, and every approximate method against it.

Full-batch NUTS (``relbench.ppl.sampling.nuts``, blackjax) samples the posterior of a
small MLP's weights under a N(0, prior_scale^2) prior and the categorical likelihood of
the whole training set (``relbench.ppl.network.log_density``), started at the trained
``deterministic`` weights; R-hat and ESS are reported (neural-network posteriors are
multimodal: a large R-hat says the chains sit in different modes). Each method of
``--methods`` trains through the one loop on ``experiments/two_moons_mlp.py`` with the
same MLP, and its predictive distribution on the test set is compared with HMC's:
top-1 agreement, mean total variation, and the test NLL of both; the post-hoc
``laplace`` step (KFAC, evidence-tuned, fitted on the training set: two moons has no
validation set) is scored on the deterministic model's outputs.

    .venv/bin/python benchmarks/hmc_reference.py [--hidden 16 16 --out hmc.md]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from experiments import two_moons_mlp
from relbench.methods.likelihoods import CATEGORICAL
from relbench.metrics import predictive_probs
from relbench.posthoc import laplace
from relbench.ppl import network, sampling
from relbench.ppl.priors import NormalPrior
from relbench.train import sharding
from relbench.train.ensemble_eval import load_run
from relbench.train.loop import train_and_evaluate


def trained(method: str, hidden: tuple[int, ...], epochs: float, root: str):
    config = two_moons_mlp.get_config(method)
    with config.unlocked():
        config.model.hidden_sizes = hidden
        config.train.num_epochs = epochs
    workdir = f"{root}/{method}"
    shutil.rmtree(workdir, ignore_errors=True)
    train_and_evaluate(config, workdir)
    return load_run(workdir, sharding.data_mesh())


def scores(probs: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> dict:
    return {
        "agreement": float(np.mean(probs.argmax(-1) == reference.argmax(-1))),
        "total_variation": float(np.mean(0.5 * np.abs(probs - reference).sum(-1))),
        "nll": float(-np.mean(np.log(probs[np.arange(len(labels)), labels] + 1e-12))),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, nargs="+", default=[16, 16])
    parser.add_argument("--epochs", type=float, default=100.0)
    parser.add_argument("--prior-scale", type=float, default=1.0)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument(
        "--methods",
        default="deterministic,mc_dropout,deep_ensemble,variational,swag,snapshot_ensemble,"
        "multiswag,csgld,sghmc",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    hidden = tuple(args.hidden)
    root = tempfile.mkdtemp(prefix="hmc_reference_")
    base = trained("deterministic", hidden, args.epochs, root)
    exp = base.exp
    train = exp.dataset.train.read(np.arange(len(exp.dataset.train)))
    test = exp.dataset.eval_sets["test"].source.read(
        np.arange(len(exp.dataset.eval_sets["test"].source))
    )
    labels = np.asarray(test["label"])
    params = base.state.params

    def apply(p, x):
        return exp.model.apply({"params": p}, x, train=False)

    density = network.log_density(apply, params, NormalPrior(0.0, args.prior_scale), CATEGORICAL)
    batch = {"input": jnp.asarray(train["input"]), "label": jnp.asarray(train["label"])}
    posterior = sampling.nuts(
        lambda p: density(p, batch),
        params,
        jax.random.key(0),
        num_warmup=args.warmup,
        num_samples=args.samples,
    )
    thinned = jax.tree.map(lambda s: s[:, :: max(args.samples // 100, 1)], posterior.samples)
    flat = jax.tree.map(lambda s: s.reshape((-1,) + s.shape[2:]), thinned)
    logits = jax.lax.map(lambda p: apply(p, jnp.asarray(test["input"]))[0][0], flat)  # [S, N, K]
    reference = np.asarray(predictive_probs(logits))
    rows = {"hmc": scores(reference, reference, labels)}
    diagnostics = {
        "max_rhat": float(posterior.max_rhat),
        "min_ess": float(posterior.min_ess),
        "acceptance_rate": float(posterior.acceptance_rate),
        "parameters": int(sum(p.size for p in jax.tree.leaves(params))),
        "train_examples": len(train["label"]),
    }
    for method in args.methods.split(","):
        run = base if method == "deterministic" else trained(method, hidden, args.epochs, root)
        m_logits, extras = run.exp.method.predict_fn(
            run.exp.model.apply, run.state, jnp.asarray(test["input"]), run.eval_key
        )
        rows[method] = scores(np.asarray(predictive_probs(m_logits)), reference, labels)
        if method == "deterministic":
            # Two moons has no validation set: the step fits on the training set, with
            # the prior precision from the evidence.
            t_outputs = exp.method.predict_fn(
                exp.model.apply, base.state, batch["input"], base.eval_key
            )
            step = laplace.make(structure="kfac", prior_tuning="marglik")
            fitted = jax.jit(step.fit)(t_outputs, {"label": batch["label"]})
            la_logits, _ = step.apply((m_logits, extras), fitted)
            rows["deterministic+laplace"] = scores(
                np.asarray(predictive_probs(la_logits)), reference, labels
            )
    print(json.dumps({"diagnostics": diagnostics, "methods": rows}, indent=1))
    lines = [
        f"HMC reference: NUTS, {diagnostics['parameters']} parameters, max R-hat "
        f"{diagnostics['max_rhat']:.3f}, min ESS {diagnostics['min_ess']:.0f}",
        "",
        "| method | agreement with HMC | total variation | test NLL |",
        "|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['agreement']:.3f} | {row['total_variation']:.3f} | {row['nll']:.3f} |"
        )
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
