"""The forms of a question (or answer) the guard's patterns are matched on, so that spelling tricks do not
slip a question past them.

    variants("Is there a canc3r?")   # ("Is there a canc3r?", "Is there a cancer?")
    foreign_script("Is this a cаncer lesion?")   # "CYRILLIC": a Cyrillic а among Latin letters

- NFKC first: full-width letters, ligatures and other compatibility forms become their plain letters.
- A de-leeted copy (3->e, 0->o, 1->i, 4->a, 5->s, @->a, $->s) is matched as well as the text itself; the text
  itself still counts, so "911" or "40 mg" keep matching on the original.
- A question that mixes Latin letters with letters of another script (a Cyrillic "а" in "cаncer") is
  referred: the app is English-only, and look-alike letters are the usual way around a word list.
"""

from __future__ import annotations

import unicodedata

_LEET = str.maketrans({"3": "e", "0": "o", "1": "i", "4": "a", "5": "s", "@": "a", "$": "s"})


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text or "")


def variants(text: str) -> tuple[str, ...]:
    """The NFKC text, and its de-leeted copy when that differs."""
    plain = normalise(text)
    deleeted = plain.translate(_LEET)
    return (plain,) if deleeted == plain else (plain, deleeted)


def script(char: str) -> str:
    """The script of a letter as its Unicode name begins (LATIN, CYRILLIC, GREEK, ...), '' if unnamed."""
    name = unicodedata.name(char, "")
    return name.split(" ", 1)[0] if name else ""


def foreign_script(text: str) -> str:
    """The first non-Latin script whose letters the (NFKC) text mixes with Latin letters, else ''."""
    scripts = {script(c) for c in normalise(text) if c.isalpha()}
    if "LATIN" not in scripts:
        return ""
    others = sorted(scripts - {"LATIN", ""})
    return others[0] if others else ""
