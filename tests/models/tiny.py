"""Tiny versions of every model (shape hyperparameters and an input shape), for tests."""

import jax

TINY = {
    "mlp": ({"hidden_sizes": (8, 6)}, (5,)),
    "cnn": ({"features": (4, 8), "hidden_size": 6}, (8, 8, 1)),
    "resnet_cifar": ({"depth": 8, "width": 4}, (16, 16, 3)),
    "resnet": ({"stage_sizes": (1, 1), "width": 4}, (32, 32, 3)),
    "wide_resnet": ({"depth": 10, "width_multiplier": 1}, (16, 16, 3)),
    "vit": (
        {"patch_size": 4, "hidden_size": 8, "num_layers": 1, "num_heads": 2, "mlp_dim": 8},
        (16, 16, 3),
    ),
    "lstm": ({"vocab_size": 20, "embed_dim": 4, "hidden_size": 6}, (7,)),
}


def tiny_inputs(name, batch):
    _, shape = TINY[name]
    if name == "lstm":
        return jax.random.randint(jax.random.key(1), (batch, *shape), 0, 20)
    return jax.random.normal(jax.random.key(1), (batch, *shape))
