"""Keeping personal data out of text meant for support: folded matching and a keyed user id.

A personal value is found however it is written: matching is case- and accent-folded
(`fold`), so ``JOSÉ NÚÑEZ``, ``josé núñez`` and ``Jose Nunez`` are one value, and a single word
of four or more letters taken from a name, email or address (``Núñez``) is found inside a
sentence as well. Imports neither supabase nor SQLAlchemy; the cache is read through
`ContactCache` only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

import polars as pl

from ..schemas import ROOT_TABLE, SYNCED_TABLES, TableSpec

if TYPE_CHECKING:
    from ..cache import ContactCache

__all__ = [
    "PersonalData",
    "find_personal_values",
    "fold",
    "personal_values",
    "personal_words",
    "pseudonymise",
    "words_of",
]

# Reads the cache through `ContactCache`, not itself.
__io__ = "none"


def _free_text(spec: TableSpec) -> tuple[str, ...]:
    """The spec's free-text columns: not ids, timestamps or a closed set of values."""
    return tuple(
        c.name
        for c in spec.columns
        if c.sql_type == "TEXT" and not (c.uuid or c.timestamp or c.values)
    )


# Every free-text column of a synced table is personal (names, phones, emails, addresses,
# note bodies), derived from the spec so a new table's text is covered.
_PERSONAL_COLUMNS: Final = {spec.name: cols for spec in SYNCED_TABLES if (cols := _free_text(spec))}
# Words are taken only where a single word identifies someone: the root rows' own columns
# (a person's name, email, address). An embedded row's text, such as a note body, holds
# everyday words ("phoned", "visit", "server"): matched alone they would flag the kit's own
# text, so it is matched whole.
_WORD_COLUMNS: Final = {ROOT_TABLE: _PERSONAL_COLUMNS[ROOT_TABLE]}
# Shorter values and words (initials, "Li", "Dag") would match ordinary text; they cannot
# identify anyone on their own either.
_MIN_LENGTH: Final = 4
_LETTERS: Final = r"[^\W\d_]+"  # a run of letters: digits, "_" and punctuation split words
_LONG_WORD: Final = rf"[^\W\d_]{{{_MIN_LENGTH},}}"


def fold(text: str) -> str:
    """`text` as it is compared: case-folded, NFKD-decomposed, combining marks removed.

    ``fold("JOSÉ NÚÑEZ") == fold("José Núñez") == "jose nunez"``; a non-breaking space folds
    to a space, a ligature to its letters.
    """
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def words_of(text: str) -> set[str]:
    """The distinct words of `text`, folded: runs of letters, split at anything else."""
    return set(re.findall(_LETTERS, fold(text)))


def _folded(texts: Iterable[str | None]) -> pl.Series:
    # Python's casefold has no polars equivalent (to_lowercase keeps "ß" apart from "ss").
    return pl.Series([None if t is None else fold(t) for t in texts], dtype=pl.String())


def _column_values(
    cache: ContactCache,
    columns: Mapping[str, tuple[str, ...]],
    organisation_ids: Sequence[str] | None,
) -> pl.Series:
    orgs: list[str | None] = list(organisation_ids) if organisation_ids else [None]
    frames = [
        frame.select(pl.col(column).cast(pl.String()).alias("value"))
        for table, wanted in columns.items()
        for org in orgs
        for frame in [cache.read_table(table, org, columns=wanted)]
        for column in wanted
    ]
    values = pl.concat(frames).get_column("value") if frames else pl.Series([], dtype=pl.String)
    return values.drop_nulls().unique()


def personal_values(
    cache: ContactCache,
    organisation_ids: Sequence[str] | None = None,
) -> list[str]:
    """Every distinct personal value in the cache (names, phones, emails, addresses, notes).

    Used to prove a text holds none of them; the values themselves never leave memory.
    """
    values = _column_values(cache, _PERSONAL_COLUMNS, organisation_ids)
    return sorted(values.filter(values.str.strip_chars().str.len_chars() >= _MIN_LENGTH))


def personal_words(
    cache: ContactCache,
    organisation_ids: Sequence[str] | None = None,
) -> list[str]:
    """Every distinct word of four or more letters in the cache's personal columns.

    The columns are names, emails and addresses; words are folded (`fold`):
    ``"José Núñez"`` gives ``"jose"`` and ``"nunez"``.
    """
    values = _column_values(cache, _WORD_COLUMNS, organisation_ids)
    words = _folded(values.to_list()).str.extract_all(_LONG_WORD).explode().drop_nulls()
    return sorted(words.unique())


class PersonalData:
    """Personal values and words, folded once, to look for in many texts.

    `values` (whole cells: a name, an address, a note body) and `words` (single words taken
    from them) match where they stand on their own in the folded text, not inside a longer
    word. A word in `ignore` is not matched alone, nor is a one-word value: the support
    bundle passes its own field names and JSON's literals, which would otherwise match in
    every bundle; a longer value holding that word still is.
    """

    def __init__(
        self, values: Iterable[str] = (), words: Iterable[str] = (), *, ignore: Iterable[str] = ()
    ) -> None:
        ignored = {fold(w) for w in ignore}
        self._by_fold: dict[str, str] = {}
        for value in sorted(values):
            folded = fold(value)
            # A one-word value is a word: the bundle's own field names do not count as it.
            if len(value.strip()) >= _MIN_LENGTH and folded not in ignored:
                self._by_fold.setdefault(folded, value)
        self._words = sorted({fold(w) for w in words if len(w) >= _MIN_LENGTH} - ignored)

    def found_in(self, texts: Sequence[str]) -> list[list[str]]:
        """For each text, the distinct values (as given) and words (folded) found, sorted."""
        values = (
            pl.col("text").str.extract_many(list(self._by_fold), overlapping=True)
            if self._by_fold
            else pl.lit([], dtype=pl.List(pl.String()))
        )
        frame = pl.DataFrame({"text": _folded(texts)}).select(
            "text",
            values.alias("values"),  # Aho-Corasick: one pass whatever the number of values
            pl.col("text")
            .str.extract_all(_LETTERS)
            .list.eval(pl.element().filter(pl.element().is_in(self._words)))
            .alias("words"),
        )
        return [
            sorted({self._by_fold[v] for v in set(candidates) if _bounded(v, text)} | set(words))
            for text, candidates, words in frame.iter_rows()
        ]

    def found(self, text: str) -> list[str]:
        """The distinct values (as given) and words (folded) found in `text`, sorted."""
        return self.found_in([text])[0]


def _bounded(value: str, text: str) -> bool:
    """Whether `value` stands on its own in `text`: "note" is not in "notes"."""
    return re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text) is not None


def find_personal_values(
    text: str, values: Sequence[str], words: Collection[str] = (), *, ignore: Collection[str] = ()
) -> list[str]:
    """The distinct `values` and `words` that occur in `text`, case- and accent-folded.

    A value or word matches where it stands on its own, not inside a longer word (see
    `PersonalData`); each hit is listed once, values as given and words folded.
    """
    return PersonalData(values, words, ignore=ignore).found(text)


def pseudonymise(user_id: str, key: bytes) -> str:
    """`user_id` as ``"hmac-sha256:<hex>"``, keyed with `key`.

    Keyed because a plain hash of a user id is no pseudonym: anyone holding the text and a
    list of candidate ids (a membership list, the project's users) hashes each candidate and
    finds the match. Without `key` the HMAC cannot be recomputed, so it only says "the same
    user" wherever it appears under the same key.
    """
    return "hmac-sha256:" + hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()
