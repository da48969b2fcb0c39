"""Every registered objective runs under jit, vmap and grad, and inside `provi.fit`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import provi
from objective_models import X, Harness, make_aux_guide, make_guide, model

HIERARCHICAL = ("HVI", "IWHVI", "DIWHVI")


def guide_for(obj, estimator=None):
    if obj.name in HIERARCHICAL:
        return make_aux_guide(0.1, 0.5, 0.3)
    return make_guide(0.1, 0.4, estimator)


def _finite(tree):
    return all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("obj", provi.objectives.REGISTRY, ids=repr)
def test_jit_vmap_grad(obj):
    h = Harness(guide_for(obj), obj)
    value, grads = h.value_and_grad(h.params, jax.random.PRNGKey(1))  # jit of grad
    assert value.shape == () and np.isfinite(value) and _finite(grads)
    assert jax.tree.structure(grads) == jax.tree.structure(h.params)
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(grads["guide"]))
    values, many = h.run(3)  # jit of vmap over keys of grad
    assert values.shape == (3,) and _finite(many)
    np.testing.assert_allclose(h.run(3)[0], values)  # same seeds, same values


@pytest.mark.parametrize("obj", [o for o in provi.objectives.REGISTRY if o.name not in HIERARCHICAL], ids=repr)
def test_score_function_guide_sites(obj):
    """With a non-reparameterized guide site every objective still gives finite gradients."""
    h = Harness(guide_for(obj, provi.estimators.Reinforce()), obj)
    values, grads = h.run(3)
    assert np.all(np.isfinite(values)) and _finite(grads)


@pytest.mark.parametrize("obj", provi.objectives.REGISTRY, ids=repr)
def test_fit_runs_every_objective(obj):
    res = provi.fit(model, X, guide=guide_for(obj), objective=obj, steps=30, progress=False, seed=0)
    assert res.losses.shape == (30,) and np.all(np.isfinite(res.losses))
