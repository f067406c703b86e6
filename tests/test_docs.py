"""The API reference covers every public module and name of pysnn.

CI builds the documentation itself (``sphinx-build -W``); these checks only catch, without Sphinx,
a new module that has no API page or a public name that autodoc would leave out (``:members:``
skips objects without a docstring).
"""

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import pysnn

DOCS = Path(__file__).resolve().parent.parent / "docs"
API = DOCS / "api"

MODULES = sorted(info.name for info in pkgutil.iter_modules(pysnn.__path__) if info.name[0] != "_")


def public_names(module):
    """``__all__``, or the public classes and functions defined in the module itself."""
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    return [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and obj.__module__ == module.__name__
    ]


def documented_modules():
    """Module name → (page name, page text) of the API page that runs ``automodule`` on it."""
    pages = {}
    for page in API.glob("*.rst"):
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(r"^\.\. automodule:: pysnn\.(\w+)\s*$", text, re.MULTILINE):
            pages[match.group(1)] = (page.stem, text)
    return pages


def test_module_list_is_not_empty():
    assert {"neuron", "connection", "network", "functional", "utils"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_every_module_has_an_api_page_in_the_toctree(name):
    pages = documented_modules()
    assert name in pages, f"docs/api has no page with '.. automodule:: pysnn.{name}'"
    stem, text = pages[name]
    assert ":no-members:" not in text
    toctree = (API / "index.rst").read_text(encoding="utf-8")
    assert re.search(
        rf"^\s+{re.escape(stem)}\s*$", toctree, re.MULTILINE
    ), f"docs/api/{stem}.rst (pysnn.{name}) is not in docs/api/index.rst's toctree"


@pytest.mark.parametrize("name", MODULES)
def test_every_public_name_has_a_docstring(name):
    module = importlib.import_module(f"pysnn.{name}")
    assert inspect.getdoc(module), f"pysnn.{name} has no module docstring"
    missing = []
    for public in public_names(module):
        obj = getattr(module, public)
        if not inspect.getdoc(obj):
            missing.append(public)
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                if attr.startswith("_") or not (callable(value) or isinstance(value, property)):
                    continue
                if not inspect.getdoc(getattr(obj, attr)):
                    missing.append(f"{public}.{attr}")
    assert not missing, f"pysnn.{name}: no docstring (autodoc would omit them): {missing}"


def test_autodoc_is_configured_to_include_members():
    conf = (DOCS / "conf.py").read_text(encoding="utf-8")
    assert re.search(r'"members":\s*True', conf)
    assert '"sphinx.ext.autodoc"' in conf and '"sphinx.ext.doctest"' in conf
