"""Jupyter panels over the kit: the support console and its steps.

Each panel is a traitlets model (state + coroutines that call the kit) and a thin ipywidgets
view over it (`Panel[PM]`); `ContactSyncApp` wires them into one console (sign in,
organisation, sync, freshness, diagnose, cached data, export, clear). `table` is the one
display for tables. Importing this package builds no widget.
"""

from ..extras import require_extra

require_extra(__name__, "widgets")

from .app import AppPanels, ContactSyncApp
from .autorefresh import AutoRefreshModel
from .cached_data import CachedDataModel, CachedDataPanel
from .clearing import ClearingModel, ClearingPanel
from .diagnostics_panel import DiagnosticsModel, DiagnosticsPanel
from .export import ExportModel, ExportPanel
from .freshness import FreshnessModel, FreshnessPanel
from .login import LoginModel, LoginPanel
from .organisation import (
    OrganisationModel,
    OrganisationPanel,
    list_organisations,
    organisation_names,
)
from .settings import ConsoleSettings, check_url
from .sync import SyncModel, SyncPanel, describe_result
from .tables import present, table

__all__ = [
    "AppPanels",
    "AutoRefreshModel",
    "CachedDataModel",
    "CachedDataPanel",
    "ClearingModel",
    "ClearingPanel",
    "ConsoleSettings",
    "ContactSyncApp",
    "DiagnosticsModel",
    "DiagnosticsPanel",
    "ExportModel",
    "ExportPanel",
    "FreshnessModel",
    "FreshnessPanel",
    "LoginModel",
    "LoginPanel",
    "OrganisationModel",
    "OrganisationPanel",
    "SyncModel",
    "SyncPanel",
    "check_url",
    "describe_result",
    "list_organisations",
    "organisation_names",
    "present",
    "table",
]

__io__ = "none"
