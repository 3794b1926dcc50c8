"""One rule each for an e-mail address and a phone number, used at every edge that accepts one and
again by the sender before delivery, so an address accepted at booking is an address mail goes to.

E-mail syntax is `email-validator`'s (RFC 5321/5322/6531: internationalised addresses such as
josé@example.com are valid and sent with SMTPUTF8); no DNS lookup happens at the edge.
Phone numbers are `phonenumbers`' (libphonenumber): any valid number in international form,
stored as E.164, so nothing but `+` and digits is ever kept.
"""

from __future__ import annotations

from typing import Annotated

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator


def normalise_email(address: str) -> str:
    """The address in its normal form (lower case, Unicode NFC), or ValueError saying what is wrong."""
    try:
        valid = validate_email(address, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValueError(f"not a valid email address: {error}") from None
    return valid.normalized.lower()


def is_valid_email(address: str) -> bool:
    try:
        normalise_email(address)
    except ValueError:
        return False
    return True


def normalise_phone(number: str) -> str:
    """E.164 form of a valid number written in international form, or ValueError."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        raise ValueError("phone must be in international form, e.g. +31201234567") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def is_valid_e164(number: str) -> bool:
    """A valid number written exactly in E.164 (+4915112345678): what the sender accepts."""
    try:
        return normalise_phone(number) == number
    except ValueError:
        return False


EmailAddress = Annotated[str, AfterValidator(normalise_email)]
PhoneNumber = Annotated[str, AfterValidator(normalise_phone)]
