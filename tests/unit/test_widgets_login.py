"""The sign-in step tells people what went wrong by the error's type, never by its wording.

`session.sign_in` translates supabase's errors where they enter (`BadCredentialsError`,
`ProjectRefusedError`, a `SignInError` of kind ``network``); the login model only branches
on those types. The real server's answers are driven in tests/unit/test_widgets.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from contactsync_kit import SyncErrorKind, UserSession
from contactsync_kit.session import BadCredentialsError, ProjectRefusedError, SignInError
from contactsync_kit.widgets import LoginModel, LoginPanel

URL = "https://example-project.supabase.co"
KEY = "sb_publishable_abc123"


def refusing(error: Exception) -> Any:
    async def factory(*_args: object, **_kwargs: object) -> UserSession:
        raise error

    return factory


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (BadCredentialsError("wrong email or password", status=400), "email or password is not"),
        (ProjectRefusedError("refused (401): Invalid API key", status=401), "the project key"),
        (
            SignInError(f"cannot reach {URL}: ConnectError", kind=SyncErrorKind.NETWORK),
            f"Cannot reach the server at {URL}",
        ),
        # The words "api key" in a plain refusal no longer make it a key problem: the type does.
        (SignInError("refused (403): api key of a banned user", status=403), "refused the sign-in"),
    ],
)
async def test_each_sign_in_error_type_reads_as_its_own_advice(error: Exception, says: str) -> None:
    model = LoginModel(
        url=URL, key=KEY, email="ada@example.org", password="pw", session_factory=refusing(error)
    )
    panel = LoginPanel(model)
    panel.sign_in_button.click()
    await model.wait()
    assert model.session is None and not model.busy
    assert model.tone == "error" and says in model.status, model.status
    assert says in panel.status.value


async def test_what_is_missing_is_listed_before_any_request() -> None:
    model = LoginModel(
        url=URL, key="", email="", password="pw", session_factory=refusing(AssertionError())
    )
    assert not await model.sign_in()
    assert model.status == "Type the project key and your email address, then press Sign in."
