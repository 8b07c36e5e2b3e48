"""RuleRunner tests of `triton_model_family`: one generated `triton_model` per tenant, owning the
family's shared files and its own folder, so that a changed file selects exactly its tenants."""

from __future__ import annotations

import pytest
from pants.engine.addresses import Address
from pants.engine.internals.graph import Owners, OwnersRequest
from pants.engine.target import SourcesPaths, SourcesPathsRequest
from pants.testutil.rule_runner import QueryRule, RuleRunner

from mmetools_pants import family
from mmetools_pants.inputs import TritonModelFieldSet
from mmetools_pants.target_types import (
    TritonModelFamilyTarget,
    TritonModelSourcesField,
    TritonModelTarget,
)

TENANTS = ("acme", "bravo", "charlie")


@pytest.fixture
def rule_runner() -> RuleRunner:
    runner = RuleRunner(
        rules=[
            *family.rules(),
            QueryRule(Owners, (OwnersRequest,)),
            QueryRule(SourcesPaths, (SourcesPathsRequest,)),
        ],
        target_types=[TritonModelTarget, TritonModelFamilyTarget],
    )
    files = {
        "models/fam/BUILD": 'triton_model_family(name="fam")\n',
        "models/fam/requirements.txt": "numpy\n",
        "models/fam/fam_pipeline/config.pbtxt": 'platform: "ensemble"\n',
        "models/fam/fam_preprocessing/1/model.py": "# shared\n",
        "models/fam/fam_preprocessing/python_env.tar.gz": "a build output\n",
        "models/fam/tenants/README.md": "tenants\n",
        "models/fam/tenants/incomplete/notes.txt": "no version: no tenant yet\n",
        "models/solo/BUILD": 'triton_model(name="solo")\n',
        "models/solo/model_version.txt": "1\n",
    }
    for tenant in TENANTS:
        files[f"models/fam/tenants/{tenant}/model_version.txt"] = "1\n"
        files[f"models/fam/tenants/{tenant}/fam_inferencer/1/model.onnx.dvc"] = f"md5: {tenant}\n"
    runner.write_files(files)
    return runner


def _tenant(name: str) -> Address:
    return Address("models/fam", target_name="fam", generated_name=name)


def _owners(rule_runner: RuleRunner, *paths: str) -> set[Address]:
    return set(rule_runner.request(Owners, [OwnersRequest(paths)]))


def test_one_target_per_tenant_with_a_version(rule_runner: RuleRunner) -> None:
    for tenant in TENANTS:
        target = rule_runner.get_target(_tenant(tenant))
        assert isinstance(target, TritonModelTarget)
        field_set = TritonModelFieldSet.create(target)
        assert field_set.model_dir == f"models/fam/tenants/{tenant}"
        assert field_set.model_name == f"fam-{tenant}"
    with pytest.raises(Exception):
        rule_runner.get_target(_tenant("incomplete"))
    solo = TritonModelFieldSet.create(rule_runner.get_target(Address("models/solo")))
    assert (solo.model_dir, solo.model_name) == ("models/solo", "solo")


def test_a_tenants_sources_are_the_shared_files_and_its_own(rule_runner: RuleRunner) -> None:
    target = rule_runner.get_target(_tenant("bravo"))
    paths = rule_runner.request(
        SourcesPaths, [SourcesPathsRequest(target[TritonModelSourcesField])]
    )
    assert set(paths.files) == {
        "models/fam/requirements.txt",
        "models/fam/fam_pipeline/config.pbtxt",
        "models/fam/fam_preprocessing/1/model.py",
        "models/fam/tenants/bravo/model_version.txt",
        "models/fam/tenants/bravo/fam_inferencer/1/model.onnx.dvc",
    }  # no other tenant's files, no packed env, no BUILD


def test_a_tenants_file_selects_only_it_and_a_shared_file_every_tenant(
    rule_runner: RuleRunner,
) -> None:
    assert _owners(rule_runner, "models/fam/tenants/bravo/fam_inferencer/1/model.onnx.dvc") == {
        _tenant("bravo")
    }
    assert _owners(rule_runner, "models/fam/fam_preprocessing/1/model.py") == {
        _tenant(t) for t in TENANTS
    }
    assert _owners(rule_runner, "models/solo/model_version.txt") == {Address("models/solo")}
