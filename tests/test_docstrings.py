"""Every runnable example in provi's docstrings runs and prints what it says (doctest), found by
scanning the package: a new example is tested without being listed here."""

import doctest
import importlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODULES = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts)
    for path in (ROOT / "provi").rglob("*.py")
    if ">>>" in path.read_text()
)


def test_the_scan_finds_the_examples():
    assert {"provi.optim.online_newton", "provi.bdl.metrics", "provi.core.prior", "provi.nn"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result
