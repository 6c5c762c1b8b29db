"""Shadow errors: each one is an AWS error document (reference 1.8) or REST status (1.11)."""

from __future__ import annotations

from enum import IntEnum

from thingcore.errors import ThingcoreError


class ShadowErrorCode(IntEnum):
    """The ``code`` of a ``/rejected`` document: an HTTP status, as AWS sends it."""

    BAD_REQUEST = 400
    UNAUTHORIZED = 401
    FORBIDDEN = 403
    NOT_FOUND = 404
    CONFLICT = 409
    PAYLOAD_TOO_LARGE = 413
    UNSUPPORTED_ENCODING = 415
    TOO_MANY_REQUESTS = 429
    INTERNAL = 500


REST_EXCEPTIONS = {
    ShadowErrorCode.BAD_REQUEST: "InvalidRequestException",
    ShadowErrorCode.UNAUTHORIZED: "UnauthorizedException",
    ShadowErrorCode.FORBIDDEN: "UnauthorizedException",
    ShadowErrorCode.NOT_FOUND: "ResourceNotFoundException",
    ShadowErrorCode.CONFLICT: "ConflictException",
    ShadowErrorCode.PAYLOAD_TOO_LARGE: "RequestEntityTooLargeException",
    ShadowErrorCode.UNSUPPORTED_ENCODING: "UnsupportedDocumentEncodingException",
    ShadowErrorCode.TOO_MANY_REQUESTS: "ThrottlingException",
    ShadowErrorCode.INTERNAL: "InternalFailureException",
}
"""botocore ``iot-data`` exception names per status, for the REST API and the CLI's JSON."""


class ShadowError(ThingcoreError):
    """A shadow request refused with AWS's code and message, e.g. ``(409, "Version conflict")``.

    ``client_token`` is the request's token when it could be read, so the error document
    echoes it (the v2 SDK routes responses by that token alone).
    """

    def __init__(
        self,
        code: ShadowErrorCode,
        message: str,
        client_token: str | None = None,
        *,
        detail: str | None = None,
        publish_detail: bool = False,
    ) -> None:
        super().__init__(message if detail is None else f"{message}: {detail}")
        self.code = code
        self.message = message
        self.client_token = client_token
        self.detail = detail
        """What exactly was wrong; the CLI prints it. Only a check that is ours (a thing type's
        JSON Schema) puts it into the error document, so AWS clients see AWS's documents."""
        self.publish_detail = publish_detail

    @property
    def rest_exception(self) -> str:
        return REST_EXCEPTIONS.get(self.code, "InternalFailureException")

    def with_token(self, client_token: str | None) -> ShadowError:
        if client_token is None or self.client_token is not None:
            return self
        return ShadowError(
            self.code,
            self.message,
            client_token,
            detail=self.detail,
            publish_detail=self.publish_detail,
        )


def bad_request(
    message: str,
    client_token: str | None = None,
    *,
    detail: str | None = None,
    publish_detail: bool = False,
) -> ShadowError:
    return ShadowError(
        ShadowErrorCode.BAD_REQUEST,
        message,
        client_token,
        detail=detail,
        publish_detail=publish_detail,
    )
