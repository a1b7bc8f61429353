"""Opt-out and opt-in keywords in inbound messages (STOP, PARAR, ABMELDEN, ... and START, ...).

A keyword counts only when it is the whole message: "STOP", " stop! " and "Arrêt" opt out, "don't
stop" and "stop by tomorrow" do not. Matching ignores case, accents, whitespace and punctuation, so
"Stop promotions", "STOP-PROMOTIONS" and "stoppromotions" are the same keyword.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from functools import lru_cache

__all__ = [
    "DEFAULT_START_KEYWORDS",
    "DEFAULT_STOP_KEYWORDS",
    "is_start_keyword",
    "is_stop_keyword",
    "normalize_keyword",
]

DEFAULT_STOP_KEYWORDS: tuple[str, ...] = (
    # English (and the platform's marketing opt-out quick-reply button)
    "STOP", "STOP ALL", "STOP PROMOTIONS", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPT OUT", "OPT-OUT",
    # Portuguese
    "PARAR", "PARE", "SAIR", "CANCELAR", "DESCADASTRAR", "DESINSCREVER",
    # Spanish
    "BAJA", "DAR DE BAJA", "ALTO", "DETENER", "CANCELAR SUSCRIPCION", "NO MAS",
    # French
    "ARRÊT", "ARRETER", "DÉSABONNER", "DÉSINSCRIRE", "DÉSINSCRIPTION",
    # German
    "STOPP", "ABMELDEN", "ABBESTELLEN", "AUFHÖREN",
    # Italian
    "DISISCRIVI", "DISISCRIVIMI", "ANNULLA", "CANCELLA",
    # Dutch, Indonesian/Malay, Turkish
    "AFMELDEN", "UITSCHRIJVEN", "BERHENTI", "DURDUR",
    # Arabic, Hindi, Russian
    "إيقاف", "توقف", "रोकें", "रुको", "СТОП", "ОТПИСАТЬСЯ",
)  # fmt: skip

DEFAULT_START_KEYWORDS: tuple[str, ...] = (
    "START", "UNSTOP", "SUBSCRIBE", "RESUBSCRIBE", "RESUME", "OPT IN", "OPT-IN",
    "VOLTAR", "ASSINAR", "ALTA", "SUSCRIBIR", "REANUDAR", "REPRENDRE", "ABONNER",
    "ANMELDEN", "ABONNIEREN", "ISCRIVI", "ISCRIVIMI", "AANMELDEN", "MULAI", "BASLAT",
    "СТАРТ",
)  # fmt: skip


def normalize_keyword(text: str) -> str:
    """Case-folded letters and digits only, accents removed: the form keywords are compared in.

    Accents are the combining marks that stack on a letter (combining class > 0); spacing vowel
    signs (Devanagari and other Indic scripts) are part of the word and stay.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    kept = (
        ch
        for ch in decomposed
        if not unicodedata.combining(ch) and (ch.isalnum() or unicodedata.category(ch)[0] == "M")
    )
    return "".join(kept).casefold()


@lru_cache(maxsize=512)
def _keyword_set(keywords: tuple[str, ...]) -> frozenset[str]:
    return frozenset(filter(None, map(normalize_keyword, keywords)))


_DEFAULT_STOP = _keyword_set(DEFAULT_STOP_KEYWORDS)
_DEFAULT_START = _keyword_set(DEFAULT_START_KEYWORDS)
# No keyword is longer than this many characters, so long messages are dismissed before normalising.
_MAX_RAW = 200


def _matches(text: str | None, defaults: frozenset[str], extra: Iterable[str], include_defaults: bool) -> bool:
    if not text or len(text) > _MAX_RAW:
        return False
    word = normalize_keyword(text)
    if not word:
        return False
    if include_defaults and word in defaults:
        return True
    extra_tuple = tuple(extra)
    return bool(extra_tuple) and word in _keyword_set(extra_tuple)


def is_stop_keyword(text: str | None, extra_keywords: Iterable[str] = (), *, include_defaults: bool = True) -> bool:
    """True when the whole message is an opt-out keyword (built-in list plus ``extra_keywords``).

    ``include_defaults=False`` uses ``extra_keywords`` alone, for a tenant that replaces the list.
    """
    return _matches(text, _DEFAULT_STOP, extra_keywords, include_defaults)


def is_start_keyword(text: str | None, extra_keywords: Iterable[str] = (), *, include_defaults: bool = True) -> bool:
    """True when the whole message asks to receive messages again (START, UNSTOP, ...)."""
    return _matches(text, _DEFAULT_START, extra_keywords, include_defaults)
