"""Credentials never reach a log line: the redacting filter, for every logger and level.

Defect (issue 20, #4): ``mmetools publish -v`` logged botocore's debug lines with the
user:password of AWS_ENDPOINT_URL and the AWS_SESSION_TOKEN in them.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from mmetools.core.redaction import (
    RedactingFilter,
    install_log_redaction,
    known_secrets,
    redact,
    register_secret,
)

SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEXAMPLESESSIONTOKEN",
    "MMETOOLS_EVIDENCE_KEY": "evidence-hmac-key-0123",
    "GITHUB_TOKEN": "ghp_exampleexampleexample",
    "AWS_ENDPOINT_URL": "http://admin:hunter2@127.0.0.1:9000",
    "HTTPS_PROXY": "http://proxyuser:pr%40xy-pass@proxy:3128",
}


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return SECRETS


@pytest.fixture
def root_stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """A plain handler on the root logger, redacted the way the CLI's is. The libraries' loggers
    pass everything up to it, whatever an earlier test (a CLI run's -v setup) set on them."""
    for name in ("botocore", "botocore.endpoint", "urllib3", "urllib3.connectionpool", "mmetools"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
        monkeypatch.setattr(logging.getLogger(name), "disabled", False)
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    install_log_redaction()
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


LEAKS = ("wJalrXUtnFEMI", "EXAMPLESESSIONTOKEN", "evidence-hmac-key", "ghp_example", "hunter2",
         "admin:", "pr@xy-pass", "pr%40xy-pass", "proxyuser")  # fmt: skip


def assert_clean(text: str) -> None:
    for leak in LEAKS:
        assert leak not in text, (leak, text)


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR])
@pytest.mark.parametrize("name", ["botocore.endpoint", "urllib3.connectionpool", "mmetools.x", ""])
def test_every_logger_and_level_is_redacted(
    secrets_env: dict[str, str], root_stream: io.StringIO, name: str, level: int
) -> None:
    logger = logging.getLogger(name or None)
    logger.log(level, "Endpoint provider result: %s/bucket", secrets_env["AWS_ENDPOINT_URL"])
    logger.log(
        level, "headers=%r", {"X-Amz-Security-Token": secrets_env["AWS_SESSION_TOKEN"].encode()}
    )
    logger.log(level, "secret %s token %s key %s gh %s", secrets_env["AWS_SECRET_ACCESS_KEY"],
               secrets_env["AWS_SESSION_TOKEN"], secrets_env["MMETOOLS_EVIDENCE_KEY"],
               secrets_env["GITHUB_TOKEN"])  # fmt: skip
    logger.log(level, "via %s", secrets_env["HTTPS_PROXY"])
    logger.log(level, "proxy password decoded: pr@xy-pass")
    text = root_stream.getvalue()
    assert text.count("\n") == 5
    assert "http://***@127.0.0.1:9000/bucket" in text
    assert_clean(text)


def test_botocore_shapes_are_redacted_without_any_variable(
    monkeypatch: pytest.MonkeyPatch, root_stream: io.StringIO
) -> None:
    """Credentials from a profile or a web identity are in no variable: the shapes botocore
    logs them in are masked anyway (headers, the canonical request, signatures, STS answers)."""
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)
    log = logging.getLogger("botocore.auth")
    log.debug("CanonicalRequest:\nHEAD\n/b/k\n\nhost:h\nx-amz-security-token:TOKENVALUE1\n\nhost")
    log.debug("Signature:\n9929c467858696d5936ba1e335efc7986b44ea6bdb8b4d300120e8e87a9aff17")
    log.debug("Sending http request: %s", "<AWSPreparedRequest headers={'Authorization': "
              "b'AWS4-HMAC-SHA256 Credential=AKIAX/2026/us-east-1/s3/aws4_request, "
              "SignedHeaders=host, Signature=abcdef0123456789abcdef'}>")  # fmt: skip
    log.debug("Response body:\n%r", b"<Credentials><AccessKeyId>ASIAX</AccessKeyId>"
              b"<SecretAccessKey>STSSECRET1</SecretAccessKey><SessionToken>STSTOKEN1"
              b"</SessionToken></Credentials>")  # fmt: skip
    log.debug('{"AccessKeyId": "ASIAX", "SecretAccessKey": "IMDSSECRET1", "Token": "IMDSTOKEN1"}')
    log.debug("https://b.s3.amazonaws.com/k?X-Amz-Security-Token=QUERYTOKEN1&X-Amz-Signature=ab12")
    log.debug("Authorization: Bearer RAWBEARER1")
    text = root_stream.getvalue()
    for leak in ("TOKENVALUE1", "9929c467", "AKIAX/", "abcdef0123", "STSSECRET1", "STSTOKEN1",
                 "IMDSSECRET1", "IMDSTOKEN1", "QUERYTOKEN1", "ab12", "RAWBEARER1"):  # fmt: skip
        assert leak not in text, (leak, text)
    assert "ASIAX" in text  # an access key id is an identifier, not a credential


def test_tracebacks_and_bad_arguments_are_redacted(
    secrets_env: dict[str, str], root_stream: io.StringIO
) -> None:
    log = logging.getLogger("botocore.retryhandler")
    try:
        raise ConnectionError(f"Could not connect to {secrets_env['AWS_ENDPOINT_URL']}")
    except ConnectionError:
        log.debug("retry", exc_info=True)
        log.exception("failed with %s", secrets_env["AWS_SESSION_TOKEN"])
    log.debug("%s %s", secrets_env["AWS_SECRET_ACCESS_KEY"])  # one argument short
    log.debug("stack", stack_info=True)
    text = root_stream.getvalue()
    assert "ConnectionError: Could not connect to http://***@127.0.0.1:9000" in text
    assert_clean(text)


def test_registered_secrets_are_redacted(root_stream: io.StringIO) -> None:
    """Values resolved at run time (boto3's credential chain) are registered, then masked."""
    register_secret("resolved-from-a-profile-123")
    register_secret("ab")  # too short to mask without masking ordinary words: ignored
    logging.getLogger("botocore.credentials").debug("key resolved-from-a-profile-123 ab")
    assert root_stream.getvalue().strip().endswith("key *** ab")


def test_filter_is_installed_once_and_known_secrets_are_longest_first(
    secrets_env: dict[str, str], root_stream: io.StringIO
) -> None:
    install_log_redaction()
    for handler in logging.getLogger().handlers:
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) <= 1
    secrets = known_secrets()
    assert secrets == sorted(secrets, key=len, reverse=True)
    assert "admin:hunter2" in secrets and "hunter2" in secrets
    assert redact("s3://bucket/key@v1 and plain text") == "s3://bucket/key@v1 and plain text"
