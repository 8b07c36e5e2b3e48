"""botocore failures as mmetools errors: rejected credentials and missing permissions are setup
mistakes (exit 2, saying what to renew or grant); other refusals stay DeployErrors (exit 1)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from mmetools.core.errors import AwsSetupError
from mmetools.deploy.aws import aws_failure


def _client_error(code: str, status: int) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "DescribeEndpoint")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "setup", "expected"),
    [
        (_client_error("ExpiredTokenException", 400), True, "AWS rejected the credentials (Expi"),
        (_client_error("UnrecognizedClientException", 400), True, "rejected the credentials"),
        (_client_error("AccessDeniedException", 400), True, "needs the permissions in docs/"),
        (_client_error("403", 403), True, "AWS refused the request (HTTP 403, 403)"),
        (NoCredentialsError(), True, "no AWS credentials found: set AWS_PROFILE"),
        (_client_error("ValidationException", 400), False, "describe x: An error occurred"),
        (_client_error("ThrottlingException", 400), False, "ThrottlingException"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), False, "Could not connect"),
    ],
)
def test_setup_mistakes_exit_2_and_other_failures_1(
    error: Exception, setup: bool, expected: str
) -> None:
    failure = aws_failure("describe x", error)
    assert (isinstance(failure, AwsSetupError), failure.exit_code) == (setup, 2 if setup else 1)
    assert str(failure).startswith("describe x: ") and expected in str(failure)
