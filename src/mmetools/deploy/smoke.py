"""Smoke tests and keep-warm calls of models on a deployed endpoint, through ``sagemaker-runtime``.

Each TargetModel gets its model folder's fixture cases as ``invoke_endpoint`` requests, built and
compared exactly as ``mmetools test --artifact`` does (request_body, output_arrays,
compare_case). The first call's latency is the cold one (download and load on the instance,
ModelNotReadyException retries included); the others are warm. ``warm`` sends one case per model
(the keep-warm call) and still checks its answer.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmetools.core.errors import AwsSetupError, MmetoolsError
from mmetools.core.settings import Settings
from mmetools.deploy.aws import aws_failure
from mmetools.model.cases import EnsembleSignature, FixtureCase, compare_case, load_fixtures
from mmetools.model.folder import (
    ARTIFACT_SUFFIX,
    VERSION_FILE,
    artifact_file_name,
    model_folder,
    parse_artifact_name,
)
from mmetools.testing.artifact_test import BINARY_CONTENT_TYPE, request_body
from mmetools.testing.triton.client import output_arrays

logger = logging.getLogger(__name__)

NOT_READY = "ModelNotReadyException"  # the model downloads or loads: wait and retry (AWS docs)


@dataclass(frozen=True)
class SmokeOptions:
    warm_only: bool = False
    load_wait_seconds: float = 600.0  # how long a model may stay not ready on its first call
    retry_seconds: float = 2.0


@dataclass(frozen=True)
class CaseCheck:
    fixture: str  # the fixture file, repo-relative
    passed: bool
    message: str
    seconds: float


@dataclass(frozen=True)
class ModelSmoke:
    target_model: str
    model: str
    cases: tuple[CaseCheck, ...]
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.cases) and all(c.passed for c in self.cases)

    @property
    def cold_ms(self) -> float | None:
        return self.cases[0].seconds * 1000 if self.cases else None

    @property
    def warm_ms(self) -> float | None:
        """Median of the calls after the first (None when there was only one)."""
        rest = [c.seconds * 1000 for c in self.cases[1:]]
        return statistics.median(rest) if rest else None

    def failures(self) -> list[str]:
        if self.error is not None:
            return [f"{self.target_model}: {self.error}"]
        return [
            f"{self.target_model}: fixture {c.fixture}: {c.message}"
            for c in self.cases
            if not c.passed
        ]


def model_cases(root: Path, target_model: str) -> tuple[str, list[FixtureCase], list[str]]:
    """(model name, fixture cases, output names) of ``models/<name>`` for a TargetModel named
    ``[folder/]<name>_<version>.tar.gz``."""
    ref = parse_artifact_name(Path(target_model))
    model = model_folder(root / "models" / ref.name)
    signature = EnsembleSignature.from_config(model.ensemble().config)
    return ref.name, load_fixtures(model), list(signature.outputs)


def _invoke(
    runtime: Any, endpoint: str, target_model: str, body: bytes, content_type: str,
    options: SmokeOptions,
) -> dict[str, Any]:  # fmt: skip
    from botocore.exceptions import ClientError

    deadline = time.monotonic() + options.load_wait_seconds
    while True:
        try:
            return dict(
                runtime.invoke_endpoint(
                    EndpointName=endpoint, TargetModel=target_model, Body=body,
                    ContentType=content_type,
                )
            )  # fmt: skip
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code != NOT_READY or time.monotonic() > deadline:
                raise
            logger.info("%s not ready yet on %s: retrying", target_model, endpoint)
            time.sleep(options.retry_seconds)


def _outputs(answer: dict[str, Any], names: Sequence[str], target_model: str) -> dict[str, Any]:
    import tritonclient.http as httpclient

    content_type = str(answer.get("ContentType", ""))
    length = None
    if content_type.startswith(BINARY_CONTENT_TYPE):
        length = int(content_type[len(BINARY_CONTENT_TYPE) :])
    result = httpclient.InferenceServerClient.parse_response_body(
        answer["Body"].read(), header_length=length
    )
    return output_arrays(result, names, target_model)


def smoke_model(
    runtime: Any, endpoint: str, target_model: str, root: Path, options: SmokeOptions
) -> ModelSmoke:
    """Every fixture case of the model (the first one only with ``warm_only``), in order."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        name, cases, outputs = model_cases(root, target_model)
    except MmetoolsError as e:
        return ModelSmoke(target_model, target_model, (), f"no fixtures to send: {e}")
    if not cases:
        return ModelSmoke(target_model, name, (), f"models/{name} has no fixture cases")
    checks: list[CaseCheck] = []
    for case in cases[:1] if options.warm_only else cases:
        fixture = _shown(case.path, root)
        names = [e.name for e in case.expected] or outputs
        body, content_type = request_body(case, names)
        begin = time.perf_counter()
        try:
            answer = _invoke(runtime, endpoint, target_model, body, content_type, options)
            seconds = time.perf_counter() - begin
            result = compare_case(case, _outputs(answer, names, target_model))
        except (BotoCoreError, ClientError) as e:
            failure = aws_failure(f"invoke_endpoint {endpoint} ({target_model})", e)
            if isinstance(failure, AwsSetupError):
                raise failure from e  # every other call would fail the same way
            checks.append(CaseCheck(fixture, False, f"invoke failed: {e}", 0.0))
            continue
        except (MmetoolsError, ValueError) as e:
            checks.append(CaseCheck(fixture, False, f"invoke failed: {e}", 0.0))
            continue
        messages = [c.message for c in result.comparisons if not c.passed]
        checks.append(CaseCheck(fixture, result.passed, "; ".join(messages), seconds))
    return ModelSmoke(target_model, name, tuple(checks))


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name


def smoke_endpoint(
    runtime: Any,
    endpoint: str,
    target_models: Sequence[str],
    root: Path,
    options: SmokeOptions,
    progress: Callable[[str], None] = lambda line: None,
) -> list[ModelSmoke]:
    results = []
    for index, target_model in enumerate(target_models, 1):
        progress(f"{endpoint}: {target_model} ({index}/{len(target_models)})")
        results.append(smoke_model(runtime, endpoint, target_model, root, options))
    return results


def target_models(
    settings: Settings, stage: str, given: Sequence[str], branch: str | None
) -> list[str]:
    """The TargetModels (paths under the stage's prefix) to call: ``name_version.tar.gz`` (or a
    path under the prefix) as given, a bare model name at its folder's current version, every
    model folder when none is given. Staging's are under the branch's folder when publish
    namespaces staging by branch."""
    from mmetools.core.errors import UsageError
    from mmetools.release.publish.branches import branch_slug

    models = settings.root / "models"
    if not given and not models.is_dir():
        raise UsageError(f"{models}: no such folder; name the TargetModels to smoke")
    names = list(given) or sorted(p.name for p in models.iterdir() if (p / VERSION_FILE).is_file())
    folder = ""
    if stage == "staging" and settings.publish.namespace_staging_by_branch:
        if branch is not None:
            folder = branch_slug(branch) + "/"
        elif not all("/" in name for name in names):
            raise UsageError(
                "staging is namespaced by branch (publish.namespace_staging_by_branch): give "
                "--branch, or TargetModels as <branch-folder>/<name>_<version>.tar.gz"
            )
    resolved = []
    for name in names:
        if name.endswith(ARTIFACT_SUFFIX):
            resolved.append(name if "/" in name else folder + name)
            continue
        model = model_folder(settings.root / "models" / name)
        resolved.append(folder + artifact_file_name(model.name, model.version()))
    return resolved
