"""`mmetools -v publish` against moto_server: no credential in the log, at any level.

Defect (issue 20, #4): botocore's debug lines carried the user:password of AWS_ENDPOINT_URL and
the AWS_SESSION_TOKEN (and the request signatures), although docs/publish.md promises masking.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.release.publish_support import make_artifact, new_bucket, s3_client

PASSWORD = "hunter2-endpoint-password"
TOKEN = "FwoGZXIvYXdzSESSIONTOKENEXAMPLE"
SECRET = "wJalrXUtnFEMIK7MDENGbPxRfiCYSECRETKEY"


@pytest.mark.integration
def test_publish_verbose_logs_no_credential(tmp_path: Path, aws_env: str) -> None:
    bucket = new_bucket(s3_client(), "staging")
    make_artifact(tmp_path / "dist")
    endpoint = aws_env.replace("http://", f"http://publisher:{PASSWORD}@")
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_SESSION_TOKEN": TOKEN,
        "MMETOOLS_STAGING_URI": f"s3://{bucket}/mme",
        "MMETOOLS_PRODUCTION_URI": f"s3://{bucket}/production",
        "COLUMNS": "400",  # rich wraps at 80 columns otherwise: a split secret would hide
    }
    mmetools = Path(sys.executable).with_name("mmetools")
    result = subprocess.run(
        [str(mmetools), "-v", "publish", "dist/demo_1.tar.gz", "--branch", "feature/x"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("uploaded  staging")
    log = result.stderr
    # No credential, whole or across a wrapped line ...
    for text in (log, "".join(log.split())):
        for secret in (PASSWORD, TOKEN, SECRET, "publisher:"):
            assert secret not in text, secret
    # ... although botocore's debug lines are there (the filter masks, it does not drop).
    assert "x-amz-security-token:***" in log and "'Authorization': b'***'" in log
    assert f"{aws_env.replace('http://', 'http://***@')}/{bucket}" in log
