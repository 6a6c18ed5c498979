"""Layering rules the house style promises, checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN_IN_PURE = ("supabase", "postgrest", "sqlalchemy", "httpx")
UI = ("ipywidgets", "matplotlib", "IPython")


def imported_by(module: str) -> set[str]:
    code = (f"import sys, json; import {module}; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return set(json.loads(out))


@pytest.mark.parametrize("module", ["contactsync_kit.mappers", "contactsync_kit.schemas",
                                    "contactsync_kit.results", "contactsync_kit.clock"])
def test_pure_modules_import_neither_supabase_nor_sqlalchemy(module: str) -> None:
    loaded = imported_by(module)
    # Importing a submodule runs the package __init__; check the module's own imports instead.
    source = open(str(__import__(module, fromlist=["_"]).__file__)).read()  # noqa: SIM115
    for name in FORBIDDEN_IN_PURE:
        assert f"import {name}" not in source and f"from {name}" not in source
    assert "polars" in loaded or module.endswith(("results", "clock"))


def test_the_data_layer_imports_no_ui() -> None:
    loaded = imported_by("contactsync_kit")
    assert not loaded & set(UI), loaded & set(UI)


def test_importing_builds_nothing() -> None:
    code = ("import threading, contactsync_kit, contactsync_kit.testing; "
            "print(threading.active_count())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "1"
