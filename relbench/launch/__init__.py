"""Starting relbench runs: joining JAX's multi-process runtime, local multi-process
launches, and the child processes both of them and sweeps start."""
