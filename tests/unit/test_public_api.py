"""The public surface: `__all__` is explicit, complete and importable."""

from __future__ import annotations

import importlib
import inspect
import typing

import pytest

import contactsync_kit

REQUIRED = {
    "ContactCacheSyncRepository",
    "SyncResult",
    "SyncSuccess",
    "SyncFailure",
    "SyncError",
    "SyncErrorKind",
    "ContactCache",
    "ContactSyncError",
}


def test_required_names_are_public() -> None:
    assert set(contactsync_kit.__all__) >= REQUIRED


def test_all_is_sorted_unique_and_importable() -> None:
    names = contactsync_kit.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(contactsync_kit, name), name


def test_every_public_class_and_function_has_a_docstring() -> None:
    for name in contactsync_kit.__all__:
        obj = getattr(contactsync_kit, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{name} needs a docstring"


def test_nothing_public_is_missing_from_all() -> None:
    public = {
        n
        for n, v in vars(contactsync_kit).items()
        if not n.startswith("_") and not inspect.ismodule(v)
    }
    assert public <= set(contactsync_kit.__all__)


def test_sync_result_is_closed_over_exactly_two_cases() -> None:
    assert typing.get_args(contactsync_kit.SyncResult) == (
        contactsync_kit.SyncSuccess,
        contactsync_kit.SyncFailure,
    )
    shared = set(contactsync_kit.SyncSuccess.__mro__) & set(contactsync_kit.SyncFailure.__mro__)
    assert not {cls.__name__ for cls in shared} & set(contactsync_kit.__all__)


@pytest.mark.parametrize(
    "module",
    [
        "results",
        "clock",
        "schemas",
        "mappers",
        "cache",
        "remote",
        "session",
        "repository",
        "bootstrap",
        "testing",
        "errors",
        "storage",
        "staging",
        "cache_files",
    ],
)
def test_each_module_declares_all(module: str) -> None:
    mod = importlib.import_module(f"contactsync_kit.{module}")
    assert isinstance(mod.__all__, list)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name}"


def test_every_exception_a_caller_can_meet_is_a_contact_sync_error() -> None:
    """One error tree: each public exception class of the kit derives from ContactSyncError."""
    import importlib
    import inspect
    import pkgutil

    from contactsync_kit import ContactSyncError

    package = importlib.import_module("contactsync_kit")
    outside: list[str] = []
    seen = 0
    for info in pkgutil.walk_packages(package.__path__, prefix="contactsync_kit."):
        if info.name.endswith("__main__"):
            continue  # runs a command when imported
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != info.name or name.startswith("_"):
                continue
            if issubclass(cls, BaseException):
                seen += 1
                if not issubclass(cls, ContactSyncError):
                    outside.append(f"{info.name}.{name}")
    assert seen >= 15
    assert outside == []
