"""Stale-cache diagnostics: why does a user's cache disagree with the server, and what to do.

The package has four parts:

* `frames` — pure polars frame functions with declared schemas: `compare_rows` (the row
  diff), `summarise_log` (the sync log per organisation) and `table_facts`;
* `findings` — `verdict` (one organisation's plain-language finding) and `assess` (findings
  for a whole facts frame), pure and unit-tested on fixed facts;
* `named` — `differing_rows` / `name_differences`: the differing rows with their contacts'
  names, for the person at the screen (never in a bundle);
* `diagnosis` — `diagnose` reads the local facts through `ContactCache` and the server facts
  through `RemoteReader` with the user's own session (RLS applies: the diagnosis sees exactly
  what a sync would see);
* `bundle` and `privacy` — `write_support_bundle` writes one JSON file for support, with
  personal values found case- and accent-folded and redacted, and the user id keyed-hashed.

Only ids, timestamps, counts and error codes are gathered: no names, phones, emails,
addresses or note bodies ever reach a `Diagnosis` or a bundle.
"""

from __future__ import annotations

from .bundle import support_bundle, write_support_bundle
from .diagnosis import Diagnosis, ServerReader, SessionFacts, diagnose
from .findings import (
    DIAGNOSIS_SCHEMA,
    Finding,
    OrgFacts,
    Verdict,
    assess,
    server_unreachable,
    verdict,
)
from .frames import (
    DIFF_SCHEMA,
    LOG_SUMMARY_SCHEMA,
    TABLE_FACTS_SCHEMA,
    DiffStatus,
    compare_rows,
    summarise_log,
    table_facts,
)
from .named import (
    DIFF_WORDS,
    NAMED_DIFF_SCHEMA,
    TABLE_WORDS,
    differing_rows,
    name_differences,
)
from .privacy import (
    PersonalData,
    find_personal_values,
    fold,
    personal_values,
    personal_words,
    pseudonymise,
    words_of,
)

__all__ = [
    "DIAGNOSIS_SCHEMA",
    "DIFF_SCHEMA",
    "DIFF_WORDS",
    "LOG_SUMMARY_SCHEMA",
    "NAMED_DIFF_SCHEMA",
    "TABLE_FACTS_SCHEMA",
    "TABLE_WORDS",
    "Diagnosis",
    "DiffStatus",
    "Finding",
    "OrgFacts",
    "PersonalData",
    "ServerReader",
    "SessionFacts",
    "Verdict",
    "assess",
    "compare_rows",
    "diagnose",
    "differing_rows",
    "find_personal_values",
    "fold",
    "name_differences",
    "personal_values",
    "personal_words",
    "pseudonymise",
    "server_unreachable",
    "summarise_log",
    "support_bundle",
    "table_facts",
    "verdict",
    "words_of",
    "write_support_bundle",
]

__io__ = "none"
