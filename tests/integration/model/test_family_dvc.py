"""A tenant's weights on a fresh clone: only the DVC pointer is there, and giving the tenant to
any command fetches its weights through the real dvc into the tenant's own folder first."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mmetools.core.errors import DvcError
from mmetools.model.dvc import dvc_executable
from mmetools.model.family import tenant_folder
from mmetools.model.folder import resolve_model_args
from mmetools.model.scaffold import scaffold_model
from support.model.dvc_support import copy_repository

pytestmark = pytest.mark.integration

WEIGHTS = "fam_inferencer/1/model.onnx"


def test_a_tenants_missing_weights_are_pulled_into_its_own_folder(tmp_path: Path) -> None:
    repo = copy_repository(tmp_path / "repo")
    (repo / "mmetools.toml").write_text("")
    family = scaffold_model("fam", "onnx", repo / "models", family=True)
    tenant = family / "tenants" / "acme"
    (tenant / "fam_inferencer/1").mkdir(parents=True)
    (tenant / "model_version.txt").write_text("1\n")
    (tenant / WEIGHTS).write_bytes(b"the weights of acme")
    relative = f"models/fam/tenants/acme/{WEIGHTS}"
    for argv in (["add", relative], ["push", f"{relative}.dvc"]):
        subprocess.run([dvc_executable(), *argv], cwd=repo, check=True, capture_output=True)
    (tenant / WEIGHTS).unlink()  # a fresh clone: the pointer only

    [folder] = resolve_model_args([family])[0]
    assert (tenant / WEIGHTS).read_bytes() == b"the weights of acme"
    assert (folder.path / WEIGHTS).read_bytes() == b"the weights of acme"
    assert folder.path == repo / "build/tenants/fam-acme"

    # Weights edited locally without `dvc add` are refused, naming the tenant's file.
    (tenant / WEIGHTS).write_bytes(b"edited by hand")
    with pytest.raises(DvcError) as error:
        tenant_folder(family, "acme")
    assert str(error.value).startswith(f"models/fam/tenants/acme/{WEIGHTS}: differs from its DVC")
    assert "(model fam-acme)" in str(error.value)
