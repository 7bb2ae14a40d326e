"""Usernames: NFKC-folded, letters with their marks, one alphabet per name (or per side of an
e-mail address's ``@``), so no account can be made to read as another."""

from __future__ import annotations

import pytest

from authsvc.services.users import normalize_username


@pytest.mark.parametrize(
    "name",
    [
        "admin",
        "ok_name.1+2@x-y",
        "josé.garcía",
        "Ελένη",
        "иван",
        "иван@mail.ru",  # each side of the @ in one alphabet
        "вʼячеслав",  # Ukrainian apostrophe (a modifier letter)
        "O\u02bbktam",  # Uzbek okina (a modifier letter)
        "佐藤taro",  # kanji with one alphabet
        "佐々木taro",  # the iteration mark goes with kanji
        "tanaka.ラーメン",  # the long-vowel mark goes with kana
        "राम१२",  # Devanagari: vowel signs are marks, digits of the same script
        "محمد١٢",  # Arabic with Arabic-Indic digits
        "علی۱۲۳",  # Persian digits
    ],
)
def test_names_in_one_script_are_accepted(name: str) -> None:
    assert normalize_username(name) == name


def test_full_width_letters_fold_to_ascii() -> None:
    assert normalize_username("\uff21\uff44\uff4d\uff49\uff4e") == "Admin"


@pytest.mark.parametrize(
    "name",
    [
        "\u0430dmin",  # Cyrillic a in a Latin name
        "\u0430dmin@corp.com",
        "pay\u0440al",  # Cyrillic r
        "goog\u0661e",  # Arabic-Indic one for an l
        "g\u0966\u0966gle",  # Devanagari zeros for o
        "\u03bc\u03b1\u03c1\u03af\u03b1-maria",  # Greek and Latin
    ],
)
def test_names_mixing_alphabets_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="must not mix alphabets"):
        normalize_username(name)


@pytest.mark.parametrize(
    "name", ["", "a b", "a\x00b", "x" * 151, "semi;colon", "quote'd", "\u00df" * 76]
)
def test_names_outside_the_character_rules_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="1 to 150 letters"):
        normalize_username(name)
