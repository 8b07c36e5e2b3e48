"""Putting a model into a running SageMaker-frontend Triton: as a tarball unpacks, or as a model
folder staged the way its tarball would hold it, then loaded under a fresh model id.

Used by whatever runs versions of a model side by side or under load (``mmetools diff``,
``mmetools loadtest``); the server itself is :class:`mmetools.testing.triton.TritonServer`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mmetools.model.folder import ModelFolder
from mmetools.testing.artifact_test import MmeClient, unpack_for_server
from mmetools.testing.source_test import stage_repository
from mmetools.testing.triton import TritonServer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A model the server holds: invoke it as ``/models/<model_id>`` with ``target_model``."""

    model_id: str
    target_model: str


def load_folder(server: TritonServer, folder: Path, target_model: str) -> LoadedModel:
    """Load the unpacked or staged ``folder`` under a fresh model id (TritonError when it fails)."""
    model_id = uuid.uuid4().hex[:16]
    names = sorted(p.name for p in folder.iterdir() if p.is_dir())
    MmeClient(server).load(model_id, folder, target_model, names).seconds_or_raise()
    return LoadedModel(model_id, target_model)


def unpacked_artifact(server: TritonServer, artifact: Path, env_steps: Sequence[str]) -> Path:
    """``artifact`` unpacked as SageMaker does, into a fresh folder of the server's workdir."""
    assert server.workdir is not None
    folder = server.workdir / uuid.uuid4().hex[:16] / "model"
    unpack_for_server(server, artifact, folder, env_steps)
    return folder


def staged_model_folder(server: TritonServer, model: ModelFolder) -> Path:
    """The model folder as the tarball would hold it (links to the sources)."""
    assert server.workdir is not None
    folder = server.workdir / uuid.uuid4().hex[:16] / "model"
    folder.mkdir(parents=True)
    stage_repository(model, folder)
    return folder
