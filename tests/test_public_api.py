"""The public surface stays honest: what ``__all__`` promises exists.

The top-level package exports every name of the API contract (``api.md``,
"Top-level names" and "Exceptions"), and every module of the package declares
``__all__`` listing only names it really has.
"""

from __future__ import annotations

import builtins
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import wssync

ROOT = Path(__file__).resolve().parent.parent

# The top-level names of api.md. Kept here, and checked against api.md when
# the shared design documents sit next to the repository (as in CI), so that
# the test also runs from a checkout on its own.
TOP_LEVEL_NAMES = [
    # connecting and serving
    "connect",
    "unix_connect",
    "reconnect",
    "serve",
    "unix_serve",
    "ThreadingServer",
    # connections
    "Connection",
    "ClientConnection",
    "ServerConnection",
    # helpers
    "broadcast",
    "basic_auth",
    # handshake objects and state
    "Request",
    "Response",
    "Headers",
    "State",
    # exceptions
    "WebSocketException",
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
    "InvalidHandshake",
    "InvalidURI",
    "InvalidStatus",
    "InvalidHeader",
    "InvalidOrigin",
    "NegotiationError",
    "ProtocolError",
    "PayloadTooBig",
    "InvalidState",
    "MultipleValuesError",
]

API_MD = ROOT.parent / "shared" / "api.md"


def api_md_names(text: str) -> set[str]:
    """Return the names that api.md's top-level table and exceptions list give."""
    names: set[str] = set()
    top = text.split("## Top-level names", 1)[1].split("\n## ", 1)[0]
    for line in top.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([A-Za-z_]\w*)", first_cell))
    exceptions = text.split("## Exceptions", 1)[1].split("\n## ", 1)[0]
    names.update(re.findall(r"`(?:wssync\.)?([A-Z]\w*)", exceptions))
    # Built-ins such as `TimeoutError` are mentioned there too; `__version__`
    # is an attribute, not listed in __all__.
    return names - set(dir(builtins)) - {"__version__"}


@pytest.mark.skipif(not API_MD.is_file(), reason=f"{API_MD} isn't there")
def test_names_match_api_md() -> None:
    assert api_md_names(API_MD.read_text(encoding="utf-8")) == set(TOP_LEVEL_NAMES)


@pytest.mark.parametrize("name", TOP_LEVEL_NAMES)
def test_top_level_name_exported(name: str) -> None:
    assert name in wssync.__all__
    assert getattr(wssync, name) is not None


def test_version() -> None:
    assert isinstance(wssync.__version__, str)
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", wssync.__version__)


def test_star_import() -> None:
    namespace: dict[str, object] = {}
    exec("from wssync import *", namespace)
    assert set(wssync.__all__) <= set(namespace)


def test_exceptions_share_one_root() -> None:
    for name in TOP_LEVEL_NAMES:
        obj = getattr(wssync, name, None)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, wssync.WebSocketException), name


def all_modules() -> list[str]:
    """Return the dotted names of wssync and all its modules, found on disk."""
    names = ["wssync"]
    for info in pkgutil.walk_packages(wssync.__path__, prefix="wssync."):
        # `python -m wssync` runs the command line when imported.
        if info.name != "wssync.__main__":
            names.append(info.name)
    return names


@pytest.mark.parametrize("module_name", all_modules())
def test_module_all_is_honest(module_name: str) -> None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Framework integrations import their framework, an optional extra.
        if exc.name and not exc.name.startswith("wssync"):
            pytest.skip(f"{module_name} needs {exc.name}, which isn't installed")
        raise
    assert hasattr(module, "__all__"), f"{module_name} has no __all__"
    exported = module.__all__
    assert isinstance(exported, (list, tuple))
    assert len(set(exported)) == len(exported), "duplicates in __all__"
    missing = [name for name in exported if not hasattr(module, name)]
    assert not missing, f"{module_name}.__all__ names missing objects: {missing}"
