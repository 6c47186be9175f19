"""Sphinx configuration for the wssync documentation.

Build with ``python -m sphinx -W -b html docs docs/_build/html``. Everything
here works offline: no intersphinx, no theme or extension from outside Sphinx.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# autodoc imports wssync from this checkout even when it isn't installed.
sys.path.insert(0, str(ROOT))

# Read the version without importing wssync, so that a broken import shows up
# as an autodoc warning on the page concerned rather than as a crash here.
_version_match = re.search(
    r'^__version__ = "([^"]+)"',
    (ROOT / "wssync" / "version.py").read_text(encoding="utf-8"),
    re.MULTILINE,
)
if _version_match is None:
    raise RuntimeError("__version__ not found in wssync/version.py")

project = "wssync"
author = "the wssync authors"
copyright = "the wssync authors"
release = _version_match.group(1)
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build"]

# Docstrings are Google style, with types only in signatures.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}

html_theme = "alabaster"
html_title = f"wssync {release}"
html_theme_options = {
    "description": "WebSockets for Python with blocking sockets and threads",
    "fixed_sidebar": True,
}


def _skip_namedtuple_fields(
    app: object, what: str, name: str, obj: object, skip: bool, options: object
) -> bool | None:
    """Leave out the accessors NamedTuple generates for its fields.

    Their docstring is only "Alias for field number N", and the class
    docstring's ``Attributes:`` section already documents each field (keeping
    both would describe the same object twice).
    """
    doc = getattr(obj, "__doc__", None) or ""
    if what == "class" and doc.startswith("Alias for field number"):
        return True
    return None


def setup(app: Any) -> None:
    """Connect this configuration's event handlers."""
    app.connect("autodoc-skip-member", _skip_namedtuple_fields)
