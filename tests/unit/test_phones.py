"""The fast E.164 check never disagrees with phonenumbers: when it answers, the library accepts the
number as the same digits; when it does not know, intake asks the library."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberType

from tiergate.service.intake import IntakeError, normalize_phone
from tiergate.service.phones import valid_e164_digits

CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
TYPES = [t for t in vars(PhoneNumberType).values() if isinstance(t, int) and t != PhoneNumberType.UNKNOWN]


def examples() -> list[str]:
    """An example number of every type of every region (and non-geographic code) the library has."""
    out = []
    for region in phonenumbers.SUPPORTED_REGIONS:
        for kind in TYPES:
            ex = phonenumbers.example_number_for_type(region, kind)
            if ex is not None:
                out.append(phonenumbers.format_number(ex, phonenumbers.PhoneNumberFormat.E164))
    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        ex = phonenumbers.example_number_for_non_geo_entity(code)
        if ex is not None:
            out.append(phonenumbers.format_number(ex, phonenumbers.PhoneNumberFormat.E164))
    return sorted(set(out))


EXAMPLES = examples()


def library_e164_digits(text: str) -> str | None:
    """What phonenumbers itself says (the reference): the wa_id digits, or None."""
    try:
        parsed = phonenumbers.parse(text if text.startswith("+") else "+" + text, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)[1:]


def agrees(text: str) -> bool:
    fast = valid_e164_digits(text)
    if fast is not None:
        assert library_e164_digits(text) == fast, text
    return fast is not None


def test_every_example_number_agrees_and_most_take_the_fast_path() -> None:
    fast = sum(agrees(n) for n in EXAMPLES)
    assert len(EXAMPLES) > 900
    assert fast / len(EXAMPLES) > 0.9, f"only {fast} of {len(EXAMPLES)} on the fast path"


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(EXAMPLES), st.integers(0, 30), st.integers(0, 9), st.sampled_from(["", "+"]))
def test_one_digit_changed_in_an_example_still_agrees(example: str, at: int, digit: int, plus: str) -> None:
    digits = example[1:]
    at = at % len(digits)
    agrees(plus + digits[:at] + str(digit) + digits[at + 1:])


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(CODES), st.text("0123456789", min_size=1, max_size=15))
def test_random_national_numbers_of_every_code_agree(code: int, national: str) -> None:
    agrees(f"+{code}{national}")


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(EXAMPLES), st.integers(0, 12))
def test_examples_cut_or_grown_agree(example: str, change: int) -> None:
    agrees(example[:-change] if change % 2 else example + "7" * change)


@pytest.mark.parametrize("text", ["+5511987654321", "5511987654321", "+14155550123", "+4915112345678",
                                  "+390612345678", "+447911123456", "+16135550123", "+8613812345678"])
def test_common_numbers_match_the_library(text: str) -> None:
    assert normalize_phone(text) == library_e164_digits(text)


@pytest.mark.parametrize("text", ["+49 0151 12345678", "+44 (0) 7911 123456", "+1 (415) 555-0123"])
def test_formatted_numbers_still_go_through_the_library(text: str) -> None:
    assert valid_e164_digits(text) is None
    assert normalize_phone(text) == library_e164_digits(text)


@pytest.mark.parametrize("text", ["+999123456789", "+0123456", "+4912", "+15555555555"])
def test_invalid_numbers_get_the_library_s_refusal(text: str) -> None:
    assert valid_e164_digits(text) is None
    with pytest.raises(IntakeError):
        normalize_phone(text)


@pytest.mark.parametrize("text", ["+5511912345678;ext=123", "+5511912345678 x99", "+1-800-FLOWERS",
                                  "+5511912345678#123"])
def test_an_extension_or_letters_are_refused_not_dropped(text: str) -> None:
    with pytest.raises(IntakeError, match=r"extension|letters"):
        normalize_phone(text)
