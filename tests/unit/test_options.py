"""`SyncOptions`: defaults written once, bad values refused with words, singles override."""

from __future__ import annotations

import inspect
from datetime import timedelta
from typing import Any

import pytest

from contactsync_kit import (
    ContactCacheSyncRepository,
    ContactSyncError,
    InvalidOptionsError,
    SyncOptions,
    start_session,
)
from contactsync_kit.options import DEFAULT_OPTIONS, resolve_options
from contactsync_kit.widgets import ContactSyncApp
from contactsync_kit.widgets.login_model import LoginModel


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


@pytest.mark.parametrize(
    "entry",
    [start_session, ContactCacheSyncRepository.__init__, LoginModel.__init__, ContactSyncApp],
)
def test_every_entry_point_takes_the_defaults_from_sync_options(entry: Any) -> None:
    parameters = inspect.signature(entry).parameters
    assert "options" in parameters
    for name in ("page_size", "max_rows", "delta_window"):
        if name in parameters:
            assert parameters[name].default == getattr(DEFAULT_OPTIONS, name), name


def test_the_sign_in_panel_hands_its_options_to_the_session() -> None:
    chosen = SyncOptions(page_size=250, delta_window=timedelta(seconds=5))
    assert ContactSyncApp(options=chosen, max_rows=500).login.options == chosen.updated(
        max_rows=500
    )
    assert LoginModel().options is DEFAULT_OPTIONS
