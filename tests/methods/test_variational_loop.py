"""A variational MLP trains on digits through the common loop and reports results."""

import numpy as np


def test_variational_mlp_trains_on_digits_through_the_loop(tmp_path):
    from experiments import digits_mlp
    from relbench.train import train_and_evaluate

    config = digits_mlp.get_config("variational,smoke")
    assert config.method.name == "variational"
    config.method.num_samples = 2  # fewer posterior samples: a faster smoke evaluation
    results = train_and_evaluate(config, tmp_path)
    assert (tmp_path / "results.json").exists()
    for set_metrics in results.values():
        assert all(np.isfinite(v) for v in set_metrics.values())
    test_set = next(iter(results.values()))
    assert test_set["accuracy"] > 0.2  # well above chance (0.1) after a few steps
