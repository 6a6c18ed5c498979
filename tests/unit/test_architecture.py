"""Layering rules the house style promises, held for EVERY module of contactsync_kit.

How a module declares its I/O: every module says which I/O it does *itself* — not what the
kit modules it calls do — with a module-level constant next to its ``__all__``::

    __io__ = "none"              # pure: no network, disk, processes or UI
    __io__ = "network"           # talks to a server: httpx, supabase-py, psycopg, aiohttp, ...
    __io__ = "disk, process"     # several kinds, comma-separated

The kinds are the keys of `EVIDENCE` below, which also lists what counts as using each.
For a module whose file you do not own, add an entry to `DECLARED` instead; an entry for a
package covers each of its modules that has no declaration of its own (so splitting a
module into a package keeps working). Modules are found by walking the package: a new module
fails `test_every_module_declares_its_io` until it declares.

The checks, on each module's source (imports at any depth except under
``if TYPE_CHECKING:``, and calls):

1. every module is declared, exactly once (its own `__io__` or `DECLARED`, not both);
2. it uses no kind of I/O it does not declare;
3. every kind it declares is used by it (for a package entry: by one of its modules);
4. a docstring that says "all of the kit's network I/O" (or disk) lives in a module is
   only true if no other module declares that kind.
"""

from __future__ import annotations

import ast
import json
import pkgutil
import re
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

import contactsync_kit

#: For modules whose files other engineers own. Module or package name -> kinds.
DECLARED: dict[str, str] = {}


@dataclass(frozen=True)
class Evidence:
    """What counts as a kind of I/O: importing one of `modules`, or calling one of `calls`."""

    modules: tuple[str, ...]
    calls: tuple[str, ...] = ()


EVIDENCE: dict[str, Evidence] = {
    "network": Evidence(
        (
            "httpx",
            "supabase",
            "supabase_auth",
            "postgrest",
            "psycopg",
            "aiohttp",
            "socket",
            "http.client",
            "urllib.request",
            "requests",
            "websockets",
        )
    ),
    "disk": Evidence(
        ("sqlalchemy", "sqlite3", "shutil", "tempfile"),
        (
            "open",
            "write_text",
            "read_text",
            "write_bytes",
            "read_bytes",
            "mkdir",
            "unlink",
            "rmdir",
            "touch",
            "write_csv",
            "write_parquet",
            "write_ipc",
            "read_csv",
            "read_parquet",
            "read_ipc",
            # SQL on the cache's SQLAlchemy connections (SQLite files).
            "exec_driver_sql",
        ),
    ),
    "process": Evidence(("subprocess", "multiprocessing", "signal"), ("kill", "killpg")),
    "ui": Evidence(("ipywidgets", "matplotlib", "IPython", "traitlets", "anywidget")),
}
KINDS = frozenset(EVIDENCE)
PACKAGE = Path(contactsync_kit.__file__).parent


def all_modules() -> list[str]:
    names = ["contactsync_kit"]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="contactsync_kit."):
        names.append(info.name)
    return sorted(names)


def source_path(module: str) -> Path:
    parts = module.split(".")[1:]
    folder = PACKAGE.joinpath(*parts)
    return folder / "__init__.py" if folder.is_dir() else folder.with_suffix(".py")


@cache
def tree(module: str) -> ast.Module:
    return ast.parse(source_path(module).read_text(encoding="utf-8"))


def own_declaration(module: str) -> str | None:
    for node in tree(module).body:
        if not isinstance(node, ast.Assign | ast.AnnAssign):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if any(isinstance(t, ast.Name) and t.id == "__io__" for t in targets):
            value = node.value
            assert isinstance(value, ast.Constant) and isinstance(value.value, str), module
            return value.value
    return None


def table_entry(module: str) -> str | None:
    """The most specific `DECLARED` entry covering `module`, if any."""
    keys = [k for k in DECLARED if module == k or module.startswith(k + ".")]
    return max(keys, key=len) if keys else None


def kinds(declaration: str) -> frozenset[str]:
    named = frozenset(part.strip() for part in declaration.split(","))
    if named == {"none"}:
        return frozenset()
    unknown = named - KINDS
    assert not unknown, f"unknown I/O kinds {sorted(unknown)}; use {sorted(KINDS)} or 'none'"
    return named


def declared_kinds(module: str) -> frozenset[str]:
    own = own_declaration(module)
    if own is not None:
        return kinds(own)
    entry = table_entry(module)
    assert entry is not None, module
    return kinds(DECLARED[entry])


def _runtime_nodes(node: ast.AST) -> list[ast.AST]:
    """Every node, except what sits under ``if TYPE_CHECKING:`` (annotations only)."""
    found: list[ast.AST] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            found.extend(n for stmt in child.orelse for n in [stmt, *_runtime_nodes(stmt)])
            continue
        found.append(child)
        found.extend(_runtime_nodes(child))
    return found


def used_kinds(module: str) -> dict[str, set[str]]:
    """Kind -> what in the module's own source shows it does that kind of I/O."""
    imported: set[str] = set()
    called: set[str] = set()
    for node in _runtime_nodes(tree(module)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "open":
                called.add("open")
            elif isinstance(func, ast.Attribute) and func.attr != "open":
                called.add(func.attr)
    used: dict[str, set[str]] = {}
    for kind, evidence in EVIDENCE.items():
        hits = {
            name
            for name in imported
            for m in evidence.modules
            if name == m or name.startswith(m + ".")
        }
        hits |= {f"{name}()" for name in called if name in evidence.calls}
        if hits:
            used[kind] = hits
    return used


MODULES = all_modules()


def test_the_walk_finds_the_core_modules() -> None:
    assert {
        "contactsync_kit.cache",
        "contactsync_kit.mappers",
        "contactsync_kit.remote",
        "contactsync_kit.widgets.sync",
        "contactsync_kit.devstack",
    } <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_every_module_declares_its_io(module: str) -> None:
    own, entry = own_declaration(module), table_entry(module)
    assert own is not None or entry is not None, (
        f'{module} declares no I/O: add `__io__ = "none"` (or its kinds, see this test\'s '
        "docstring) to the module, or an entry to DECLARED in this test"
    )
    assert own is None or entry != module, f"{module} is declared twice (file and DECLARED)"
    kinds(own if own is not None else DECLARED[entry])  # type: ignore[index]


@pytest.mark.parametrize("module", MODULES)
def test_no_module_does_io_it_does_not_declare(module: str) -> None:
    undeclared = {
        kind: sorted(hits)
        for kind, hits in used_kinds(module).items()
        if kind not in declared_kinds(module)
    }
    assert not undeclared, f"{module} does undeclared I/O: {undeclared}"


@pytest.mark.parametrize(
    "module",
    sorted({m for m in MODULES if own_declaration(m)} | {k for k in DECLARED if k in MODULES}),
)
def test_declared_io_is_really_done(module: str) -> None:
    covered = [
        m
        for m in MODULES
        if m == module
        or (
            own_declaration(module) is None
            and m.startswith(module + ".")
            and own_declaration(m) is None
            and table_entry(m) == module
        )
    ]
    used = set().union(*(used_kinds(m) for m in covered))
    assert declared_kinds(module) <= used, (
        f"{module} declares {sorted(declared_kinds(module) - used)} but does none"
    )


_CLAIM = re.compile(r"all (?:of )?(?:the kit's )?(network|disk) i/o", re.IGNORECASE)


@pytest.mark.parametrize("module", MODULES)
def test_docstrings_claim_only_what_is_true(module: str) -> None:
    doc = ast.get_docstring(tree(module)) or ""
    for kind in _CLAIM.findall(" ".join(doc.split())):
        others = [m for m in MODULES if m != module and kind.lower() in declared_kinds(m)]
        assert not others, f"{module} claims all {kind} I/O, but so do {others}"


def test_pure_modules_are_the_core_of_the_kit() -> None:
    pure = {m for m in MODULES if not declared_kinds(m)}
    assert {
        "contactsync_kit.schemas",
        "contactsync_kit.mappers",
        "contactsync_kit.results",
        "contactsync_kit.clock",
        "contactsync_kit.errors",
        "contactsync_kit.staleness",
        "contactsync_kit.repository",
    } <= pure


def readme_pure_audit_modules() -> set[str]:
    """The rls_audit modules the README's layout calls pure: ``… (pure);`` in its entry."""
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    entry = readme[readme.index("  rls_audit/") :].split("(pure)")[0]
    listed = " ".join(entry.split()).split(":", 1)[1]
    return {f"contactsync_kit.rls_audit.{name.strip()}" for name in listed.split(",")}


def test_the_audit_modules_the_readme_calls_pure_declare_none() -> None:
    pure = readme_pure_audit_modules()
    assert {"contactsync_kit.rls_audit.lint", "contactsync_kit.rls_audit.report"} <= pure
    assert pure <= set(MODULES), pure - set(MODULES)
    impure = {m: own_declaration(m) for m in pure if own_declaration(m) != "none"}
    assert not impure, f"the README calls these pure, but they declare {impure}"


def audit_imports(module: str) -> set[str]:
    """The rls_audit modules `module` imports, type-checking-only imports included."""
    found: set[str] = set()
    for node in ast.walk(tree(module)):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            found.add(f"contactsync_kit.rls_audit.{node.module.split('.')[0]}")
    return found & set(MODULES)


def test_the_audit_modules_import_each_other_without_a_cycle() -> None:
    modules = [m for m in MODULES if m.startswith("contactsync_kit.rls_audit.")]
    graph = {m: audit_imports(m) for m in modules}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join([*path, module])
        if module not in done:
            for imported in sorted(graph.get(module, ())):
                visit(imported, (*path, module))
            done.add(module)

    for module in modules:
        visit(module, ())


UI = ("ipywidgets", "matplotlib", "IPython")


def imported_by(module: str) -> set[str]:
    code = (
        f"import sys, json; import {module}; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out))


def test_the_data_layer_imports_no_ui() -> None:
    loaded = imported_by("contactsync_kit")
    assert not loaded & set(UI), loaded & set(UI)


def test_importing_builds_nothing() -> None:
    code = (
        "import threading, contactsync_kit, contactsync_kit.testing; "
        "print(threading.active_count())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "1"
