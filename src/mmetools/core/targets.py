"""The serving target: the SageMaker/NGC Triton container image that will serve the artifacts.

An artifact's Python envs must match what that image has: its python-backend stub's Python minor
version, the interpreter path the env's ``bin/python`` and ``pyvenv.cfg`` resolve to, the glibc
and libstdc++ (GLIBCXX) versions every shared object in the env may need at most, whether its
python backend can take numpy 2, and the Python packages the image itself installs for the python
backend (``image_packages``: a locked requirement the image has at that version is not packed).

``[target] image`` in mmetools.toml (override: ``MMETOOLS_TARGET_IMAGE``) names the image. Images
of NGC's ``tritonserver`` repository and SageMaker's ``sagemaker-tritonserver`` repository are
recognised by their ``YY.MM-py3`` tag and looked up in ``RELEASES``; any other image needs every
value set explicitly in ``[target]`` and is refused with the list of what is missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mmetools.core.errors import ConfigError

# Where the facts in RELEASES come from (cited by `mmetools targets` and docs/targets.md).
SOURCE_FRAMEWORK_MATRIX = (
    "NVIDIA Frameworks Support Matrix (docs.nvidia.com/deeplearning/frameworks/"
    "support-matrix): Triton version, Ubuntu base per container release"
)
SOURCE_UBUNTU_2204 = (
    "Ubuntu 22.04 (jammy): python3 3.10, libc6 2.35, libstdc++6 (GCC 12) GLIBCXX_3.4.30"
)
SOURCE_UBUNTU_2404 = (
    "Ubuntu 24.04 (noble): python3 3.12, libc6 2.39, libstdc++6 (GCC 14) GLIBCXX_3.4.33"
)
SOURCE_NUMPY2 = (
    "triton-inference-server/python_backend PR 384 (numpy 2 support), merged 2024-10-18, "
    "first in release r24.11"
)

SOURCE_IMAGE_NUMPY = (
    "triton-inference-server/server build.py at tags r24.06 to r25.06: the python backend's "
    'Dockerfile stage runs `pip3 install --upgrade "numpy<2"` into the image\'s Python '
    "(/usr/local/lib/python3.X/dist-packages); numpy's release history: 1.26.4 (2024-02-05) is "
    "the last 1.x release and has wheels for Python 3.10 and 3.12, so every image built after "
    "numpy 2.0.0 (2024-06-16) got 1.26.4. Sure: high (pinned range, no later 1.x exists). "
    "Releases before r24.06 install an unpinned numpy whose version depends on the build day: "
    "not recorded (nothing is left out of their envs)"
)
# The first release whose build.py pins numpy<2 (so its numpy is known: 1.26.4).
_FIRST_NUMPY_LT2_RELEASE = "24.06"
_NUMPY_LT2 = "1.26.4"

# The release the repository builds for when [target] names none: the current SageMaker Triton
# generation (Ubuntu 24.04, Python 3.12, python backend with numpy 2 support).
DEFAULT_IMAGE = "nvcr.io/nvidia/tritonserver:24.12-py3"

_RELEASE_TAG = re.compile(r"^(?P<release>[0-9]{2}\.[0-9]{2})-py3(?:-.*)?$")
_KNOWN_REPOSITORIES = ("tritonserver", "sagemaker-tritonserver")
_PYTHON_MINOR = re.compile(r"^3\.[0-9]+$")
_DOTTED = re.compile(r"^[0-9]+(\.[0-9]+)+$")


@dataclass(frozen=True)
class ServingTarget:
    """What the serving container provides to a packed env (one value, used by every step)."""

    image: str
    triton_version: str  # "2.53.0"
    python_version: str  # minor version of the python-backend stub: "3.12"
    interpreter_path: str  # the image's Python, where the env's bin/python must point
    glibc: str  # "2.39": no shared object in the env may need a newer GLIBC_ symbol version
    glibcxx: str  # "3.4.33": the same for libstdc++'s GLIBCXX_ versions
    numpy2_supported: bool  # False: the stub returns empty outputs for numpy 2 arrays
    source: str  # where these facts come from
    # What the image's Python has installed for the python backend: (name, version), names
    # normalised (PEP 503). An env layers on these (include-system-site-packages) and leaves out
    # a locked requirement the image has at the same version.
    image_packages: tuple[tuple[str, str], ...] = ()

    @property
    def python_prefix(self) -> str:
        """The prefix of the image's Python ("/usr" for /usr/bin/python3.12)."""
        return self.interpreter_path.rsplit("/bin/", 1)[0] or "/"

    @property
    def manylinux_platform(self) -> str:
        """uv's ``--python-platform`` for wheels that need no newer glibc than the image's."""
        return f"x86_64-manylinux_{self.glibc.replace('.', '_')}"

    def as_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "triton_version": self.triton_version,
            "python_version": self.python_version,
            "interpreter_path": self.interpreter_path,
            "glibc": self.glibc,
            "glibcxx": self.glibcxx,
            "numpy2_supported": self.numpy2_supported,
            "image_packages": {name: version for name, version in self.image_packages},
            "source": self.source,
        }

    def image_version(self, name: str) -> str | None:
        """The version of package ``name`` the image provides, or None."""
        wanted = normalized_name(name)
        return next((v for n, v in self.image_packages if n == wanted), None)


@dataclass(frozen=True)
class Release:
    """One NGC Triton container release (SageMaker's images carry the same release tags)."""

    release: str  # "24.12"
    triton_version: str
    ubuntu: str

    @property
    def python_version(self) -> str:
        return "3.10" if self.ubuntu == "22.04" else "3.12"

    @property
    def glibc(self) -> str:
        return "2.35" if self.ubuntu == "22.04" else "2.39"

    @property
    def glibcxx(self) -> str:
        return "3.4.30" if self.ubuntu == "22.04" else "3.4.33"

    @property
    def numpy2_supported(self) -> bool:
        return self.release >= "24.11"

    @property
    def image_packages(self) -> tuple[tuple[str, str], ...]:
        """The python backend's packages this release's image installs, where known."""
        return (("numpy", _NUMPY_LT2),) if self.release >= _FIRST_NUMPY_LT2_RELEASE else ()

    @property
    def source(self) -> str:
        base = SOURCE_UBUNTU_2204 if self.ubuntu == "22.04" else SOURCE_UBUNTU_2404
        return f"{SOURCE_FRAMEWORK_MATRIX}; {base}; {SOURCE_NUMPY2}; {SOURCE_IMAGE_NUMPY}"


def _releases() -> tuple[Release, ...]:
    # Triton 2.34.0 shipped as 23.05; each monthly release after it is one minor version later.
    months = [f"{year}.{month:02d}" for year in (23, 24, 25) for month in range(1, 13)]
    months = [m for m in months if "23.05" <= m <= "25.06"]
    return tuple(
        Release(m, f"2.{34 + i}.0", "22.04" if m <= "24.10" else "24.04")
        for i, m in enumerate(months)
    )


RELEASES: tuple[Release, ...] = _releases()
_BY_RELEASE = {release.release: release for release in RELEASES}

# [target] image_packages: "numpy==1.26.4, other==1.0" (or "none"): what the image installs.
IMAGE_PACKAGES_KEY = "image_packages"
_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([0-9][A-Za-z0-9.+!_-]*)\s*$")


def normalized_name(name: str) -> str:
    """PEP 503 normalised project name: "Pillow" -> "pillow", "typing_extensions" ->
    "typing-extensions"."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_image_packages(text: str, where: str) -> tuple[tuple[str, str], ...]:
    """``"numpy==1.26.4, x==1"`` (or ``"none"``) as sorted (name, version) pairs."""
    if text.strip().lower() == "none":
        return ()
    pairs: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = _PIN.match(part)
        if match is None:
            raise ConfigError(
                f'{where}: {IMAGE_PACKAGES_KEY} must list pins like "numpy==1.26.4" separated by '
                f'commas (or "none"), got "{part}"'
            )
        pairs[normalized_name(match.group(1))] = match.group(2)
    return tuple(sorted(pairs.items()))


# The [target] keys that must be set for an image RELEASES does not know.
EXPLICIT_KEYS = (
    "triton_version", "python_version", "interpreter_path", "glibc", "glibcxx", "numpy2_supported",
)  # fmt: skip


def release_of(image: str) -> Release | None:
    """The release an NGC or SageMaker Triton image's tag names, or None for other images."""
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return None
    repository = name.rsplit("/", 1)[-1]
    match = _RELEASE_TAG.match(tag)
    if repository not in _KNOWN_REPOSITORIES or match is None:
        return None
    return _BY_RELEASE.get(match.group("release"))


def resolve_target(
    image: str, explicit: dict[str, Any] | None = None, *, where: str = "[target]"
) -> ServingTarget:
    """The serving target of ``image``: its release's facts, overridden by ``explicit`` values.

    ``explicit`` holds the [target] keys of EXPLICIT_KEYS the user set (others absent or empty).
    An image RELEASES does not know needs all of them: ConfigError naming what is missing.
    """
    values = {k: v for k, v in (explicit or {}).items() if v not in ("", None)}
    release = release_of(image)
    packages_text = values.pop(IMAGE_PACKAGES_KEY, None)
    image_packages = release.image_packages if release is not None else ()
    if packages_text is not None:
        image_packages = parse_image_packages(str(packages_text), where)
    if release is None:
        missing = [key for key in EXPLICIT_KEYS if key not in values]
        if missing:
            known = ", ".join(r.release for r in (RELEASES[0], RELEASES[-1]))
            raise ConfigError(
                f"{where}: image '{image}' is not a known NGC/SageMaker Triton release "
                f"(tritonserver:YY.MM-py3, {known.replace(', ', ' to ')}); set "
                f"{', '.join(missing)} explicitly in [target] (see `mmetools targets`)"
            )
        source = f"set explicitly in {where}"
        base: dict[str, Any] = {}
    else:
        base = {
            "triton_version": release.triton_version,
            "python_version": release.python_version,
            "interpreter_path": f"/usr/bin/python{release.python_version}",
            "glibc": release.glibc,
            "glibcxx": release.glibcxx,
            "numpy2_supported": release.numpy2_supported,
        }
        overridden = sorted(key for key in values if key in EXPLICIT_KEYS)
        overridden += [IMAGE_PACKAGES_KEY] if packages_text is not None else []
        source = release.source + (
            f"; overridden in {where}: {', '.join(overridden)}" if overridden else ""
        )
    merged = {**base, **{k: v for k, v in values.items() if k in EXPLICIT_KEYS}}
    target = ServingTarget(
        image=image,
        triton_version=str(merged["triton_version"]),
        python_version=str(merged["python_version"]),
        interpreter_path=str(merged["interpreter_path"]),
        glibc=str(merged["glibc"]),
        glibcxx=str(merged["glibcxx"]),
        numpy2_supported=bool(merged["numpy2_supported"]),
        source=source,
        image_packages=image_packages,
    )
    _check(target, where)
    return target


def _check(target: ServingTarget, where: str) -> None:
    if not _PYTHON_MINOR.match(target.python_version):
        raise ConfigError(
            f'{where}: python_version must look like "3.12", got "{target.python_version}"'
        )
    expected_name = f"python{target.python_version}"
    if not target.interpreter_path.startswith("/") or "/bin/" not in target.interpreter_path:
        raise ConfigError(
            f"{where}: interpreter_path must be an absolute <prefix>/bin/{expected_name}, "
            f'got "{target.interpreter_path}"'
        )
    for key in ("glibc", "glibcxx", "triton_version"):
        value = getattr(target, key)
        if not _DOTTED.match(value):
            raise ConfigError(f'{where}: {key} must be a dotted version like "2.39", got "{value}"')


def version_tuple(version: str) -> tuple[int, ...]:
    """ "2.39" -> (2, 39), for comparing glibc/GLIBCXX/numpy versions."""
    return tuple(int(part) for part in re.findall(r"[0-9]+", version))
