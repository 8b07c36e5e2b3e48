"""User mistakes around `endpoint plan|apply|status` and `smoke`, through ``mmetools.cli.main``
in-process: each exits 2 with one line naming the file, stage and key, or what to set in the AWS
environment; none prints a traceback. No AWS is reached: every row fails before the first call
(the instance metadata service is disabled, so a missing credential cannot leave loopback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmetools.cli import main
from support.deploy.declarations import STAGING, publish_section, write_repo

pytestmark = pytest.mark.timeout(60)

COMMANDS = (
    ["endpoint", "plan", "staging"],
    ["endpoint", "apply", "staging"],
    ["endpoint", "status", "staging"],
    ["smoke", "staging", "--branch", "main"],
)
CREDENTIAL_SOURCES = (
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)  # fmt: skip


@pytest.fixture
def no_aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty AWS environment with the region set; the repository in tmp_path/repo, the cwd."""
    for variable in CREDENTIAL_SOURCES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    repo = tmp_path / "repo"
    write_repo(repo, STAGING)
    (repo / "models").mkdir()
    monkeypatch.chdir(repo)
    return repo


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.err


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: "_".join(argv[:2]))
@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        pytest.param({}, "[endpoints.staging]: no AWS credentials found: set AWS_PROFILE",
                     id="no_credentials"),
        pytest.param({"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE"},
                     "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", id="half_credentials"),
        pytest.param({"AWS_PROFILE": "acme"},
                     "The config profile (acme) could not be found; set AWS_PROFILE to a profile",
                     id="unknown_profile"),
        pytest.param({"AWS_DEFAULT_REGION": ""},
                     "no AWS region in the environment: set AWS_DEFAULT_REGION", id="no_region"),
        pytest.param({"AWS_DEFAULT_REGION": "us east 1"},
                     "region 'us east 1' is no region name (check AWS_DEFAULT_REGION",
                     id="malformed_region"),
        pytest.param({"AWS_ENDPOINT_URL": "localhost 4566"},
                     "Invalid endpoint: localhost 4566; check AWS_ENDPOINT_URL",
                     id="malformed_endpoint_url"),
    ],
)  # fmt: skip
def test_an_unusable_aws_environment_exits_2_naming_what_to_set(
    no_aws: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    argv: list[str], setup: dict[str, str], expected: str,
) -> None:  # fmt: skip
    for variable, value in setup.items():
        monkeypatch.setenv(variable, value)
    if setup.get("AWS_DEFAULT_REGION") == "":
        monkeypatch.delenv("AWS_DEFAULT_REGION")
        monkeypatch.setenv("AWS_REGION", "us-east-1")  # boto3 does not read it: say so
    if "AWS_ENDPOINT_URL" in setup:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    code, err = _run(argv, capsys)
    assert (code, expected in err) == (2, True), err
    assert err.startswith("error: ") and err.count("\n") == 1, err


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(("initial_instance_count = 1", "initial_instance_count = 0"),
                     "[endpoints.staging] initial_instance_count = 0: must be 1 or more",
                     id="range"),
        pytest.param(("min_instances = 1", 'min_instances = "one"'),
                     "[endpoints.staging] min_instances must be an integer, got 'one'", id="type"),
        pytest.param(("instance_type", "instance_typ"), "[endpoints.staging] has no key "
                     "'instance_typ'", id="unknown_key"),
        pytest.param(("[endpoints.staging.environment]\n", "[endpoints.staging.environment]\n"
                      "TRITON_X = '1'\n"), "environment.TRITON_X: only SAGEMAKER_TRITON_*",
                     id="environment"),
        pytest.param(("[endpoints.staging]\n", "[endpoints.staging]\nregion = 'eu-west-1'\n"),
                     "region = 'eu-west-1' but the AWS environment is in 'us-east-1'",
                     id="region_guard"),
        pytest.param(("[endpoints.staging]\n", "[endpoints.staging]\nimage = 'ubuntu:22.04'\n"),
                     "image = 'ubuntu:22.04': not a tritonserver", id="image"),
    ],
)  # fmt: skip
def test_a_malformed_declaration_exits_2_naming_file_stage_and_key(
    no_aws: Path, capsys: pytest.CaptureFixture[str], edit: tuple[str, str], expected: str
) -> None:
    write_repo(no_aws, STAGING.replace(*edit, 1))
    for argv in COMMANDS:
        code, err = _run(argv, capsys)
        assert (code, expected in err, str(no_aws / "mmetools.toml") in err) == (2, True, True), err


def test_a_region_without_a_published_image_names_the_stage(
    no_aws: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "xx-nowhere-1")
    code, err = _run(["endpoint", "plan", "staging"], capsys)
    assert code == 2
    assert "[endpoints.staging]: no SageMaker Triton registry is published for region" in err


@pytest.mark.parametrize(
    ("argv", "text", "expected"),
    [
        pytest.param(["endpoint", "plan", "qa"], STAGING, "'qa' is not a stage", id="unknown"),
        pytest.param(["endpoint", "apply", "production"], STAGING,
                     "no [endpoints.production] is declared", id="undeclared"),
        pytest.param(["endpoint", "status", "staging"], '[endpoints]\nstaging = "acme"\n',
                     "[endpoints] staging must be a table", id="not_a_table"),
    ],
)  # fmt: skip
def test_a_stage_that_cannot_be_planned_exits_2(
    no_aws: Path, capsys: pytest.CaptureFixture[str], argv: list[str], text: str, expected: str
) -> None:
    (no_aws / "mmetools.toml").write_text(publish_section() + text)
    code, err = _run(argv, capsys)
    assert (code, expected in err) == (2, True), err


def test_smoke_without_a_models_folder_or_names_exits_2(
    no_aws: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    (no_aws / "models").rmdir()
    code, err = _run(["smoke", "staging", "--branch", "main"], capsys)
    assert (code, "models: no such folder; name the TargetModels to smoke" in err) == (2, True)


def test_with_detailed_exit_code_a_missing_credential_exits_1(
    no_aws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run(["endpoint", "plan", "staging", "--detailed-exit-code"], capsys)
    assert (code, "no AWS credentials found" in err) == (1, True)
