"""`[mmetools]`: the options of the plugin (where the mmetools environment is, which variables
each kind of process sees, the branch to publish for, timeouts).

Which environment variables a process gets decides what is in its cache key (docs/scaling.md):
settings overrides go to every hermetic model process, network settings only to the one that
installs packages, credentials only to the uncached processes that run in the workspace.
"""

from __future__ import annotations

from pants.option.option_types import IntOption, SkipOption, StrListOption, StrOption
from pants.option.subsystem import Subsystem

# Settings overrides that change what a model process does or builds: passed to model processes
# and so part of their keys (mmetools.toml, in the sandbox, holds the rest).
MODEL_ENV_VARS = (
    "MMETOOLS_ENV_BACKEND", "MMETOOLS_TARGET_IMAGE", "MMETOOLS_TRITON_MODE",
    "MMETOOLS_TRITON_IMAGE",
)  # fmt: skip
# How this machine reaches package indexes: only the env-building process installs packages.
NETWORK_ENV_VARS = (
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT",
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "UV_INDEX_URL",
    "UV_EXTRA_INDEX_URL", "UV_NATIVE_TLS",
)  # fmt: skip
# Credentials, destinations and the user's caches: only the uncached fetch and publish processes,
# which run in the workspace, see them (with PATH and HOME).
WORKSPACE_ENV_VARS = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION",
    "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CA_BUNDLE",
    "MMETOOLS_STAGING_URI", "MMETOOLS_PRODUCTION_URI", "MMETOOLS_PRODUCTION_BRANCH",
    "MMETOOLS_CACHE_DIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "CI", "GITHUB_RUN_ID",
    "CI_PIPELINE_ID",
)  # fmt: skip


class MmetoolsSubsystem(Subsystem):
    options_scope = "mmetools"
    name = "mmetools"
    help = "The mmetools CLI that tests, packages and publishes triton_model targets."

    skip = SkipOption("test", "check")
    venv = StrOption(
        default=".venv",
        help=(
            "The mmetools environment (relative paths are relative to the build root; ci/bootstrap "
            "creates .venv). Its path is in no cache key: processes reach it through a named cache "
            "named by the environment's content, so checkouts at other paths share results."
        ),
    )
    env_vars = StrListOption(
        default=list(MODEL_ENV_VARS),
        help=(
            "Environment variables passed to the hermetic model processes (NAME, or NAME=value): "
            "settings overrides that change what is built. Their values are part of the cache keys."
        ),
    )
    network_env_vars = StrListOption(
        default=list(NETWORK_ENV_VARS),
        help=(
            "Environment variables of the process that builds a model's packed env (it installs "
            "packages): proxies, CA bundles, index settings. Part of that process's key."
        ),
    )
    workspace_env_vars = StrListOption(
        default=list(WORKSPACE_ENV_VARS),
        help=(
            "Environment variables of the uncached processes that run in the workspace (fetching "
            "weights, publishing), besides PATH and HOME: credentials, endpoints, destinations."
        ),
    )
    branch = StrOption(
        default=None,
        help=(
            "The branch `publish` publishes for (staging on any branch, production on the "
            "production branch of mmetools.toml). Default: the current git branch. CI systems that "
            "check out a detached HEAD set this (PANTS_MMETOOLS_BRANCH)."
        ),
    )
    test_timeout = IntOption(
        default=1800, help="Seconds a model's Triton test may take before Pants stops it."
    )
    package_timeout = IntOption(
        default=3600,
        help="Seconds packaging a model and testing its artifact may take (also env building).",
    )
