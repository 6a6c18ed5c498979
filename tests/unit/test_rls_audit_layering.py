"""The audit package's own layering: each module declares its I/O exactly, none is covered by
a blanket entry, and no module names a synced table (the spec drives them all).
"""

from __future__ import annotations

import ast
import re

import pytest

from contactsync_kit import schemas
from tests.unit.test_architecture import (
    DECLARED,
    MODULES,
    declared_kinds,
    own_declaration,
    readme_pure_audit_modules,
    table_entry,
    tree,
    used_kinds,
)

AUDIT = sorted(m for m in MODULES if m.startswith("contactsync_kit.rls_audit"))


def test_the_audit_package_has_modules_to_check() -> None:
    assert len(AUDIT) > 20 and "contactsync_kit.rls_audit.probes" in AUDIT


def test_no_blanket_entry_covers_an_audit_module() -> None:
    covering = {m: table_entry(m) for m in AUDIT if table_entry(m) is not None}
    assert not covering, f"DECLARED covers audit modules: {covering}"
    assert not [k for k in DECLARED if k.startswith("contactsync_kit.rls_audit")]


@pytest.mark.parametrize("module", AUDIT)
def test_each_audit_module_declares_exactly_the_io_it_does(module: str) -> None:
    assert own_declaration(module) is not None, f"{module} declares no __io__ of its own"
    assert declared_kinds(module) == set(used_kinds(module)), (
        f"{module} declares {sorted(declared_kinds(module))} but does {sorted(used_kinds(module))}"
    )


def test_the_modules_the_readme_calls_pure_do_no_io() -> None:
    pure = readme_pure_audit_modules()
    assert len(pure) >= 10
    assert {m: sorted(used_kinds(m)) for m in pure if used_kinds(m)} == {}
    assert {m for m in pure if own_declaration(m) != "none"} == set()


_TABLE_NAMES = re.compile(rf"\b({'|'.join(schemas.DATA_TABLES)})\b")


def _code_strings(module: ast.Module) -> list[str]:
    """Every string literal of the module's code (docstrings left out: prose may give an
    example).
    """
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(module)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(module)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def _naming_tables(module: ast.Module) -> list[str]:
    return [s for s in _code_strings(module) if _TABLE_NAMES.search(s)]


@pytest.mark.parametrize("module", AUDIT)
def test_no_audit_module_names_a_synced_table(module: str) -> None:
    """Tables, per-table probes, the truth SQL and the argument heuristic come from the spec."""
    named = _naming_tables(tree(module))
    assert not named, f"{module} names synced tables in {named}"


def test_the_table_check_finds_a_name_in_code_not_in_prose() -> None:
    source = '''"""Reads contacts with their notes."""

def f():
    """The notes of a contact."""
    return "SELECT id FROM public.notes", "chapter_id"
'''
    assert _naming_tables(ast.parse(source)) == ["SELECT id FROM public.notes"]
