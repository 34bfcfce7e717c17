"""Transcript normalisation and the CTC vocabulary (stt.text)."""

import json

import pytest

from stt.errors import ConfigError
from stt.text import ALPHABET, BLANK, Vocabulary, normalize_text

# --- normalize_text --------------------------------------------------------------------------


def test_lowercases_and_drops_punctuation():
    assert normalize_text("Hello, World! How are you?") == "hello world how are you"


def test_hyphen_between_words_becomes_a_space():
    assert normalize_text("A well-known, state-of-the-art idea") == (
        "a well known state of the art idea"
    )


def test_abbreviation_dots_become_word_breaks():
    assert normalize_text("Dr. Smith lives in the U.S.A.") == "dr smith lives in the u s a"


def test_apostrophes_inside_words_are_kept():
    assert normalize_text("Don't stop, it's five o'clock") == "don't stop it's five o'clock"


def test_possessive_apostrophe_after_s_is_kept():
    assert normalize_text("James' car and the dogs' bowls") == "james' car and the dogs' bowls"


def test_quote_apostrophes_are_dropped():
    assert normalize_text("She said 'hello' and \"bye\"") == "she said hello and bye"


def test_cardinals_are_spelled_without_hyphens_or_commas():
    assert normalize_text("42") == "forty two"
    assert normalize_text("I have 105 cats") == "i have one hundred and five cats"


def test_ordinals():
    assert normalize_text("21st 2nd 3rd 4th") == "twenty first second third fourth"


def test_four_digit_numbers_in_year_range_read_as_years():
    assert normalize_text("In 1990") == "in nineteen ninety"
    assert normalize_text("In 2005") == "in two thousand and five"
    assert normalize_text("1100 and 2099") == "eleven hundred and twenty ninety nine"


def test_numbers_outside_year_range_read_as_cardinals():
    assert normalize_text("2100 1099") == "two thousand one hundred one thousand and ninety nine"


def test_decades_are_plural_words():
    assert normalize_text("the 1990s and the '80s") == "the nineteen nineties and the eighties"


def test_decimals_read_fraction_digit_by_digit():
    assert normalize_text("3.5") == "three point five"
    assert normalize_text("3.50 and .25") == "three point five zero and point two five"


def test_thousands_separators():
    assert normalize_text("1,000") == "one thousand"
    assert normalize_text("2,000,000 people") == "two million people"


def test_separated_number_in_year_range_is_not_a_year():
    assert normalize_text("1,990") == "one thousand nine hundred and ninety"


def test_percent():
    assert normalize_text("50% off") == "fifty percent off"
    assert normalize_text("3.5%") == "three point five percent"
    assert normalize_text("2000%") == "two thousand percent"


def test_ampersand():
    assert normalize_text("Tom & Jerry") == "tom and jerry"


def test_currency():
    assert normalize_text("$5") == "five dollars"
    assert normalize_text("$1") == "one dollar"
    assert normalize_text("$5.50") == "five dollars fifty cents"
    assert normalize_text("$2.5 million") == "two point five million dollars"


def test_negative_numbers_and_ranges():
    assert normalize_text("-5 degrees") == "minus five degrees"
    assert normalize_text("pages 5-10") == "pages five ten"


def test_times():
    assert normalize_text("10:30 or 3:05") == "ten thirty or three oh five"


def test_leading_zero_numbers_read_digit_by_digit():
    assert normalize_text("agent 007") == "agent zero zero seven"


def test_unicode_is_folded_to_ascii():
    assert normalize_text("Café naïve Straße") == "cafe naive strasse"


def test_curly_apostrophes_are_straightened():
    assert normalize_text("It\u2019s \u2018quoted\u2019") == "it's quoted"


def test_unmappable_characters_are_dropped():
    assert normalize_text("hello 你好 world") == "hello world"


def test_whitespace_is_collapsed_and_stripped():
    assert normalize_text("  lots \t of\n\n space  ") == "lots of space"


def test_empty_and_punctuation_only_text_normalises_to_empty():
    assert normalize_text("") == ""
    assert normalize_text(" ... !? '' ") == ""


MESSY = [
    "Hello, World!",
    "Dr. Smith's 21st birthday, in 1990, cost $5.50!",
    "\u201cSmart quotes\u201d \u2014 and dashes \u2013 everywhere\u2026",
    "Ünïcödé façade, Ærøskøbing, Łódź, Þór",
    "東京 2020 オリンピック",
    "emoji \U0001f600 and symbols \u00a9 \u2122 # * ^ ~ | \\ / < > = +",
    "\uff11\uff12 fullwidth, \u00bd half, x\u00b2, \ufb01ne ligature",
    "1,234,567.89 0.001 -42 3rd-party 4x4 mp3",
    "''' \"\" `backticks` \u00b4acute\u00b4",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp",
    "123456789012345678901234567890",
    "$0.99 \u00a31 \u20ac2,000 50% & @",
]


@pytest.mark.parametrize("text", MESSY)
def test_output_only_uses_default_vocabulary_characters(text):
    out = normalize_text(text)
    assert Vocabulary.default().oov_chars(out) == set()
    assert out == out.strip() and "  " not in out


@pytest.mark.parametrize("text", MESSY)
def test_normalisation_is_idempotent(text):
    once = normalize_text(text)
    assert normalize_text(once) == once


# --- Vocabulary ------------------------------------------------------------------------------


def test_default_vocabulary_layout():
    vocab = Vocabulary.default()
    assert vocab.tokens == [BLANK, " ", *"abcdefghijklmnopqrstuvwxyz", "'"]
    assert len(vocab) == 29
    assert vocab.blank_id == 0
    assert vocab.tokens[1:] == list(ALPHABET)


def test_membership_and_equality():
    vocab = Vocabulary.default()
    assert "a" in vocab and "'" in vocab and "A" not in vocab
    assert vocab == Vocabulary.default()
    assert vocab != Vocabulary([BLANK, "a"])


def test_encode_decode_roundtrip():
    vocab = Vocabulary.default()
    text = normalize_text("Don't panic: it's 42!")
    ids = vocab.encode(text)
    assert ids[:5] == [5, 16, 15, 28, 21]  # d o n ' t
    assert vocab.decode(ids) == text == "don't panic it's forty two"


def test_decode_skips_blanks_without_collapsing_repeats():
    vocab = Vocabulary.default()
    assert vocab.decode([0, 9, 9, 0, 9, 0, 10]) == "hhhi"


def test_decode_rejects_out_of_range_ids():
    with pytest.raises(ConfigError, match="29"):
        Vocabulary.default().decode([29])


def test_encode_error_names_the_offending_characters():
    with pytest.raises(ConfigError, match=r"'A', 'é'"):
        Vocabulary.default().encode("Aé")


def test_oov_chars():
    assert Vocabulary.default().oov_chars("hello, wörld") == {",", "ö"}


def test_constructor_requires_blank_first():
    with pytest.raises(ConfigError, match="blank"):
        Vocabulary(["a", BLANK])


def test_constructor_rejects_duplicates():
    with pytest.raises(ConfigError, match="duplicate"):
        Vocabulary([BLANK, "a", "b", "a"])


def test_constructor_rejects_multi_character_tokens():
    with pytest.raises(ConfigError, match="single characters"):
        Vocabulary([BLANK, "ab"])


def test_extend_appends_new_characters_and_keeps_old_ids():
    old = Vocabulary.default()
    new = old.extend("éa-é")
    assert new.tokens == [*old.tokens, "é", "-"]
    assert new.encode("hello") == old.encode("hello")
    assert old == Vocabulary.default()  # the original is untouched


def test_to_dict_from_dict_roundtrip():
    vocab = Vocabulary.default().extend("ü")
    d = vocab.to_dict()
    assert d == {"tokens": vocab.tokens}
    assert Vocabulary.from_dict(json.loads(json.dumps(d))) == vocab


def test_save_load_roundtrip(tmp_path):
    path = tmp_path / "vocab.json"
    vocab = Vocabulary.default().extend("éß")
    vocab.save(path)
    assert Vocabulary.load(path) == vocab
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.json"]  # no temp file left behind


def test_save_overwrites_existing_file(tmp_path):
    path = tmp_path / "vocab.json"
    Vocabulary([BLANK, "x"]).save(path)
    Vocabulary.default().save(path)
    assert Vocabulary.load(path) == Vocabulary.default()


def test_load_corrupt_json_raises_config_error(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text('{"tokens": [', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"vocab\.json: not a vocabulary file \(invalid JSON"):
        Vocabulary.load(path)


@pytest.mark.parametrize(
    "content",
    ['["<blank>", "a"]', '{"chars": []}', '{"tokens": [1, 2]}', '{"tokens": ["a", "<blank>"]}'],
)
def test_load_wrong_contents_raises_config_error(tmp_path, content):
    path = tmp_path / "vocab.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"vocab\.json: not a vocabulary file \("):
        Vocabulary.load(path)


def test_load_missing_file_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match="missing.json"):
        Vocabulary.load(tmp_path / "missing.json")
