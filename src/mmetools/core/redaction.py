"""Credentials never reach a log line or a message: one redaction, applied at the logging layer.

:func:`redact` masks, in any text, every credential the process knows:

- the values of secret environment variables (``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
  ``MMETOOLS_EVIDENCE_KEY``, and any variable whose name ends in ``SECRET``, ``TOKEN``,
  ``PASSWORD``, ``PASSPHRASE``, ``_KEY`` or ``CREDENTIALS``), read when the text is redacted;
- the user:password of any URL in any environment variable (``AWS_ENDPOINT_URL``, proxies, ...),
  and the userinfo of any URL in the text itself;
- values registered with :func:`register_secret` (e.g. the credentials boto3 resolved from a
  profile, SSO or a web identity, which are in no variable);
- by shape: ``Authorization`` and ``X-Amz-Security-Token`` header values (dict, header and
  canonical-request forms), SigV4 signatures, and the ``SecretAccessKey`` / ``SessionToken`` /
  ``Token`` fields of credential answers (XML or JSON), as botocore's debug log shows them.

:class:`RedactingFilter` applies it to every record a handler emits (its message, its arguments,
its traceback), whatever the logger and the level. The CLI installs it on the handlers it
configures; a library user calls :func:`install_log_redaction` after configuring logging.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"

# Named secrets mmetools or the libraries it drives read from the environment.
SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "MMETOOLS_EVIDENCE_KEY",
)
_SECRET_NAME = re.compile(r"(?:SECRET|TOKEN|PASSWORD|PASSWD|PASSPHRASE|_KEY|CREDENTIALS)$", re.I)
# Shorter values would mask ordinary words everywhere; no real credential is that short.
MIN_SECRET_LENGTH = 4

_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s\"'<>]+@")
_HEADER_NAMES = (
    r"(?:authorization|proxy-authorization|x-amz-security-token|x-amz-signature|x-amz-credential)"
)
_FIELD_NAMES = (
    r"(?:secret_?access_?key|aws_secret_access_key|session_?token|aws_session_token|"
    r"security_?token|access_?token|refresh_?token|client_?secret|token|password)"
)
_SHAPES = (
    # {'Authorization': b'AWS4-HMAC-SHA256 ...'}, "X-Amz-Security-Token": "..." (dicts, JSON)
    re.compile(
        rf"(?P<keep>[\"']{_HEADER_NAMES}[\"']\s*:\s*b?)(?P<quote>[\"'])(?P<value>.*?)(?P=quote)",
        re.I | re.S,
    ),
    re.compile(
        rf"(?P<keep>[\"']{_FIELD_NAMES}[\"']\s*:\s*b?)(?P<quote>[\"'])(?P<value>.*?)(?P=quote)",
        re.I | re.S,
    ),
    # <SecretAccessKey>...</SecretAccessKey> (STS answers)
    re.compile(
        r"(?P<keep><(?P<tag>SecretAccessKey|SessionToken|Token)>)(?P<value>[^<]*)(?=</(?P=tag)>)",
        re.I,
    ),
    # Authorization: AWS4-HMAC-SHA256 ... (raw headers: to the end of the line)
    re.compile(r"(?P<keep>\b(?:proxy-)?authorization\s*:[ \t]*)(?P<value>[^\r\n]+)", re.I),
    # x-amz-security-token:value (canonical request), X-Amz-Security-Token=... (presigned URLs)
    re.compile(
        r"(?P<keep>\bx-amz-(?:security-token|signature|credential)\s*[:=]\s*)(?P<value>[^\s&,'\"]+)",
        re.I,
    ),
    # Signature=<hex> (Authorization header), "Signature:\n<hex>" (botocore's signing log)
    re.compile(r"(?P<keep>\bSignature\s*[:=]\s*)(?P<value>[0-9a-fA-F]{16,})"),
)

_registered: set[str] = set()
_registered_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it appears from now on (e.g. a key resolved from a profile)."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        with _registered_lock:
            _registered.add(value)


def register_boto_credentials(credentials: Any) -> None:
    """Register the secret key and token of botocore ``Credentials`` (``None``: nothing)."""
    if credentials is not None:
        frozen = credentials.get_frozen_credentials()
        register_secret(frozen.secret_key)
        register_secret(frozen.token)


def _userinfo_secrets(value: str) -> Iterable[str]:
    for match in re.finditer(r"[a-zA-Z][a-zA-Z0-9+.-]*://([^/@\s]+)@", value):
        userinfo = match.group(1)
        password = userinfo.partition(":")[2]
        for text in (userinfo, password):
            yield text
            yield urllib.parse.unquote(text)


def known_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Every credential value known now, longest first (so a value hides its own parts)."""
    environ = os.environ if environ is None else environ
    found: set[str] = set()
    for name, value in environ.items():
        if name in SECRET_VARIABLES or _SECRET_NAME.search(name):
            found.add(value)
        if "://" in value and "@" in value:
            found.update(_userinfo_secrets(value))
    with _registered_lock:
        found.update(_registered)
    return sorted((s for s in found if len(s) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def _mask_value(match: re.Match[str]) -> str:
    quote = match.groupdict().get("quote") or ""
    return f"{match.group('keep')}{quote}{MASK}{quote}"


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` with every known credential replaced by ``***``."""
    if not text:
        return text
    for secret in known_secrets(environ):
        if secret in text:
            text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub(rf"\g<scheme>{MASK}@", text)
    for shape in _SHAPES:
        text = shape.sub(_mask_value, text)
    return text


class RedactingFilter(logging.Filter):
    """A handler filter: every record leaves with its credentials masked (never dropped).

    The message is merged with its arguments and redacted, then the arguments are cleared, so
    no formatter can put an unredacted argument back; a traceback is formatted and redacted too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not fit its format: keep both, masked
            message = f"{record.msg} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> RedactingFilter:
    """Add the (one) redacting filter to every handler of ``logger`` (default: the root logger);
    call it after configuring logging. Handlers that already have it are left alone."""
    target = logger if logger is not None else logging.getLogger()
    redacting = RedactingFilter()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(redacting)
    return redacting


__all__ = [
    "MASK",
    "RedactingFilter",
    "SECRET_VARIABLES",
    "install_log_redaction",
    "known_secrets",
    "redact",
    "register_boto_credentials",
    "register_secret",
]
