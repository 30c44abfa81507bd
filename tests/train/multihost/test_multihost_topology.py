"""Multi-process training gives what single-process training gives.

2 processes x 2 CPU devices (JAX's real multi-process runtime, gloo collectives) and
1 process x 4 devices see the same global batches and the same random draws (MC
dropout), so they end at the same metrics up to the order of float reductions across
processes; the same 2 x 2 run repeated ends at bitwise the same parameters.
"""

import numpy as np

# Metrics that move with float noise only; the others (ranks, thresholds, bins, argmax)
# can also see a near-tie flip, which moves them by about one example in N (N >= 180).
SMOOTH = {
    "nll", "brier", "mean_confidence", "mean_entropy", "predictive_entropy",
    "expected_member_entropy", "mutual_information", "pairwise_kl", "cNLL", "cBrier",
}  # fmt: skip


def test_two_processes_train_like_one(runs, run_2x2, run_1x4):
    for a, b in zip(runs.params(run_1x4), runs.params(run_2x2), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    one, two = runs.results(run_1x4), runs.results(run_2x2)
    assert one.keys() == two.keys()
    for set_name in one:
        assert one[set_name].keys() == two[set_name].keys()
        for metric, value in one[set_name].items():
            smooth = metric.split("/")[0] in SMOOTH
            np.testing.assert_allclose(
                two[set_name][metric],
                value,
                rtol=1e-5 if smooth else 0,
                atol=1e-6 if smooth else 5e-3,
                err_msg=f"{set_name}/{metric}",
            )
    # Only process 0 writes the log: every logged step appears once.
    steps = runs.logged_steps(run_2x2)
    assert steps == sorted(set(steps)) == runs.logged_steps(run_1x4)


def test_two_process_run_repeats_bitwise(runs, run_2x2, tmp_path):
    again = runs.run(tmp_path / "again", processes=2, devices=2)
    for a, b in zip(runs.params(run_2x2), runs.params(again), strict=True):
        np.testing.assert_array_equal(a, b)
    assert runs.results(again) == runs.results(run_2x2)
