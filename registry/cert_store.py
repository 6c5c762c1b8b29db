"""Certificates, CA certificates and thing<->certificate attachments (reference section 3).

Certificates are identified as AWS does, by the hex SHA-256 of their DER bytes. One issued by
a registered CA is registered with that CA's id; one registered without a CA must be
self-signed and is then trusted on its own (AWS's RegisterCertificateWithoutCA).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cryptography import x509
from sqlmodel import Session, col, select

from registry import names
from registry.ca import CertificateError, DevelopmentCA, IssuedCertificate
from registry.certificates import (
    certificate_der,
    certificate_id,
    certificate_pem,
    is_ca_certificate,
    is_self_signed,
    is_signed_by,
    load_certificate,
    validity,
)
from registry.clock import now
from registry.errors import (
    CertificateState,
    CertificateValidation,
    DeleteConflict,
    InvalidRequest,
    ResourceAlreadyExists,
    ResourceNotFound,
)
from registry.models import CaCertificate, Certificate, PolicyTarget, Thing, ThingPrincipal
from registry.service import Page, make_page, page_bounds, record_change

if TYPE_CHECKING:
    from registry.service import Registry

CERT_STATUSES = ("ACTIVE", "INACTIVE", "REVOKED")
"""What UpdateCertificate accepts; PENDING_TRANSFER and PENDING_ACTIVATION are refused."""
CA_STATUSES = ("ACTIVE", "INACTIVE")


def _parse(pem: str) -> x509.Certificate:
    try:
        return load_certificate(pem)
    except CertificateError as exc:
        raise CertificateValidation(str(exc)) from exc


class CertificateStore:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.arns = registry.arns

    # -- the development CA ----------------------------------------------------------------

    def development_ca(self) -> DevelopmentCA:
        try:
            return DevelopmentCA.load(self.registry.ca_dir)
        except CertificateError as exc:
            raise CertificateValidation(str(exc)) from exc

    def register_development_ca(self, ca: DevelopmentCA) -> str:
        """Register the built-in CA (idempotent) so certificates it issues are trusted."""
        cert = ca.certificate
        ca_id = certificate_id(certificate_der(cert))
        with self.registry.db.session() as session:
            if session.get(CaCertificate, ca_id) is None:
                self._add_ca(session, cert, "ACTIVE", builtin=True)
        return ca_id

    def _add_ca(
        self, session: Session, cert: x509.Certificate, status: str, *, builtin: bool
    ) -> CaCertificate:
        not_before, not_after = validity(cert)
        stamp = now()
        row = CaCertificate(
            id=certificate_id(certificate_der(cert)),
            pem=certificate_pem(cert),
            status=status,
            subject=cert.subject.rfc4514_string(),
            not_before=not_before.timestamp(),
            not_after=not_after.timestamp(),
            builtin=builtin,
            created_at=stamp,
            updated_at=stamp,
        )
        session.add(row)
        record_change(session, "ca", row.id)
        return row

    # -- issuing and registering device certificates ---------------------------------------

    def create_keys_and_certificate(
        self,
        *,
        set_active: bool = False,
        common_name: str | None = None,
        key_type: str = "rsa",
        days: int = 365,
    ) -> dict[str, Any]:
        """CreateKeysAndCertificate: a new key pair and a certificate from the built-in CA."""
        if key_type not in ("rsa", "ec"):
            raise InvalidRequest(f"key type {key_type!r} is not rsa (AWS's default) or ec")
        ca = self.development_ca()
        issued = ca.issue(
            common_name or "thingcore device",
            days=days,
            key_type="ec" if key_type == "ec" else "rsa",
        )
        result = self._store_issued(ca, issued, set_active)
        result["keyPair"] = {
            "PublicKey": issued.public_key_pem,
            "PrivateKey": issued.private_key_pem,
        }
        return result

    def create_from_csr(
        self, csr_pem: str, *, set_active: bool = False, days: int = 365
    ) -> dict[str, Any]:
        """CreateCertificateFromCsr: the device keeps its private key; we sign its CSR."""
        ca = self.development_ca()
        try:
            issued = ca.sign_csr(csr_pem, days=days)
        except CertificateError as exc:
            raise CertificateValidation(str(exc)) from exc
        return self._store_issued(ca, issued, set_active)

    def _store_issued(
        self, ca: DevelopmentCA, issued: IssuedCertificate, set_active: bool
    ) -> dict[str, Any]:
        cert = _parse(issued.certificate_pem)
        ca_id = self.register_development_ca(ca)
        with self.registry.db.session() as session:
            self._add(session, cert, "ACTIVE" if set_active else "INACTIVE", ca_id)
        return {
            "certificateArn": self.arns.cert(issued.certificate_id),
            "certificateId": issued.certificate_id,
            "certificatePem": issued.certificate_pem,
        }

    def _add(
        self, session: Session, cert: x509.Certificate, status: str, ca_id: str | None
    ) -> Certificate:
        cert_id = certificate_id(certificate_der(cert))
        if session.get(Certificate, cert_id) is not None:
            raise ResourceAlreadyExists(f"certificate {cert_id} is already registered")
        not_before, not_after = validity(cert)
        stamp = now()
        row = Certificate(
            id=cert_id,
            pem=certificate_pem(cert),
            status=status,
            ca_id=ca_id,
            serial=format(cert.serial_number, "x"),
            subject=cert.subject.rfc4514_string(),
            not_before=not_before.timestamp(),
            not_after=not_after.timestamp(),
            created_at=stamp,
            updated_at=stamp,
        )
        session.add(row)
        record_change(session, "certificate", cert_id)
        return row

    def register(
        self, pem: str, *, ca_pem: str | None = None, status: str = "INACTIVE"
    ) -> dict[str, Any]:
        """RegisterCertificate: the certificate must be signed by a registered CA."""
        status = _status(status, CERT_STATUSES)
        cert = _parse(pem)
        with self.registry.db.session() as session:
            cas = list(session.exec(select(CaCertificate)).all())
            if ca_pem is not None:
                wanted = certificate_id(certificate_der(_parse(ca_pem)))
                cas = [ca for ca in cas if ca.id == wanted]
                if not cas:
                    # CertificateValidationException: RegisterCertificate has no "not found".
                    raise CertificateValidation(
                        f"the CA certificate given ({wanted}) is not registered; "
                        "register it first with `thingcore ca register`"
                    )
            issuer = next((ca for ca in cas if is_signed_by(cert, _parse(ca.pem))), None)
            if issuer is None:
                hint = (
                    "; it is self-signed: use `thingcore certs register --without-ca`"
                    if is_self_signed(cert)
                    else "; register its CA with `thingcore ca register` first"
                )
                raise CertificateValidation(
                    f"certificate {cert.subject.rfc4514_string()!r} is not signed by a "
                    f"registered CA{hint}"
                )
            row = self._add(session, cert, status, issuer.id)
        return {"certificateArn": self.arns.cert(row.id), "certificateId": row.id}

    def register_without_ca(self, pem: str, *, status: str = "INACTIVE") -> dict[str, Any]:
        """RegisterCertificateWithoutCA: a self-signed certificate, trusted on its own."""
        status = _status(status, CERT_STATUSES)
        cert = _parse(pem)
        if not is_self_signed(cert):
            raise CertificateValidation(
                "only a self-signed certificate can be registered without a CA; this one is "
                f"issued by {cert.issuer.rfc4514_string()!r}: register that CA first"
            )
        if is_ca_certificate(cert):
            raise CertificateValidation(
                "this is a CA certificate: register it with `thingcore ca register`"
            )
        with self.registry.db.session() as session:
            row = self._add(session, cert, status, None)
        return {"certificateArn": self.arns.cert(row.id), "certificateId": row.id}

    # -- reading and changing certificates -------------------------------------------------

    def _cert(self, session: Session, cert_id: str) -> Certificate:
        row = session.get(Certificate, names.certificate_id(cert_id))
        if row is None:
            raise ResourceNotFound(f"no certificate {cert_id} (see `thingcore certs list`)")
        return row

    def _description(self, row: Certificate) -> dict[str, Any]:
        result: dict[str, Any] = {
            "certificateArn": self.arns.cert(row.id),
            "certificateId": row.id,
            "status": row.status,
            "certificatePem": row.pem,
            "ownedBy": self.registry.settings.account_id,
            "creationDate": row.created_at,
            "lastModifiedDate": row.updated_at,
            "customerVersion": 1,
            "validity": {"notBefore": row.not_before, "notAfter": row.not_after},
            "certificateMode": "DEFAULT",
        }
        if row.ca_id is not None:
            result["caCertificateId"] = row.ca_id
        return result

    def describe(self, cert_id: str) -> dict[str, Any]:
        with self.registry.db.session() as session:
            row = self._cert(session, cert_id)
            desc = self._description(row)
            desc["subject"] = row.subject
            return {"certificateDescription": desc}

    def list_certificates(
        self,
        *,
        ca_id: str | None = None,
        max_results: int | None = None,
        next_token: str | None = None,
    ) -> Page:
        offset, limit = page_bounds(next_token, max_results)
        with self.registry.db.session() as session:
            query = select(Certificate).order_by(col(Certificate.created_at), col(Certificate.id))
            if ca_id is not None:
                query = query.where(Certificate.ca_id == names.certificate_id(ca_id))
            rows = session.exec(query.offset(offset).limit(limit + 1)).all()
            items = [
                {
                    "certificateArn": self.arns.cert(r.id),
                    "certificateId": r.id,
                    "status": r.status,
                    "subject": r.subject,
                    "certificateMode": "DEFAULT",
                    "creationDate": r.created_at,
                    "notAfter": r.not_after,
                }
                for r in rows
            ]
            return make_page(items, offset, limit)

    def update_status(self, cert_id: str, new_status: str) -> dict[str, Any]:
        """UpdateCertificate: idempotent; a running server disconnects a no-longer-ACTIVE one."""
        new_status = _status(new_status, CERT_STATUSES)
        with self.registry.db.session() as session:
            row = self._cert(session, cert_id)
            if row.status == "REVOKED" and new_status != "REVOKED":
                raise CertificateState(
                    f"certificate {row.id} is revoked; a revoked certificate cannot be "
                    "reactivated: issue a new one"
                )
            if row.status != new_status:
                row.status = new_status
                row.updated_at = now()
                session.add(row)
                record_change(session, "certificate", row.id)
        return {}

    def delete(self, cert_id: str, *, force: bool = False) -> dict[str, Any]:
        """DeleteCertificate: it must not be ACTIVE; ``force`` detaches things and policies."""
        with self.registry.db.session() as session:
            row = self._cert(session, cert_id)
            if row.status == "ACTIVE":
                raise CertificateState(
                    f"certificate {row.id} is ACTIVE: deactivate or revoke it first "
                    f"(`thingcore certs update {row.id} --status INACTIVE`)"
                )
            things = session.exec(
                select(ThingPrincipal).where(ThingPrincipal.principal == row.id)
            ).all()
            policies = session.exec(
                select(PolicyTarget).where(
                    PolicyTarget.target_type == "cert", PolicyTarget.target == row.id
                )
            ).all()
            if (things or policies) and not force:
                attached = [f"thing {t.thing!r}" for t in things] + [
                    f"policy {p.policy!r}" for p in policies
                ]
                raise DeleteConflict(
                    f"certificate {row.id} is still attached to {', '.join(attached)}; "
                    "detach them or delete with --force"
                )
            for link in [*things, *policies]:
                session.delete(link)
            session.delete(row)
            record_change(session, "certificate", row.id)
        return {}

    def revoked_serials(self, ca_id: str) -> list[tuple[int, float]]:
        """(serial, revocation time) of the revoked certificates ``ca_id`` issued: its CRL."""
        with self.registry.db.session() as session:
            rows = session.exec(
                select(Certificate).where(
                    Certificate.ca_id == ca_id, Certificate.status == "REVOKED"
                )
            ).all()
            return [(int(r.serial, 16), r.updated_at) for r in rows]

    # -- CA certificates -------------------------------------------------------------------

    def register_ca(self, pem: str, *, set_active: bool = True) -> dict[str, Any]:
        """RegisterCACertificate (no verification certificate: the operator is trusted)."""
        cert = _parse(pem)
        if not is_ca_certificate(cert):
            raise CertificateValidation(
                f"{cert.subject.rfc4514_string()!r} is not a CA certificate "
                "(its basic constraints do not say CA:TRUE)"
            )
        with self.registry.db.session() as session:
            ca_id = certificate_id(certificate_der(cert))
            if session.get(CaCertificate, ca_id) is not None:
                raise ResourceAlreadyExists(f"CA certificate {ca_id} is already registered")
            self._add_ca(session, cert, "ACTIVE" if set_active else "INACTIVE", builtin=False)
        return {"certificateArn": self.arns.cacert(ca_id), "certificateId": ca_id}

    def _ca(self, session: Session, ca_id: str) -> CaCertificate:
        row = session.get(CaCertificate, names.certificate_id(ca_id))
        if row is None:
            raise ResourceNotFound(f"no CA certificate {ca_id} (see `thingcore ca list`)")
        return row

    def describe_ca(self, ca_id: str) -> dict[str, Any]:
        with self.registry.db.session() as session:
            row = self._ca(session, ca_id)
            return {
                "certificateDescription": {
                    "certificateArn": self.arns.cacert(row.id),
                    "certificateId": row.id,
                    "status": row.status,
                    "certificatePem": row.pem,
                    "ownedBy": self.registry.settings.account_id,
                    "creationDate": row.created_at,
                    "lastModifiedDate": row.updated_at,
                    "autoRegistrationStatus": "DISABLE",
                    "validity": {"notBefore": row.not_before, "notAfter": row.not_after},
                    "certificateMode": "DEFAULT",
                    "subject": row.subject,
                    "builtin": row.builtin,
                }
            }

    def list_cas(self) -> list[dict[str, Any]]:
        with self.registry.db.session() as session:
            rows = session.exec(select(CaCertificate).order_by(col(CaCertificate.created_at)))
            return [
                {
                    "certificateArn": self.arns.cacert(r.id),
                    "certificateId": r.id,
                    "status": r.status,
                    "subject": r.subject,
                    "builtin": r.builtin,
                    "creationDate": r.created_at,
                }
                for r in rows
            ]

    def update_ca(self, ca_id: str, new_status: str) -> dict[str, Any]:
        new_status = _status(new_status, CA_STATUSES)
        with self.registry.db.session() as session:
            row = self._ca(session, ca_id)
            if row.status != new_status:
                row.status = new_status
                row.updated_at = now()
                session.add(row)
                record_change(session, "ca", row.id)
        return {}

    def delete_ca(self, ca_id: str) -> dict[str, Any]:
        with self.registry.db.session() as session:
            row = self._ca(session, ca_id)
            if row.status == "ACTIVE":
                raise CertificateState(
                    f"CA {row.id} is ACTIVE: set it INACTIVE first (`thingcore ca update`)"
                )
            issued = session.exec(select(Certificate).where(Certificate.ca_id == row.id)).first()
            if issued is not None:
                # CertificateStateException: the only conflict DeleteCACertificate reports.
                raise CertificateState(
                    f"CA {row.id} still has registered certificates ({issued.id}...); "
                    "delete them first"
                )
            session.delete(row)
            record_change(session, "ca", row.id)
        return {}

    # -- things <-> certificates -----------------------------------------------------------

    def attach_thing(self, thing: str, cert_id: str) -> dict[str, Any]:
        """AttachThingPrincipal: the thing becomes the connection's thing when the client id
        names it (reference 4.2)."""
        with self.registry.db.session() as session:
            if session.get(Thing, thing) is None:
                raise ResourceNotFound(f"no thing named {thing!r}")
            row = self._cert(session, cert_id)
            if session.get(ThingPrincipal, (thing, row.id)) is None:
                session.add(ThingPrincipal(thing=thing, principal=row.id))
                record_change(session, "attachment", row.id)
        return {}

    def detach_thing(self, thing: str, cert_id: str) -> dict[str, Any]:
        with self.registry.db.session() as session:
            link = session.get(ThingPrincipal, (thing, names.certificate_id(cert_id)))
            if link is None:
                raise ResourceNotFound(f"certificate {cert_id} is not attached to thing {thing!r}")
            session.delete(link)
            record_change(session, "attachment", link.principal)
        return {}

    def thing_principals(self, thing: str) -> list[str]:
        """ListThingPrincipals: certificate ARNs."""
        with self.registry.db.session() as session:
            if session.get(Thing, thing) is None:
                raise ResourceNotFound(f"no thing named {thing!r}")
            rows = session.exec(
                select(ThingPrincipal.principal)
                .where(ThingPrincipal.thing == thing)
                .order_by(col(ThingPrincipal.principal))
            ).all()
            return [self.arns.cert(p) for p in rows]

    def principal_things(self, cert_id: str) -> list[str]:
        """ListPrincipalThings: thing names."""
        with self.registry.db.session() as session:
            row = self._cert(session, cert_id)
            rows = session.exec(
                select(ThingPrincipal.thing)
                .where(ThingPrincipal.principal == row.id)
                .order_by(col(ThingPrincipal.thing))
            ).all()
            return list(rows)


def _status(value: str, allowed: tuple[str, ...]) -> str:
    upper = value.upper()
    if upper not in allowed:
        raise InvalidRequest(f"status {value!r} is not one of {', '.join(allowed)}")
    return upper
