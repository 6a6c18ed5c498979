"""Login panel: who is signed in, with which key, and the sign-out that wipes the cache."""

from __future__ import annotations

from typing import Any

import ipywidgets as ipw
from traitlets import link

from . import _view
from ._panel import Panel, button, scheduled
from .login_model import LoginModel, SessionFactory, describe_removed, on_enter

__all__ = ["LoginModel", "LoginPanel", "SessionFactory", "describe_removed", "on_enter"]

__io__ = "ui"

#: The sign-in fields: (model trait, widget class, label, placeholder).
_FIELDS = (
    ("url", ipw.Text, "Project address", "https://your-project.supabase.co"),
    ("key", ipw.Password, "Project key", "the publishable key your admin gave you"),
    ("email", ipw.Text, "Email", "you@example.org"),
    ("password", ipw.Password, "Password", ""),
)


_SIGN_OUT_TIP = "Deletes this computer's copy of the contacts, then ends the session"
_RESET_TIP = "Securely erases this computer's cache file"


class LoginPanel(Panel[LoginModel]):
    """The view of a `LoginModel`: sign in, sign out, and who is signed in.

    Email and password, plus the project's address and key only when configuration names
    none. Enter signs in.
    """

    title = "Sign in"
    help_text = (
        "Sign in with your own account. Signing out deletes this computer's copy of the contacts."
    )
    watched = ("user", "token_text", "key_problem", "url", "cache_problem", "demo_login")
    status_css = "csk-login-status"
    url: ipw.Text
    key: ipw.Password
    email: ipw.Text
    password: ipw.Password

    def build(self) -> list[Any]:
        """The fields, Sign in / Sign out, the reset offer and who is signed in."""
        model = self.model
        for name, kind, label, placeholder in _FIELDS:
            field = kind(
                description=label,
                placeholder=placeholder,
                # One Layout each: hiding one field must not hide all.
                layout=ipw.Layout(width="34em"),
                style={"description_width": "8em"},
            )
            setattr(self, name, _view.tag(field, f"csk-{name}"))
            link((model, name), (field, "value"))
            on_enter(field, self._submit)
        if model.configured:  # support staff never see, or need, the project's key
            self.url.layout.display = self.key.layout.display = "none"
        self.sign_in_button = button(
            "Sign in", "csk-sign-in", self._submit, "sign-in", style="primary"
        )
        sign_out = scheduled(model, model.sign_out, "Signing out")
        self.sign_out_button = button(
            "Sign out", "csk-sign-out", sign_out, "sign-out", _SIGN_OUT_TIP, "warning"
        )
        self.reset_box = self._reset_box()
        self.key_warning = ipw.HTML()
        self.demo = _view.tag(ipw.HTML(), "csk-demo-login")
        self.who = _view.tag(ipw.HTML(), "csk-who")
        self.details = ipw.HTML()
        return [
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
        ]

    def _reset_box(self) -> ipw.VBox:
        """The offer to erase a damaged cache file (shown only when one stopped sign-in)."""
        model = self.model
        reset = scheduled(model, model.reset_cache, "Resetting the cache file")
        self.reset_button = button(
            "Reset the cache file", "csk-reset-cache", reset, "trash", _RESET_TIP, "danger"
        )
        warning = _view.status_html(
            "warn",
            "This erases the copy of the contacts cached on this computer; they are synced "
            "again after you sign in.",
        )
        return ipw.VBox([ipw.HTML(warning), self.reset_button])

    def _submit(self) -> None:
        if self.model.session is None and not self.model.busy:
            self.model.schedule(self.model.sign_in(), what="Signing in")

    def render(self) -> None:
        """Enable what can be pressed; show the key problem, the demo login and who."""
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
        show_demo = model.demo_login and not signed_in
        self.demo.value = (
            _view.status_html("info", f"Demo: {model.demo_login}") if show_demo else ""
        )
        who = (
            [("Signed in as", _view.esc(model.user)), ("Session", _view.esc(model.token_text))]
            if signed_in
            else [("Signed in as", "<i>nobody</i>")]
        )
        self.who.value = _view.facts_html(who)
        self.details.value = _view.details_html(
            [
                ("Project", _view.esc(model.url or "not set")),
                ("Cache file", _view.esc(model.cache_location)),
            ]
        )
