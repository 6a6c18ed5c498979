"""Small word lists for recognisably fake but realistic personal data.

Every email uses the reserved ``example.org``/``example.net`` domains and every phone number is
a Norwegian or Swedish mobile number with a made-up subscriber part, so nothing here can reach a
real person.
"""

from __future__ import annotations

from typing import Final

__io__ = "none"

FIRST_NAMES: Final = (
    "Ada",
    "Alva",
    "Anders",
    "Astrid",
    "Birgit",
    "Bjørn",
    "Camilla",
    "Dag",
    "Eira",
    "Elias",
    "Emil",
    "Erik",
    "Frida",
    "Gunnar",
    "Hanna",
    "Henrik",
    "Ida",
    "Ingrid",
    "Jonas",
    "Karin",
    "Kari",
    "Lars",
    "Leah",
    "Linnea",
    "Magnus",
    "Maja",
    "Marius",
    "Nora",
    "Ola",
    "Oskar",
    "Petra",
    "Ragnhild",
    "Sigrid",
    "Siv",
    "Solveig",
    "Sondre",
    "Sverre",
    "Thea",
    "Tobias",
    "Tuva",
    "Ulrik",
    "Vera",
    "Vilde",
    "Yusuf",
    "Amira",
    "Jamal",
    "Mei",
    "Priya",
    "Tomasz",
    "Zofia",
)

LAST_NAMES: Final = (
    "Aasen",
    "Bakke",
    "Berg",
    "Brekke",
    "Dahl",
    "Ekström",
    "Eriksen",
    "Fjeld",
    "Haugen",
    "Hansen",
    "Holm",
    "Iversen",
    "Jakobsen",
    "Johansson",
    "Karlsen",
    "Kristiansen",
    "Larsen",
    "Lie",
    "Lindqvist",
    "Lund",
    "Moen",
    "Myhre",
    "Nilsen",
    "Nyberg",
    "Olsen",
    "Pedersen",
    "Rasmussen",
    "Sandberg",
    "Solberg",
    "Strand",
    "Sund",
    "Svendsen",
    "Tangen",
    "Vik",
    "Wahl",
    "Åberg",
    "Øien",
    "Haddad",
    "Nowak",
    "Chen",
)

# Emails are ASCII; these are the letters the names above need.
_ASCII: Final = str.maketrans({"å": "a", "ä": "a", "æ": "ae", "ö": "o", "ø": "o", "é": "e"})


def email_local_part(first: str, last: str) -> str:
    """``Bjørn Åberg`` -> ``bjorn.aberg``."""
    return f"{first}.{last}".lower().translate(_ASCII)


STREETS: Final = (
    "Storgata",
    "Kirkeveien",
    "Skolegata",
    "Fjordveien",
    "Bjørkeveien",
    "Havnegata",
    "Solbakken",
    "Granliveien",
    "Parkveien",
    "Strandgata",
    "Måltrostveien",
    "Lillevegen",
    "Bakkegata",
    "Eikelund",
    "Stasjonsveien",
    "Tollbugata",
)

CITIES: Final = (
    ("0150", "Oslo"),
    ("5003", "Bergen"),
    ("7010", "Trondheim"),
    ("4006", "Stavanger"),
    ("9008", "Tromsø"),
    ("3015", "Drammen"),
    ("2317", "Hamar"),
    ("8006", "Bodø"),
    ("4610", "Kristiansand"),
    ("6002", "Ålesund"),
)

ORGANISATION_WORDS: Final = (
    (
        "Nordlys",
        "Fjordlys",
        "Solstreif",
        "Havbris",
        "Lyngheia",
        "Bjørkelia",
        "Morgenrød",
        "Tindefjell",
        "Elvebredd",
        "Furuskog",
        "Vindrose",
        "Sølvberg",
    ),
    (
        "Helpers",
        "Neighbours",
        "Care Network",
        "Friends",
        "Volunteers",
        "Outreach",
        "Support Circle",
        "Visiting Service",
    ),
)

CHAPTER_AREAS: Final = (
    "North",
    "South",
    "East",
    "West",
    "Centre",
    "Harbour",
    "Old Town",
    "Hillside",
    "Riverside",
    "Airport",
    "University",
    "Valley",
)

NOTE_SENTENCES: Final = (
    "Phoned to confirm the Thursday visit.",
    "Prefers calls in the afternoon.",
    "Asked for help with the grocery delivery next week.",
    "Left a voicemail, will try again tomorrow.",
    "Visited at home; all well, needs a lift to the clinic on Monday.",
    "New phone number confirmed.",
    "Would like to join the Sunday walking group.",
    "Talked about the winter coat collection.",
    "Daughter is the emergency contact now.",
    "Needs forms for the housing benefit filled in.",
    "Mentioned feeling lonely since moving; suggested the café evenings.",
    "Borrowed two books from the library box.",
    "Cancelled this week's visit, feeling unwell.",
    "Happy with the new volunteer pairing.",
    "Asked that we ring the doorbell twice.",
    "Dog at home; visitors should not mind pets.",
    "Interested in the digital skills course.",
    "Hearing aid battery replaced.",
    "Prefers to be addressed in English.",
    "Followed up on the pharmacy delivery.",
)
