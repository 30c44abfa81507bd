"""The default initializers of the NNX layers (module-level, so defaults share them)."""

from flax import nnx

LECUN_NORMAL = nnx.initializers.lecun_normal()
ZEROS = nnx.initializers.zeros_init()
