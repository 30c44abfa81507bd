"""Test-session setup: four fake CPU devices, so every test exercises sharding.

``JAX_NUM_CPU_DEVICES`` must be set before JAX initialises its backend; tests that need
another device count run in a subprocess (see tests/train/test_determinism.py).
"""

import os

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
