"""Dependencies are declared once in pyproject.toml and mirrored in environment.yml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
# Same project, different names on PyPI and conda-forge.
CONDA_NAMES = {"psycopg[binary]": "psycopg"}


def _split(requirement: str) -> tuple[str, str]:
    match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)\s*(.*)$", requirement.strip())
    assert match, requirement
    name, spec = match.groups()
    name = name.lower()
    return CONDA_NAMES.get(name, name), spec.replace(" ", "")


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements.extend(extra)
    return dict(_split(r) for r in requirements)


def environment_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    found: dict[str, str] = {}
    for entry in env["dependencies"]:
        items = entry["pip"] if isinstance(entry, dict) else [entry]
        for item in items:
            if item.startswith("-e") or item.split("=")[0] in {"python", "pip", "postgrest"}:
                continue
            name, spec = _split(item)
            found[name] = spec
    return found


def test_environment_yml_mirrors_pyproject() -> None:
    assert environment_requirements() == pyproject_requirements()


def test_environment_yml_brings_postgrest_for_conda_users() -> None:
    text = (ROOT / "environment.yml").read_text()
    assert re.search(r"^\s*- postgrest=12\.0\.2$", text, re.M)
