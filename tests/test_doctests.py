"""Every example in a docstring of the package runs and gives what it shows."""

import doctest
import importlib
import pkgutil

import pytest

import archspec

MODULES = sorted(m.name for m in pkgutil.walk_packages(archspec.__path__, "archspec.")
                 if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, verbose=False, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
