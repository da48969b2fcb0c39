"""Built-in variational objectives, each written with provi's public vocabulary."""

from provi.objectives.elbo import ELBO

__all__ = ["ELBO"]
