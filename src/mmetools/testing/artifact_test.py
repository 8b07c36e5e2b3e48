"""``mmetools test --artifact``: a tarball tested the way a SageMaker multi-model endpoint serves it.

Triton runs with its SageMaker frontend as in the MME container (``SAGEMAKER_MULTI_MODEL=true``,
``--allow-sagemaker``, explicit model control, ``--model-namespacing``, an empty repository).
For each artifact, as SageMaker does: unpack it into a fresh ``<work>/<id>/model`` folder,
``POST /models`` with the ``X-Amzn-SageMaker-Target-Model`` header, ``POST /models/<id>/invoke``
for each fixture case, ``DELETE /models/<id>``. See docs/mme-contract.md.

The tarball holds no tests: the cases come from ``models/<name>/tests/fixtures`` of the model the
artifact's name names (``<name>_<version>.tar.gz``), or from ``--fixtures DIR``; they are checked
against the ensemble found *in the tarball*. A tarball with members that could escape the
extraction folder (absolute paths, ``..``, links, devices) is refused before anything is written.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tarfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from mmetools.build.audit import audit_artifact, require_audit
from mmetools.core.errors import ArtifactError, FixtureError, MmetoolsError, TritonError
from mmetools.model.cases import (
    FIXTURE_SUFFIX,
    EnsembleSignature,
    FixtureCase,
    load_case,
)
from mmetools.testing.source_test import (
    ModelReport,
    ReportCallback,
    RunResult,
    run_cases,
    run_groups,
    with_source_paths,
)
from mmetools.model.config import CONFIG_FILE, is_ensemble, load_config, load_repository
from mmetools.model.folder import (
    EXECUTION_ENV_KEY,
    FIXTURES_DIR,
    ModelRef,
    own_folder,
    parse_artifact_name,
    requirements_of,
)
from mmetools.core.interpreters import find_python
from mmetools.testing.image_python import give_image_python, python_steps_in, steps_using_an_env
from mmetools.testing.serving_env import ServingEnv, ensure_image_packages, ensure_serving_env
from mmetools.core.settings import Settings
from mmetools.testing.triton.client import output_arrays
from mmetools.core.tree import remove_tree
from mmetools.testing.triton import (
    BUNDLED,
    SAGEMAKER,
    STUB_NAME,
    LoadResult,
    TargetPython,
    TritonServer,
    find_bundled_triton,
    resolve_mode,
)

logger = logging.getLogger(__name__)

TARGET_MODEL_HEADER = "X-Amzn-SageMaker-Target-Model"
BINARY_CONTENT_TYPE = "application/vnd.sagemaker-triton.binary+json;json-header-size="
LOAD_TIMEOUT = 600.0


MiB = 1024 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def shown_name(name: str) -> str:
    """A member name fit for a message: control characters (NUL, newlines) escaped."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", name)


def member_problem(member: tarfile.TarInfo) -> str | None:
    """Why unpacking ``member`` is unsafe, or None."""
    name = member.name
    if _CONTROL.search(name) or not name.strip("/"):
        return "name is empty or holds control characters (NUL, newline, ...)"
    if name.startswith("/") or PurePosixPath(name).is_absolute():
        return "absolute path"
    if ".." in PurePosixPath(name).parts:
        return "path leaves the extraction folder (..)"
    if member.issym():
        return f"symbolic link to {member.linkname}"
    if member.islnk():
        return f"hard link to {member.linkname}"
    if member.ischr() or member.isblk() or member.isfifo():
        return "device or pipe"
    if not (member.isfile() or member.isdir()):
        return "not a regular file or folder"
    if member.isfile() and (name.endswith("/") or name.rsplit("/", 1)[-1] in (".", "")):
        # 'a/.' or '.' would be written over a folder (IsADirectoryError mid-extraction)
        return "a file whose name ends like a folder's ('/' or '/.')"
    return None


def check_artifact(
    path: Path, max_unpacked: int | None = None, free_at: Path | None = None
) -> list[tarfile.TarInfo]:
    """Read the tarball's index and refuse it, naming every unsafe member, before extraction.

    Besides members that could escape (see member_problem): a name given twice or a file where
    another member needs a folder, and a total size above ``max_unpacked`` bytes or the free
    space at ``free_at``. Reading the index streams the gzip once without writing anything.
    """
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = tar.getmembers()
    except FileNotFoundError as e:
        raise ArtifactError(f"{path}: no such file") from e
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        raise ArtifactError(f"{path}: not a readable .tar.gz: {e}") from e
    problems = [
        f"'{shown_name(m.name)}': {p}" for m in members if (p := member_problem(m)) is not None
    ]
    problems += _layout_problems(members)
    if problems:
        raise ArtifactError(
            f"{path}: refusing to unpack: unsafe member{'s' if len(problems) > 1 else ''} "
            + "; ".join(problems)
        )
    if not members:
        raise ArtifactError(f"{path}: the tarball is empty")
    total = sum(m.size for m in members if m.isfile())
    if max_unpacked is not None and total > max_unpacked:
        raise ArtifactError(
            f"{path}: refusing to unpack: it expands to {total // MiB} MiB, more than the "
            f"{max_unpacked // MiB} MiB allowed ([triton] max_unpacked_mb in mmetools.toml)"
        )
    if free_at is not None:
        free = shutil.disk_usage(free_at).free
        if total > free:
            raise ArtifactError(
                f"{path}: refusing to unpack: it expands to {total // MiB} MiB, more than the "
                f"{free // MiB} MiB free at {free_at}"
            )
    return members


def _layout_problems(members: Sequence[tarfile.TarInfo]) -> list[str]:
    """Members that would land on each other: a name twice, or a file over a needed folder."""
    problems: list[str] = []
    kinds: dict[str, bool] = {}  # normalised name -> is a folder
    for member in members:
        name = PurePosixPath(member.name).as_posix().strip("/")
        if name in kinds:
            problems.append(f"'{shown_name(member.name)}': given twice")
        kinds[name] = member.isdir()
    for name in kinds:
        for parent in PurePosixPath(name).parents:
            if kinds.get(parent.as_posix()) is False:
                problems.append(
                    f"'{shown_name(parent.as_posix())}': a file, but '{shown_name(name)}' needs "
                    "it to be a folder"
                )
                break
    return problems


def unpack_artifact(path: Path, destination: Path, max_unpacked: int | None = None) -> None:
    """Check, then unpack into ``destination`` (created; must not exist yet)."""
    # Free space where the folder will be: its nearest existing parent (nothing is created yet).
    existing = next(folder for folder in destination.parents if folder.exists())
    check_artifact(path, max_unpacked, free_at=existing)
    destination.mkdir(parents=True)
    with tarfile.open(path, "r:gz") as tar:
        # The 'data' filter repeats the checks above inside tarfile itself.
        tar.extractall(destination, filter="data")


def artifact_ensemble(model_dir: Path, artifact: Path) -> EnsembleSignature:
    """The signature of the one ensemble at the tarball's root (as SageMaker's Triton picks it)."""
    models, errors = load_repository(model_dir)
    if errors:
        raise ArtifactError(f"{artifact}: " + "\n".join(errors))
    ensembles = [m for m in models.values() if is_ensemble(m.config)]
    if len(ensembles) != 1:
        found = ", ".join(m.name for m in ensembles) or "none"
        roots = ", ".join(sorted(p.name for p in model_dir.iterdir())) or "nothing"
        raise ArtifactError(
            f"{artifact}: needs exactly one ensemble folder at the tarball's root, found {found} "
            f"(root holds: {roots})"
        )
    return EnsembleSignature.from_config(ensembles[0].config)


def load_artifact_fixtures(
    fixtures_dir: Path, signature: EnsembleSignature, model_name: str
) -> list[FixtureCase]:
    paths = sorted(p for p in fixtures_dir.glob(f"*{FIXTURE_SUFFIX}") if p.is_file())
    if not paths:
        raise FixtureError(f"{fixtures_dir}: no fixture cases (*.json) for model '{model_name}'")
    return [load_case(path, signature, model_name) for path in paths]


class MmeClient:
    """The three calls SageMaker makes to Triton's SageMaker frontend."""

    def __init__(self, server: TritonServer) -> None:
        self.server = server

    def load(
        self, model_id: str, model_dir: Path, target_model: str, names: Sequence[str]
    ) -> LoadResult:
        body = json.dumps({"model_name": model_id, "url": str(model_dir)}).encode()
        since = self.server.log_offset()
        begin = time.perf_counter()
        try:
            response = self.server.request(
                "POST",
                "/models",
                body,
                {TARGET_MODEL_HEADER: target_model, "Content-Type": "application/json"},
                timeout=LOAD_TIMEOUT,
            )
        except OSError as e:
            return LoadResult(
                None,
                f"SageMaker load of {target_model}: no answer from Triton "
                f"({self.server.exit_description()}): {e}",
                tuple(self.server.log_excerpt(names, since)),
            )
        if response.status != 200:
            return LoadResult(
                None,
                f"SageMaker load of {target_model} answered HTTP {response.status}: "
                f"{response.error_text().split(chr(10) * 2)[0]}",
                tuple(self.server.log_excerpt([target_model, *names], since)),
            )
        seconds = time.perf_counter() - begin
        logger.info("loaded %s (SageMaker MME) in %.2f s", target_model, seconds)
        return LoadResult(seconds)

    def invoke(
        self,
        model_id: str,
        target_model: str,
        case: FixtureCase,
        output_names: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """One KServe v2 request: plain JSON when every input is JSON text or numbers, else
        SageMaker's binary+json; outputs come back binary. ``output_names`` defaults to the
        case's expected outputs."""
        import tritonclient.http as httpclient

        names = list(output_names) if output_names is not None else [e.name for e in case.expected]
        body, content_type = request_body(case, names)
        try:
            response = self.server.request(
                "POST",
                f"/models/{model_id}/invoke",
                body,
                {TARGET_MODEL_HEADER: target_model, "Content-Type": content_type},
            )
        except OSError as e:
            raise TritonError(f"{target_model}: invoke failed: {e}") from e
        if response.status != 200:
            raise TritonError(
                f"{target_model}: invoke answered HTTP {response.status}: {response.error_text()}"
            )
        header_length = None
        received_type = {k.lower(): v for k, v in response.headers.items()}.get("content-type", "")
        if received_type.startswith(BINARY_CONTENT_TYPE):
            header_length = int(received_type[len(BINARY_CONTENT_TYPE) :])
        try:
            result = httpclient.InferenceServerClient.parse_response_body(
                response.body, header_length=header_length
            )
        except Exception as e:  # a malformed answer is the server's failure, reported per case
            raise TritonError(f"{target_model}: unreadable invoke response: {e}") from e
        return output_arrays(result, names, target_model)

    def unload(self, model_id: str, target_model: str) -> None:
        if not self.server.alive():
            return
        try:
            response = self.server.request(
                "DELETE", f"/models/{model_id}", headers={TARGET_MODEL_HEADER: target_model}
            )
        except OSError as e:
            logger.warning("SageMaker unload of %s failed: %s", target_model, e)
            return
        if response.status != 200:
            logger.warning("SageMaker unload of %s: HTTP %s", target_model, response.status)


def request_body(case: FixtureCase, output_names: Sequence[str]) -> tuple[bytes, str]:
    """The body and Content-Type of one invoke request for ``case``, as SageMaker forwards it:
    plain JSON when every input is JSON text or numbers, else SageMaker's binary+json."""
    import tritonclient.http as httpclient

    binary = any(t.datatype == "BYTES" and not _all_utf8(t.array) for t in case.inputs)
    inputs = []
    for tensor in case.inputs:
        infer_input = httpclient.InferInput(tensor.name, list(tensor.shape), tensor.datatype)
        infer_input.set_data_from_numpy(tensor.array, binary_data=binary)
        inputs.append(infer_input)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=True) for name in output_names]
    body, json_size = httpclient.InferenceServerClient.generate_request_body(inputs, outputs)
    content_type = "application/json" if json_size is None else f"{BINARY_CONTENT_TYPE}{json_size}"
    return bytes(body), content_type


def _all_utf8(array: Any) -> bool:
    for value in np.asarray(array).reshape(-1):
        try:
            (value if isinstance(value, bytes) else str(value).encode()).decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


@dataclass(frozen=True)
class _Artifact:
    path: Path
    ref: ModelRef
    fixtures_dir: Path
    env: ServingEnv
    env_steps: tuple[str, ...] = ()  # steps that ship a packed env (served as by the target)


def _prepare(path: Path, settings: Settings, fixtures_dir: Path | None) -> _Artifact | ModelReport:
    ref = parse_artifact_name(path)
    try:
        fixtures = fixtures_dir or own_folder(ref.name, settings.root) / FIXTURES_DIR
        if not fixtures.is_dir():
            raise FixtureError(
                f"{path}: no fixtures for model '{ref.name}' at {fixtures} "
                "(the tarball carries none; pass --fixtures DIR)"
            )
        check_artifact(path, settings.triton.max_unpacked_mb * MiB)
        audit = audit_artifact(path, settings.target)
        require_audit(audit, "test --artifact")
        requirements = requirements_of(ref.name, settings.root)
        env = ensure_serving_env(requirements, settings.cache_dir)
    except MmetoolsError as e:
        return ModelReport(ref.name, str(path), error=str(e))
    # Served as by the target: the packed envs, and the Python steps (with no env they run in the
    # image's Python, emulated with the image's packages only).
    served = sorted({*(e.step for e in audit.envs), *python_steps_in(path)})
    return _Artifact(path, ref, fixtures, env, tuple(served))


def target_python(settings: Settings) -> TargetPython:
    """The target image's Python as emulated here: a local one of its minor version."""
    target = settings.target
    local = find_python(target.python_version)
    packages = ensure_image_packages(target, settings.cache_dir)
    return TargetPython(local.prefix, target.python_prefix, target.python_version, packages)


def place_target_stub(model_dir: Path, steps: Sequence[str], python_version: str) -> None:
    """Give each env step of the *unpacked copy* the target's stub as its own stub (the python
    backend prefers ``<model>/triton_python_backend_stub``, stub_launcher.cc): the image's stub
    serves the env steps, while the local stand-ins for the native backends keep the local one.
    The artifact's bytes are not touched."""
    stub = find_bundled_triton().stub_for(python_version)
    for step in steps:
        destination = model_dir / step / STUB_NAME
        shutil.copy2(stub, destination)


def packed_env_steps(path: Path, settings: Settings) -> tuple[str, ...]:
    """What of artifact ``path`` the target's Python serves: its packed envs (built for the
    serving target) and its Python steps (with no env they run in the image's Python)."""
    envs = tuple(e.step for e in audit_artifact(path, settings.target).envs)
    return tuple(sorted({*envs, *python_steps_in(path)}))


def emulated_target(settings: Settings, mode: str, env_steps: bool) -> TargetPython | None:
    """The target's Python, when a bundled server is to serve packed envs (built for the target,
    they do not run with this machine's Python); None otherwise."""
    return target_python(settings) if mode == BUNDLED and env_steps else None


def unpack_for_server(
    server: TritonServer, artifact: Path, destination: Path, env_steps: Sequence[str]
) -> None:
    """Unpack ``artifact`` as the server will serve it: when the server emulates the target, the
    Python steps without an env run in the image's Python, and every step with an env (its own
    or the model's one env) gets the target's stub."""
    unpack_artifact(artifact, destination)
    if env_steps:
        serve_as_the_image(server, destination)


def serve_as_the_image(server: TritonServer, model_dir: Path) -> None:
    """When the server emulates the target: the Python steps of the unpacked ``model_dir``
    without an env run in the image's Python (its packages only), and every step with an env
    gets the target's stub. The one preparation `test --artifact` and the local endpoint share."""
    if server.target_python is None:
        return
    # Read before the image's Python is given (that edits configs: no second parse of them).
    with_env = steps_using_an_env(model_dir)
    given = give_image_python(model_dir, server.target_python)
    place_target_stub(model_dir, sorted({*with_env, *given}), server.target_python.version)


def run_artifact_on_server(server: TritonServer, item: _Artifact, repeat: int = 1) -> ModelReport:
    """Unpack, load, invoke every case, unload: one artifact on a SageMaker-frontend server."""
    target_model = item.path.name
    model_id = uuid.uuid4().hex[:16]
    assert server.workdir is not None
    work = server.workdir / model_id
    model_dir = work / "model"
    client = MmeClient(server)
    source = str(item.path)
    try:
        try:
            unpack_for_server(server, item.path, model_dir, item.env_steps)
            signature = artifact_ensemble(model_dir, item.path)
            cases = load_artifact_fixtures(item.fixtures_dir, signature, item.ref.name)
        except MmetoolsError as e:
            return ModelReport(item.ref.name, source, error=str(e))
        names = sorted(p.name for p in model_dir.iterdir() if p.is_dir())
        try:
            report = run_cases(
                server,
                item.ref.name,
                source,
                target_model,
                cases,
                names,
                lambda case: client.invoke(model_id, target_model, case),
                lambda: client.load(model_id, model_dir, target_model, names),
                repeat,
            )
        finally:
            client.unload(model_id, target_model)
        return with_source_paths(report, f"{model_dir}/", f"{target_model}:")
    finally:
        remove_tree(work, ignore_errors=True)


def run_artifacts(
    artifacts: Sequence[Path],
    settings: Settings,
    *,
    fixtures_dir: Path | None = None,
    mode: str | None = None,
    image: str | None = None,
    repeat: int = 1,
    on_report: ReportCallback | None = None,
) -> RunResult:
    """Test each artifact through Triton's SageMaker frontend; reports in the given order."""
    chosen = resolve_mode(settings.triton.mode, mode, image)
    prepared = [_prepare(path, settings, fixtures_dir) for path in artifacts]
    early = [p for p in prepared if isinstance(p, ModelReport)]
    for report in early:
        if on_report is not None:
            on_report(report)
    groups: dict[str, list[_Artifact]] = {}
    for item in prepared:
        if isinstance(item, _Artifact):
            groups.setdefault(item.env.key, []).append(item)

    env_steps = any(isinstance(p, _Artifact) and p.env_steps for p in prepared)
    emulated = emulated_target(settings, chosen, env_steps)

    def make_server(item: _Artifact) -> TritonServer:
        requirements = requirements_of(item.ref.name, settings.root)
        return TritonServer(
            target_python=emulated,
            mode=chosen,
            frontend=SAGEMAKER,
            python_env=item.env,
            cache_dir=settings.cache_dir,
            image=image or settings.triton.image or settings.target_settings.image,
            requirements=requirements if requirements.is_file() else None,
        )

    def fail(item: _Artifact, message: str) -> ModelReport:
        return ModelReport(item.ref.name, str(item.path), error=message)

    reports, starts = run_groups(
        groups, make_server, lambda s, i: run_artifact_on_server(s, i, repeat), fail, on_report
    )
    by_source = {r.source: r for r in [*early, *reports]}
    ordered = tuple(by_source[str(p)] for p in artifacts if str(p) in by_source)
    return RunResult(ordered, tuple(starts))
