"""Registry errors: one class per AWS IoT control-plane exception, so REST can map them 1:1.

Each carries the AWS error code (``x-amzn-ErrorType``) and HTTP status of the exception it
stands for (reference section 3.2); the message is what the CLI prints on its one error line.
"""

from __future__ import annotations

from typing import ClassVar

from thingcore.errors import ThingcoreError


class RegistryError(ThingcoreError):
    aws_code: ClassVar[str] = "InternalFailureException"
    http_status: ClassVar[int] = 500


class InvalidRequest(RegistryError):
    aws_code = "InvalidRequestException"
    http_status = 400


class MalformedPolicy(RegistryError):
    aws_code = "MalformedPolicyException"
    http_status = 400


class CertificateValidation(RegistryError):
    aws_code = "CertificateValidationException"
    http_status = 400


class ResourceNotFound(RegistryError):
    aws_code = "ResourceNotFoundException"
    http_status = 404


class CertificateState(RegistryError):
    aws_code = "CertificateStateException"
    http_status = 406


class ResourceAlreadyExists(RegistryError):
    aws_code = "ResourceAlreadyExistsException"
    http_status = 409


class VersionConflict(RegistryError):
    aws_code = "VersionConflictException"
    http_status = 409


class DeleteConflict(RegistryError):
    aws_code = "DeleteConflictException"
    http_status = 409


class CertificateConflict(RegistryError):
    aws_code = "CertificateConflictException"
    http_status = 409


class VersionsLimitExceeded(RegistryError):
    aws_code = "VersionsLimitExceededException"
    http_status = 409


class LimitExceeded(RegistryError):
    aws_code = "LimitExceededException"
    http_status = 410


class DatabaseError(RegistryError):
    """The database cannot be opened or migrated; the message says which and why."""
