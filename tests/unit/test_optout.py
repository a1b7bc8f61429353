"""STOP / START keywords: whole-message matches, any case, accents, spacing and punctuation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tiergate.core.optout import (
    DEFAULT_START_KEYWORDS,
    DEFAULT_STOP_KEYWORDS,
    is_start_keyword,
    is_stop_keyword,
    normalize_keyword,
)


@pytest.mark.parametrize(
    "text",
    [
        "STOP", "stop", "Stop", " stop ", "stop!", "STOP.", "\tSTOP\n", "S T O P", "🛑 STOP 🛑",
        "UNSUBSCRIBE", "cancel", "Stop promotions", "stop-promotions", "opt out", "OPTOUT",
        "PARAR", "sair", "Cancelar", "baja", "dar de baja", "ALTO", "Arrêt", "ARRET", "arrêt",
        "désabonner", "STOPP", "abmelden", "AUFHÖREN", "aufhoren", "DISISCRIVI", "afmelden",
        "إيقاف", "ايقاف", "стоп", "रोकें", "ＳＴＯＰ",
    ],
)  # fmt: skip
def test_stop_keywords_in_many_languages_and_spellings(text: str) -> None:
    assert is_stop_keyword(text)
    assert not is_start_keyword(text)


@pytest.mark.parametrize(
    "text",
    [
        None, "", "   ", "!!!", "🛑", "don't stop", "stop by tomorrow", "please stop", "STOP 2", "stopped",
        "unstoppable", "Can you cancel my order?", "Hola, ¿alto precio?", "bajar", "1234", "x" * 10_000,
        "START", "Hello",
    ],
)  # fmt: skip
def test_other_messages_are_not_stop(text: str | None) -> None:
    assert not is_stop_keyword(text)


@pytest.mark.parametrize("text", ["START", "start", " Unstop ", "RESUBSCRIBE", "subscribe", "Opt-In", "anmelden"])
def test_start_keywords(text: str) -> None:
    assert is_start_keyword(text)
    assert not is_stop_keyword(text)


def test_extra_keywords_add_to_the_defaults_or_replace_them() -> None:
    assert not is_stop_keyword("NO MORE")
    assert is_stop_keyword("no  more!", ["No more"])
    assert is_stop_keyword("STOP", ["nope"])
    assert not is_stop_keyword("STOP", ["nope"], include_defaults=False)
    assert is_stop_keyword("Nope", ["NOPE"], include_defaults=False)
    assert not is_stop_keyword("anything", [], include_defaults=False)
    assert is_stop_keyword("Basta", iter(["basta"]))  # any iterable
    assert is_start_keyword("volver", ["VOLVER"]) and not is_start_keyword("volver")
    assert not is_stop_keyword("stop", ["", "!!"], include_defaults=False)  # empty keywords match nothing


def test_normalize_keyword() -> None:
    assert normalize_keyword(" Dés-abonner! ") == "desabonner"
    assert normalize_keyword("ÀÉÎÕÜ ç ñ") == "aeiou" + "cn"
    assert normalize_keyword("Straße") == "strasse"


def test_default_lists_do_not_overlap() -> None:
    stops = {normalize_keyword(k) for k in DEFAULT_STOP_KEYWORDS}
    starts = {normalize_keyword(k) for k in DEFAULT_START_KEYWORDS}
    assert not stops & starts
    assert all(stops) and all(starts)


def _respelled(keyword: str, flips: list[bool], pad: str) -> str:
    """``keyword`` with some letters' case flipped and punctuation or spaces around it."""
    letters = [ch.swapcase() if flip else ch for ch, flip in zip(keyword, flips + [False] * len(keyword), strict=False)]
    return f"{pad}{''.join(letters)}{pad[::-1]}"


@given(st.sampled_from(DEFAULT_STOP_KEYWORDS), st.lists(st.booleans()), st.text(" .!?¡¿\t\n-*", max_size=4))
def test_any_case_and_padding_of_a_keyword_still_matches(keyword: str, flips: list[bool], pad: str) -> None:
    assert is_stop_keyword(_respelled(keyword, flips, pad))


_STOP_FORMS = {normalize_keyword(k) for k in DEFAULT_STOP_KEYWORDS}


@given(st.sampled_from(DEFAULT_STOP_KEYWORDS), st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8))
def test_a_keyword_with_another_word_is_not_a_stop_unless_that_is_a_keyword_too(keyword: str, word: str) -> None:
    for text in (f"{word} {keyword}", f"{keyword} {word}"):
        assert is_stop_keyword(text) == (normalize_keyword(text) in _STOP_FORMS)
