"""Credentials AWS rejects, and an identity without the permissions, through the CLI in-process
against a moto_server of its own with IAM authorization on (INITIAL_NO_AUTH_ACTION_COUNT): each
of plan / apply / status / smoke exits 2 with one line saying what to renew or grant, no traceback.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from conftest import MODELS_DIR, running_moto
from mmetools.cli import main
from support.deploy.declarations import BUCKET, STAGING, write_repo

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
COMMANDS = (
    ["endpoint", "plan", "staging"],
    ["endpoint", "apply", "staging"],
    ["endpoint", "status", "staging"],
    ["smoke", "staging", "intent_classifier", "--branch", "main"],
)
UNAUTHENTICATED = 3  # create the bucket, the user and its key; every later call is checked


@pytest.fixture(scope="module")
def moto_with_iam() -> Iterator[str]:
    with running_moto({"INITIAL_NO_AUTH_ACTION_COUNT": str(UNAUTHENTICATED)}) as url:
        yield url


@pytest.fixture(scope="module")
def powerless_key(moto_with_iam: str) -> tuple[str, str]:
    """An access key of a user with no policy (the unauthenticated calls go here)."""
    session = boto3.session.Session(
        aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1"
    )
    session.client("s3", endpoint_url=moto_with_iam).create_bucket(Bucket=BUCKET)
    iam = session.client("iam", endpoint_url=moto_with_iam)
    iam.create_user(UserName="ci")
    key = iam.create_access_key(UserName="ci")["AccessKey"]
    return str(key["AccessKeyId"]), str(key["SecretAccessKey"])


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: argv[0] + "_" + argv[1])
@pytest.mark.parametrize(
    ("who", "expected"),
    [
        pytest.param("unknown", "AWS rejected the credentials (InvalidAccessKeyId): renew them",
                     id="rejected_credentials"),
        pytest.param("powerless", "the identity needs the permissions in docs/endpoints.md",
                     id="access_denied"),
    ],
)  # fmt: skip
def test_refused_credentials_exit_2_saying_what_to_do_moto(
    moto_with_iam: str, powerless_key: tuple[str, str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str],
    who: str, expected: str,
) -> None:  # fmt: skip
    key, secret = powerless_key if who == "powerless" else ("AKIAUNKNOWN000000000", "nope")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_with_iam)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    if argv[0] == "smoke":
        shutil.copytree(MODELS_DIR / "intent_classifier", tmp_path / "models" / "intent_classifier")
    if argv[1] in ("status", "staging"):  # the first call is sagemaker's: moto's 403 is XML
        expected = "AWS refused the request (HTTP 403, 403): renew the credentials, or grant"
    write_repo(tmp_path, STAGING)
    monkeypatch.chdir(tmp_path)
    code = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert (code, expected in captured.err) == (2, True), captured.err
