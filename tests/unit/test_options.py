"""`SyncOptions`: defaults written once, bad values refused with words, singles override."""

from __future__ import annotations

import inspect
from datetime import timedelta

import pytest

from contactsync_kit import (
    ContactCacheSyncRepository,
    ContactSyncError,
    InvalidOptionsError,
    SyncOptions,
    start_session,
)
from contactsync_kit.options import DEFAULT_OPTIONS, resolve_options


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"page_size": 0}, "page_size must be a whole number of at least 1"),
        ({"page_size": True}, "page_size must be a whole number"),
        ({"page_size": 2.5}, "page_size must be a whole number"),
        ({"max_rows": 0}, "max_rows must be None or a whole number"),
        ({"max_rows": "1000"}, "max_rows must be None or a whole number"),
        ({"delta_window": 60}, "delta_window must be a timedelta"),
        ({"delta_window": timedelta(seconds=-1)}, "delta_window must be a timedelta of 0"),
        ({"request_timeout_s": 0}, "request_timeout_s must be a number of seconds above 0"),
        ({"busy_timeout_s": float("nan")}, "busy_timeout_s must be a number of seconds"),
    ],
)
def test_a_value_that_cannot_work_is_refused_with_its_name(
    changes: dict[str, object], words: str
) -> None:
    with pytest.raises(InvalidOptionsError, match=words) as refused:
        SyncOptions(**changes)  # type: ignore[arg-type]
    assert isinstance(refused.value, ContactSyncError) and isinstance(refused.value, ValueError)


def test_updated_refuses_an_unknown_option_and_checks_the_rest() -> None:
    with pytest.raises(InvalidOptionsError, match="no sync option called page"):
        DEFAULT_OPTIONS.updated(page=10)
    with pytest.raises(InvalidOptionsError):
        DEFAULT_OPTIONS.updated(page_size=-1)
    assert DEFAULT_OPTIONS.updated(max_rows=None).max_rows is None


def test_a_single_keyword_overrides_the_options_and_defaults_stay_put() -> None:
    chosen = SyncOptions(page_size=200, max_rows=500)
    assert resolve_options(None) is DEFAULT_OPTIONS
    assert resolve_options(chosen, page_size=DEFAULT_OPTIONS.page_size) is chosen
    assert resolve_options(chosen, page_size=50) == SyncOptions(page_size=50, max_rows=500)
    assert resolve_options(None, max_rows=None).max_rows is None


@pytest.mark.parametrize("entry", [start_session, ContactCacheSyncRepository.__init__])
def test_every_entry_point_takes_the_defaults_from_sync_options(entry: object) -> None:
    parameters = inspect.signature(entry).parameters  # type: ignore[arg-type]
    assert "options" in parameters
    for name in ("page_size", "max_rows", "delta_window"):
        assert parameters[name].default == getattr(DEFAULT_OPTIONS, name), name
