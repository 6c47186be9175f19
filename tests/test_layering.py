"""The protocol core, ``wssync/sansio/``, stays free of I/O.

The core turns bytes into events and never blocks, sleeps or reads a clock, so
none of its modules may import the standard library's I/O, threading or time
modules, nor the parts of wssync built on them. The check reads the source
(the AST) rather than importing it: importing ``wssync.sansio.x`` runs
``wssync/__init__.py`` first, which loads the blocking layer anyway.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SANSIO = ROOT / "wssync" / "sansio"

FORBIDDEN = frozenset(
    {"socket", "ssl", "select", "selectors", "threading", "time", "asyncio"}
)

# Inside the wssync package, the core may depend only on itself and on these
# modules, which do no I/O (anything else there is the blocking layer).
ALLOWED_WSSYNC = ("wssync.sansio", "wssync.exceptions", "wssync.version")


def module_name(path: Path, root: Path) -> str:
    """Return the dotted name of the module at ``path`` under ``root``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """Return ``(line, absolute module name)`` for every import in ``path``.

    Relative imports are resolved against the module's package. Calls to
    ``__import__`` and ``importlib.import_module`` with a literal name count as
    imports too.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            # Record each imported name under the module it comes from: the
            # name may itself be a module (`from .. import exceptions`).
            found.extend(
                (node.lineno, f"{target}.{alias.name}") for alias in node.names
            )
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else None
            )
            first = node.args[0]
            if (
                called in ("__import__", "import_module")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                found.append((node.lineno, first.value))
    return found


def violation(imported: str) -> str | None:
    """Return why importing ``imported`` breaks the layering, or ``None``."""
    top = imported.partition(".")[0]
    if top in FORBIDDEN:
        return f"{top} does I/O, blocks or reads the clock"
    # The top-level package itself loads the blocking layer.
    if top == "wssync" and not any(
        imported == allowed or imported.startswith(allowed + ".")
        for allowed in ALLOWED_WSSYNC
    ):
        return "only wssync.sansio, wssync.exceptions and wssync.version"
    return None


SOURCES = sorted(SANSIO.rglob("*.py"))


def test_sansio_package_exists() -> None:
    assert (SANSIO / "__init__.py").is_file()


@pytest.mark.parametrize(
    "path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES]
)
def test_sansio_module_does_no_io(path: Path) -> None:
    problems = [
        f"{path.relative_to(ROOT)}:{line}: imports {imported}: {why}"
        for line, imported in imported_modules(path)
        if (why := violation(imported)) is not None
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("imported", "allowed"),
    [
        ("socket", False),
        ("time", False),
        ("asyncio.events", False),
        ("wssync.connection", False),
        ("wssync", False),
        ("wssync.ConnectionClosed", False),
        ("wssync.sansio.frames", True),
        ("wssync.exceptions", True),
        ("zlib", True),
        ("logging", True),
        ("timeit", True),
    ],
)
def test_violation_rules(imported: str, allowed: bool) -> None:
    assert (violation(imported) is None) is allowed


def test_import_finder_sees_every_form(tmp_path: Path) -> None:
    # Check the checker itself on a module laid out like one in the core.
    package = tmp_path / "wssync" / "sansio" / "extensions"
    package.mkdir(parents=True)
    module = package / "fake.py"
    module.write_text(
        "import os, socket\n"
        "from time import monotonic\n"
        "from .. import frames\n"
        "from ... import connection\n"
        "from ... import exceptions\n"
        "from ...exceptions import ProtocolError\n"
        "if True:\n"
        "    import threading\n"
        "importlib.import_module('select')\n"
        "__import__('ssl')\n",
        encoding="utf-8",
    )
    found = {name for _, name in imported_modules(module, root=tmp_path)}
    assert {
        "os",
        "socket",
        "time.monotonic",
        "wssync.sansio.frames",
        "wssync.connection",
        "wssync.exceptions",
        "wssync.exceptions.ProtocolError",
        "threading",
        "select",
        "ssl",
    } <= found
    assert "wssync" not in found  # `from ... import exceptions` is fine
