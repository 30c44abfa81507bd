"""An MLP on 8x8 digits with label noise at a known, input-dependent rate.

    relbench train --config experiments/noisy_digits_mlp.py:heteroscedastic --workdir runs/nd

``arg``: ``METHOD[,smoke]`` (default ``deterministic``); ``heteroscedastic`` is the
method this set exists for. The test set is scored against the noisy labels and
against the true label distribution (``soft_*`` metrics). Hardware: one CPU, about a
minute on 2 cores. See relbench/data/label_noise.py and
benchmarks/heteroscedastic_label_noise.py (deterministic vs heteroscedastic).
"""

import ml_collections

from relbench.configs import (
    dataset_config,
    evaluation_config,
    model_config,
    optimizer_config,
    parse_arg,
    posthoc_hparams_config,
    set_method,
    train_config,
)

METHOD_RECIPES = {
    "heteroscedastic": {
        "method": {"num_factors": 3, "train_mc_samples": 32, "test_mc_samples": 256}
    },
}


def sweep() -> list[dict[str, float]]:
    """The heteroscedastic temperature grid; pick by the ``validation`` set's NLL [1].

    [1] Collier et al., CVPR 2021, https://arxiv.org/abs/2105.10305 (Sec. 3).
    """
    return [{"method.temperature": t} for t in (0.25, 0.5, 1.0, 2.0, 4.0)]


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    options = parse_arg(arg)
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.dataset = dataset_config("noisy_digits", max_noise_rate=0.45, num_raters=0)
    config.model = model_config("mlp", hidden_sizes=(256, 256))
    config.optimizer = optimizer_config(name="adam", learning_rate=1e-3, warmup_steps=0)
    config.posthoc = ()  # post-hoc steps after training, e.g. ("temperature_scaling",)
    config.posthoc_hparams = posthoc_hparams_config()
    config.evaluation = evaluation_config()  # the dataset's own sets
    config.train = train_config(
        options.smoke,
        global_batch_size=64,
        num_epochs=30.0,
        log_every_steps=50,
        checkpoint_every_steps=200,
        max_checkpoints_to_keep=2,
        eval_batch_size=256,
    )
    set_method(config, options.method, METHOD_RECIPES)
    if options.smoke:
        config.model.hidden_sizes = (32,)
    config.lock()
    return config
