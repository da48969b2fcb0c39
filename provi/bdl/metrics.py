"""Judging predictive distributions: averaging over posterior samples, and the metrics Bayesian
deep learning reports.

Classification metrics take log predictive probabilities `log_probs` of shape (n, K) (what
`log_predictive` returns from sampled logits) and integer labels of shape (n,); regression
metrics take a Gaussian predictive's mean and variance. All are jax functions (jit-able); each
returns a scalar array.

    >>> import jax.numpy as jnp
    >>> from provi.bdl import metrics
    >>> logits = jnp.array([[[2.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.5, 0.5]]])  # 2 draws, 2 inputs
    >>> log_probs = metrics.log_predictive(logits)
    >>> float(metrics.accuracy(log_probs, jnp.array([0, 1])))
    1.0
"""

import jax
import jax.numpy as jnp

__all__ = [
    "log_predictive",
    "gaussian_predictive",
    "accuracy",
    "nll",
    "brier",
    "reliability",
    "ece",
    "predictive_entropy",
    "auroc",
    "ood_auroc",
    "rmse",
    "gaussian_nll",
]


def log_predictive(logits: jax.Array) -> jax.Array:
    """log of the Monte Carlo predictive (1/S) sum_s softmax(logits[s]) for logits of shape
    (S, n, K), computed in log space."""
    logits = jnp.asarray(logits)
    if logits.ndim != 3:
        raise ValueError(f"log_predictive takes logits of shape (draws, n, classes), got shape {logits.shape}")
    return jax.nn.logsumexp(jax.nn.log_softmax(logits, axis=-1), axis=0) - jnp.log(logits.shape[0])


def gaussian_predictive(means: jax.Array, variances: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and variance of the equal-weight mixture of Gaussians N(means[s], variances[s]) over
    the leading draw axis (the law of total variance)."""
    mean = jnp.mean(means, axis=0)
    return mean, jnp.mean(variances, axis=0) + jnp.var(means, axis=0)


def _check(log_probs, labels):
    log_probs, labels = jnp.asarray(log_probs), jnp.asarray(labels)
    if log_probs.ndim != 2 or labels.shape != log_probs.shape[:1]:
        raise ValueError(f"expected log_probs of shape (n, classes) and labels of shape (n,), got {log_probs.shape} and {labels.shape}")
    return log_probs, labels


def accuracy(log_probs: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of inputs whose most probable class is the label."""
    log_probs, labels = _check(log_probs, labels)
    return jnp.mean(jnp.argmax(log_probs, axis=-1) == labels)


def nll(log_probs: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean negative log predictive probability of the labels."""
    log_probs, labels = _check(log_probs, labels)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=-1))


def brier(log_probs: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean over inputs of sum_k (p_k - [label = k])^2."""
    log_probs, labels = _check(log_probs, labels)
    onehot = jax.nn.one_hot(labels, log_probs.shape[-1], dtype=log_probs.dtype)
    return jnp.mean(jnp.sum((jnp.exp(log_probs) - onehot) ** 2, axis=-1))


def reliability(log_probs: jax.Array, labels: jax.Array, n_bins: int = 15) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per confidence bin (n_bins equal-width bins of the top-class probability on [0, 1], each
    bin (lo, hi] and the first also holding 0): mean confidence, accuracy and count. Empty bins
    have confidence and accuracy 0."""
    log_probs, labels = _check(log_probs, labels)
    confidence = jnp.exp(jnp.max(log_probs, axis=-1))
    correct = (jnp.argmax(log_probs, axis=-1) == labels).astype(confidence.dtype)
    edges = jnp.linspace(0.0, 1.0, n_bins + 1)
    bins = jnp.clip(jnp.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = jnp.zeros(n_bins).at[bins].add(1.0)
    safe = jnp.maximum(count, 1.0)
    mean_conf = jnp.zeros(n_bins).at[bins].add(confidence) / safe
    mean_acc = jnp.zeros(n_bins).at[bins].add(correct) / safe
    return mean_conf, mean_acc, count


def ece(log_probs: jax.Array, labels: jax.Array, n_bins: int = 15) -> jax.Array:
    """Expected calibration error: sum over bins of (count / n) * |accuracy - confidence|."""
    conf, acc, count = reliability(log_probs, labels, n_bins)
    return jnp.sum(count * jnp.abs(acc - conf)) / jnp.sum(count)


def predictive_entropy(log_probs: jax.Array) -> jax.Array:
    """Entropy -sum_k p_k log p_k of each input's predictive, shape (n,)."""
    return -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)


def auroc(negative_scores: jax.Array, positive_scores: jax.Array) -> jax.Array:
    """Area under the ROC curve for telling positives (higher scores) from negatives: the
    Mann-Whitney statistic P(positive > negative) + P(tie) / 2, from average ranks."""
    neg, pos = jnp.ravel(negative_scores), jnp.ravel(positive_scores)
    scores = jnp.sort(jnp.concatenate([neg, pos]))
    rank = 0.5 * (jnp.searchsorted(scores, pos, side="left") + jnp.searchsorted(scores, pos, side="right") + 1)
    n_pos, n_neg = pos.shape[0], neg.shape[0]
    return (jnp.sum(rank) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def ood_auroc(in_log_probs: jax.Array, out_log_probs: jax.Array) -> jax.Array:
    """AUROC of the predictive entropy for telling out-of-distribution inputs (the positives)
    from in-distribution ones."""
    return auroc(predictive_entropy(in_log_probs), predictive_entropy(out_log_probs))


def rmse(mean: jax.Array, y: jax.Array) -> jax.Array:
    """Root mean squared error of the predictive mean."""
    return jnp.sqrt(jnp.mean((jnp.asarray(mean) - jnp.asarray(y)) ** 2))


def gaussian_nll(mean: jax.Array, variance: jax.Array, y: jax.Array) -> jax.Array:
    """Mean negative log density of y under independent N(mean, variance)."""
    return jnp.mean(0.5 * (jnp.log(2 * jnp.pi * variance) + (y - mean) ** 2 / variance))
