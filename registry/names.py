"""AWS IoT name rules (reference section 0), checked once where input enters the registry."""

from __future__ import annotations

import re

from registry.errors import InvalidRequest

_THING = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
_POLICY = re.compile(r"[\w+=,.@-]{1,128}")
_CERT_ID = re.compile(r"(?:0x)?[a-fA-F0-9]{64}")
_ATTR_NAME = re.compile(r"[a-zA-Z0-9_.,@/:#-]{1,128}")
_ATTR_VALUE = re.compile(r"[a-zA-Z0-9_.,@/:#=\[\]-]{0,800}")

MAX_ATTRIBUTES = 3
"""Attributes a thing may have without a thing type (50 with one)."""
MAX_ATTRIBUTES_TYPED = 50


def thing_name(name: str, what: str = "thing name") -> str:
    """Return ``name`` if it is a valid thing, thing type or thing group name."""
    if not _THING.fullmatch(name):
        raise InvalidRequest(
            f"{what} {name!r} is invalid: use 1-128 letters, digits, ':', '_' or '-'"
        )
    return name


def policy_name(name: str) -> str:
    if not _POLICY.fullmatch(name):
        raise InvalidRequest(
            f"policy name {name!r} is invalid: use 1-128 letters, digits or +=,.@_-"
        )
    return name


def certificate_id(value: str) -> str:
    """Normalise a certificate id (64 hex digits, optional 0x), or a certificate or CA
    certificate ARN (``...:cert/ID``, ``...:cacert/ID``), to the lower-case id."""
    if value.startswith("arn:"):
        for kind in (":cert/", ":cacert/"):
            if kind in value:
                value = value.rsplit(kind, 1)[1]
                break
    if not _CERT_ID.fullmatch(value):
        raise InvalidRequest(
            f"certificate id {value!r} is invalid: it is the 64 hex digits of the certificate's "
            "SHA-256 fingerprint (see `thingcore certs list`)"
        )
    return value.removeprefix("0x").lower()


def attributes(values: dict[str, str], typed: bool, what: str = "a thing") -> dict[str, str]:
    """Check attribute names and values, and their number (``typed``: the higher limit)."""
    limit = MAX_ATTRIBUTES_TYPED if typed else MAX_ATTRIBUTES
    if len(values) > limit:
        hint = "" if typed else " (a thing with a thing type may have 50)"
        raise InvalidRequest(f"{what} may have at most {limit} attributes{hint}")
    for key, value in values.items():
        if not _ATTR_NAME.fullmatch(key):
            raise InvalidRequest(
                f"attribute name {key!r} is invalid: 1-128 of letters, digits and _.,@/:#-"
            )
        if not isinstance(value, str) or not _ATTR_VALUE.fullmatch(value):
            raise InvalidRequest(
                f"attribute {key!r} has an invalid value {value!r}: up to 800 of letters, "
                "digits and _.,@/:#=[]-"
            )
    return values


def parse_attributes(pairs: list[str]) -> dict[str, str]:
    """``["a=1", "b=2"]`` (CLI form) to a dict; an empty value removes the key on merge."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidRequest(f"attribute {pair!r} must be written NAME=VALUE")
        result[key] = value
    return result
