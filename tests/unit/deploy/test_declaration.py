"""[endpoints.<stage>] declarations: what is derived (image, prefix, names) and every refusal, each
naming the file, the stage and the key."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mmetools.core.errors import ConfigError, DeployError
from mmetools.deploy.apply import check_image_target
from mmetools.deploy.declaration import load_declaration
from mmetools.deploy.desired import desired_state
from mmetools.deploy.images import REGISTRIES
from support.deploy.declarations import PRODUCTION, STAGING, write_repo


def test_staging_declaration_derives_image_prefix_and_autoscaling(tmp_path: Path) -> None:
    declaration = load_declaration(write_repo(tmp_path, STAGING), "staging", "eu-west-1")
    assert declaration.image.uri == (
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-tritonserver:24.12-py3"
    )
    assert "sagemaker-tritonserver.json" in declaration.image.source
    assert declaration.model_data_url == "s3://mme-endpoints/staging/"
    assert declaration.environment == (("SAGEMAKER_TRITON_SHM_DEFAULT_BYTE_SIZE", "16777216"),)
    assert declaration.autoscaling is not None
    assert declaration.autoscaling.invocations_per_instance == 300
    assert declaration.model_cache == "Enabled" and declaration.variant_name == "AllTraffic"


def test_china_regions_get_their_own_registry_and_domain(tmp_path: Path) -> None:
    declaration = load_declaration(write_repo(tmp_path, STAGING), "staging", "cn-north-1")
    assert declaration.image.uri.startswith(
        f"{REGISTRIES['cn-north-1']}.dkr.ecr.cn-north-1.amazonaws.com.cn/"
    )


def test_content_hashed_names_are_stable_and_follow_the_content(tmp_path: Path) -> None:
    first = desired_state(load_declaration(write_repo(tmp_path, STAGING), "staging", "us-east-1"))
    again = desired_state(load_declaration(write_repo(tmp_path, STAGING), "staging", "us-east-1"))
    assert (first.model_name, first.config_name) == (again.model_name, again.config_name)
    assert first.model_name.startswith("acme-staging-m-") and len(first.model_name) <= 63
    bigger = STAGING.replace("ml.g4dn.xlarge", "ml.g5.2xlarge")
    changed = desired_state(load_declaration(write_repo(tmp_path, bigger), "staging", "us-east-1"))
    assert changed.model_name == first.model_name  # the model does not depend on the instance
    assert changed.config_name != first.config_name
    other_env = STAGING.replace('"16777216"', '"33554432"')
    env = desired_state(load_declaration(write_repo(tmp_path, other_env), "staging", "us-east-1"))
    assert env.model_name != first.model_name and env.config_name != first.config_name
    assert env.model_request["PrimaryContainer"]["Mode"] == "MultiModel"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(
            ("", 's3_prefix = "s3://mme-endpoints/other"\n'),
            "s3_prefix = 's3://mme-endpoints/other' is not the staging publish destination",
            id="s3_prefix_not_the_publish_destination",
        ),
        pytest.param(('role_arn = "arn', 'role_arnx = "arn'), "has no key 'role_arnx'",
                     id="unknown_key"),
        pytest.param(("initial_instance_count = 1", 'initial_instance_count = "1"'),
                     "initial_instance_count must be an integer", id="count_not_a_number"),
        pytest.param(("max_instances = 2", "max_instances = 0"), "max_instances = 0: must be 1",
                     id="max_zero"),
        pytest.param(("min_instances = 1", "min_instances = 2"),
                     "min_instances 2 <= initial_instance_count 1", id="min_over_initial"),
        pytest.param(("SAGEMAKER_TRITON_SHM", "OMP_NUM_THREADS = \"1\"\nSAGEMAKER_TRITON_SHM"),
                     "environment.OMP_NUM_THREADS: only SAGEMAKER_TRITON_*", id="foreign_env"),
        pytest.param(("invocations_per_instance = 300", 'invocations_per_instance = "lots"'),
                     "a number (invocations per minute per instance) or \"loadtest\"",
                     id="target_neither_number_nor_loadtest"),
        pytest.param(('name = "acme-staging"', 'name = "acme_staging"'),
                     "name = 'acme_staging': letters, digits and inner hyphens", id="bad_name"),
        pytest.param(("ml.g4dn.xlarge", "g4dn.xlarge"), "instance_type = 'g4dn.xlarge'",
                     id="instance_type_without_ml"),
        pytest.param(("", 'region = "eu-west-1"\n'),
                     "region = 'eu-west-1' but the AWS environment is in 'us-east-1'",
                     id="region_guard"),
        pytest.param(("", 'image = "nvcr.io/nvidia/tritonserver:latest"\n'),
                     "not a tritonserver/sagemaker-tritonserver YY.MM-py3 image", id="image_untagged"),
        pytest.param(("max_instances = 2\n", ""), "autoscaling needs max_instances as well",
                     id="autoscaling_half_declared"),
    ],
)  # fmt: skip
def test_a_bad_declaration_is_refused_naming_file_stage_and_key(
    tmp_path: Path, edit: tuple[str, str], expected: str
) -> None:
    old, new = edit
    text = (
        STAGING.replace(old, new, 1)
        if old
        else STAGING.replace("[endpoints.staging]\n", "[endpoints.staging]\n" + new, 1)
    )
    settings = write_repo(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_declaration(settings, "staging", "us-east-1")
    assert str(tmp_path / "mmetools.toml") in str(raised.value)
    assert "[endpoints.staging]" in str(raised.value)
    assert expected in str(raised.value)


def test_no_region_in_the_environment_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no AWS region in the environment"):
        load_declaration(write_repo(tmp_path, STAGING), "staging", None)


def test_a_stage_published_to_a_folder_cannot_have_an_endpoint(tmp_path: Path) -> None:
    (tmp_path / "mmetools.toml").write_text(STAGING)  # file: destinations by default
    from mmetools.core.settings import load_settings

    with pytest.raises(ConfigError, match="publish destination .* is not in S3"):
        load_declaration(load_settings(tmp_path, {}), "staging", "us-east-1")


def test_undeclared_and_unknown_stages(tmp_path: Path) -> None:
    settings = write_repo(tmp_path, STAGING)
    with pytest.raises(ConfigError, match=r"no \[endpoints.production\] is declared"):
        load_declaration(settings, "production", "us-east-1")
    bad = write_repo(tmp_path, STAGING, "[endpoints.qa]\nname = 'x'\n")
    with pytest.raises(ConfigError, match=r"\[endpoints.qa\] is not a stage"):
        load_declaration(bad, "staging", "us-east-1")


def _loadtest(folder: Path, name: str, endpoint: str, value: int | None, age: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.loadtest.json"
    path.write_text(json.dumps({"target": f"endpoint {endpoint}",
                                "suggestion": {"invocations_per_instance": value}}))  # fmt: skip
    os.utime(path, (1_700_000_000 + age, 1_700_000_000 + age))


def test_autoscaling_target_from_the_newest_loadtest_of_that_endpoint(tmp_path: Path) -> None:
    text = STAGING.replace(
        "invocations_per_instance = 300", 'invocations_per_instance = "loadtest"'
    )
    reports = tmp_path / "dist" / "loadtest"
    _loadtest(reports, "a", "acme-staging", 120, age=1)
    _loadtest(reports, "b", "acme-staging", 480, age=3)  # the newest of this endpoint
    _loadtest(reports, "c", "acme-production", 9999, age=5)  # another endpoint's
    _loadtest(reports, "d", "acme-staging", None, age=9)  # no step met the budget
    declaration = load_declaration(write_repo(tmp_path, text), "staging", "us-east-1")
    assert declaration.autoscaling is not None
    assert declaration.autoscaling.invocations_per_instance == 480
    assert declaration.autoscaling.source == "loadtest report b.loadtest.json"


def test_autoscaling_from_loadtest_without_a_report_is_refused(tmp_path: Path) -> None:
    text = STAGING.replace(
        "invocations_per_instance = 300", 'invocations_per_instance = "loadtest"'
    )
    _loadtest(tmp_path / "dist" / "loadtest", "c", "acme-production", 9999, age=5)
    with pytest.raises(
        ConfigError, match="no report of `mmetools loadtest --endpoint acme-staging`"
    ):
        load_declaration(write_repo(tmp_path, text), "staging", "us-east-1")


def test_an_image_of_another_release_than_the_artifacts_is_refused(tmp_path: Path) -> None:
    text = PRODUCTION.replace(
        'model_cache = "Disabled"',
        'model_cache = "Disabled"\nimage = "763104351884.dkr.ecr.us-east-1.amazonaws.com/'
        'sagemaker-tritonserver:24.09-py3"',
    )
    declaration = load_declaration(write_repo(tmp_path, text), "production", "us-east-1")
    check_image_target(declaration, ("2.50.0", "evidence"))  # 24.09 is Triton 2.50.0: accepted
    with pytest.raises(DeployError, match="serves Triton 2.50.0, but the production artifacts "
                       r"were built and tested for Triton 2.53.0 \(evidence of s3://b/m\)"):  # fmt: skip
        check_image_target(declaration, ("2.53.0", "evidence of s3://b/m"))


def test_production_may_take_its_target_from_staging_loadtests(tmp_path: Path) -> None:
    text = PRODUCTION.replace(
        "invocations_per_instance = 900",
        'invocations_per_instance = "loadtest"\nloadtest_endpoint = "acme-staging"',
    )
    _loadtest(tmp_path / "dist" / "loadtest", "a", "acme-staging", 700, age=1)
    declaration = load_declaration(write_repo(tmp_path, text), "production", "us-east-1")
    assert declaration.autoscaling is not None
    assert declaration.autoscaling.invocations_per_instance == 700


def test_an_endpoints_entry_that_is_no_table_is_refused_when_settings_load(tmp_path: Path) -> None:
    (tmp_path / "mmetools.toml").write_text('[endpoints]\nstaging = "acme-staging"\n')
    from mmetools.core.settings import load_settings

    with pytest.raises(ConfigError, match=r"\[endpoints\] staging must be a table"):
        load_settings(tmp_path, {})
