"""Transcript text: normalisation to the spoken alphabet and the CTC character vocabulary.

A CTC model can only emit the characters in its vocabulary, so every transcript used for training
or scoring must first be rewritten the way it is *spoken*, in that alphabet: "Dr. Smith's 21st
birthday, in 1990, cost $5!" becomes "dr smith's twenty first birthday in nineteen ninety cost
five dollars". :func:`normalize_text` does that rewrite (lowercase, ASCII, numbers as words,
punctuation dropped) and :class:`Vocabulary` maps the result to and from integer ids, with the
CTC blank at id 0.

Normalisation is deterministic and idempotent: ``normalize_text(normalize_text(s)) ==
normalize_text(s)``, and its output only ever contains characters of :data:`ALPHABET`.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from num2words import num2words

from stt.errors import ConfigError

BLANK = "<blank>"
"""The CTC blank token; always id 0."""

ALPHABET = " abcdefghijklmnopqrstuvwxyz'"
"""The characters :func:`normalize_text` can produce, in default-vocabulary order."""

# ---------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------

# Characters that NFKD leaves alone but that have an obvious ASCII reading. Applied after
# lowercasing and before NFKD (so that e.g. the acute accent U+00B4 becomes an apostrophe rather
# than a space plus a combining mark).
_CHAR_MAP = str.maketrans(
    {
        "\u2019": "'",  # right single quote (the usual "curly apostrophe")
        "\u2018": "'",  # left single quote
        "\u201b": "'",  # single high-reversed-9 quote
        "\u2032": "'",  # prime
        "\u02bc": "'",  # modifier letter apostrophe
        "\u02bb": "'",  # modifier letter turned comma (Hawaiian okina)
        "`": "'",
        "\u00b4": "'",  # acute accent used as an apostrophe
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2010": "-",  # hyphen
        "\u2011": "-",  # non-breaking hyphen
        "\u2012": "-",  # figure dash
        "\u2013": "-",  # en dash
        "\u2014": "-",  # em dash
        "\u2212": "-",  # minus sign
        "\u00df": "ss",
        "\u00e6": "ae",
        "\u0153": "oe",
        "\u00f8": "o",
        "\u0111": "d",
        "\u0142": "l",
        "\u00fe": "th",
        "\u00f0": "d",
        "\u0131": "i",  # dotless i
    }
)

# Spoken names of currency symbols: (unit, units, subunit, subunits).
_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "\u00a3": ("pound", "pounds", "penny", "pence"),
    "\u20ac": ("euro", "euros", "cent", "cents"),
}

# A run of digits, or digits with comma thousands separators ("1,000,000").
_INT = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)"

_NUMBER_RE = re.compile(
    rf"""
      (?P<cur>[$\u00a3\u20ac])\s?(?P<cur_int>{_INT})(?:\.(?P<cur_frac>\d+))?
          (?P<cur_scale>\s+(?:thousand|million|billion|trillion)\b)?
    | (?<![\d:])(?P<hour>[01]?\d|2[0-4]):(?P<minute>[0-5]\d)(?![\d:])
    | (?P<ord>{_INT})(?P<ord_suffix>st|nd|rd|th)(?![a-z])
    | (?P<plural>{_INT})s(?![a-z])
    | (?:(?<![^\s(\[{{])(?P<minus>-))?(?P<int>{_INT})(?:\.(?P<frac>\d+))?
    | (?<![\w.])\.(?P<bare_frac>\d+)
    """,
    re.VERBOSE,
)

_PERCENT_AHEAD_RE = re.compile(r"\s*%")  # "2000%" is a quantity, not a year
_YEAR_MIN, _YEAR_MAX = 1100, 2099
_MAX_SPELLED_DIGITS = 15  # longer digit strings (ids, phone numbers) are read digit by digit

_NOT_IN_ALPHABET_RE = re.compile(r"[^a-z' ]+")
_APOSTROPHES_RE = re.compile(r"'+")


def _words(text: str) -> str:
    """Make num2words output plain: "twenty-one" -> "twenty one", drop commas."""
    return " ".join(text.replace("-", " ").replace(",", " ").split())


def _digits(digits: str) -> str:
    """Read a digit string one digit at a time: "007" -> "zero zero seven"."""
    return " ".join(num2words(int(d)) for d in digits)


def _cardinal(digits: str) -> str:
    """Spell an unsigned integer given as digits (commas allowed)."""
    digits = digits.replace(",", "")
    if (len(digits) > 1 and digits[0] == "0") or len(digits) > _MAX_SPELLED_DIGITS:
        # Leading zeros and very long strings are codes, not quantities: "007", "0800".
        return _digits(digits)
    return _words(num2words(int(digits)))


def _is_year(digits: str) -> bool:
    """A bare four-digit number in 1100-2099 (no separators) is read as a year."""
    return len(digits) == 4 and digits.isdigit() and _YEAR_MIN <= int(digits) <= _YEAR_MAX


def _year(digits: str) -> str:
    return _words(num2words(int(digits), to="year"))


def _decimal(int_digits: str, frac_digits: str) -> str:
    """Fractional digits are read one by one so that "3.50" keeps its zero."""
    return f"{_cardinal(int_digits)} point {_digits(frac_digits)}"


def _pluralize(words: str) -> str:
    """Plural of a spoken number: "nineteen ninety" -> "nineteen nineties", "six" -> "sixes"."""
    if words.endswith("y"):
        return words[:-1] + "ies"
    if words.endswith(("x", "s")):
        return words + "es"
    return words + "s"


def _currency(m: re.Match[str]) -> str:
    unit, units, sub, subs = _CURRENCIES[m["cur"]]
    int_digits, frac, scale = m["cur_int"], m["cur_frac"], m["cur_scale"]
    if scale:  # "$2.5 million" -> "two point five million dollars"
        amount = _decimal(int_digits, frac) if frac else _cardinal(int_digits)
        return f"{amount} {scale.strip()} {units}"
    if frac is not None and len(frac) != 2:  # not a cents amount: "$1.5" -> "one point five"
        return f"{_decimal(int_digits, frac)} {units}"
    whole = int(int_digits.replace(",", ""))
    cents = int(frac) if frac else 0
    parts = []
    if whole or not cents:
        parts.append(f"{_cardinal(int_digits)} {unit if whole == 1 else units}")
    if cents:
        parts.append(f"{_words(num2words(cents))} {sub if cents == 1 else subs}")
    return " ".join(parts)


def _time(m: re.Match[str]) -> str:
    """ "10:30" -> "ten thirty", "3:05" -> "three oh five", "3:00" -> "three"."""
    hour = _words(num2words(int(m["hour"])))
    minute = int(m["minute"])
    if minute == 0:
        return hour
    if minute < 10:
        return f"{hour} oh {num2words(minute)}"
    return f"{hour} {_words(num2words(minute))}"


def _spell_number(m: re.Match[str]) -> str:
    """Replacement for one :data:`_NUMBER_RE` match, padded with spaces."""
    if m["cur"]:
        words = _currency(m)
    elif m["hour"] is not None:
        words = _time(m)
    elif m["ord"] is not None:
        words = _words(num2words(int(m["ord"].replace(",", "")), to="ordinal"))
    elif m["plural"] is not None:
        digits = m["plural"]
        words = _pluralize(_year(digits) if _is_year(digits) else _cardinal(digits))
    elif m["int"] is not None:
        digits, frac = m["int"], m["frac"]
        if frac is not None:
            words = _decimal(digits, frac)
        elif _is_year(digits) and not m["minus"] and not _PERCENT_AHEAD_RE.match(m.string, m.end()):
            words = _year(digits)
        else:
            words = _cardinal(digits)
        if m["minus"]:
            words = f"minus {words}"
    else:
        words = f"point {_digits(m['bare_frac'])}"
    return f" {words} "


def _fold_unicode(text: str) -> str:
    """Lowercase and fold to ASCII where a reading exists ("Café" -> "cafe", "’" -> "'")."""
    text = text.lower().translate(_CHAR_MAP)
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c))


def _clean_token(token: str) -> str:
    """Keep apostrophes inside words ("don't") and the possessive "james'"; drop quote marks."""
    core = _APOSTROPHES_RE.sub("'", token.strip("'"))
    if not core:
        return ""
    quoted = token.startswith("'")
    if not quoted and token.endswith("'") and core.endswith("s"):
        core += "'"
    return core


def normalize_text(text: str) -> str:
    """Rewrite ``text`` as it is spoken, using only the characters of :data:`ALPHABET`.

    Lowercases; folds Unicode to ASCII (accents dropped, curly quotes straightened); spells
    numbers with num2words (cardinals, ordinals, decimals read digit by digit after "point",
    comma thousands separators, bare 1100-2099 as years, "1990s" as "nineteen nineties",
    "10:30" as "ten thirty", "$5" / "£5" / "€5" with their units, "-5" as "minus five");
    reads "%", "&" and "@" as "percent", "and", "at"; turns every other punctuation mark into a
    word break; keeps apostrophes inside words and a possessive one after "s"; drops anything
    left that has no ASCII reading (e.g. CJK); collapses whitespace.
    """
    text = _fold_unicode(text)
    text = _NUMBER_RE.sub(_spell_number, text)
    text = text.replace("%", " percent ").replace("&", " and ").replace("@", " at ")
    text = _NOT_IN_ALPHABET_RE.sub(" ", text)
    tokens = (_clean_token(t) for t in text.split())
    return " ".join(t for t in tokens if t)


# ---------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------


class Vocabulary:
    """The CTC output alphabet: token strings with the blank at id 0, then single characters.

    Immutable; :meth:`extend` returns a new vocabulary whose existing ids are unchanged, so a
    checkpoint's CTC head can be grown for fine-tuning on text with new characters.
    """

    def __init__(self, tokens: Iterable[str]) -> None:
        tokens = list(tokens)
        self._check(tokens)
        self._tokens: tuple[str, ...] = tuple(tokens)
        self._ids: dict[str, int] = {t: i for i, t in enumerate(tokens)}

    @staticmethod
    def _check(tokens: list[Any]) -> None:
        if not tokens or tokens[0] != BLANK:
            first = repr(tokens[0]) if tokens else "nothing"
            raise ConfigError(f"vocabulary must start with the blank {BLANK!r}, got {first}")
        for i, tok in enumerate(tokens[1:], start=1):
            if not isinstance(tok, str) or len(tok) != 1:
                raise ConfigError(
                    f"vocabulary token {i} is {tok!r}; tokens after the blank must be single "
                    "characters"
                )
        dups = sorted({t for t in tokens if tokens.count(t) > 1})
        if dups:
            raise ConfigError(f"vocabulary has duplicate tokens: {dups!r}")

    @classmethod
    def default(cls) -> Vocabulary:
        """Blank, space, a-z, apostrophe: exactly what :func:`normalize_text` produces."""
        return cls([BLANK, *ALPHABET])

    @property
    def tokens(self) -> list[str]:
        return list(self._tokens)

    @property
    def blank_id(self) -> int:
        return 0

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, char: object) -> bool:
        return char in self._ids

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return self._tokens == other._tokens

    def __hash__(self) -> int:
        return hash(self._tokens)

    def __repr__(self) -> str:
        return f"Vocabulary({list(self._tokens)!r})"

    def oov_chars(self, text: str) -> set[str]:
        """Characters of ``text`` the vocabulary cannot encode (the blank is not a character)."""
        return {c for c in text if c not in self._ids}

    def encode(self, text: str) -> list[int]:
        """Map each character of ``text`` to its id. ``text`` must already be normalised.

        Raises:
            ConfigError: naming every character that is not in the vocabulary.
        """
        bad = self.oov_chars(text)
        if bad:
            names = ", ".join(repr(c) for c in sorted(bad))
            raise ConfigError(f"text contains characters not in the vocabulary: {names}")
        return [self._ids[c] for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        """Map ids back to text, skipping blanks. No CTC collapsing of repeats is done here.

        Raises:
            ConfigError: if an id is outside ``range(len(self))``.
        """
        out = []
        n = len(self._tokens)
        for raw in ids:
            i = int(raw)
            if not 0 <= i < n:
                raise ConfigError(f"token id {i} is outside the vocabulary (size {n})")
            if i != 0:
                out.append(self._tokens[i])
        return "".join(out)

    def extend(self, chars: Iterable[str]) -> Vocabulary:
        """A new vocabulary with the characters not yet present appended, old ids unchanged."""
        new = list(self._tokens)
        for c in chars:
            if c not in new:
                new.append(c)
        return Vocabulary(new)

    def to_dict(self) -> dict[str, list[str]]:
        """A JSON-serialisable form, for embedding in checkpoints."""
        return {"tokens": list(self._tokens)}

    @classmethod
    def from_dict(cls, d: Any) -> Vocabulary:
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: if ``d`` is not ``{"tokens": [str, ...]}`` or the tokens are invalid.
        """
        if not isinstance(d, dict) or "tokens" not in d:
            raise ConfigError('expected an object with a "tokens" list')
        tokens = d["tokens"]
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ConfigError('"tokens" must be a list of strings')
        return cls(tokens)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the vocabulary as JSON, atomically (a crash never leaves a half-written file)."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.to_dict(), f, ensure_ascii=False)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocabulary:
        """Read a file written by :meth:`save`.

        Raises:
            ConfigError: "PATH: cannot read vocabulary file (...)" or
                "PATH: not a vocabulary file (...)".
        """
        try:
            raw = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{path}: cannot read vocabulary file ({e.strerror or e})") from e
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not a vocabulary file (not UTF-8 text)") from e
        try:
            return cls.from_dict(json.loads(raw))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not a vocabulary file (invalid JSON: {e})") from e
        except ConfigError as e:
            raise ConfigError(f"{path}: not a vocabulary file ({e})") from e
