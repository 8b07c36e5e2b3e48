"""Where published artifacts go: a parsed destination URI (``s3://bucket/prefix`` or a folder),
and the redaction of credentials from any URL shown to a user.
"""

from __future__ import annotations

import logging
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mmetools.core.errors import ConfigError
from mmetools.core.redaction import redact

logger = logging.getLogger(__name__)

DestinationKind = Literal["s3", "file"]

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def redact_credentials(text: str) -> str:
    """``http://user:password@host`` -> ``http://***@host`` wherever a URL appears in ``text``
    (AWS_ENDPOINT_URL may carry credentials; botocore repeats the URL in its errors), and every
    other credential the process knows (see :mod:`mmetools.core.redaction`)."""
    return redact(text)


@dataclass(frozen=True)
class Destination:
    """A parsed destination URI: ``s3://bucket/prefix`` or a folder (``file:///abs``, ``file:rel``)."""

    uri: str
    kind: DestinationKind
    bucket: str = ""
    prefix: str = ""  # S3 key prefix without leading or trailing "/"
    path: Path | None = None  # folder of a file destination, absolute

    def object_uri(self, key: str) -> str:
        if self.kind == "s3":
            return f"s3://{self.bucket}/{key}"
        assert self.path is not None
        return (self.path / key).as_uri()

    def key(self, *parts: str) -> str:
        """The object key of ``parts`` under this destination (S3 prefix included)."""
        if self.kind == "s3":
            return "/".join(p for p in (self.prefix, *parts) if p)
        return "/".join(p for p in parts if p)


def parse_destination(uri: str, root: Path, setting: str) -> Destination:
    """Parse a destination setting; ``setting`` names where it came from for error messages."""
    parsed = urllib.parse.urlsplit(uri.strip())
    if parsed.scheme == "s3":
        bucket = parsed.netloc
        if not _BUCKET_NAME.match(bucket):
            raise ConfigError(
                f"{setting} = {uri!r}: '{bucket}' is not a valid S3 bucket name "
                "(3-63 characters: lowercase letters, digits, '.' and '-')"
            )
        if parsed.query or parsed.fragment:
            raise ConfigError(f"{setting} = {uri!r}: an S3 URI takes no '?' or '#' part")
        prefix = parsed.path.strip("/")
        if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
            raise ConfigError(f"{setting} = {uri!r}: the key prefix has an empty, '.' or '..' part")
        return Destination(
            uri=f"s3://{bucket}/{prefix}".rstrip("/"), kind="s3", bucket=bucket, prefix=prefix
        )
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(
                f"{setting} = {uri!r}: file URIs name a local folder: file:///absolute/path or "
                "file:relative/path (relative to the repository root), not a host"
            )
        raw = urllib.parse.unquote(parsed.path)
        if not raw:
            raise ConfigError(f"{setting} = {uri!r}: no folder given")
        folder = Path(raw)
        if not folder.is_absolute():
            # "file:rel/path" (the embedded default) resolves against the repository root.
            folder = root / folder
        folder = Path(os.path.normpath(folder))
        return Destination(uri=folder.as_uri(), kind="file", path=folder)
    raise ConfigError(
        f"{setting} = {uri!r}: unsupported destination; use s3://bucket/prefix, "
        "file:///absolute/path or file:relative/path"
    )


__all__ = ["Destination", "DestinationKind", "parse_destination", "redact_credentials"]
