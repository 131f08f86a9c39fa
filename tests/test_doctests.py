"""The examples in the docstrings of the installed package run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "logitkit._softmax",
    "logitkit._cross_entropy",
    "logitkit._binary",
    "logitkit._divergence",
    "logitkit.special",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"no docstring examples found in {name}"
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
