"""Login panel: who is signed in, with which key, and the sign-out that wipes the cache."""

from __future__ import annotations

from typing import Any

import ipywidgets as ipw
from traitlets import link

from . import _view
from .login_model import LoginModel, SessionFactory, describe_removed, on_enter
from .static import StaticFallback

__all__ = ["LoginModel", "LoginPanel", "SessionFactory", "describe_removed", "on_enter"]


class LoginPanel(StaticFallback, ipw.VBox):  # type: ignore[misc]
    """The view of a `LoginModel`: sign in, sign out, and who is signed in.

    Email and password, plus the project's address and key only when configuration names
    none. Enter signs in.
    """

    def __init__(self, model: LoginModel, **kwargs: Any) -> None:
        self.model = model

        def wide() -> ipw.Layout:  # one Layout each: hiding one field must not hide all
            return ipw.Layout(width="34em")

        style = {"description_width": "8em"}
        self.url = ipw.Text(
            description="Project address",
            placeholder="https://your-project.supabase.co",
            layout=wide(),
            style=style,
        )
        self.key = ipw.Password(
            description="Project key",
            placeholder="the publishable key your admin gave you",
            layout=wide(),
            style=style,
        )
        self.email = ipw.Text(
            description="Email", placeholder="you@example.org", layout=wide(), style=style
        )
        self.password = ipw.Password(description="Password", layout=wide(), style=style)
        for name in ("url", "key", "email", "password"):
            link((model, name), (getattr(self, name), "value"))
            on_enter(getattr(self, name), self._submit)
        if model.configured:  # support staff never see, or need, the project's key
            self.url.layout.display = self.key.layout.display = "none"
        self.sign_in_button = ipw.Button(
            description="Sign in", button_style="primary", icon="sign-in"
        )
        self.sign_out_button = ipw.Button(
            description="Sign out",
            button_style="warning",
            icon="sign-out",
            tooltip="Deletes this computer's copy of the contacts, then ends the session",
        )
        self.sign_in_button.on_click(lambda _: self._submit())
        self.sign_out_button.on_click(
            lambda _: model.schedule(model.sign_out(), what="Signing out")
        )
        _view.tag(self.url, "csk-url")
        _view.tag(self.key, "csk-key")
        _view.tag(self.email, "csk-email")
        _view.tag(self.password, "csk-password")
        _view.tag(self.sign_in_button, "csk-sign-in")
        _view.tag(self.sign_out_button, "csk-sign-out")
        self.reset_button = _view.tag(
            ipw.Button(
                description="Reset the cache file",
                button_style="danger",
                icon="trash",
                tooltip="Securely erases this computer's cache file",
            ),
            "csk-reset-cache",
        )
        self.reset_button.on_click(
            lambda _: model.schedule(model.reset_cache(), what="Resetting the cache file")
        )
        self.reset_box = ipw.VBox(
            [
                ipw.HTML(
                    _view.status_html(
                        "warn",
                        "This erases the copy of the contacts cached on this computer; they are "
                        "synced again after you sign in.",
                    )
                ),
                self.reset_button,
            ]
        )
        self.key_warning = ipw.HTML()
        self.demo = _view.tag(ipw.HTML(), "csk-demo-login")
        self.who = _view.tag(ipw.HTML(), "csk-who")
        self.status = _view.tag(ipw.HTML(), "csk-login-status")
        self.details = ipw.HTML()
        super().__init__(
            children=[
                _view.card(
                    "Sign in",
                    "Sign in with your own account. Signing out deletes this computer's copy of "
                    "the "
                    "contacts.",
                    self.url,
                    self.key,
                    self.key_warning,
                    self.demo,
                    self.email,
                    self.password,
                    ipw.HBox([self.sign_in_button, self.sign_out_button]),
                    self.status,
                    self.reset_box,
                    self.who,
                    self.details,
                )
            ],
            **kwargs,
        )
        model.observe(
            self._render,
            names=[
                "session",
                "busy",
                "status",
                "tone",
                "user",
                "token_text",
                "key_problem",
                "url",
                "cache_problem",
                "demo_login",
            ],
        )
        self._render()

    def _submit(self) -> None:
        if self.model.session is None and not self.model.busy:
            self.model.schedule(self.model.sign_in(), what="Signing in")

    def _render(self, _change: object = None) -> None:
        model = self.model
        signed_in = model.session is not None
        for field in (self.url, self.key, self.email, self.password):
            field.disabled = signed_in or model.busy
        self.sign_in_button.disabled = signed_in or model.busy or bool(model.key_problem)
        self.sign_out_button.disabled = not signed_in or model.busy
        self.reset_box.layout.display = "" if model.cache_problem and not signed_in else "none"
        self.reset_button.disabled = model.busy
        self.key_warning.value = (
            _view.status_html("error", model.key_problem) if model.key_problem else ""
        )
        self.demo.value = (
            _view.status_html("info", f"Demo: {model.demo_login}")
            if model.demo_login and not signed_in
            else ""
        )
        if signed_in:
            self.who.value = _view.facts_html(
                [
                    ("Signed in as", _view.esc(model.user)),
                    ("Session", _view.esc(model.token_text)),
                ]
            )
        else:
            self.who.value = _view.facts_html([("Signed in as", "<i>nobody</i>")])
        self.status.value = _view.status_html(model.tone, model.status)
        self.details.value = _view.details_html(
            [
                ("Project", _view.esc(model.url or "not set")),
                ("Cache file", _view.esc(model.cache_location)),
            ]
        )
