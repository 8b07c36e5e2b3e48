"""Every error mmetools raises on purpose. The CLI turns these into messages and exit codes.

Each message names what the user has to look at: the file, the model, the step, the field.
"""

from __future__ import annotations

from collections.abc import Sequence


class MmetoolsError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""

    exit_code = 1


class UsageError(MmetoolsError):
    """A command was called with arguments that cannot work (a path that is no model, ...)."""

    exit_code = 2


class ConfigError(MmetoolsError):
    """A file of a model (config.pbtxt, model_version.txt, ...) or of mmetools is malformed."""


class ValidationFailed(MmetoolsError):
    """Static validation found errors; ``problems`` holds one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


class ProcessError(MmetoolsError):
    """An external command (dvc, tar, venv-pack, tritonserver, ...) failed."""

    def __init__(
        self, argv: Sequence[str], returncode: int, output: str, context: str = ""
    ) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.output = output
        tail = "\n".join(output.strip().splitlines()[-20:])
        what = context or f"`{' '.join(self.argv)}`"
        message = f"{what} failed with exit code {returncode}"
        if tail:
            message += f":\n{tail}"
        super().__init__(message)


class DvcError(MmetoolsError):
    """Weights could not be fetched or checked through DVC."""


class EnvPackError(MmetoolsError):
    """A Python environment for a model's Python steps could not be built or packed."""


class TritonError(MmetoolsError):
    """The Triton server could not be started, or a model could not be loaded or run."""


class FixtureError(MmetoolsError):
    """A fixture file is malformed or does not match the model's inputs and outputs."""


class ArtifactError(MmetoolsError):
    """A model artifact could not be built, or a given tarball is not a valid artifact."""


class PublishError(MmetoolsError):
    """An artifact could not be published, or publishing it would overwrite different bytes."""


class ScaffoldError(MmetoolsError):
    """``mmetools new`` cannot create the requested model."""


class ScaffoldUsageError(ScaffoldError, UsageError):
    """``mmetools new`` was asked for something no call can create (an invalid name, an unknown
    framework): a usage error, exit 2."""


class ModelRunError(MmetoolsError):
    """A model's ensemble failed when run in-process by the reference runner (a step's model.py
    raised, returned an error, or produced a tensor its config does not declare)."""


class LoadTestError(MmetoolsError):
    """The load generator (locust) could not run or reported nothing."""


class Terminated(SystemExit):
    """SIGTERM arrived (see ``core.process.TerminateOnSigterm``): raised in the main thread so
    every ``finally`` and ``except BaseException`` cleanup runs on the way out. Not an
    MmetoolsError: no handler that reports problems may swallow it. Uncaught, the process exits
    with ``128 + SIGTERM`` (143), as if the signal had ended it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(128 + signum)


class EvidenceError(PublishError):
    """An artifact's evidence does not show that these bytes passed their tests here: missing,
    unsigned or signed with another key, for other bytes or another target, or failing."""


class VersionError(MmetoolsError):
    """A model's version cannot ship: not above production's, or already there with other bytes."""


class DeployError(MmetoolsError):
    """An endpoint declaration cannot be applied, or AWS refused or failed a change to it."""


class EndpointConfigError(ConfigError, UsageError):
    """An ``[endpoints.<stage>]`` declaration (or the stage asked for) cannot work: bad input,
    exit 2, naming the file, the stage and the key."""


class AwsSetupError(DeployError, UsageError):
    """The AWS environment cannot be used (no credentials, an unknown profile, a malformed region
    or endpoint URL): bad input, exit 2, naming what to set."""


class SmokeFailed(MmetoolsError):
    """A model on a deployed endpoint answered wrongly (or not at all) for a fixture case;
    ``failures`` holds one line per model and fixture."""

    def __init__(self, failures: Sequence[str]) -> None:
        self.failures = tuple(failures)
        super().__init__("\n".join(self.failures))
