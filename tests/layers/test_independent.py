"""Independent members: init is a vmap over member keys, apply a per-member loop."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from relbench.layers.heads import DenseHead
from relbench.layers.independent import independent_members
from relbench.layers.members import split_members

M, B = 3, 4


def test_init_is_a_vmap_over_member_keys_and_keeps_the_layer_name():
    x = jnp.ones((M * B, 5))
    key = jax.random.key(0)
    members = independent_members(nn.Dense, M)(7)
    variables = members.init(key, x)
    want = jax.vmap(lambda k: nn.Dense(7).init(k, x[:B]))(jax.random.split(key, M))
    jax.tree.map(np.testing.assert_array_equal, variables, want)
    assert members.__class__.__name__ == "Dense"


def test_apply_equals_a_loop_over_members_for_a_head_with_extras():
    x = jax.random.normal(jax.random.key(0), (M * B, 5))
    head = DenseHead(3, dense=independent_members(nn.Dense, M))
    variables = head.init(jax.random.key(1), x, train=False)
    logits, extras = head.apply(variables, x, train=True)
    assert logits.shape == (M * B, 3) and extras == {}
    rows = split_members(x, M)
    for m in range(M):
        member = {
            "params": {"Dense_0": jax.tree.map(lambda a, m=m: a[m], variables["params"]["Dense_0"])}
        }
        want, _ = DenseHead(3).apply(member, rows[m], train=True)
        np.testing.assert_allclose(split_members(logits, M)[m], want, rtol=1e-6)


def test_unrolled_members_equal_vmapped_members_in_value_and_gradient():
    x = jax.random.normal(jax.random.key(0), (M * B, 6, 6, 2))
    vmapped = independent_members(nn.Conv, M)(4, (3, 3))
    unrolled = independent_members(nn.Conv, M, unroll=True)(4, (3, 3))
    variables = unrolled.init(jax.random.key(1), x)
    jax.tree.map(np.testing.assert_array_equal, variables, vmapped.init(jax.random.key(1), x))

    def loss(layer):
        return jax.value_and_grad(lambda v: jnp.sum(layer.apply(v, x) ** 2))(variables)

    jax.tree.map(  # kernel gradients are sums of ~100 terms of size ~50: float32 order
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4),
        loss(unrolled),
        loss(vmapped),
    )


def test_a_partial_layer_type_keeps_its_fields_for_every_member():
    x = jax.random.normal(jax.random.key(2), (M * B, 5)) * 2.0 + 1.0
    norm = independent_members(functools.partial(nn.BatchNorm, momentum=0.5), M)
    assert isinstance(norm, functools.partial) and norm.keywords == {"momentum": 0.5}
    layer = norm()
    assert layer.momentum == 0.5
    variables = layer.init(jax.random.key(3), x, use_running_average=False)
    # Perturb each member's scale and running statistics so that members differ.
    variables = jax.tree.map(lambda a: a + jax.random.normal(jax.random.key(4), a.shape), variables)
    variables["batch_stats"]["var"] = jnp.abs(variables["batch_stats"]["var"]) + 0.5
    out, updates = layer.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    test_out = layer.apply(variables, x, use_running_average=True)
    rows = split_members(x, M)
    for m in range(M):
        member = jax.tree.map(lambda a, m=m: a[m], variables)
        base = nn.BatchNorm(momentum=0.5)
        want, want_updates = base.apply(
            member, rows[m], use_running_average=False, mutable=["batch_stats"]
        )
        np.testing.assert_allclose(split_members(out, M)[m], want, rtol=1e-5, atol=1e-6)
        jax.tree.map(  # the running averages move with momentum 0.5, member by member
            lambda a, b, m=m: np.testing.assert_allclose(a[m], b, rtol=1e-5, atol=1e-6),
            updates["batch_stats"],
            want_updates["batch_stats"],
        )
        want_test = base.apply(member, rows[m], use_running_average=True)
        np.testing.assert_allclose(split_members(test_out, M)[m], want_test, rtol=1e-5, atol=1e-6)


def test_call_keywords_reach_every_member_of_a_head():
    x = jax.random.normal(jax.random.key(5), (M * B, 5))
    head = independent_members(DenseHead, M)(3)
    variables = head.init(jax.random.key(6), x, train=False)
    assert variables["params"]["Dense_0"]["kernel"].shape == (M, 5, 3)
    logits, extras = head.apply(variables, x, train=True)
    assert logits.shape == (M * B, 3) and extras == {}
    rows = split_members(x, M)
    for m in range(M):
        member = jax.tree.map(lambda a, m=m: a[m], variables)
        want, _ = DenseHead(3).apply(member, rows[m], train=True)
        np.testing.assert_allclose(split_members(logits, M)[m], want, rtol=1e-6)
