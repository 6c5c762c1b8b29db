"""Resolve a condition key or policy variable name to its values for one request.

Both ``${iot:ClientId}`` in a ``Resource`` and ``"iot:ClientId"`` in a ``Condition`` name the
same request fact, so one resolver serves both. A name resolves to a tuple of values: empty when
the request has no such fact (or the name is unknown, which must not crash evaluation), one value
for ordinary keys, several for the ``.List`` forms.

Names are matched case-insensitively, as IAM does for condition keys; the attribute name inside
``iot:Connection.Thing.Attributes[...]`` keeps its case because thing attribute names are
case-sensitive.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache

from registry.policies.certificate import ALTERNATIVE_NAME_KINDS, NAME_FIELDS, CertificateFields
from registry.policies.context import RequestContext

Values = tuple[str, ...]
Resolver = Callable[[RequestContext], Values]

_NONE: Values = ()
_FIELD_NAMES = {name.lower(): name for name in NAME_FIELDS.values()}
_KIND_NAMES = {name.lower(): name for name in ALTERNATIVE_NAME_KINDS}
_ATTRIBUTES = "iot:connection.thing.attributes["
_CERTIFICATE = "iot:certificate."


def resolve(key: str, context: RequestContext) -> Values:
    """The values of ``key`` in ``context``; ``()`` when absent or unknown."""
    return resolver(key)(context)


def _absent(context: RequestContext) -> Values:
    return _NONE


def _client_id(context: RequestContext) -> Values:
    return (context.client_id,)


def _thing_name(context: RequestContext) -> Values:
    return _NONE if context.thing_name is None else (context.thing_name,)


def _thing_type(context: RequestContext) -> Values:
    if context.thing_name is None or context.thing_type is None:
        return _NONE
    return (context.thing_type,)


def _is_attached(context: RequestContext) -> Values:
    return ("true",) if context.is_attached else ("false",)


def _source_ip(context: RequestContext) -> Values:
    return _NONE if context.source_ip is None else (context.source_ip,)


def _serial_number(context: RequestContext) -> Values:
    cert = context.certificate
    return _NONE if cert is None else (cert.serial_number,)


def _available_keys(context: RequestContext) -> Values:
    cert = context.certificate
    return _NONE if cert is None else available_keys(cert)


_SIMPLE: Mapping[str, Resolver] = {
    "iot:clientid": _client_id,
    "iot:connection.thing.thingname": _thing_name,
    "iot:connection.thing.thingtypename": _thing_type,
    "iot:connection.thing.isattached": _is_attached,
    "aws:sourceip": _source_ip,
    "iot:certificate.serialnumber": _serial_number,
    "iot:certificate.availablekeys": _available_keys,
}


@lru_cache(maxsize=1024)
def resolver(key: str) -> Resolver:
    """The function that reads ``key`` from a context, built once per distinct key name."""
    lowered = key.lower()
    simple = _SIMPLE.get(lowered)
    if simple is not None:
        return simple
    if lowered.startswith(_ATTRIBUTES) and key.endswith("]"):
        return _attribute_resolver(key[len(_ATTRIBUTES) : -1])
    if lowered.startswith(_CERTIFICATE):
        return _certificate_resolver(key[len(_CERTIFICATE) :].split("."))
    return _absent


def _attribute_resolver(name: str) -> Resolver:
    def attribute(context: RequestContext) -> Values:
        if context.thing_name is None:
            return _NONE
        value = context.thing_attributes.get(name)
        return _NONE if value is None else (value,)

    return attribute


def _certificate_resolver(parts: list[str]) -> Resolver:
    """``Subject.CommonName``, ``Issuer.Country.List``, ``Subject.AlternativeName.DNSName.2``..."""
    if len(parts) < 2 or parts[0].lower() not in ("subject", "issuer"):
        return _absent
    issuer = parts[0].lower() == "issuer"
    if parts[1].lower() == "alternativename":
        if len(parts) < 3 or parts[2].lower() not in _KIND_NAMES:
            return _absent
        name, selector = _KIND_NAMES[parts[2].lower()], parts[3:]
        table: Callable[[CertificateFields], Mapping[str, Values]] = (
            _issuer_san if issuer else _subject_san
        )
    else:
        if parts[1].lower() not in _FIELD_NAMES:
            return _absent
        name, selector = _FIELD_NAMES[parts[1].lower()], parts[2:]
        table = _issuer if issuer else _subject
    pick = _selector(selector)
    if pick is None:
        return _absent

    def certificate_field(context: RequestContext) -> Values:
        cert = context.certificate
        if cert is None:
            return _NONE
        return pick(table(cert).get(name, _NONE))

    return certificate_field


def _subject(cert: CertificateFields) -> Mapping[str, Values]:
    return cert.subject


def _issuer(cert: CertificateFields) -> Mapping[str, Values]:
    return cert.issuer


def _subject_san(cert: CertificateFields) -> Mapping[str, Values]:
    return cert.san


def _issuer_san(cert: CertificateFields) -> Mapping[str, Values]:
    return cert.issuer_san


def _selector(selector: list[str]) -> Callable[[Values], Values] | None:
    """Which of a multi-valued field's values a name asks for.

    AWS: the plain name is the first value, ``.List`` is all of them, ``.N`` is the N-th
    (one-based) (cert-policy-variables docs, "X.509 certificates allow these attributes to
    contain one or more values").
    """
    if not selector:
        return _first
    if len(selector) != 1:
        return None
    word = selector[0]
    if word.lower() == "list":
        return _all
    if word.isdigit() and word.isascii() and int(word) >= 1:
        index = int(word) - 1
        return lambda values: values[index : index + 1]
    return None


def _first(values: Values) -> Values:
    return values[:1]


def _all(values: Values) -> Values:
    return values


def available_keys(cert: CertificateFields) -> Values:
    """``iot:Certificate.AvailableKeys``: the names of the certificate keys that have values."""
    keys = [f"iot:Certificate.Subject.{name}" for name in cert.subject]
    keys += [f"iot:Certificate.Issuer.{name}" for name in cert.issuer]
    keys += [f"iot:Certificate.Subject.AlternativeName.{name}" for name in cert.san]
    keys += [f"iot:Certificate.Issuer.AlternativeName.{name}" for name in cert.issuer_san]
    keys.append("iot:Certificate.SerialNumber")
    return tuple(keys)
