"""Sphinx configuration of the pysnn documentation.

Build the site with ``sphinx-build -W --keep-going -b html docs docs/_build/html`` and run the
snippets with ``sphinx-build -W -b doctest docs docs/_build/doctest`` (from the repository root).
"""

import doctest
import os
import sys
from pathlib import Path

# Document the checkout the docs live in, even when the package is not installed.
sys.path.insert(0, os.path.abspath(".."))

import pysnn  # noqa: E402  (after the path is set)

project = "pysnn"
author = "pysnn developers"
copyright = "2019 Bas Buller (PySNN); pysnn developers"
release = pysnn.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    # ships MathJax 3 and points mathjax_path at the copy in _static: equations render offline
    "sphinx-mathjax-offline",
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path = []
html_static_path = []

# furo: a sidebar with the whole table of contents, a table of contents per page, search, a
# light and a dark mode, and pages that read on narrow screens.
html_theme = "furo"
html_title = f"pysnn {release}"

# -- autodoc -----------------------------------------------------------------------------------
autodoc_default_options = {
    "members": True,
    "member-order": "bysource",
    "exclude-members": "extra_repr",
    "show-inheritance": True,
}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autoclass_content = "class"

# -- doctest -----------------------------------------------------------------------------------
# Every snippet starts from the same seed and a small thread count, so printed results are exact.
# matplotlib is optional: the plotting snippets are skipped (``:skipif:``) without it.
doctest_global_setup = """
import torch
torch.manual_seed(0)
torch.set_num_threads(1)
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot
except ImportError:
    matplotlib = None
"""
doctest_default_flags = (
    doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | doctest.DONT_ACCEPT_TRUE_FOR_1
)
# ``>>>`` blocks are tested too (in the guides and in docstrings pulled in by autodoc).
doctest_test_doctest_blocks = "default"

# mathjax: sphinx-mathjax-offline copies MathJax 3 into _build/html/_static/mathjax, and the pages
# load it from there: equations render without a network (docs/_static/offline_math.png, made by
# docs/scripts/screenshot_offline_math.sh, shows docs/neurons.html rendered offline).


def _hide_private_bases(app, name, obj, options, bases):
    """Show only public base classes (e.g. not the neurons' private parameter mixin)."""
    bases[:] = [base for base in bases if not base.__name__.startswith("_")]


BENCHMARK_RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "README.md"


def _append_benchmark_results(app, docname, source):
    """Append ``benchmarks/README.md`` (the measured tables) to the Performance page.

    Done here rather than with a plain ``literalinclude`` so that the page still builds without
    warnings in a checkout where the results have not been written.
    """
    if docname != "performance":
        return
    if BENCHMARK_RESULTS.is_file():
        source[0] += "\n.. literalinclude:: ../benchmarks/README.md\n   :language: markdown\n"
    else:
        source[0] += (
            "\n.. note::\n\n   ``benchmarks/README.md`` is not in this checkout: run the scripts "
            "above to measure.\n"
        )


def setup(app):
    app.connect("autodoc-process-bases", _hide_private_bases)
    app.connect("source-read", _append_benchmark_results)
