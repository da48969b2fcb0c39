"""Normalizing flows on a flat vector: RealNVP, IAF, neural spline flow, planar and radial flows.

A flow pushes standard normal noise through invertible layers and a final elementwise affine map
`v = loc + scale * f(eps)`. Every coupling or autoregressive layer starts at the identity (its
network's last layer is zero), so a new flow *is* the normal `N(loc, diag(scale^2))`: placed in a
model's whitened space (see `provi.guides.program.FamilyGuide`) it starts as the Laplace (or a
fitted Gaussian) approximation and learns only what that misses.

Every flow has `log_prob` at any point (needed for `provi.density(guide, z)` and hence for the
path-gradient (STL) estimator `provi.density(provi.detach(guide), z)`): RealNVP and spline
couplings invert in closed form, IAF by D passes of its autoregressive network, radial layers in
closed form, planar layers by bisection on one scalar per layer (exact to float precision).

Written here, not taken from a library: the parameters of a family must be plain array pytrees
(the compiled loop, optax and `FitResult.save` handle those), so the small multilayer perceptrons
are dicts of arrays and four lines of code, rather than equinox modules whose activation
functions would be pytree leaves.
"""

from __future__ import annotations

import abc
import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from provi.core import rand
from provi.core.batching import vmap_or_call
from provi.guides.families import Family, _positive, _std_normal_logpdf, _unpositive

__all__ = ["Flow", "RealNVP", "IAF", "NeuralSplineFlow", "Planar", "Radial"]

_MOMENT_DRAWS = 8192


# ----------------------------------------------------------------------------- small networks


def _mlp_init(key, sizes: list[int], dtype) -> dict:
    """A tanh MLP's weights; the last layer is zero, so the network starts at output 0."""
    ws, bs = [], []
    keys = jax.random.split(key, len(sizes) - 1)
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        w = jnp.zeros((a, b), dtype) if last else rand.normal(keys[i], (a, b), dtype) / math.sqrt(max(a, 1))
        ws.append(w)
        bs.append(jnp.zeros((b,), dtype))
    return {"w": ws, "b": bs}


def _mlp(p: dict, x, masks=None):
    n = len(p["w"])
    for i, (w, b) in enumerate(zip(p["w"], p["b"])):
        if masks is not None:
            w = w * masks[i]
        x = x @ w + b
        if i < n - 1:
            x = jnp.tanh(x)
    return x


def _soft_clamp(s, c: float = 3.0):
    return c * jnp.tanh(s / c)


# ----------------------------------------------------------------------------- the flow family


class Flow(Family):
    """A normalizing flow: standard normal noise, `layers` invertible layers, then an elementwise affine map."""

    layers: eqx.AbstractVar[int]

    is_point: ClassVar[bool] = False

    @abc.abstractmethod
    def _layer_init(self, key, dim: int, i: int, dtype) -> dict:
        """Parameters of layer `i`, at the identity map."""

    @abc.abstractmethod
    def _layer_forward(self, p: dict, x, i: int):
        """One vector (D,) through layer `i`: `(y, log|det dy/dx|)`."""

    @abc.abstractmethod
    def _layer_inverse(self, p: dict, y, i: int):
        """The inverse of layer `i` at `y` (D,): `(x, log|det dy/dx| at x)`."""

    def init(self, key, dim, loc, scale):
        keys = jax.random.split(key, max(self.layers, 1))
        layers = [self._layer_init(keys[i], dim, i, loc.dtype) for i in range(self.layers)]
        return {"loc": loc, "log_scale": jnp.log(scale), "layers": layers}

    def forward(self, params, x):
        """Noise `x` (D,) -> `(v, log|det dv/dx|)`."""
        ld = jnp.zeros((), x.dtype)
        for i, p in enumerate(params["layers"]):
            x, l = self._layer_forward(p, x, i)
            ld = ld + l
        return params["loc"] + jnp.exp(params["log_scale"]) * x, ld + jnp.sum(params["log_scale"])

    def inverse(self, params, v):
        """`v` (D,) -> `(noise x, log|det dv/dx|)`."""
        y = (v - params["loc"]) * jnp.exp(-params["log_scale"])
        ld = jnp.sum(params["log_scale"])
        for i in reversed(range(len(params["layers"]))):
            y, l = self._layer_inverse(params["layers"][i], y, i)
            ld = ld + l
        return y, ld

    def sample(self, params, key, n):
        loc = params["loc"]
        eps = rand.normal(key, (n,) + loc.shape, loc.dtype)
        v, ld = vmap_or_call(lambda e: self.forward(params, e))(eps)
        return v, _std_normal_logpdf(eps) - ld

    def log_prob(self, params, v):
        d = params["loc"].shape[0]
        flat = v.reshape(-1, d)
        x, ld = jax.vmap(lambda y: self.inverse(params, y))(flat)
        return (_std_normal_logpdf(x) - ld).reshape(v.shape[:-1])

    def moments(self, params):
        """Mean and covariance estimated from 8192 draws with a fixed key (a flow has no closed form)."""
        v, _ = self.sample(params, jax.random.PRNGKey(0), _MOMENT_DRAWS)
        return jnp.mean(v, 0), jnp.cov(v, rowvar=False).reshape(v.shape[1], v.shape[1])


def _mask(dim: int, i: int, dtype):
    return ((jnp.arange(dim) + i) % 2).astype(dtype)


class RealNVP(Flow):
    """Affine coupling layers (Dinh et al. 2017) with alternating masks; the log-scales are soft-clamped to (-3, 3)."""

    layers: int = 6
    hidden: int = 32

    def _layer_init(self, key, dim, i, dtype):
        return _mlp_init(key, [dim, max(self.hidden, dim), max(self.hidden, dim), 2 * dim], dtype)

    def _st(self, p, x, m):
        out = _mlp(p, x * m)
        d = x.shape[0]
        return _soft_clamp(out[:d]) * (1 - m), out[d:] * (1 - m)

    def _layer_forward(self, p, x, i):
        m = _mask(x.shape[0], i, x.dtype)
        s, t = self._st(p, x, m)
        return x * jnp.exp(s) + t, jnp.sum(s)

    def _layer_inverse(self, p, y, i):
        m = _mask(y.shape[0], i, y.dtype)
        s, t = self._st(p, y, m)
        return (y - t) * jnp.exp(-s), jnp.sum(s)


class IAF(Flow):
    """Inverse autoregressive flow (Kingma et al. 2016): affine MADE layers, order reversed every other
    layer. Sampling is one pass per layer; the density at a given point takes D passes per layer."""

    layers: int = 4
    hidden: int = 32

    def _degrees(self, dim, i):
        order = jnp.arange(dim) if i % 2 == 0 else jnp.arange(dim)[::-1]
        deg_in = order + 1
        h = max(self.hidden, dim)
        deg_h = jnp.arange(h) % max(dim - 1, 1) + 1
        m1 = (deg_h[None, :] >= deg_in[:, None]).astype(jnp.float32)
        m2 = (deg_h[None, :] >= deg_h[:, None]).astype(jnp.float32)
        m3 = (deg_in[None, :] > deg_h[:, None]).astype(jnp.float32)
        return [m1, m2, jnp.concatenate([m3, m3], axis=1)]

    def _layer_init(self, key, dim, i, dtype):
        h = max(self.hidden, dim)
        return _mlp_init(key, [dim, h, h, 2 * dim], dtype)

    def _st(self, p, x, i):
        d = x.shape[0]
        masks = [m.astype(x.dtype) for m in self._degrees(d, i)]
        out = _mlp(p, x, masks)
        return _soft_clamp(out[:d]), out[d:]

    def _layer_forward(self, p, x, i):
        s, t = self._st(p, x, i)
        return x * jnp.exp(s) + t, jnp.sum(s)

    def _layer_inverse(self, p, y, i):
        def body(_, x):
            s, t = self._st(p, x, i)
            return (y - t) * jnp.exp(-s)

        x = jax.lax.fori_loop(0, y.shape[0], body, jnp.zeros_like(y))
        s, _ = self._st(p, x, i)
        return x, jnp.sum(s)


# ----------------------------------------------------------------------------- rational-quadratic splines


def _rq_params(raw, bins: int, bound: float):
    """Knots and derivatives of a monotone rational-quadratic spline on [-bound, bound] from raw
    outputs (..., 3 * bins - 1); zero raw outputs give the identity."""
    w = jax.nn.softmax(raw[..., :bins], -1)
    h = jax.nn.softmax(raw[..., bins : 2 * bins], -1)
    lo = 1e-3
    w = lo + (1 - lo * bins) * w
    h = lo + (1 - lo * bins) * h
    d = lo + jax.nn.softplus(raw[..., 2 * bins :] + math.log(math.expm1(1 - lo)))
    ones = jnp.ones(d.shape[:-1] + (1,), d.dtype)
    d = jnp.concatenate([ones, d, ones], -1)
    zero = jnp.zeros(w.shape[:-1] + (1,), w.dtype)
    xk = 2 * bound * jnp.concatenate([zero, jnp.cumsum(w, -1)], -1) - bound
    yk = 2 * bound * jnp.concatenate([zero, jnp.cumsum(h, -1)], -1) - bound
    return xk, yk, d


def _rq_bin(knots, x):
    k = jnp.sum(x[..., None] >= knots[..., 1:-1], -1)
    return k


def _take(a, k):
    return jnp.take_along_axis(a, k[..., None], -1)[..., 0]


def _rq_bin_of(raw, v, bins, bound, inverse: bool):
    """The spline bin holding `v` (an input; an output with `inverse=True`):
    `(inside, clipped v, x0, y0, width, height, slope, d0, d1)`."""
    xk, yk, d = _rq_params(raw, bins, bound)
    vc = jnp.clip(v, -bound, bound)
    k = _rq_bin(yk if inverse else xk, vc)
    x0, x1, y0, y1 = _take(xk, k), _take(xk, k + 1), _take(yk, k), _take(yk, k + 1)
    w, h = x1 - x0, y1 - y0
    return jnp.abs(v) < bound, vc, x0, y0, w, h, h / w, _take(d, k), _take(d, k + 1)


def _rq_log_slope(xi, s, d0, d1, den):
    return jnp.log(s**2 * (d1 * xi**2 + 2 * s * xi * (1 - xi) + d0 * (1 - xi) ** 2) / den**2)


def _rq_forward(raw, x, bins, bound):
    inside, xc, x0, y0, w, h, s, d0, d1 = _rq_bin_of(raw, x, bins, bound, inverse=False)
    xi = (xc - x0) / w
    den = s + (d1 + d0 - 2 * s) * xi * (1 - xi)
    y = y0 + h * (s * xi**2 + d0 * xi * (1 - xi)) / den
    return jnp.where(inside, y, x), jnp.where(inside, _rq_log_slope(xi, s, d0, d1, den), 0.0)


def _rq_inverse(raw, y, bins, bound):
    inside, yc, x0, y0, w, h, s, d0, d1 = _rq_bin_of(raw, y, bins, bound, inverse=True)
    dy = yc - y0
    c2 = d1 + d0 - 2 * s
    a = h * (s - d0) + dy * c2
    b = h * d0 - dy * c2
    c = -s * dy
    xi = (2 * c) / (-b - jnp.sqrt(jnp.maximum(b**2 - 4 * a * c, 0.0)))
    den = s + c2 * xi * (1 - xi)
    return jnp.where(inside, x0 + xi * w, y), jnp.where(inside, _rq_log_slope(xi, s, d0, d1, den), 0.0)


class NeuralSplineFlow(Flow):
    """Rational-quadratic spline coupling layers (Durkan et al. 2019) on [-bound, bound] with linear
    (identity) tails, alternating masks."""

    layers: int = 4
    hidden: int = 32
    bins: int = 8
    bound: float = 5.0

    def _layer_init(self, key, dim, i, dtype):
        h = max(self.hidden, dim)
        return _mlp_init(key, [dim, h, h, dim * (3 * self.bins - 1)], dtype)

    def _raw(self, p, x, m):
        return _mlp(p, x * m).reshape(x.shape[0], 3 * self.bins - 1)

    def _layer_forward(self, p, x, i):
        m = _mask(x.shape[0], i, x.dtype)
        y, ld = _rq_forward(self._raw(p, x, m), x, self.bins, self.bound)
        return m * x + (1 - m) * y, jnp.sum((1 - m) * ld)

    def _layer_inverse(self, p, y, i):
        m = _mask(y.shape[0], i, y.dtype)
        x, ld = _rq_inverse(self._raw(p, y, m), y, self.bins, self.bound)
        return m * y + (1 - m) * x, jnp.sum((1 - m) * ld)


# ----------------------------------------------------------------------------- planar and radial


class Planar(Flow):
    """Planar layers `y = x + u tanh(w.x + b)` (Rezende & Mohamed 2015), with u constrained so that
    w.u >= -1 (invertible). The inverse solves one monotone scalar equation per layer by bisection."""

    layers: int = 8

    def _layer_init(self, key, dim, i, dtype):
        w = 0.1 * rand.normal(key, (dim,), dtype)
        return {"u": jnp.zeros((dim,), dtype), "w": w, "b": jnp.zeros((), dtype)}

    @staticmethod
    def _uhat(p):
        u, w = p["u"], p["w"]
        wu = jnp.dot(w, u)
        m = -1.0 + jax.nn.softplus(wu + math.log(math.e - 1.0))  # m(0) = 0: u = 0 is the identity
        return u + (m - wu) * w / (jnp.dot(w, w) + 1e-12)

    def _layer_forward(self, p, x, i):
        u = self._uhat(p)
        a = jnp.dot(p["w"], x) + p["b"]
        t = jnp.tanh(a)
        return x + u * t, jnp.log(jnp.abs(1.0 + (1.0 - t**2) * jnp.dot(p["w"], u)))

    def _layer_inverse(self, p, y, i):
        u = self._uhat(p)
        wu = jnp.dot(p["w"], u)
        c = jnp.dot(p["w"], y)  # = a + wu tanh(a + b), a = w.x, increasing in a

        def body(_, lohi):
            lo, hi = lohi
            mid = 0.5 * (lo + hi)
            up = mid + wu * jnp.tanh(mid + p["b"]) < c
            return jnp.where(up, mid, lo), jnp.where(up, hi, mid)

        r = jnp.abs(wu) + 1e-6
        lo, hi = jax.lax.fori_loop(0, 60, body, (c - r, c + r))
        a = 0.5 * (lo + hi)
        t = jnp.tanh(a + p["b"])
        return y - u * t, jnp.log(jnp.abs(1.0 + (1.0 - t**2) * wu))


class Radial(Flow):
    """Radial layers `y = x + beta h(r) (x - x0)`, h = 1 / (alpha + r) (Rezende & Mohamed 2015), with
    beta >= -alpha (invertible); the inverse is closed form (a quadratic in r)."""

    layers: int = 8

    def _layer_init(self, key, dim, i, dtype):
        alpha = jnp.ones((), dtype)
        return {"x0": 0.1 * rand.normal(key, (dim,), dtype), "alpha": _unpositive(alpha), "beta": _unpositive(alpha)}

    @staticmethod
    def _ab(p):
        alpha = _positive(p["alpha"])
        return alpha, -alpha + _positive(p["beta"])

    @staticmethod
    def _logdet(alpha, beta, r, dim):
        h = 1.0 / (alpha + r)
        return (dim - 1) * jnp.log1p(beta * h) + jnp.log1p(beta * h - beta * h**2 * r)

    def _layer_forward(self, p, x, i):
        alpha, beta = self._ab(p)
        dx = x - p["x0"]
        r = jnp.sqrt(jnp.sum(dx**2))
        return x + beta * dx / (alpha + r), self._logdet(alpha, beta, r, x.shape[0])

    def _layer_inverse(self, p, y, i):
        alpha, beta = self._ab(p)
        dy = y - p["x0"]
        ry = jnp.sqrt(jnp.sum(dy**2))
        bb = alpha + beta - ry
        r = 0.5 * (-bb + jnp.sqrt(bb**2 + 4 * alpha * ry))
        ratio = jnp.where(ry > 0, r / jnp.where(ry > 0, ry, 1.0), 1.0)
        return p["x0"] + dy * ratio, self._logdet(alpha, beta, r, y.shape[0])
