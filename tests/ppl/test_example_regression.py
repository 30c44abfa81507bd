"""The worked example: VI on the ppl log joint recovers the closed-form answer."""

import jax
import numpy as np

from examples import bayesian_linear_regression as example


def test_vi_finds_the_mean_field_optimum_of_the_exact_posterior():
    x, _, y = example.simulate(jax.random.key(0))
    log_joint = example.rb.make_log_joint_fn(example.model)
    mean, _, precision = example.closed_form_posterior(x, y)
    vi_mean, vi_std = jax.jit(
        lambda key: example.fit_vi(lambda w: log_joint({"w": w, "y": y}, x), 3, key)
    )(jax.random.key(1))
    # The optimal mean-field Gaussian of a Gaussian posterior N(m, S): mean m,
    # variances 1 / (S^-1)_ii.
    np.testing.assert_allclose(vi_mean, mean, atol=0.01)
    np.testing.assert_allclose(vi_std, 1 / np.sqrt(np.diag(precision)), rtol=0.05)
