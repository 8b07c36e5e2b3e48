"""mmetools.testing.triton: modes and command lines (unit) and the real bundled server (integration)."""

from __future__ import annotations

import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest

from mmetools.testing import triton
from mmetools.core.errors import TritonError, UsageError
from mmetools.testing.serving_env import ServingEnv, current_environment
from mmetools.testing.triton import (
    BUNDLED,
    DOCKER,
    KSERVE,
    NATIVE,
    SAGEMAKER,
    Ports,
    TritonServer,
    assemble_backends,
    bundled_launch,
    docker_launch,
    find_bundled_triton,
    native_launch,
    resolve_mode,
    server_arguments,
)

REPO = Path("/srv/repo")


# -------------------------------------------------------------------------------------------------
# Modes and command lines


def test_resolve_mode_auto_is_native_only_with_tritonserver_on_path() -> None:
    assert resolve_mode("auto", which=lambda name: None) == BUNDLED
    assert resolve_mode("auto", which=lambda name: "/opt/tritonserver/bin/tritonserver") == NATIVE


def test_resolve_mode_option_beats_setting_and_image_means_docker() -> None:
    assert resolve_mode("native", "bundled", which=lambda name: None) == BUNDLED
    assert resolve_mode("auto", image="nvcr.io/nvidia/tritonserver:24.11-py3") == DOCKER
    assert resolve_mode("bundled", "native", image="some/image") == NATIVE


def test_resolve_mode_rejects_unknown_mode() -> None:
    with pytest.raises(UsageError) as error:
        resolve_mode("auto", "gpu")
    assert (
        str(error.value) == "unknown Triton mode 'gpu' (choose from auto, bundled, native, docker)"
    )


def test_server_arguments_kserve_open_only_loopback_http() -> None:
    argv = server_arguments(
        REPO,
        frontend=KSERVE,
        ports=Ports(http=8123),
        backend_directory=Path("/cache/backends"),
        shm_prefix="mmetools_1_1_",
    )
    assert argv == [
        "--model-repository=/srv/repo",
        "--model-control-mode=explicit",
        "--exit-timeout-secs=5",
        "--allow-grpc=false",
        "--allow-metrics=false",
        "--backend-directory=/cache/backends",
        "--backend-config=python,shm-region-prefix-name=mmetools_1_1_",
        "--http-port=8123",
        "--http-address=127.0.0.1",
    ]


def test_server_arguments_sagemaker_as_the_mme_container() -> None:
    argv = server_arguments(
        REPO, frontend=SAGEMAKER, ports=Ports(sagemaker=8080), backend_directory=None
    )
    assert argv == [
        "--model-repository=/srv/repo",
        "--model-control-mode=explicit",
        "--exit-timeout-secs=5",
        "--allow-grpc=false",
        "--allow-metrics=false",
        "--allow-http=false",
        "--allow-sagemaker=true",
        "--sagemaker-port=8080",
        "--model-namespacing=true",
    ]


def test_server_arguments_append_the_options_last_as_serve_appends_additional_args() -> None:
    # The image's serve appends SAGEMAKER_TRITON_ADDITIONAL_ARGS after its own options.
    options = ("--disable-auto-complete-config", "--model-load-thread-count=1")
    argv = server_arguments(
        REPO,
        frontend=SAGEMAKER,
        ports=Ports(sagemaker=8080),
        backend_directory=None,
        options=options,
    )
    assert tuple(argv[-2:]) == options and argv[:-2] == server_arguments(
        REPO, frontend=SAGEMAKER, ports=Ports(sagemaker=8080), backend_directory=None
    )
    launch = bundled_launch(
        find_bundled_triton(),
        Path("/cache/backends"),
        REPO,
        frontend=SAGEMAKER,
        ports=Ports(sagemaker=9000),
        python_env=ServingEnv(Path("/cache/serving-envs/abc"), "3.11", "abc"),
        options=options,
    )
    assert launch.argv[-2:] == options


def test_bundled_launch_puts_serving_env_first_on_path_and_libraries_on_loader_path() -> None:
    bundled = find_bundled_triton()
    env = ServingEnv(Path("/cache/serving-envs/abc"), "3.11", "abc")
    launch = bundled_launch(
        bundled,
        Path("/cache/backends"),
        REPO,
        frontend=SAGEMAKER,
        ports=Ports(sagemaker=9000),
        python_env=env,
        base_env={"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/lib"},
    )
    variables = dict(launch.env)
    assert launch.argv[0] == str(bundled.executable)
    assert variables["PATH"] == "/cache/serving-envs/abc/bin:/usr/bin"
    libraries = variables["LD_LIBRARY_PATH"].split(":")
    assert libraries[0] == str(bundled.libraries) and libraries[-1] == "/opt/lib"
    assert variables["SAGEMAKER_MULTI_MODEL"] == "true"
    assert "onnxruntime" in os.listdir(variables[triton.SITE_PACKAGES_VARIABLE].split(":")[0])


def test_native_launch_uses_the_servers_own_backends() -> None:
    launch = native_launch(
        "/opt/tritonserver/bin/tritonserver",
        REPO,
        frontend=KSERVE,
        ports=Ports(http=8000),
        python_env=None,
        base_env={"PATH": "/usr/bin"},
    )
    assert launch.argv[0] == "/opt/tritonserver/bin/tritonserver"
    assert not any(arg.startswith("--backend-directory") for arg in launch.argv)
    assert dict(launch.env) == {"PATH": "/usr/bin"}


def test_docker_command_line_mocked_docker() -> None:
    launch = docker_launch(
        "nvcr.io/nvidia/tritonserver:24.11-py3",
        Path("/tmp/mmetools-triton-x/repository"),
        frontend=SAGEMAKER,
        ports=Ports(sagemaker=8080),
        mounts=[Path("/home/me/monorepo/models/screen_detector")],
        writable=[Path("/tmp/mmetools-triton-x")],
        container="mmetools-triton-1-x",
        requirements=Path("/home/me/monorepo/models/screen_detector/requirements.txt"),
    )
    assert launch.container == "mmetools-triton-1-x"
    assert list(launch.argv) == [
        "docker", "run", "--rm", "--name", "mmetools-triton-1-x", "--init",
        "--gpus", "all",
        "--shm-size=1g", "--ulimit", "memlock=-1", "--ulimit", "stack=67108864",
        "-p", "127.0.0.1:8080:8080",
        "-v", "/tmp/mmetools-triton-x:/tmp/mmetools-triton-x",
        "-v", "/home/me/monorepo/models/screen_detector:/home/me/monorepo/models/screen_detector:ro",
        "-e", "SAGEMAKER_MULTI_MODEL=true",
        "nvcr.io/nvidia/tritonserver:24.11-py3",
        "sh", "-c",
        "pip install --quiet --no-cache-dir -r "
        "/home/me/monorepo/models/screen_detector/requirements.txt && exec \"$@\"",
        "sh",
        "tritonserver",
        "--model-repository=/tmp/mmetools-triton-x/repository",
        "--model-control-mode=explicit",
        "--exit-timeout-secs=5",
        "--allow-grpc=false",
        "--allow-metrics=false",
        "--allow-http=false",
        "--allow-sagemaker=true",
        "--sagemaker-port=8080",
        "--model-namespacing=true",
    ]  # fmt: skip


def test_docker_command_line_without_gpu_or_requirements_mocked_docker() -> None:
    launch = docker_launch(
        "img",
        REPO,
        frontend=KSERVE,
        ports=Ports(http=8000),
        container="c",
        gpus=False,
    )
    assert "--gpus" not in launch.argv
    assert launch.argv[launch.argv.index("img") + 1] == "tritonserver"
    assert "--http-address=0.0.0.0" in launch.argv  # published on the host's loopback only
    assert launch.argv[launch.argv.index("-p") + 1] == "127.0.0.1:8000:8000"


def test_docker_mode_without_docker_command_is_a_clear_error_mocked_docker(
    monkeypatch: pytest.MonkeyPatch, no_triton_leftovers: Path
) -> None:
    monkeypatch.setenv("PATH", str(no_triton_leftovers))  # no docker here
    server = TritonServer(mode=DOCKER, image="nvcr.io/nvidia/tritonserver:24.11-py3")
    with pytest.raises(TritonError) as error:
        server.start()
    assert str(error.value) == "docker mode needs the `docker` command (and a running engine)"


def test_docker_mode_needs_an_image() -> None:
    with pytest.raises(UsageError, match="docker mode needs an image"):
        TritonServer(mode=DOCKER)


def test_stub_for_a_python_the_wheel_lacks_lists_the_available_ones() -> None:
    with pytest.raises(TritonError) as error:
        find_bundled_triton().stub_for("3.7")
    assert "no python backend stub for Python 3.7 (it has 3.10, 3.11, 3.12, 3.13, 3.8, 3.9)" in str(
        error.value
    )


def test_assemble_backends_builds_once_and_holds_every_backend(tmp_path: Path) -> None:
    bundled = find_bundled_triton()
    first = assemble_backends(bundled, tmp_path, "3.11")
    assert sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file()) == [
        "onnxruntime/model.py",
        "python/libtriton_python.so",
        "python/triton_python_backend_stub",
        "python/triton_python_backend_utils.py",
        "pytorch/model.py",
    ]
    assert os.stat(first / "python" / "triton_python_backend_stub").st_mode & stat.S_IXUSR
    assert assemble_backends(bundled, tmp_path, "3.11") == first
    assert assemble_backends(bundled, tmp_path, "3.12") != first
    assert [
        p.name for p in (tmp_path / "triton-backends").iterdir() if p.name.startswith(".")
    ] == []


def test_log_excerpt_keeps_errors_and_the_models_lines_and_drops_noise(tmp_path: Path) -> None:
    server = TritonServer()
    server.workdir = tmp_path
    server.log_path.write_text(textwrap.dedent("""\
            I1122 03:02:07.600000 1 server.cc:604] banner
            +------------------+------+
            | Repository Agent | Path |
            E1122 03:02:07.600001 1 server.cc:241] "CudaDriverHelper has not been initialized."
            I1122 03:02:07.682410 1 model_lifecycle.cc:472] "loading: demo_post:1"
            E1122 03:02:07.724126 1 model_lifecycle.cc:642] "failed to load 'demo_post' version 1: Internal: RuntimeError: boom\\n\\nAt:\\n  /r/demo_post/1/model.py(3): <module>\\n"
            I1122 03:02:07.724160 1 model_lifecycle.cc:777] "failed to load 'demo_post'"
            I1122 03:02:07.800000 1 model_lifecycle.cc:839] "successfully loaded 'other'"
            E1122 03:02:09.229296 1 model_repository_manager.cc:703] "ensemble 'demo' depends on 'demo_post': RuntimeError: boom\\n\\nAt:\\n  /r/demo_post/1/model.py(3): <module>\\n;"
            """))
    assert server.log_excerpt(["demo_post"]) == [
        "E1122 03:02:07.724126 1 model_lifecycle.cc:642] \"failed to load 'demo_post' version 1: "
        "Internal: RuntimeError: boom",
        "    At:",
        "      /r/demo_post/1/model.py(3): <module>",
        "I1122 03:02:07.724160 1 model_lifecycle.cc:777] \"failed to load 'demo_post'\"",
        "E1122 03:02:09.229296 1 model_repository_manager.cc:703] \"ensemble 'demo' depends on "
        "'demo_post': RuntimeError: boom",
    ]


def test_current_environment_is_this_interpreter() -> None:
    env = current_environment()
    assert env.path == Path(sys.prefix)
    assert env.python_version == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_output_that_does_not_fill_its_shape_names_output_and_shapes() -> None:
    # Before: tritonclient's as_numpy raised "cannot reshape array of size 0 into shape (1,16)"
    # through `mmetools test` when a Python step returned an empty tensor for a declared output.
    import json as json_module

    import tritonclient.http as httpclient

    from mmetools.core.errors import TritonError
    from mmetools.testing.triton.client import output_arrays

    body = json_module.dumps(
        {"outputs": [{"name": "EMBEDDING", "datatype": "FP32", "shape": [1, 16], "data": []}]}
    ).encode()
    result = httpclient.InferenceServerClient.parse_response_body(body)
    with pytest.raises(TritonError) as error:
        output_arrays(result, ["EMBEDDING"], "demo_pipeline")
    assert str(error.value) == (
        "demo_pipeline: output 'EMBEDDING' claims shape [1, 16] (FP32) but its data does not fill "
        "it (cannot reshape array of size 0 into shape (1,16)): the step producing 'EMBEDDING' "
        "returned a tensor of another size (an empty one?) than the shape it declared"
    )
