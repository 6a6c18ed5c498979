"""RLS scoping audit: does every test user see exactly the rows they should, and nothing else?

For each test user, signed in through the normal user path (`session.sign_in`, never the
service key), and for each organisation to probe, the audit asks the server what the user can
see of the scoping tables and of every synced table of the spec (`schemas.SYNCED_TABLES`, or
the tables its ground truth covers), in every way the app asks:

* ``select`` — a plain select of the table filtered to the organisation, on every table
  (``organisation_members``, keyed by (user, organisation), is paged on ``user_id``);
* ``count`` — ``count=exact`` on the same filter, on every table;
* ``search`` — an ``ilike`` search on the root table's names (the seed epic's
  worry), one request over all probed organisations;
* ``embedded`` — the select the sync uses (`schemas.EMBEDDED_SELECT`): the root table with
  every child table embedded;
* ``foreign_ids`` — a direct ``id=in.(…)`` request for rows of the organisation the user must
  not see;

and, not filtered by organisation at all, ``all_rows`` (every row of every app table the
caller can see), ``all_count``, ``all_search`` and ``all_embedded``: every row they return
must belong to an organisation where ground truth (read for *all* organisations) gives the
caller that access, so a leak is found and named with its organisation even outside the
audited set. Given a database URL, the audit also lists the exposed surface (every relation
and function the API roles reach through the schemas PostgREST exposes, read from
``pgrst.db_schemas`` on the authenticator role), probes each view, materialised view and
function there (``surface``), diffs it against the team's expected-surface file, and lints
the policies.

What the user *should* see is computed from ground truth the caller supplies — for the local
stack `ground_truth_from_database` reads every row's ids as superuser and `expected_visibility`
applies the intended rules to the users' expected memberships. The result is a matrix
(user x organisation x table x probe -> visible, expected, leaked, missing, verdict), checks
beyond counts (visible sets disjoint across organisations, embedded rows carry their parent's
organisation, the anon key alone sees nothing) and, given a database URL, a lint of the
policies in the catalog.

Modules: `frames` (vocabulary and schemas), `truth` (users, ground truth, expectations),
`plan` (what each caller probes), `expectation` and `matrix` (matrix and checks), `surface`
(targets, expected-surface diff), `expressions` and `lint` (policy lint), `rules` (the rule
registry), `sources` (the policy behind each leak), `render` (matrix view, markdown) and
`report` (`AuditReport`, `evaluate`) are pure; `heatmap` draws the heat map (matplotlib),
`database` reads the catalog and ground truth (psycopg), `probes` and `sweep` ask the API as
each caller, `callers` says who probes, `files` reads and writes files, `stopping` ends an
audit on SIGTERM / Ctrl-C, `exposures` plants mistakes on a local stack, and `runner`
(`audit_rls`) wires them.
"""

from .callers import anon_reader
from .database import (
    exposed_schemas,
    fetch_policy_catalog,
    fetch_surface,
    ground_truth_from_database,
    lint_database,
)
from .files import export_report, load_expected_surface, write_expected_surface
from .frames import (
    ALL_ORGANISATIONS,
    ANON_USER,
    AUDIT_TABLES,
    CHECKS_SCHEMA,
    DISCREPANCY_SCHEMA,
    EXPECTED_SCHEMA,
    LEAK_SOURCES_SCHEMA,
    LINT_SCHEMA,
    MATRIX_SCHEMA,
    MEMBERS_SCHEMA,
    OBSERVED_SCHEMA,
    REQUESTED_SCHEMA,
    RUNS_SCHEMA,
    SURFACE_DIFF_SCHEMA,
    SURFACE_SCHEMA,
    UNIVERSE_SCHEMA,
    Probe,
)
from .heatmap import heatmap_frame, heatmap_png, plot_heatmap
from .lint import PolicyCatalog, lint_policies
from .matrix import audit_checks, audit_matrix
from .render import explain_leaks, matrix_view, organisation_labels, summary_markdown
from .report import AuditReport, evaluate
from .rules import RULES, SPLINTER_NOT_APPLICABLE, Rule, rules_frame, rules_markdown
from .runner import ClaimsTokens, audit_rls
from .sources import leak_sources
from .stopping import AuditProgress
from .surface import parse_surface_lines, surface_diff, surface_lines
from .truth import AuditUser, GroundTruth, expected_visibility, members_frame

__all__ = [
    "ALL_ORGANISATIONS",
    "ANON_USER",
    "AUDIT_TABLES",
    "CHECKS_SCHEMA",
    "DISCREPANCY_SCHEMA",
    "EXPECTED_SCHEMA",
    "LEAK_SOURCES_SCHEMA",
    "LINT_SCHEMA",
    "MATRIX_SCHEMA",
    "MEMBERS_SCHEMA",
    "OBSERVED_SCHEMA",
    "REQUESTED_SCHEMA",
    "RULES",
    "RUNS_SCHEMA",
    "SPLINTER_NOT_APPLICABLE",
    "SURFACE_DIFF_SCHEMA",
    "SURFACE_SCHEMA",
    "UNIVERSE_SCHEMA",
    "AuditProgress",
    "AuditReport",
    "AuditUser",
    "ClaimsTokens",
    "GroundTruth",
    "PolicyCatalog",
    "Probe",
    "Rule",
    "anon_reader",
    "audit_checks",
    "audit_matrix",
    "audit_rls",
    "evaluate",
    "expected_visibility",
    "explain_leaks",
    "export_report",
    "exposed_schemas",
    "fetch_policy_catalog",
    "fetch_surface",
    "ground_truth_from_database",
    "heatmap_frame",
    "heatmap_png",
    "leak_sources",
    "lint_database",
    "lint_policies",
    "load_expected_surface",
    "matrix_view",
    "members_frame",
    "organisation_labels",
    "parse_surface_lines",
    "plot_heatmap",
    "rules_frame",
    "rules_markdown",
    "summary_markdown",
    "surface_diff",
    "surface_lines",
    "write_expected_surface",
]
__io__ = "none"
