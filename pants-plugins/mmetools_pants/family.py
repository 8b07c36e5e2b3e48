"""The `triton_model_family` generator: one `triton_model` per tenant of a model family.

A tenant's target owns the family's shared files (everything outside tenants/) and its own
tenants/<tenant>/ folder, so `--changed-since` selects exactly the tenants whose inputs changed,
and each tenant's test/package/publish processes are cached (locally, remotely, per shard) on
its own inputs.
"""

from __future__ import annotations

from pathlib import PurePath

from pants.engine.fs import PathGlobs, Paths
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import GeneratedTargets, GenerateTargetsRequest
from pants.engine.unions import UnionMembership, UnionRule

from mmetools_pants.target_types import (
    DEFAULT_SOURCES,
    TENANTS_DIR,
    VERSION_FILE,
    TritonModelFamilyTarget,
    TritonModelSourcesField,
    TritonModelTarget,
    TritonModelTenantField,
)


class GenerateTenantTargetsRequest(GenerateTargetsRequest[TritonModelFamilyTarget]):
    generate_from = TritonModelFamilyTarget


def tenant_sources(shared: tuple[str, ...], tenant: str) -> tuple[str, ...]:
    """A tenant target's sources, relative to the family folder: the shared files found (the
    generator runs again whenever the family's files change) and the tenant's own folder."""
    exclusions = tuple(g for g in DEFAULT_SOURCES if g.startswith("!"))
    return (*shared, f"{TENANTS_DIR}/{tenant}/**/*", *exclusions)


@rule
async def generate_tenant_targets(
    request: GenerateTenantTargetsRequest, union_membership: UnionMembership
) -> GeneratedTargets:
    family_dir = request.template_address.spec_path
    tenants_paths, all_paths = await MultiGet(
        Get(Paths, PathGlobs([f"{family_dir}/{TENANTS_DIR}/*/{VERSION_FILE}"])),
        Get(Paths, PathGlobs([f"{family_dir}/**/*", f"!{family_dir}/{TENANTS_DIR}/**"])),
    )
    shared = tuple(
        sorted(
            PurePath(path).relative_to(family_dir).as_posix()
            for path in all_paths.files
            if PurePath(path).name != "BUILD"
        )
    )
    tenants = sorted(PurePath(path).parent.name for path in tenants_paths.files)
    return GeneratedTargets(
        request.generator,
        [
            TritonModelTarget(
                {
                    **request.template,
                    TritonModelSourcesField.alias: tenant_sources(shared, tenant),
                    TritonModelTenantField.alias: tenant,
                },
                request.template_address.create_generated(tenant),
                union_membership,
                residence_dir=family_dir,
            )
            for tenant in tenants
        ],
    )


def rules() -> tuple[object, ...]:
    return (*collect_rules(), UnionRule(GenerateTargetsRequest, GenerateTenantTargetsRequest))
