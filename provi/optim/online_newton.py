"""IVON: improved variational online Newton (Shen et al. 2024, "Variational Learning is Effective
for Large Deep Networks"), as an optax-style transformation.

IVON learns a mean-field Gaussian q(theta) = N(m, diag(sigma^2)) over a network's weights at the
cost of Adam. The weights `params` are the mean m; the optimiser state holds a diagonal Hessian
estimate h of the per-example loss, and sigma^2 = 1 / (ess * (h + weight_decay)). Each step, with
the gradient g_s and the reparameterisation (Price/Stein) Hessian estimate g_s * (theta_s - m) /
sigma^2 averaged over `mc_samples` draws theta_s ~ q:

    momentum <- beta1 * momentum + (1 - beta1) * g
    h_hat    = ess * (h + weight_decay) * mean_s[g_s * (theta_s - m)]
    h        <- beta2 * h + (1 - beta2) * h_hat + (1 - beta2)^2 / 2 * (h - h_hat)^2 / (h + weight_decay)
    m        <- m - lr * (hess_init + weight_decay) * clip((momentum / (1 - beta1^t) + weight_decay * m)
                                                      / (h + weight_decay), -clip_radius, clip_radius)

(the learning rate is rescaled by hess_init + weight_decay, as in the authors' optimizer, so that
learning rates carry over from SGD). The loss is the *mean* loss over a batch; `ess` is the
effective sample size, usually the training-set size N, and `weight_decay` is the prior precision
divided by `ess`: q then approximates the posterior under the prior N(0, 1 / (ess * weight_decay)).

With beta2 = 1 (h frozen at hess_init) and ess -> infinity (theta_s = m), the step is exactly
SGD with debiased EMA momentum and L2 weight decay: m <- m - lr * (momentum / (1 - beta1^t) +
weight_decay * m) while unclipped.

Usage, a drop-in for `optax.adamw` apart from the gradient line:

    >>> import jax, jax.numpy as jnp, optax
    >>> from provi.optim import ivon
    >>> opt = ivon(learning_rate=0.1, ess=100.0, weight_decay=1e-3, hess_init=1.0)
    >>> params = {"w": jnp.zeros(3)}
    >>> state = opt.init(params)
    >>> loss_fn = lambda p, x: jnp.mean((p["w"] - x) ** 2)
    >>> loss, grads = opt.value_and_grad(loss_fn)(jax.random.key(0), params, state, jnp.ones(3))
    >>> updates, state = opt.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["ivon", "IVON", "IVONState", "IVONGrads", "IVONPosterior", "ivon_sample", "ivon_value_and_grad", "ivon_posterior"]


class IVONState(NamedTuple):
    """IVON's state: the step count, the gradient momentum and the diagonal Hessian estimate (both
    shaped like the parameters), and the effective sample size and weight decay that set sigma."""

    count: jax.Array
    momentum: Any
    hess: Any
    ess: jax.Array
    weight_decay: jax.Array


class IVONGrads(NamedTuple):
    """What IVON's update takes: the gradient and the Price/Stein Hessian estimate, each averaged
    over the Monte Carlo draws of the weights (made by `ivon_value_and_grad`)."""

    grad: Any
    hess: Any


class IVONPosterior(NamedTuple):
    """The mean-field Gaussian over the weights: `mean` and `scale` pytrees shaped like the params."""

    mean: Any
    scale: Any

    def sample(self, key: jax.Array, sample_shape: tuple = ()) -> Any:
        """Draws of the weights, each leaf with `sample_shape` in front."""
        leaves, treedef = jax.tree.flatten(self.mean)
        keys = jax.random.split(key, len(leaves))
        scales = treedef.flatten_up_to(self.scale)
        draws = [
            m + s * jax.random.normal(k, tuple(sample_shape) + jnp.shape(m), jnp.result_type(m))
            for m, s, k in zip(leaves, scales, keys)
        ]
        return jax.tree.unflatten(treedef, draws)

    def log_prob(self, params: Any) -> jax.Array:
        """log q(params), summed over every weight."""
        terms = jax.tree.map(
            lambda x, m, s: jnp.sum(-0.5 * ((x - m) / s) ** 2 - jnp.log(s) - 0.5 * jnp.log(2 * jnp.pi)),
            params,
            self.mean,
            self.scale,
        )
        return sum(jax.tree.leaves(terms))


class IVON(NamedTuple):
    """The IVON transformation: optax's `init(params) -> state` and `update(grads, state, params)
    -> (updates, state)`, where `grads` is the `IVONGrads` that `value_and_grad(loss_fn)(key,
    params, state, *args)` returns (`mc_samples` draws of the weights, averaged)."""

    init: Callable
    update: Callable
    value_and_grad: Callable


def _scale(hess: Any, ess: jax.Array, weight_decay: jax.Array) -> Any:
    return jax.tree.map(lambda h: jax.lax.rsqrt(ess * (h + weight_decay)), hess)


def ivon_posterior(params: Any, state: IVONState) -> IVONPosterior:
    """The mean-field Gaussian IVON has learned: mean `params` (IVON's weights are the mean, as in
    the authors' optimizer), scale 1 / sqrt(ess * (hess + weight_decay))."""
    return IVONPosterior(params, _scale(state.hess, state.ess, state.weight_decay))


def ivon_sample(key: jax.Array, params: Any, state: IVONState) -> Any:
    """One draw theta ~ q of the weights, for a forward pass."""
    return ivon_posterior(params, state).sample(key)


def ivon_value_and_grad(loss_fn: Callable, mc_samples: int = 1, *, has_aux: bool = False, axis_name: str | None = None) -> Callable:
    """`f(key, params, state, *args, **kwargs) -> (loss, IVONGrads)`: `loss_fn(theta, *args,
    **kwargs)` (a mean over the batch) and its gradient at `mc_samples` draws theta ~ q, averaged,
    with the Hessian estimate each draw gives. With `has_aux`, `loss_fn` returns (loss, aux) and
    `f` returns ((loss, aux of the first draw), IVONGrads). With `axis_name`, the averages are also
    taken across that mapped axis (`pmap`/`shard_map` data parallelism); under `jit` with sharded
    data nothing is needed, since the batch mean already spans the devices."""
    if not isinstance(mc_samples, int) or mc_samples < 1:
        raise ValueError(f"ivon: mc_samples must be a positive integer, got {mc_samples!r}")
    grad_fn = jax.value_and_grad(loss_fn, has_aux=has_aux)

    def one(params, state, key, args, kwargs):
        theta = ivon_sample(key, params, state)
        value, grad = grad_fn(theta, *args, **kwargs)
        nxg = jax.tree.map(lambda g, t, m: g * (t - m), grad, theta, params)
        return value, grad, nxg

    def value_and_grad(key, params, state, *args, **kwargs):
        keys = jax.random.split(key, mc_samples)
        value, grad, nxg = one(params, state, keys[0], args, kwargs)
        if mc_samples > 1:

            loss0 = value[0] if has_aux else value
            aux = value[1] if has_aux else None
            (loss_sum, grad, nxg), _ = jax.lax.scan(
                lambda c, k: _accumulate(c, one(params, state, k, args, kwargs), has_aux), (loss0, grad, nxg), keys[1:]
            )
            inv = 1.0 / mc_samples
            grad = jax.tree.map(lambda g: g * inv, grad)
            nxg = jax.tree.map(lambda n: n * inv, nxg)
            value = (loss_sum * inv, aux) if has_aux else loss_sum * inv
        if axis_name is not None:
            value, grad, nxg = jax.lax.pmean((value, grad, nxg), axis_name)
        hess = jax.tree.map(lambda n, h: n * state.ess * (h + state.weight_decay), nxg, state.hess)
        return value, IVONGrads(grad, hess)

    return value_and_grad


def _accumulate(carry, new, has_aux):
    loss, grad, nxg = carry
    value, g, n = new
    new_loss = value[0] if has_aux else value
    return (loss + new_loss, jax.tree.map(jnp.add, grad, g), jax.tree.map(jnp.add, nxg, n)), None


def ivon(
    learning_rate: float | optax.Schedule,
    ess: float,
    hess_init: float = 1.0,
    beta1: float = 0.9,
    beta2: float = 0.99999,
    weight_decay: float = 1e-4,
    mc_samples: int = 1,
    clip_radius: float = float("inf"),
    rescale_lr: bool = True,
) -> IVON:
    """IVON with the IVON authors' defaults (see the module docstring for the update)."""
    _check(learning_rate, ess, hess_init, beta1, beta2, weight_decay, clip_radius)
    lr_at = learning_rate if callable(learning_rate) else (lambda count: learning_rate)
    lr_factor = (hess_init + weight_decay) if rescale_lr else 1.0

    def init(params):
        dtype = jnp.result_type(*jax.tree.leaves(params)) if jax.tree.leaves(params) else jnp.float32
        return IVONState(
            count=jnp.zeros((), jnp.int32),
            momentum=jax.tree.map(jnp.zeros_like, params),
            hess=jax.tree.map(lambda p: jnp.full_like(p, hess_init), params),
            ess=jnp.asarray(ess, dtype),
            weight_decay=jnp.asarray(weight_decay, dtype),
        )

    def update(grads, state, params=None):
        if not isinstance(grads, IVONGrads):
            raise TypeError(
                "ivon's update takes the IVONGrads that `opt.value_and_grad(loss_fn)(key, params, state, ...)` "
                f"returns (gradients at sampled weights, with their Hessian estimate), got {type(grads).__name__}"
            )
        if params is None:
            raise ValueError("ivon's update needs the current params (the posterior mean): opt.update(grads, state, params)")
        wd = state.weight_decay
        count = state.count + 1
        momentum = jax.tree.map(lambda mo, g: beta1 * mo + (1 - beta1) * g, state.momentum, grads.grad)
        hess = jax.tree.map(
            lambda h, f: beta2 * h + (1 - beta2) * f + 0.5 * (1 - beta2) ** 2 * (h - f) ** 2 / (h + wd),
            state.hess,
            grads.hess,
        )
        debias = 1 - beta1 ** count.astype(jnp.result_type(float))
        lr = lr_at(state.count) * lr_factor
        updates = jax.tree.map(
            lambda mo, h, p: (-lr * jnp.clip((mo / debias + wd * p) / (h + wd), -clip_radius, clip_radius)).astype(p.dtype),
            momentum,
            hess,
            params,
        )
        return updates, IVONState(count, momentum, hess, state.ess, state.weight_decay)

    def value_and_grad(loss_fn, *, has_aux=False, axis_name=None):
        return ivon_value_and_grad(loss_fn, mc_samples, has_aux=has_aux, axis_name=axis_name)

    return IVON(init, update, value_and_grad)


def _check(learning_rate, ess, hess_init, beta1, beta2, weight_decay, clip_radius):
    checks = [
        (callable(learning_rate) or learning_rate >= 0, f"learning_rate must be >= 0 or a schedule, got {learning_rate!r}"),
        (ess > 0, f"ess (the effective sample size, usually the training-set size) must be > 0, got {ess!r}"),
        (hess_init > 0, f"hess_init must be > 0, got {hess_init!r}"),
        (0 <= beta1 <= 1, f"beta1 must be in [0, 1], got {beta1!r}"),
        (0 <= beta2 <= 1, f"beta2 must be in [0, 1], got {beta2!r}"),
        (weight_decay >= 0, f"weight_decay must be >= 0, got {weight_decay!r}"),
        (clip_radius > 0, f"clip_radius must be > 0, got {clip_radius!r}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"ivon: {message}")
