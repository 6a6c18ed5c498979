"""Jupyter panels over the kit: login, organisation, sync, staleness, cache clearing.

Each panel is a traitlets model (state + coroutines that call the kit) and a thin ipywidgets
view; `ContactSyncApp` wires the five together. Importing this package builds no widget.
"""

from ..extras import require_extra

require_extra(__name__, "widgets")

from .app import AppPanels, ContactSyncApp
from .clearing import ClearingModel, ClearingPanel
from .login import LoginModel, LoginPanel
from .organisation import OrganisationModel, OrganisationPanel, list_organisations
from .staleness import StalenessModel, StalenessPanel
from .sync import SyncModel, SyncPanel, describe_result

__all__ = [
    "AppPanels",
    "ClearingModel",
    "ClearingPanel",
    "ContactSyncApp",
    "LoginModel",
    "LoginPanel",
    "OrganisationModel",
    "OrganisationPanel",
    "StalenessModel",
    "StalenessPanel",
    "SyncModel",
    "SyncPanel",
    "describe_result",
    "list_organisations",
]
