"""Distance awareness on two moons: sngp is uncertain far from the data, deterministic not."""

from relbench.train import loop
from tests.methods.sngp_runs import experiment_config

# On the ring of points at distance 3-5 from the moons (ood_far), K = 2, so the least
# confident possible prediction has max-probability 1/K = 0.5.
SNGP_MAX_FAR_CONFIDENCE = 0.6
DETERMINISTIC_MIN_FAR_CONFIDENCE = 0.9
MIN_TEST_ACCURACY = 0.95


def _run(method, workdir):
    config = experiment_config("two_moons_mlp.py", method)
    # The experiment's settings, shortened: 20 epochs, two hidden layers of 64 units,
    # 256 random features, no figure.
    config.train.num_epochs = 20.0
    config.model.hidden_sizes = (64, 64)
    config.dataset.plot_resolution = 0
    if method == "sngp":
        config.method.num_random_features = 256
    return loop.train_and_evaluate(config, workdir)


def test_sngp_is_distance_aware_and_deterministic_is_not(tmp_path):
    sngp = _run("sngp", tmp_path / "sngp")
    deterministic = _run("deterministic", tmp_path / "deterministic")
    assert sngp["test"]["accuracy"] >= MIN_TEST_ACCURACY
    assert deterministic["test"]["accuracy"] >= MIN_TEST_ACCURACY - 0.1
    assert sngp["ood_far"]["mean_confidence"] <= SNGP_MAX_FAR_CONFIDENCE
    assert deterministic["ood_far"]["mean_confidence"] >= DETERMINISTIC_MIN_FAR_CONFIDENCE
