from __future__ import annotations

import pytest
from pants.backend.python.target_types import PythonSourcesGeneratorTarget
from pants.core.goals.tailor import AllOwnedSources, PutativeTarget, PutativeTargets
from pants.testutil.rule_runner import QueryRule, RuleRunner

from mmetools_pants import tailor
from mmetools_pants.tailor import PutativeTritonModelTargetsRequest, model_dirs
from mmetools_pants.target_types import TritonModelTarget


@pytest.fixture
def rule_runner() -> RuleRunner:
    return RuleRunner(
        rules=[
            *tailor.rules(),
            QueryRule(PutativeTargets, (PutativeTritonModelTargetsRequest, AllOwnedSources)),
        ],
        target_types=[TritonModelTarget, PythonSourcesGeneratorTarget],
    )


def test_model_dirs_are_direct_children_of_models() -> None:
    files = (
        "models/a/model_version.txt",
        "models/a/x/model_version.txt",
        "other/model_version.txt",
    )
    assert model_dirs(files) == ["models/a"]


def test_a_new_model_folder_gets_a_triton_model_and_its_python(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            "models/new_one/model_version.txt": "1\n",
            "models/new_one/new_one_preprocessing/1/model.py": "",
            "models/new_one/train.py": "",
            "models/old/model_version.txt": "1\n",
        }
    )
    putative = rule_runner.request(
        PutativeTargets,
        [
            PutativeTritonModelTargetsRequest(("models", "models/new_one", "models/old")),
            AllOwnedSources(["models/old/model_version.txt"]),
        ],
    )
    assert putative == PutativeTargets(
        [
            PutativeTarget.for_target_type(
                TritonModelTarget,
                path="models/new_one",
                name="new_one",
                triggering_sources=["model_version.txt"],
            ),
            PutativeTarget.for_target_type(
                PythonSourcesGeneratorTarget,
                path="models/new_one",
                name="python",
                triggering_sources=["new_one_preprocessing/1/model.py", "train.py"],
                kwargs={"sources": ("**/*.py",)},
            ),
        ]
    )
