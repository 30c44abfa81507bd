"""Test-session setup: four fake CPU devices, so every test exercises sharding.

``JAX_NUM_CPU_DEVICES`` must be set before JAX initialises its backend; tests that need
another device count run in a subprocess (see tests/train/test_determinism.py).
"""

import os

import pytest

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")


@pytest.fixture(scope="session", autouse=True)
def results_stay_in_range():
    """Every results.json a test writes has every metric inside its range
    (tests/metric_ranges.py); session-wide, so module fixtures' runs are checked too."""
    from relbench.train.writers import RunWriter
    from tests.metric_ranges import out_of_range

    write_results = RunWriter.write_results

    def checked(self, results, curves=None):
        bad = out_of_range(results)
        assert not bad, "results.json metrics out of range:\n" + "\n".join(bad[:20])
        return write_results(self, results, curves)

    RunWriter.write_results = checked
    yield
    RunWriter.write_results = write_results
