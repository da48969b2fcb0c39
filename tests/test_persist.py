"""provi.persist: pytrees as named arrays, and atomic writes."""

import numpy as np
import pytest

from provi.persist import atomic_write, flatten_tree, unflatten_tree


def test_flatten_round_trip_and_shape_check():
    tree = {"a": np.ones((2, 3), np.float32), "b": [np.arange(4)]}
    flat = flatten_tree(tree, "p")
    assert set(flat) == {"p['a']", "p['b'][0]"}
    back = unflatten_tree(tree, flat, "p")
    np.testing.assert_array_equal(back["b"][0], np.arange(4))
    assert back["a"].dtype == np.float32
    with pytest.raises(ValueError, match="shape"):
        unflatten_tree({"a": np.ones(3), "b": [np.arange(4)]}, flat, "p")
    with pytest.raises(ValueError, match="different fit"):
        unflatten_tree({"c": np.ones(1)}, flat, "p")


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write(path, lambda f: f.write(b"old"))

    def broken(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, broken)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temporary file left
