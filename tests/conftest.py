"""Test-session setup: four fake CPU devices, so every test exercises sharding.

``JAX_NUM_CPU_DEVICES`` must be set before JAX initialises its backend; tests that need
another device count run in a subprocess (see tests/train/test_determinism.py).

One session-wide XLA compilation cache (JAX's persistent cache, in a fresh temporary
folder removed at the end): the suite compiles the same small programs in many tests,
xdist workers and subprocesses (which inherit the environment), and each is compiled
once. A cached executable is the one XLA compiled, so results stay bit for bit.

OpenBLAS (scipy's, which XLA's CPU linear algebra calls) runs single-threaded, as the
CLI sets it (relbench/cli/main.py): each fake device is a thread of its own. The
suite's programs are tiny and compiled once each, so compiling is what costs, and XLA
compiles them cheaply: without its expensive optimizations (a quarter less time for the
SNGP and MIMO tests), with its classic loop-fusion emitters instead of the MLIR ones
and in one codegen thread (half the compile time of a learning-gate run, 3.6 s -> 1.4 s
for rank1 on the MLP; the suite on 2 cores 850 s -> 572 s; both flags exist in jaxlib 0.10
and 0.12). A test that needs other flags runs a subprocess with its own XLA_FLAGS.
"""

import os
import shutil
import tempfile

import pytest

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("JAX_NUM_CPU_DEVICES", "4")
os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
    "--xla_cpu_use_fusion_emitters=false --xla_cpu_parallel_codegen_split_count=1",
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # the controller; workers inherit it
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="relbench-tests-xla-")
    os.environ["RELBENCH_TESTS_OWN_CACHE"] = "1"
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput") and os.environ.get("RELBENCH_TESTS_OWN_CACHE"):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


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
