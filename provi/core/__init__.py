"""Floor 2, the ground floor of provi: NumPyro plumbing and the vocabulary of objectives.

Holds: `trace` (running programs under seed/substitute/trace, site log densities, abstract
tracing), `model` (inspecting a model), `plates` (shared subsample indices), `space` (the
unconstrained latent vector), `mode` (mode search, curvature, whitening), `program` (the declared
model and guide program interface), `bound` (bound programs, keys, `ScoreTerm`), `vocab` (`sim`,
`density`, ...), `objective`, `pointwise`, `rand`, `batching`, `local` (the guide's weight
moments handed to a model's dense layers: local reparameterization), `reparam`, `enum`, `chain`,
`prior`.

May import: NumPyro, JAX, equinox, optax, and provi's floor 1 (`provi.errors`, `provi.defaults`,
`provi.persist`); nothing above.
"""
