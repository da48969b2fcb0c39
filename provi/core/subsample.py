"""Minibatch plates: one draw of subsample indices per objective evaluation, shared by all programs.

A plate `numpyro.plate("data", N, subsample_size=B)` draws its own indices from the PRNG key of the
program that runs it. The model and the guide run under different keys, and a guide runs once per
particle, so each would see a different minibatch. provi draws the indices of every subsampled
plate once per loss evaluation (`draw`) and replays them (`ReplayPlates`) into the model and the
guide, for every particle: the local latents the guide draws are those of the data the model scores.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from numpyro.primitives import Messenger

from provi.errors import ModelError

__all__ = ["subsampled_plates", "merge_plates", "draw", "ReplayPlates"]


def subsampled_plates(trace: dict) -> dict[str, tuple[int, int]]:
    """{plate name: (size, subsample size)} for the plates of `trace` that subsample."""
    out = {}
    for name, site in trace.items():
        if site["type"] == "plate":
            size, sub = site["args"][0], site["args"][1]
            if sub is not None and sub < size:
                out[name] = (int(size), int(sub))
    return out


def merge_plates(model: dict, guide: dict) -> dict[str, tuple[int, int]]:
    """The union of the model's and the guide's subsampled plates; same-named plates must agree."""
    for name in set(model) & set(guide):
        if model[name] != guide[name]:
            raise ModelError(
                f"plate {name!r} has (size, subsample_size) {model[name]} in the model but {guide[name]} in "
                "the guide; give it the same size and subsample_size in both"
            )
    return {**model, **guide}


def draw(plates: dict, key) -> dict[str, jax.Array]:
    """Indices for each subsampled plate: `subsample_size` distinct integers below `size`."""
    keys = jax.random.split(key, max(len(plates), 1))
    return {
        name: jax.random.choice(k, size, (sub,), replace=False)
        for k, (name, (size, sub)) in zip(keys, sorted(plates.items()))
    }


class ReplayPlates(Messenger):
    """Give each named plate the given indices (its subsample size becomes their length)."""

    def __init__(self, fn=None, indices: dict | None = None):
        self.indices = dict(indices or {})
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "plate" and msg["name"] in self.indices:
            idx = jnp.asarray(self.indices[msg["name"]])
            msg["value"] = idx
            msg["args"] = (msg["args"][0], int(idx.shape[0]))
