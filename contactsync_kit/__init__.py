"""contactsync_kit: keep, inspect and prove an offline SQLite cache of a Supabase app's contacts.

The public API is listed in `__all__`; everything else is internal. Submodules
`contactsync_kit.devstack` (the embedded local Supabase stack), `contactsync_kit.widgets`
(Jupyter panels) and `contactsync_kit.testing` (test doubles) are imported on their own.
"""

from .bootstrap import UserSession, default_cache_folder, default_cache_path, start_session
from .cache import CacheVersionError, ContactCache, SyncLogEntry
from .cache_files import (
    CacheFileError,
    CacheKeyError,
    CacheLockedError,
    CacheOwner,
    CorruptCacheError,
    ForeignCacheFileError,
)
from .cache_paths import UnsafeCachePathError
from .clock import Clock, ManualClock, ServerClock, SystemClock
from .delta import SyncMode
from .errors import ContactSyncError, SessionEndedError, SessionEndReason
from .mappers import MappedPage, MappingProblem, map_contacts_page
from .options import InvalidOptionsError, SyncOptions
from .remote import ContactSource, SupabaseContactSource
from .repository import ContactCacheSyncRepository, SyncProgress
from .results import (
    StageTimings,
    SyncError,
    SyncErrorKind,
    SyncFailure,
    SyncResult,
    SyncSuccess,
)
from .session import (
    BadCredentialsError,
    PrivilegedKeyError,
    ProjectRefusedError,
    SignInError,
    TokenInfo,
    inspect_token,
    sign_in,
)
from .verify import CacheVerification, verify_cache

__version__ = "0.1.0"

__all__ = [
    "BadCredentialsError",
    "CacheFileError",
    "CacheKeyError",
    "CacheLockedError",
    "CacheOwner",
    "CacheVerification",
    "CacheVersionError",
    "Clock",
    "ContactCache",
    "ContactCacheSyncRepository",
    "ContactSource",
    "ContactSyncError",
    "CorruptCacheError",
    "ForeignCacheFileError",
    "InvalidOptionsError",
    "ManualClock",
    "MappedPage",
    "MappingProblem",
    "PrivilegedKeyError",
    "ProjectRefusedError",
    "ServerClock",
    "SessionEndReason",
    "SessionEndedError",
    "SignInError",
    "StageTimings",
    "SupabaseContactSource",
    "SyncError",
    "SyncErrorKind",
    "SyncFailure",
    "SyncLogEntry",
    "SyncMode",
    "SyncOptions",
    "SyncProgress",
    "SyncResult",
    "SyncSuccess",
    "SystemClock",
    "TokenInfo",
    "UnsafeCachePathError",
    "UserSession",
    "__version__",
    "default_cache_folder",
    "default_cache_path",
    "inspect_token",
    "map_contacts_page",
    "sign_in",
    "start_session",
    "verify_cache",
]

__io__ = "none"
