"""mmetools: build, test and ship NVIDIA Triton ensembles to SageMaker multi-model endpoints.

The public API is the names in ``__all__``; everything else may move between releases. The rooms
(docs/architecture.md), lowest first: ``core`` (settings, errors, processes), ``model`` (the model
folder, its validation, cases and weights), ``build`` (env, package, audit), ``testing`` (source
and artifact tests on Triton), ``release`` (publish, stores, evidence, diff, load tests),
``serving`` (the local endpoint), ``deploy`` (the declared SageMaker endpoints: plan, apply,
status, smoke), ``pipeline`` (the one route through the steps), ``rendering`` and ``cli`` on top.

Names load lazily (PEP 562), so ``import mmetools.core.errors`` does not import the whole toolkit.
``pipeline.build`` is exported as ``build_models``: ``mmetools.build`` is the build room.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mmetools.build.env import pack_env
    from mmetools.core.errors import MmetoolsError
    from mmetools.core.redaction import RedactingFilter, install_log_redaction, redact
    from mmetools.core.settings import Settings, load_settings
    from mmetools.deploy.apply import ApplyResult, WaitOptions
    from mmetools.deploy.declaration import EndpointDeclaration, load_declaration
    from mmetools.deploy.plan import Plan
    from mmetools.deploy.smoke import ModelSmoke, SmokeOptions, smoke_endpoint, target_models
    from mmetools.deploy.stage import (
        StageSession,
        apply_stage,
        live_status,
        open_stage,
        plan_stage,
    )
    from mmetools.model.folder import ModelFolder, ModelRef, model_folder
    from mmetools.model.validation import validate_model
    from mmetools.pipeline import BuildOptions, BuildReport, package_model
    from mmetools.pipeline import build as build_models
    from mmetools.release.diff import diff_against_published
    from mmetools.release.publish import PublishOptions, PublishReport, publish
    from mmetools.testing.artifact_test import run_artifacts
    from mmetools.testing.source_test import run_models

_WHERE = {
    "BuildOptions": "mmetools.pipeline",
    "BuildReport": "mmetools.pipeline",
    "build_models": "mmetools.pipeline:build",
    "package_model": "mmetools.pipeline",
    "MmetoolsError": "mmetools.core.errors",
    "RedactingFilter": "mmetools.core.redaction",
    "install_log_redaction": "mmetools.core.redaction",
    "redact": "mmetools.core.redaction",
    "Settings": "mmetools.core.settings",
    "load_settings": "mmetools.core.settings",
    "ModelFolder": "mmetools.model.folder",
    "ModelRef": "mmetools.model.folder",
    "model_folder": "mmetools.model.folder",
    "validate_model": "mmetools.model.validation",
    "pack_env": "mmetools.build.env",
    "run_models": "mmetools.testing.source_test",
    "run_artifacts": "mmetools.testing.artifact_test",
    "PublishOptions": "mmetools.release.publish",
    "PublishReport": "mmetools.release.publish",
    "publish": "mmetools.release.publish",
    "diff_against_published": "mmetools.release.diff",
    # Endpoints as code (docs/endpoints.md): open a stage, plan, apply, read, smoke.
    "EndpointDeclaration": "mmetools.deploy.declaration",
    "load_declaration": "mmetools.deploy.declaration",
    "StageSession": "mmetools.deploy.stage",
    "open_stage": "mmetools.deploy.stage",
    "plan_stage": "mmetools.deploy.stage",
    "apply_stage": "mmetools.deploy.stage",
    "live_status": "mmetools.deploy.stage",
    "Plan": "mmetools.deploy.plan",
    "WaitOptions": "mmetools.deploy.apply",
    "ApplyResult": "mmetools.deploy.apply",
    "SmokeOptions": "mmetools.deploy.smoke",
    "ModelSmoke": "mmetools.deploy.smoke",
    "smoke_endpoint": "mmetools.deploy.smoke",
    "target_models": "mmetools.deploy.smoke",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'mmetools' has no attribute {name!r}")
    module, _, attribute = _WHERE[name].partition(":")
    return getattr(importlib.import_module(module), attribute or name)
