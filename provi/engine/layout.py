"""The layout of a model's arguments: array leaves (traced) apart from a static part (compiled in)."""

from __future__ import annotations

import jax
import numpy as np

__all__ = ["Constant", "split_data", "join_data", "signature"]


class Constant:
    """An array compiled into programs as a constant (for a model that reads its data's values
    while it is traced, e.g. `int(np.max(x)) + 1`); hashed and compared by identity."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    __hash__ = object.__hash__

    def __eq__(self, other):
        return self is other


def split_data(args: tuple, kwargs: dict, constant: bool = False):
    """Split model arguments into array leaves (traced) and a hashable static layout (compiled in).
    With `constant`, array leaves go into the layout as `Constant`s instead: the programs see
    the concrete arrays as given (NumPy arrays stay NumPy arrays).

    >>> import numpy as np
    >>> data, layout = split_data((3, np.ones(2)), {"y": None})
    >>> len(data), join_data(data, layout)[0][0]
    (1, 3)
    """
    leaves, treedef = jax.tree.flatten((args, kwargs))
    is_array = tuple(isinstance(x, (jax.Array, np.ndarray, np.generic)) and not constant for x in leaves)
    dynamic = [jax.device_put(x) for x, a in zip(leaves, is_array) if a]  # (jnp.asarray would compile a copy per shape)
    wrap = lambda x: Constant(x) if isinstance(x, (jax.Array, np.ndarray, np.generic)) else x  # noqa: E731
    static = tuple(wrap(x) for x, a in zip(leaves, is_array) if not a)
    shapes = tuple((x.shape, str(x.dtype)) for x in dynamic)
    return dynamic, (treedef, is_array, static, shapes)


def join_data(dynamic, layout) -> tuple[tuple, dict]:
    """`(args, kwargs)` from the array leaves and the layout `split_data` made."""
    treedef, is_array, static, _ = layout
    it_d = iter(dynamic)
    it_s = iter(x.value if isinstance(x, Constant) else x for x in static)
    leaves = [next(it_d) if a else next(it_s) for a in is_array]
    return jax.tree.unflatten(treedef, leaves)


def signature(args) -> tuple:
    """What a program compiled ahead for `args` is specialised to: the tree, and each leaf's shape,
    dtype and device count (a hashable key). Leaves are arrays, NumPy scalars or
    `jax.ShapeDtypeStruct`s."""
    leaves, treedef = jax.tree.flatten(args)

    def spec(x):
        if isinstance(x, (jax.Array, jax.ShapeDtypeStruct)):
            sharding = x.sharding
            return tuple(x.shape), np.dtype(x.dtype), 1 if sharding is None else len(sharding.device_set)
        return tuple(np.shape(x)), np.result_type(x), 1

    return (treedef,) + tuple(spec(x) for x in leaves)
