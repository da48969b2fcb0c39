"""Per-site gradient estimators (`infer={"estimator": ...}` or `provi.fit(..., estimators=...)`)."""

from provi.estimators.base import Estimator, Reinforce, Reparam, resolve, site_draw, surrogate

__all__ = ["Estimator", "Reparam", "Reinforce", "resolve", "site_draw", "surrogate", "applicable", "REGISTRY"]

REGISTRY = (Reparam, Reinforce)


def applicable(fn) -> list[str]:
    """Names of the registered estimators that apply to distribution `fn`."""
    return [cls.__name__ for cls in REGISTRY if cls().applies(fn)]
