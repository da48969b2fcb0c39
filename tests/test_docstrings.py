"""The runnable examples in docstrings run and print what they say."""

import doctest
import importlib

import pytest

MODULES = ["provi.optim.online_newton", "provi.bdl.metrics", "provi.bdl.vbll", "provi.nn", "provi.core.prior"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result
