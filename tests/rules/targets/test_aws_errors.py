"""Which boto3 failures the outbox retries (``rules.aws.target_error``), and the boto3 clients'
settings: one attempt per call, the configured endpoint, region and timeouts."""

from __future__ import annotations

import botocore.exceptions as bex
import pytest

from rules.aws import AwsClients, target_error
from rules.config import AwsSettings


def client_error(code: str, status: int, message: str = "it failed") -> bex.ClientError:
    return bex.ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "PutObject",
    )


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (client_error("NoSuchBucket", 404), False),
        (client_error("AccessDenied", 403), False),
        (client_error("InvalidParameterValue", 400), False),
        (client_error("ThrottlingException", 400), True),
        (client_error("SlowDown", 503), True),
        (client_error("InternalError", 500), True),
        (client_error("TooManyRequestsException", 429), True),
        (client_error("ExpiredToken", 400), True),
        (bex.EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), True),
        (bex.ConnectTimeoutError(endpoint_url="http://127.0.0.1:9"), True),
        (bex.ReadTimeoutError(endpoint_url="http://127.0.0.1:9"), True),
        (bex.NoCredentialsError(), True),
        (bex.NoRegionError(), False),
        (bex.ParamValidationError(report="Key is missing"), False),
        (ConnectionResetError("reset by peer"), True),
    ],
)
def test_what_waiting_can_cure_is_retried(exc: Exception, retryable: bool) -> None:
    error = target_error(exc, "s3 readings")
    assert error.retryable is retryable
    assert str(error).startswith("s3 readings: ")


def test_a_client_error_names_its_code_and_message() -> None:
    error = target_error(client_error("NoSuchBucket", 404, "The bucket does not exist"), "s3 b")
    assert str(error) == "s3 b: NoSuchBucket: The bucket does not exist"


def test_clients_make_one_attempt_against_the_configured_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings = AwsSettings(
        region="eu-west-1",
        endpoint_url="http://127.0.0.1:4566",
        sqs_endpoint_url="http://127.0.0.1:4567",
        connect_timeout=1.5,
        read_timeout=7.0,
    )
    clients = AwsClients(settings)
    s3, sqs = clients.client("s3"), clients.client("sqs")
    assert clients.client("s3") is s3  # made once, shared by every target
    assert s3.meta.endpoint_url == "http://127.0.0.1:4566"
    assert sqs.meta.endpoint_url == "http://127.0.0.1:4567"  # the service's own wins
    assert s3.meta.region_name == "eu-west-1"
    config = s3.meta.config
    assert (config.connect_timeout, config.read_timeout) == (1.5, 7.0)
    # The outbox retries with its own backoff: boto3 must not retry behind its back.
    assert config.retries["total_max_attempts"] == 1
