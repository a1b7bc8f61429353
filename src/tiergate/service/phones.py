"""A fast exact answer to "is this canonical E.164 number valid?", from phonenumbers' own metadata.

Campaign uploads validate every recipient, and ``phonenumbers.parse`` + ``is_valid_number`` cost
about 40 us a number (a 1M-recipient upload spent 40 s there; in ``bench/bench_pg_workers.py`` it
was 58% of enqueueing). Most recipients arrive already canonical (``+`` and digits), where the
library's work reduces to: split off the country code, pick the region, and match the national
number against that region's patterns. ``valid_e164_digits`` does exactly that with the library's
metadata, with each region's patterns for one length pre-joined into one compiled regex.

It answers only when it is sure: ``True`` means phonenumbers would accept the number and format it
as the same digits. Anything else (a national prefix the library might strip, a leading zero,
formatting characters, an unknown country code, no match) returns ``False`` and the caller asks
phonenumbers itself, so rejections and their messages are the library's. A property test holds
this against phonenumbers for numbers of every country code.
"""

from __future__ import annotations

import functools
import re

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, REGION_CODE_FOR_NON_GEO_ENTITY, PhoneMetadata

__all__ = ["valid_e164_digits"]

# The number types phonenumbers counts as valid (anything but UNKNOWN), in its order.
_TYPES = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail",
          "fixed_line", "mobile")
_CANONICAL = re.compile(r"\+?([1-9][0-9]{5,16})")


class _Region:
    """One region's validity rule: the general pattern and, per length, the joined type patterns."""

    __slots__ = ("_metadata", "by_length", "general", "general_lengths", "leading_digits")

    def __init__(self, metadata: PhoneMetadata) -> None:
        self._metadata = metadata
        general = metadata.general_desc
        self.general_lengths = frozenset(general.possible_length or ()) if general is not None else frozenset()
        pattern = general.national_number_pattern if general is not None else None
        self.general = re.compile(pattern) if pattern else None
        self.leading_digits = re.compile(metadata.leading_digits) if metadata.leading_digits else None
        self.by_length: dict[int, re.Pattern[str] | None] = {}

    def valid(self, nsn: str) -> bool:
        """phonenumbers' ``_number_type_helper(nsn, metadata) != UNKNOWN``."""
        if self.general is None or (self.general_lengths and len(nsn) not in self.general_lengths):
            return False
        if self.general.fullmatch(nsn) is None:
            return False
        joined = self._joined(len(nsn))
        return joined is not None and joined.fullmatch(nsn) is not None

    def _joined(self, length: int) -> re.Pattern[str] | None:
        if length not in self.by_length:
            parts = []
            for name in _TYPES:
                desc = getattr(self._metadata, name)
                if desc is None or not desc.national_number_pattern:
                    continue
                if desc.possible_length and length not in desc.possible_length:
                    continue
                parts.append(f"(?:{desc.national_number_pattern})")
            self.by_length[length] = re.compile("|".join(parts)) if parts else None
        return self.by_length[length]


@functools.cache
def _regions(country_code: int) -> tuple[tuple[_Region, ...], re.Pattern[str] | None] | None:
    """The regions of a calling code in phonenumbers' order, and the main region's national prefix
    for parsing (a number it could strip is left to the library)."""
    codes = COUNTRY_CODE_TO_REGION_CODE.get(country_code)
    if not codes:
        return None
    regions = []
    for code in codes:
        if code == REGION_CODE_FOR_NON_GEO_ENTITY:
            metadata = PhoneMetadata.metadata_for_nongeo_region(country_code, None)
        else:
            metadata = PhoneMetadata.metadata_for_region(code, None)
        if metadata is None:
            return None  # the library may know better: leave it to it
        regions.append(_Region(metadata))
    main = regions[0]._metadata
    prefix = main.national_prefix_for_parsing or main.national_prefix
    return tuple(regions), (re.compile(prefix) if prefix else None)


def valid_e164_digits(text: str) -> str | None:
    """The number's digits (the platform's wa_id) when ``text`` is a canonical, valid E.164 number
    (``+`` optional, digits only); ``None`` when unsure (ask phonenumbers)."""
    m = _CANONICAL.fullmatch(text)
    if m is None:
        return None
    digits = m.group(1)
    for size in (1, 2, 3):  # calling codes are prefix-free: the first known one is it
        if int(digits[:size]) in COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    found = _regions(int(digits[:size]))
    if found is None:
        return None
    regions, national_prefix = found
    nsn = digits[size:]
    if nsn.startswith("0") or (national_prefix is not None and national_prefix.match(nsn)):
        return None  # a leading zero or a strippable prefix: the library's parse decides
    if len(regions) == 1:
        return digits if regions[0].valid(nsn) else None
    for region in regions:  # phonenumbers' region_code_for_number: first by leading digits or validity
        if region.leading_digits is not None:
            if region.leading_digits.match(nsn):
                return digits if region.valid(nsn) else None
        elif region.valid(nsn):
            return digits
    return None

