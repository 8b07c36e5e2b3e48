"""pytest plugin (entry point ``pytest11: mmetools``): a real Triton for a model folder's own tests.

Fixtures:

- ``triton_server`` (session): a running :class:`mmetools.testing.triton.TritonServer` in explicit
  model-control mode (mode from ``--triton-mode`` or mmetools.toml; bundled CPU Triton where no
  ``tritonserver`` is on PATH). Its Python steps run in the interpreter running pytest, so the
  test environment must hold the models' requirements.
- ``triton_model`` (session): ``triton_model("models/screen_detector") -> "screen_detector_pipeline"``
  stages and loads a model folder once per session (relative paths resolve against the pytest
  root) and unloads it at the end.
- ``triton_infer``: ``triton_infer(model_name, {"IMAGE": array}) -> {"LABEL": array, ...}``;
  BYTES inputs are numpy object/bytes arrays; every declared output is returned unless
  ``outputs=[...]`` names some.

Example, in ``models/screen_detector/tests/test_serving.py``::

    def test_screen_photo(triton_model, triton_infer):
        name = triton_model("models/screen_detector")
        image = np.array([[Path("tests/fixtures/screen_photo.png").read_bytes()]], dtype=object)
        assert triton_infer(name, {"IMAGE": image})["LABEL"][0, 0] == b"screen"

Nothing heavy is imported until a fixture is used: the plugin loads in every pytest run of an
environment where mmetools is installed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from mmetools.testing.source_test import StagedModel
    from mmetools.testing.triton import TritonServer

InferFunction = Callable[..., dict[str, Any]]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mmetools", "mmetools Triton fixtures")
    group.addoption(
        "--triton-mode",
        default=None,
        help="Triton server for the triton_server fixture: auto, bundled, native or docker "
        "(default: mmetools.toml [triton] mode)",
    )


@pytest.fixture(scope="session")
def triton_server(request: pytest.FixtureRequest) -> Iterator[TritonServer]:
    """A running Triton (explicit model control) for the whole test session."""
    from mmetools.core.settings import load_settings
    from mmetools.testing.triton import TritonServer, resolve_mode

    settings = load_settings(Path(request.config.rootpath))
    mode = resolve_mode(settings.triton.mode, request.config.getoption("--triton-mode"))
    with TritonServer(
        mode=mode,
        cache_dir=settings.cache_dir,
        image=settings.triton.image or settings.target_settings.image,
    ) as server:
        yield server


class ModelLoader:
    """Loads model folders into the session's server once each; unloads them all at the end."""

    def __init__(self, server: TritonServer, root: Path) -> None:
        self.server = server
        self.root = root
        self.loaded: dict[Path, StagedModel] = {}

    def __call__(self, path: str | Path) -> str:
        from mmetools.testing.source_test import stage_repository, unstage
        from mmetools.model.folder import model_folder

        folder = Path(path)
        if not folder.is_absolute() and not folder.exists():
            folder = self.root / folder
        key = folder.resolve()
        if key in self.loaded:
            return self.loaded[key].ensemble
        model = model_folder(folder)
        staged = stage_repository(model, self.server.repository)
        try:
            self.server.load(staged.ensemble, staged.names)
        except BaseException:
            self.unload(staged)
            unstage(staged)
            raise
        self.loaded[key] = staged
        return staged.ensemble

    def unload(self, staged: StagedModel) -> None:
        self.server.unload(staged.ensemble)
        for name in staged.names:
            if name != staged.ensemble:
                self.server.unload(name, dependents=False)

    def close(self) -> None:
        from mmetools.testing.source_test import unstage

        for staged in self.loaded.values():
            self.unload(staged)
            unstage(staged)
        self.loaded.clear()


@pytest.fixture(scope="session")
def triton_model(
    triton_server: TritonServer, request: pytest.FixtureRequest
) -> Iterator[Callable[[str | Path], str]]:
    """``triton_model(path) -> ensemble name``: the model folder loaded (once per session)."""
    loader = ModelLoader(triton_server, Path(request.config.rootpath))
    try:
        yield loader
    finally:
        loader.close()


@pytest.fixture
def triton_infer(triton_server: TritonServer) -> InferFunction:
    """``triton_infer(model_name, inputs, outputs=None) -> {output name: array}``."""

    def infer(
        model_name: str,
        inputs: Mapping[str, Any],
        outputs: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        return triton_server.infer(model_name, inputs, outputs=outputs)

    return infer
