"""The `triton_model` target: one monorepo model folder, models/<name>/, as Pants sees it; and
`triton_model_family`, which generates one `triton_model` per tenant of a model family
(models/<family>/tenants/<tenant>/, see mmetools' model/family.py)."""

from __future__ import annotations

from pants.engine.target import (
    COMMON_TARGET_FIELDS,
    BoolField,
    Dependencies,
    MultipleSourcesField,
    StringField,
    Target,
    TargetGenerator,
)

# Everything in the model folder that decides what is tested and shipped: Triton configs, Python
# steps, requirements.txt, model_version.txt, fixtures, and the DVC pointers (*.dvc) of the weights.
# The weight files themselves are git-ignored (DVC tracks them), so Pants never sees them; the
# pointers carry their hashes, so a weight change still changes this target's digest.
DEFAULT_SOURCES = (
    "**/*",
    "!**/python_env.tar.gz",
    "!**/.python_env.json",
    "!*_env.tar.gz",
    "!.*_env.tar.gz.json",
    "!**/__pycache__/**",
    "!**/*.pyc",
    "!BUILD",
)


class TritonModelSourcesField(MultipleSourcesField):
    default = DEFAULT_SOURCES
    help = (
        "The model folder's files: Triton configs, Python steps, requirements.txt, "
        "model_version.txt, tests/fixtures and the DVC pointers of the weights. Packed Python "
        "envs (python_env.tar.gz, <model>_env.tar.gz) are build outputs and excluded."
    )


class SkipTritonModelTestsField(BoolField):
    alias = "skip_tests"
    default = False
    help = "If true, `pants test` does not run this model's fixtures in Triton."


class SkipTritonModelPublishField(BoolField):
    alias = "skip_publish"
    default = False
    help = "If true, `pants publish` builds this model's artifact but does not publish it."


class TritonModelTenantField(StringField):
    alias = "tenant"
    help = (
        "Set by `triton_model_family` on the target it generates for a tenant: the model is "
        "models/<family>/tenants/<tenant>, named <family>-<tenant>. Not set by hand."
    )


class TritonModelTarget(Target):
    alias = "triton_model"
    core_fields = (
        *COMMON_TARGET_FIELDS,
        Dependencies,
        TritonModelSourcesField,
        SkipTritonModelTestsField,
        SkipTritonModelPublishField,
        TritonModelTenantField,
    )
    help = (
        "A Triton ensemble of the monorepo (models/<name>/) shipped as <name>_<version>.tar.gz to "
        "SageMaker multi-model endpoints.\n\n"
        "`test` runs its fixtures in a local Triton, `package` builds dist/<name>_<version>.tar.gz "
        "(+ .sha256 and manifest), `publish` uploads it to staging, or to production on the "
        "production branch. Each runs the mmetools CLI of [mmetools].venv as hermetic processes."
    )


TENANTS_DIR = "tenants"
VERSION_FILE = "model_version.txt"


class TritonModelFamilyTarget(TargetGenerator):
    alias = "triton_model_family"
    core_fields = (*COMMON_TARGET_FIELDS,)
    copied_fields = COMMON_TARGET_FIELDS
    moved_fields = (Dependencies, SkipTritonModelTestsField, SkipTritonModelPublishField)
    generated_target_cls = TritonModelTarget
    help = (
        "A model family (models/<family>/): one ensemble, one artifact per tenant. Generates a "
        "`triton_model` per tenants/<tenant>/ that holds a model_version.txt, addressed "
        "models/<family>#<tenant>, whose sources are the family's shared files and that "
        "tenant's folder: a change to one tenant selects only it, a shared change every tenant."
    )
