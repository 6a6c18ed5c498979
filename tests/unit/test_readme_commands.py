"""Every shell command the README shows is run by a test, or says why it cannot be.

The commands are read from README.md itself: each line of a ```bash (or sh, shell, console)
block, and each inline code span that starts with a command (``make …``, ``contactsync …``,
``pip …``, ``psql …``; "`make unit` / `integration`" in the table is four make targets).
`COMMANDS` maps each one to what runs it:

* `ByTest`: a test runs it (its node id must exist); for a ``make`` target, the Makefile
  recipe must still run what that test runs;
* `ByCI`: ``.ci/run`` runs it (``make test``), or ``make test`` runs it as a prerequisite or
  as part of its pytest run, both checked against the Makefile;
* `NotRun`: it needs a terminal, runs until Ctrl-C, reaches a network, or takes too long for
  a test, and the reason says which.

A command added to the README without an entry here fails
`test_every_readme_command_is_run_by_a_test_or_says_why_not` with what to do. The cheap
commands that need no terminal and no network run here, as subprocesses of the venv's
``contactsync`` entry point.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contactsync_kit import CacheOwner, ContactCache
from contactsync_kit.cache import SyncLogEntry
from contactsync_kit.cache_paths import person_cache_path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
THIS = "tests/unit/test_readme_commands.py"

#: A code span starting with one of these is a command (a span of one word is a name only).
COMMAND_WORDS = frozenset(
    {"make", "contactsync", "pip", "psql", "supabase", "apt-get", "npm", "python", "python3",
     "jupyter", "voila", "bash", "sh", "git", "curl", "docker", "pytest", "conda", "mamba"}
)  # fmt: skip
COMMAND_FENCES = frozenset({"bash", "sh", "shell", "console"})


@dataclass(frozen=True)
class ByTest:
    """A test runs the command (the node id `node`).

    For a make target, `runs` is what its Makefile recipe runs, and `evidence` the words the
    test's file (or its folder's conftest.py) must hold to run the same.
    """

    node: str
    runs: str | None = None
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class ByCI:
    """``.ci/run`` runs the command, directly or through ``make test``."""

    how: str


@dataclass(frozen=True)
class NotRun:
    """No test can run the command; the reason says why."""

    reason: str


COMMANDS: dict[str, ByTest | ByCI | NotRun] = {
    "make demo": ByTest(
        "tests/integration/test_demo_command.py::"
        "test_contactsync_demo_syncs_two_organisations_and_wipes_the_cache",
        runs="contactsync demo",
        evidence=('"contactsync"', '"demo"'),
    ),
    "make test": ByCI(".ci/run runs `make test` on a fresh clone"),
    "make install": ByCI("a prerequisite of `make test`"),
    "make unit": ByCI("its pytest run is part of `make test`'s"),
    "make integration": ByCI("its pytest run is part of `make test`'s"),
    "make notebooks": ByCI("its pytest run is part of `make test`'s"),
    "make browser": ByCI("its pytest run is part of `make test`'s"),
    "apt-get install chromium": ByCI(
        "`make install` runs scripts/ensure-chromium.sh, which runs it when Chromium is missing"
    ),
    "make stack": ByTest(
        "tests/notebooks/test_notebooks_on_stack.py::"
        "test_the_export_block_names_everything_the_notebooks_read",
        runs="contactsync devstack up",
        evidence=('"contactsync"', '"devstack"', '"up"'),
    ),
    "contactsync devstack up": ByTest(
        "tests/integration/test_bench_quick.py::"
        "test_the_benchmark_measures_client_and_server_apart_in_both_setups",
        evidence=('"devstack"', '"up"'),
    ),
    "make console": ByTest(
        "tests/browser/test_console_demo_stack.py::test_five_page_loads_share_one_demo_stack",
        runs="voila notebooks/app.ipynb",
        evidence=('"voila"', '"notebooks" / "app.ipynb"', '"CONTACTSYNC_DEMO": "1"'),
    ),
    "make lab": NotRun(
        "JupyterLab is an interactive server that runs until Ctrl-C; the notebooks it opens "
        "run as tests (nbval in `make test`, and on `make stack`'s environment)"
    ),
    "make bench": NotRun(
        "a measurement of several minutes at 100,000 contacts; speed is measured by the "
        "benchmarks with medians, never asserted in a test"
    ),
    "make bench-audit": NotRun(
        "a measurement (the RLS audit at 50 organisations x 4 users); speed is never "
        "asserted in a test"
    ),
    "make stress": NotRun("runs the whole suite 7 times (about 45 minutes)"),
    "pip install contactsync_kit": NotRun(
        "installs from the package index (network); tests/unit/test_packaging.py checks "
        "what the core and each extra declare"
    ),
    "pip install 'contactsync_kit[encrypted]'": NotRun(
        "installs from the package index (network); `make install` installs the same extra "
        "(tests/unit/test_packaging.py::test_make_install_installs_every_extra)"
    ),
    "supabase link --project-ref <ref> && supabase db push": NotRun(
        "needs the Supabase CLI, an account and a hosted project (network); the folder it "
        "pushes is checked by tests/unit/test_migrations.py"
    ),
    "contactsync migrations export": ByTest(
        f"{THIS}::test_contactsync_migrations_export_writes_the_committed_folder"
    ),
    "contactsync cache reset [--path P]": ByTest(
        f"{THIS}::test_contactsync_cache_reset_with_a_path_erases_that_cache"
    ),
    'psql "$SUPABASE_DB_URL" --single-transaction -f '
    "contactsync_kit/devstack/sql/0002_app_schema.sql": ByTest(
        "tests/integration/test_readme_psql.py::"
        "test_the_readme_psql_command_applies_a_migration_in_one_transaction"
    ),
}


# -- reading the README ---------------------------------------------------------------------


def _spaced(text: str) -> str:
    return " ".join(text.split())


def code_spans(prose: str) -> list[str]:
    """The inline code spans of Markdown `prose`: ``x`` or `x`, never across a blank line."""
    span = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
    return [
        match[2].strip()
        for paragraph in re.split(r"\n\s*\n", prose)
        for match in span.finditer(paragraph)
    ]


def readme_commands(text: str) -> list[str]:
    """Every shell command README `text` shows, in order, without duplicates."""
    found: list[str] = []
    fence = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```", re.S | re.M)
    for block in fence.finditer(text):
        if block["lang"] in COMMAND_FENCES:
            for line in block["body"].splitlines():
                line = line.strip().removeprefix("$ ")
                if line and not line.startswith("#"):
                    found.append(_spaced(re.sub(r"\s+#.*$", "", line)))
    prose = fence.sub("", text)
    # `make unit` / `integration` / `notebooks`: one make target per span.
    for row in re.finditer(r"`make ([\w-]+)`((?:\s*/\s*`[\w-]+`)+)", prose):
        found += [f"make {target}" for target in re.findall(r"`([\w-]+)`", row[2])]
    for span in code_spans(prose):
        words = span.split()
        if len(words) > 1 and words[0] in COMMAND_WORDS:
            found.append(_spaced(span))
    return list(dict.fromkeys(found))


def test_the_reader_finds_fenced_inline_and_table_commands() -> None:
    sample = (
        "Run `make demo` or `contactsync cache reset\n  [--path P]`; `make` alone is a name,\n"
        "and ``a `quoted` span`` is one span.\n\nA stray ` stays in its paragraph.\n\n"
        "Then `make clean`.\n"
        "| `make unit` / `integration` | kinds |\n"
        "```bash\nmake test   # all of it\n\n# a comment\n$ make lint\n```\n"
        "```python\nprint('not a shell command')\n```\n"
    )
    assert readme_commands(sample) == [
        "make test",
        "make lint",
        "make integration",
        "make demo",
        "contactsync cache reset [--path P]",
        "make clean",
        "make unit",
    ]


def test_every_readme_command_is_run_by_a_test_or_says_why_not() -> None:
    shown = readme_commands(README.read_text(encoding="utf-8"))
    assert "make demo" in shown and "make test" in shown  # the reader works on this README
    missing = [command for command in shown if command not in COMMANDS]
    assert not missing, (
        "README.md shows commands that no test runs: "
        + "; ".join(f"`{c}`" for c in missing)
        + f". Add each to COMMANDS in {THIS} with the test that runs it (ByTest), or the "
        "reason none can (NotRun: needs a terminal, runs until Ctrl-C, needs a network)."
    )
    stale = sorted(set(COMMANDS) - set(shown))
    assert not stale, f"COMMANDS in {THIS} lists commands the README no longer shows: {stale}"


# -- the mapping is true ---------------------------------------------------------------------


def _test_names(file: Path) -> set[str]:
    tree = ast.parse(file.read_text(encoding="utf-8"))
    names = {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }
    return names


def makefile_targets() -> dict[str, tuple[list[str], list[str]]]:
    """Target -> (prerequisites, recipe lines) of the Makefile."""
    targets: dict[str, tuple[list[str], list[str]]] = {}
    current: list[str] | None = None
    for line in (ROOT / "Makefile").read_text(encoding="utf-8").splitlines():
        if line.startswith("\t"):
            if current is not None:
                current.append(line.strip())
            continue
        rule = re.match(r"^([\w.$()/-]+):(?!=)\s*(.*)$", line)
        current = [] if rule else None
        if rule and current is not None:
            targets[rule[1]] = (rule[2].split(), current)
    return targets


def _recipe_runs(recipe: list[str], command: str) -> bool:
    # `$(BIN)/contactsync demo` runs `contactsync demo`: the venv's entry point.
    plain = [re.sub(r"\$\(BIN\)/", "", line) for line in recipe]
    return any(command in line for line in plain)


def _pytest_args(recipe: list[str]) -> list[str]:
    (line,) = [line for line in recipe if "$(BIN)/pytest" in line]
    return shlex.split(line.split("$(BIN)/pytest", 1)[1])


@pytest.mark.parametrize("command", [c for c, e in COMMANDS.items() if isinstance(e, ByTest)])
def test_each_mapped_test_exists_and_runs_what_the_make_target_runs(command: str) -> None:
    entry = COMMANDS[command]
    assert isinstance(entry, ByTest)
    file, _, name = entry.node.partition("::")
    assert (ROOT / file).is_file(), f"{command}: {file} does not exist"
    assert name in _test_names(ROOT / file), f"{command}: no test {name} in {file}"
    if command.startswith("make "):
        target = command.removeprefix("make ")
        assert entry.runs is not None, f"{command}: say what the test runs"
        _, recipe = makefile_targets()[target]
        assert _recipe_runs(recipe, entry.runs), (
            f"`{command}` no longer runs `{entry.runs}` ({recipe}); the test {entry.node} runs that"
        )
        conftest = (ROOT / file).with_name("conftest.py")
        source = (ROOT / file).read_text(encoding="utf-8") + (
            conftest.read_text(encoding="utf-8") if conftest.exists() else ""
        )
        missing = [word for word in entry.evidence if word not in source]
        assert entry.evidence and not missing, f"{entry.node} does not run {entry.runs}: {missing}"


@pytest.mark.parametrize("command", [c for c, e in COMMANDS.items() if isinstance(e, ByCI)])
def test_each_command_said_to_run_in_ci_does(command: str) -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test$", ci, re.M), ".ci/run no longer runs `make test`"
    targets = makefile_targets()
    prerequisites, test_recipe = targets["test"]
    if command == "make test":
        return
    if command == "apt-get install chromium":
        _, install_recipe = targets[targets["install"][0][0]]  # install: $(STAMP)
        assert any("scripts/ensure-chromium.sh" in line for line in install_recipe)
        script = (ROOT / "scripts" / "ensure-chromium.sh").read_text(encoding="utf-8")
        assert re.search(r"apt-get install .*chromium", script)
        return
    target = command.removeprefix("make ")
    if target in prerequisites:
        return
    # The target's pytest run is inside `make test`'s: every path it tests is under one
    # that `make test` tests, with the same options.
    test_args = _pytest_args(test_recipe)
    for arg in _pytest_args(targets[target][1]):
        if arg.startswith("-"):
            assert arg in test_args, (command, arg, test_args)
        else:
            assert any(Path(arg).is_relative_to(p) for p in test_args if not p.startswith("-")), (
                command,
                arg,
                test_args,
            )


def test_each_command_that_is_not_run_says_why() -> None:
    for command, entry in COMMANDS.items():
        if isinstance(entry, NotRun):
            assert len(entry.reason.split()) >= 5, command


# -- the cheap commands, run here ------------------------------------------------------------


def contactsync(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the venv's ``contactsync`` entry point, as the README's reader would."""
    script = Path(sys.executable).with_name("contactsync")
    assert script.is_file(), f"the contactsync entry point is not installed beside {sys.executable}"
    return subprocess.run(
        [str(script), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _synced_cache(path: Path, owner: CacheOwner | None = None) -> None:
    cache = ContactCache.open(path, owner=owner)
    cache.record_attempt(
        SyncLogEntry(
            organisation_id=str(uuid.uuid4()),
            started_at=datetime(2026, 1, 1, tzinfo=UTC),
            duration_ms=1,
            outcome="success",
        )
    )
    cache.close()


def test_contactsync_cache_reset_with_a_path_erases_that_cache(tmp_path: Path) -> None:
    path = tmp_path / "caches" / "contacts-cache.sqlite3"
    _synced_cache(path)
    kept = tmp_path / "caches" / "notes.txt"
    kept.write_text("not the kit's")
    done = contactsync("cache", "reset", "--path", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"erased {path}" in done.stdout
    assert sorted(p.name for p in path.parent.iterdir()) == ["notes.txt"]
    again = contactsync("cache", "reset", "--path", str(path), cwd=tmp_path)
    assert again.returncode == 0 and "nothing to erase" in again.stdout, again.stdout


def test_contactsync_cache_reset_without_a_path_erases_every_cache_in_the_default_folder(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    folder = home / ".cache" / "contactsync_kit" / "private"
    folder.mkdir(parents=True)
    people = [CacheOwner.of("https://xyz.supabase.co", str(uuid.uuid4())) for _ in range(2)]
    files = [person_cache_path(folder, owner) for owner in people]
    for file, owner in zip(files, people, strict=True):
        _synced_cache(file, owner)
    env = {"HOME": str(home), "CONTACTSYNC_CACHE": ""}
    done = contactsync("cache", "reset", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    for file in files:
        assert f"erased {file}" in done.stdout
        assert not file.exists()
    assert not list(folder.glob("*.sqlite3*"))


def test_contactsync_cache_reset_refuses_a_file_the_kit_did_not_create(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite3"
    path.write_text("someone's notes")
    done = contactsync("cache", "reset", "--path", str(path), cwd=tmp_path)
    assert done.returncode == 2 and "refused" in done.stderr, done.stdout + done.stderr
    assert path.read_text() == "someone's notes"


def test_contactsync_migrations_export_writes_the_committed_folder(tmp_path: Path) -> None:
    done = contactsync("migrations", "export", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    written = {p.name: p.read_bytes() for p in (tmp_path / "supabase" / "migrations").iterdir()}
    committed = {p.name: p.read_bytes() for p in (ROOT / "supabase" / "migrations").iterdir()}
    assert written == committed
    assert len(done.stdout.splitlines()) == len(written)


def test_contactsync_help_names_every_command(tmp_path: Path) -> None:
    done = contactsync("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for command in ("demo", "devstack", "migrations", "cache"):
        assert command in done.stdout
