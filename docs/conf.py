"""Sphinx configuration of the sb3-reinforce documentation (SB3's theme and layout)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

from sb3_reinforce import __version__

project = "sb3-reinforce"
author = "sb3-reinforce contributors"
copyright = "2026, sb3-reinforce contributors"
version = release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
exclude_patterns = ["_build"]

# The documentation is built offline (CI has no network): intersphinx has no inventories to fetch, and references
# to SB3, torch and gymnasium stay plain text.
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
nitpicky = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": True}
# SB3's docstrings (inherited members) use its own roles and layout; only ours are documented here.
autodoc_inherit_docstrings = False

# The examples (``testcode`` blocks) run with ``sphinx-build -b doctest``: small budgets, one torch thread.
doctest_global_setup = """
import os
import tempfile
os.chdir(tempfile.mkdtemp())  # the examples save models: not into the source tree
import warnings
warnings.filterwarnings("ignore")
import torch as th
th.set_num_threads(1)
"""

html_theme = "sphinx_rtd_theme"
html_static_path = ["_static"]
html_css_files = ["tables.css"]
html_theme_options = {"navigation_depth": 3}
html_title = f"sb3-reinforce {version}"
