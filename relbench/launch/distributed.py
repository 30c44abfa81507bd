"""Joining JAX's multi-process runtime (``jax.distributed``) before any device is used.

A run is multi-process when it is told so (``--coordinator_address``,
``--num_processes``, ``--process_id``; ``JAX_COORDINATOR_ADDRESS`` is read by JAX
itself) or when JAX recognises the cluster it runs in (Cloud TPU VM pods, GKE, SLURM,
Open MPI): then every process calls ``jax.distributed.initialize`` with whatever it was
given and JAX fills in the rest. Otherwise the run stays a single process and nothing
is initialised, so ``relbench train`` on a laptop needs no flags.

On CPU the processes exchange data through gloo collectives (set explicitly below, so
a multi-process CPU run never silently falls back to no collectives).
"""

from __future__ import annotations

import jax

from relbench.errors import UsageError

MODES = ("auto", "on", "off")


def detected_cluster() -> str | None:
    """The name of the cluster environment JAX would auto-detect, or None.

    Asks the same detectors ``jax.distributed.initialize()`` runs (JAX keeps them in a
    private registry; opt-in ones such as mpi4py are skipped, as JAX does).
    """
    from jax._src import clusters  # private, but these are JAX's own detectors

    for env in clusters.ClusterEnv._cluster_types:
        if not env.opt_in_only_method and env.is_env_present():
            return env.__name__
    return None


def initialize(
    mode: str = "auto",
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Joins the multi-process run if there is one; returns whether it did.

    Must run before anything asks JAX for devices.

    Args:
      mode: ``auto`` joins when given any explicit setting or when JAX detects a
        cluster; ``on`` always calls ``jax.distributed.initialize`` (JAX must be able to
        fill in what is not given); ``off`` never does.
      coordinator_address: ``host:port`` of process 0's coordinator service.
      num_processes: the number of processes in the run.
      process_id: this process's index in ``[0, num_processes)``.
    """
    if mode not in MODES:
        raise UsageError(f"--distributed={mode} is not one of {', '.join(MODES)}")
    if jax.distributed.is_initialized():
        return True
    explicit = any(v is not None for v in (coordinator_address, num_processes, process_id))
    if mode == "off" or (mode == "auto" and not explicit and detected_cluster() is None):
        if explicit:
            raise UsageError(
                "--distributed=off contradicts --coordinator_address/--num_processes/"
                "--process_id; drop one of them"
            )
        return False
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
        )
    except (ValueError, TypeError, RuntimeError) as error:
        raise UsageError(
            f"cannot join the multi-process run ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200]}); pass --coordinator_address HOST:PORT, "
            "--num_processes N and --process_id I to every process, or --distributed=off"
        ) from None
    return True
