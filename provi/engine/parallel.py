"""Data parallelism on JAX's own machinery: a 1-D `jax.sharding.Mesh`, data sharded along its plate axis.

`provi.fit(..., devices=N)` (or a list of devices, or a `Mesh`) places every array argument whose
leading axis is a plate's length (or a minibatch's length) on the mesh, split along that axis with
`NamedSharding(mesh, PartitionSpec(axes))`; everything else (parameters, optimiser state, keys,
small arrays) is replicated. The compiled loop is the same program as on one device: `jit`'s
sharding propagation splits the per-datum work and inserts the reductions. PRNG draws depend on
the keys alone (not on the device count), so the same seed gives the same fit, up to the
floating-point order of the sums over data.

Several hosts: call `jax.distributed.initialize(coordinator_address, num_processes, process_id)` in
every process before anything else touches JAX, then `provi.fit(..., devices=len(jax.devices()))`
(or a `Mesh` over `jax.devices()`) in every process with the same data and seed. The arrays are
built with `jax.make_array_from_callback`, so each process only places its own devices' shards;
every process gets the same (replicated) result. `tests/test_scale_multihost.py` runs this as two
processes on one machine over localhost.
"""

from __future__ import annotations

from typing import Any, Iterable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from provi.core.model import ModelInfo
from provi.core.plates import check_family_subsample, model_plates
from provi.programs import FamilyGuide

__all__ = ["make_mesh", "place", "replicate", "shard_leading", "data_lengths"]

AXIS = "data"


def make_mesh(devices) -> Mesh | None:
    """A 1-D mesh from `devices`: None (no mesh), a count (the first N of `jax.devices()`), a list
    of devices, or a `Mesh` (used as is; data is split over all its axes)."""
    if devices is None:
        return None
    if isinstance(devices, Mesh):
        return devices
    if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        avail = jax.devices()
        if not 1 <= devices <= len(avail):
            raise ValueError(
                f"devices={devices}: JAX sees {len(avail)} device(s). On CPU, set "
                "XLA_FLAGS=--xla_force_host_platform_device_count=N before importing jax"
            )
        return Mesh(np.asarray(avail[:devices]), (AXIS,))
    devs = list(devices)
    if not devs:
        raise ValueError("devices: the list of devices is empty")
    return Mesh(np.asarray(devs), (AXIS,))


def _host(x) -> np.ndarray:
    """A host copy of `x` (a global array spread over several processes must be replicated)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        if not x.is_fully_replicated:
            raise ValueError("provi.parallel: cannot gather an array sharded across processes")
        return np.asarray(x.addressable_data(0))
    return np.asarray(x)


def _put(x, sharding):
    if isinstance(x, jax.Array) and x.sharding == sharding:
        return x
    x = _host(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """Every array leaf of `tree` replicated on the mesh (unchanged without a mesh)."""
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(lambda x: _put(x, sharding), tree)


def shard_leading(x, mesh: Mesh, axis: int = 0):
    """`x` split along `axis` over all the mesh's devices."""
    spec = [None] * np.ndim(x)
    spec[axis] = tuple(mesh.axis_names) if len(mesh.axis_names) > 1 else mesh.axis_names[0]
    return _put(x, NamedSharding(mesh, PartitionSpec(*spec)))


def place(data: list, mesh: Mesh | None, lengths: Iterable[int], axis: int = 0) -> list:
    """Shard the data leaves whose `axis` has one of `lengths` (plate or batch sizes) and divides
    evenly over the mesh; replicate the rest."""
    if mesh is None:
        return data
    lengths, n = set(int(k) for k in lengths), mesh.size
    out = []
    for x in data:
        shape = np.shape(x)
        if len(shape) > axis and shape[axis] in lengths and shape[axis] % n == 0 and shape[axis] >= n:
            out.append(shard_leading(x, mesh, axis))
        else:
            out.append(replicate(x, mesh))
    return out


def data_lengths(model, args, kwargs, guide, info: ModelInfo) -> set:
    """Plate sizes and subsample sizes (the lengths along which data is sharded); checks that a
    family guide has no latent inside a subsampled plate."""
    if isinstance(guide, FamilyGuide) and info.subsampled:
        plates = check_family_subsample(model, args, kwargs)
    else:
        plates, _ = model_plates(model, args, kwargs)
    return {k for n, b in plates.values() for k in (n, b) if k is not None}
