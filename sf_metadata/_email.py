"""Private: is a string an e-mail address by email-validator's syntax rules (no DNS)?

``email_validator.validate_email`` costs about 0.1-0.4 ms a call, most of the mapping's
time on the receiver's hot path (``bench/profile_apply.py``). Almost every Salesforce
Username is a plain ASCII dot-atom address, so a strict regular expression accepts those
without calling the library; anything it does not accept (quoted local parts, Unicode,
IDNA ``xn--`` labels, special-use domains, odd lengths) goes to email-validator itself.
The fast path only ever answers True for strings the library also accepts: property-tested
in ``tests/sf_metadata/test_email.py``.

Rules of email-validator 2.x (``email_validator/syntax.py``, ``rfc_constants.py``): at most
254 characters in all, 64 before the ``@``; the domain has a period, its labels are at
most 63 characters, none holds ``--`` at its third and fourth characters unless Punycode,
it ends in a letter, and it is not a special-use name (``arpa``,
``invalid``, ``local``, ``localhost``, ``onion``, ``test``).
"""

from __future__ import annotations

import re
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

__all__ = ["MAX_EMAIL_LENGTH", "is_email_address"]

#: email-validator's ``EMAIL_MAX_LENGTH`` (RFC 3696 errata 1690): longer is never valid.
MAX_EMAIL_LENGTH = 254

_FAST = re.compile(
    r"(?P<local>[A-Za-z0-9_+\-]{1,64}(?:\.[A-Za-z0-9_+\-]{1,64})*)"
    r"@(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+(?P<tld>[a-z]{2,63})"
)
_SPECIAL_USE = frozenset({"arpa", "invalid", "local", "localhost", "onion", "test"})


def is_email_address(value: str) -> bool:
    """True if ``value`` is an e-mail address by email-validator's syntax rules with
    ``check_deliverability=False`` (special-use domains such as ``.invalid`` are not).
    Never raises; costs no DNS."""
    if len(value) > MAX_EMAIL_LENGTH:
        return False
    match = _FAST.fullmatch(value)
    if (
        match is not None
        and len(match["local"]) <= 64
        and match["tld"] not in _SPECIAL_USE
        and "xn--" not in value
        # "ab--" labels (two letters, two dashes) are reserved for Punycode: the library
        # refuses them, so any "--" in the domain goes to it
        and "--" not in value[match.end("local") + 1 :]
    ):
        return True
    return _validate(value)


@lru_cache(maxsize=4096)
def _validate(value: str) -> bool:
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True
