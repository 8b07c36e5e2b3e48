"""botocore's failures as mmetools errors: what the user has to set or fix is named.

Credentials AWS rejects (expired, unknown, mis-signed) and missing permissions are setup
mistakes (AwsSetupError, exit 2); any other refusal or failure of a call is a DeployError.
"""

from __future__ import annotations

from mmetools.core.errors import AwsSetupError, DeployError

# Error codes of the services used here (STS-style, S3, JSON protocol) for credentials AWS
# does not accept.
CREDENTIALS_REJECTED = frozenset(
    {
        "AuthFailure",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
    }
)
ACCESS_DENIED = frozenset({"AccessDenied", "AccessDeniedException"})
PERMISSIONS_DOC = 'docs/endpoints.md, "Day one against a real account"'


def aws_failure(what: str, error: Exception) -> DeployError:
    """The error to raise for ``error`` (from botocore) while doing ``what``."""
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(error, NoCredentialsError):
        return AwsSetupError(
            f"{what}: no AWS credentials found: set AWS_PROFILE to a profile that has them, or "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in CREDENTIALS_REJECTED:
            return AwsSetupError(
                f"{what}: AWS rejected the credentials ({code}): renew them (a new session "
                "token, `aws sso login`), or check AWS_PROFILE and AWS_ACCESS_KEY_ID"
            )
        if code in ACCESS_DENIED:
            return AwsSetupError(
                f"{what}: {error}; the identity needs the permissions in {PERMISSIONS_DOC}"
            )
        if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403:
            # A 403 whose body names no code botocore knows: authentication or authorization.
            return AwsSetupError(
                f"{what}: AWS refused the request (HTTP 403, {code}): renew the credentials, "
                f"or grant the identity the permissions in {PERMISSIONS_DOC}"
            )
    return DeployError(f"{what}: {error}")
