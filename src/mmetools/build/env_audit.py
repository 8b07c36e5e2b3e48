"""Static audit of one packed env (``<step>/python_env.tar.gz``) against the serving target, read as
a stream: memory does not grow with the env or with any member of it.

Its Python minor version against the target's stub, where its interpreter and stdlib resolve inside
the container (pyvenv.cfg ``home``, ``bin/python``), ``bin/activate`` (the python backend sources
it), the highest GLIBC/GLIBCXX symbol version any ELF file needs and the ELF architecture (read with
pyelftools from a temp file: it seeks), hard links and absolute symlinks that break unpacking,
build-machine paths, numpy against the target's python backend (``numpy_problem``, shared with the
source test's serving env), and sizes.
"""

from __future__ import annotations

import logging
import posixpath
import re
import tarfile
import tempfile
from dataclasses import dataclass, field
from typing import IO, Any, Literal

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection

from mmetools.core.targets import ServingTarget, version_tuple

Severity = Literal["error", "warning", "note"]

_SYMBOL_VERSION = re.compile(r"^(GLIBC|GLIBCXX)_([0-9][0-9.]*)$")
_NUMPY_DIST = re.compile(r"^lib/python3\.[0-9]+/site-packages/numpy-([0-9][^/]*)\.dist-info$")
_STDLIB_DIR = re.compile(r"^lib/python(3\.[0-9]+)$")
_METADATA = re.compile(r"^lib/python3\.[0-9]+/site-packages/([^/]+)-[^/-]+\.dist-info/METADATA$")
_REQUIRES = re.compile(
    r"^Requires-Dist:[ \t]*([A-Za-z0-9][A-Za-z0-9._-]*)([^;\n]*)(;[^\n]*)?$", re.MULTILINE
)
_BUILD_PATH = re.compile(rb"(/home/|/root/|/tmp/|/Users/|/private/var/)[^\s\"']*")
_X86_64 = "EM_X86_64"
_ELF_MAGIC = b"\x7fELF"
CHUNK_SIZE = 1 << 20
_PYVENV_LIMIT = 64 * 1024  # pyvenv.cfg is a few lines; more is not read
_PATH_OVERLAP = 1024  # a build path across two chunks is still seen

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    severity: Severity
    step: str  # the step folder the finding is about ("" for the tarball itself)
    file: str  # path inside the artifact (an env member as "<step>/python_env.tar.gz:<member>")
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"

    def as_json(self) -> dict[str, str]:
        return {"severity": self.severity, "step": self.step, "file": self.file,
                "message": self.message}  # fmt: skip


@dataclass(frozen=True)
class EnvAudit:
    step: str
    archive: str
    kind: str  # "venv" (interpreter from the image) or "conda" (ships its interpreter)
    size: int
    unpacked_size: int
    python_version: str | None
    interpreter: str | None  # where bin/python resolves
    home: str | None  # pyvenv.cfg home (venv)
    max_glibc: str | None
    max_glibc_file: str | None
    max_glibcxx: str | None
    max_glibcxx_file: str | None
    architectures: tuple[str, ...]
    numpy: str | None
    has_activate: bool
    # include-system-site-packages: the env layers on the image's packages, and which ones its
    # packages need from there (each proven to be in the target's image_packages)
    system_site_packages: bool = False
    from_image: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return dict(
            self.__dict__,
            architectures=list(self.architectures),
            from_image=list(self.from_image),
        )


@dataclass
class _EnvScan:
    step: str
    archive: str
    findings: list[Finding] = field(default_factory=list)
    glibc: tuple[tuple[int, ...], str, str] | None = None
    glibcxx: tuple[tuple[int, ...], str, str] | None = None
    architectures: set[str] = field(default_factory=set)

    def error(self, member: str, message: str) -> None:
        self.findings.append(Finding("error", self.step, f"{self.archive}:{member}", message))

    def warning(self, member: str, message: str) -> None:
        self.findings.append(Finding("warning", self.step, f"{self.archive}:{member}", message))


def _needed_versions(stream: IO[bytes]) -> tuple[str | None, list[tuple[str, str]]]:
    """The ELF machine and the (GLIBC|GLIBCXX, version) pairs the file needs, or (None, [])."""
    try:
        elf = ELFFile(stream)
        needed: list[tuple[str, str]] = []
        for section in elf.iter_sections():
            if isinstance(section, GNUVerNeedSection):
                for _, auxiliaries in section.iter_versions():
                    for aux in auxiliaries:
                        match = _SYMBOL_VERSION.match(aux.name)
                        if match:
                            needed.append((match.group(1), match.group(2)))
        return str(elf["e_machine"]), needed
    except (ELFError, ValueError, KeyError, IndexError):
        return None, []


def _resolve_link(name: str, links: dict[str, str], depth: int = 0) -> str:
    """Where an env member that is a symlink ends up (absolute targets are returned as is)."""
    if name not in links or depth > 16:
        return name
    target = links[name]
    if target.startswith("/"):
        return target
    return _resolve_link(posixpath.normpath(posixpath.join(posixpath.dirname(name), target)),
                         links, depth + 1)  # fmt: skip


def _read_member(scan: _EnvScan, name: str, stream: IO[bytes]) -> bytes | None:
    """Stream one member through the checks that read content; pyvenv.cfg's text (bounded)."""
    first = stream.read(CHUNK_SIZE)
    if first[:4] == _ELF_MAGIC:
        with tempfile.TemporaryFile(prefix="mmetools-audit-") as spool:
            chunk = first
            while chunk:
                spool.write(chunk)
                chunk = stream.read(CHUNK_SIZE)
            spool.seek(0)
            _scan_elf(scan, name, spool)
        return None
    if name == "pyvenv.cfg":
        return first[:_PYVENV_LIMIT]
    if _METADATA.match(name):
        return first  # the headers (Requires-Dist) come first; a longer description is not read
    if name.endswith((".pth", "direct_url.json")) or (
        name.startswith("bin/") and first[:2] == b"#!"
    ):
        tail = b""
        chunk = first
        while chunk:
            window = tail + chunk
            match = _BUILD_PATH.search(window)
            if match:
                path = match.group(0).decode(errors="replace")
                scan.error(name, f"names a build-machine path ({path})")
                break
            tail = window[-_PATH_OVERLAP:]
            chunk = stream.read(CHUNK_SIZE)
    return None


def audit_env(
    stream: IO[bytes], size: int, step: str, archive: str, target: ServingTarget
) -> tuple[EnvAudit, list[Finding]]:
    """Audit one packed env, read from ``stream`` (``size`` bytes of .tar.gz), against ``target``."""
    scan = _EnvScan(step, archive)
    links: dict[str, str] = {}
    pyvenv: bytes | None = None
    python_dirs: set[str] = set()
    numpy: str | None = None
    names: set[str] = set()
    metadata: dict[str, bytes] = {}
    unpacked = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|gz") as tar:
            for member in tar:
                name = posixpath.normpath(member.name.removeprefix("./"))
                unpacked += member.size
                names.add(name)
                top = name.split("/")
                if member.islnk():
                    scan.error(name, f"hard link to {member.linkname}: Triton's python backend "
                               "cannot unpack hard links (server issue 8356)")  # fmt: skip
                    continue
                if member.issym():
                    links[name] = member.linkname
                    continue
                if len(top) >= 2 and _STDLIB_DIR.match("/".join(top[:2])):
                    python_dirs.add(top[1].removeprefix("python"))
                if member.isdir():
                    match = _NUMPY_DIST.match(name)
                    if match:
                        numpy = match.group(1)
                    continue
                if not member.isfile():
                    continue
                dist = _NUMPY_DIST.match(posixpath.dirname(name))
                if dist:
                    numpy = dist.group(1)
                extracted = tar.extractfile(member)
                if extracted is not None:
                    content = _read_member(scan, name, extracted)
                    if name == "pyvenv.cfg":
                        pyvenv = content or b""
                    elif content is not None and _METADATA.match(name):
                        metadata[name] = content
    except (tarfile.TarError, OSError, EOFError) as e:
        scan.error("", f"not a readable .tar.gz: {e}")
    env_kind = "venv" if pyvenv is not None else "conda"
    python_version = _python_version(scan, python_dirs, target)
    home = _check_pyvenv(scan, pyvenv, target) if env_kind == "venv" else None
    interpreter = _check_interpreter(scan, env_kind, links, target)
    _check_links(scan, links, target)
    has_activate = "bin/activate" in names
    if not has_activate:
        scan.error("bin/activate", "missing: Triton's python backend sources it to start the step")
    layered = _system_site_packages(pyvenv) if env_kind == "venv" else False
    from_image = _check_requirements(scan, metadata, layered, target)
    if numpy is None and "numpy" in from_image:
        numpy = target.image_version("numpy")
    _check_numpy(scan, numpy, python_version, target, layered)
    _check_glibc(scan, target)
    env = EnvAudit(
        step=step,
        archive=archive,
        kind=env_kind,
        size=size,
        unpacked_size=unpacked,
        python_version=python_version,
        interpreter=interpreter,
        home=home,
        max_glibc=scan.glibc[1] if scan.glibc else None,
        max_glibc_file=scan.glibc[2] if scan.glibc else None,
        max_glibcxx=scan.glibcxx[1] if scan.glibcxx else None,
        max_glibcxx_file=scan.glibcxx[2] if scan.glibcxx else None,
        architectures=tuple(sorted(scan.architectures)),
        numpy=numpy,
        has_activate=has_activate,
        system_site_packages=layered,
        from_image=from_image,
    )
    return env, scan.findings


def _system_site_packages(pyvenv: bytes | None) -> bool:
    for line in (pyvenv or b"").decode("utf-8", "replace").splitlines():
        key, _, value = line.partition("=")
        if key.strip().lower() == "include-system-site-packages":
            return value.strip().lower() == "true"
    return False


def _dist_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _check_requirements(
    scan: _EnvScan, metadata: dict[str, bytes], layered: bool, target: ServingTarget
) -> tuple[str, ...]:
    """Every unconditional Requires-Dist of a packed distribution is packed too or, in a layered
    env, provided by the image (the target's image_packages): the proof that what the env
    leaves out is there. Returns the names the image provides. Requirements under a marker
    (extras, other Pythons) are not checked."""
    packed = {_dist_name(_METADATA.match(name).group(1)) for name in metadata}  # type: ignore[union-attr]
    image = {name for name, _ in target.image_packages}
    from_image: set[str] = set()
    for name, content in sorted(metadata.items()):
        text = content.split(b"\n\n", 1)[0].decode("utf-8", "replace")
        for match in _REQUIRES.finditer(text):
            if match.group(3):
                continue
            needed = _dist_name(match.group(1))
            if needed in packed:
                continue
            if layered and needed in image:
                from_image.add(needed)
                continue
            where = (
                f"nor the image ({', '.join(sorted(image)) or 'no packages recorded for it'})"
                if layered
                else "(include-system-site-packages is false)"
            )
            scan.error(name, f"needs {needed}{match.group(2).strip()}, which neither the env "
                       f"packs {where}")  # fmt: skip
    return tuple(sorted(from_image))


def _scan_elf(scan: _EnvScan, name: str, stream: IO[bytes]) -> None:
    machine, needed = _needed_versions(stream)
    if machine is None:
        return
    scan.architectures.add(machine)
    if machine != _X86_64:
        scan.error(name, f"ELF for {machine}, but the target image is x86_64 ({_X86_64})")
    for library, version in needed:
        key = version_tuple(version)
        current = scan.glibc if library == "GLIBC" else scan.glibcxx
        if current is None or key > current[0]:
            value = (key, version, name)
            if library == "GLIBC":
                scan.glibc = value
            else:
                scan.glibcxx = value


def _python_version(scan: _EnvScan, found: set[str], target: ServingTarget) -> str | None:
    if len(found) != 1:
        scan.error("lib/", f"expected exactly one lib/python3.X folder, found "
                   f"{', '.join(sorted(found)) or 'none'}")  # fmt: skip
        return None
    version = next(iter(found))
    if version != target.python_version:
        scan.error(
            f"lib/python{version}",
            f"env is for Python {version}, but target {target.image} runs Python "
            f"{target.python_version} (its python backend stub); rebuild the env for the target",
        )
    return version


def _check_pyvenv(scan: _EnvScan, content: bytes | None, target: ServingTarget) -> str | None:
    values: dict[str, str] = {}
    for line in (content or b"").decode("utf-8", "replace").splitlines():
        key, separator, value = line.partition("=")
        if separator:
            values[key.strip().lower()] = value.strip()
    home = values.get("home")
    expected = posixpath.dirname(target.interpreter_path)
    if home != expected:
        scan.error(
            "pyvenv.cfg",
            f"home = {home}: the env's stdlib is looked up there, but target {target.image} has "
            f"its Python at {target.interpreter_path} (home = {expected})",
        )
    if "command" in values:
        scan.error("pyvenv.cfg", f"records the build command ({values['command']}): a path of "
                   "the build machine")  # fmt: skip
    return home


def _check_interpreter(
    scan: _EnvScan, kind: str, links: dict[str, str], target: ServingTarget
) -> str | None:
    if kind == "conda":
        return "bin/python (shipped in the env)"
    resolved = _resolve_link("bin/python", links) if "bin/python" in links else None
    if resolved is None:
        scan.error("bin/python", "missing: a venv's bin/python must link to the image's Python")
    elif resolved != target.interpreter_path:
        scan.error(
            "bin/python",
            f"resolves to {resolved}, outside the target's Python: target {target.image} has "
            f"Python {target.python_version} at {target.interpreter_path}",
        )
    return resolved


def _check_links(scan: _EnvScan, links: dict[str, str], target: ServingTarget) -> None:
    prefix = target.python_prefix.rstrip("/") + "/"
    for name, link in sorted(links.items()):
        if link.startswith("/"):
            if not link.startswith(prefix):
                scan.error(name, f"absolute symlink to {link}, which is not in the target image "
                           f"(only its Python prefix {target.python_prefix} is)")  # fmt: skip
        else:
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), link))
            if resolved.startswith("../") or resolved == "..":
                scan.error(name, f"symlink to {link} leaves the env folder when unpacked")


def numpy_problem(numpy: str, target: ServingTarget) -> str | None:
    """Why numpy ``numpy`` cannot serve on ``target`` (the audit's words), or None."""
    if version_tuple(numpy)[:1] >= (2,) and not target.numpy2_supported:
        return (
            f"numpy {numpy}, but target {target.image} has a python backend that predates "
            f"numpy 2 support (python_backend PR 384, Triton 24.11): its outputs arrive empty; "
            f"pin numpy<2 (e.g. numpy==1.26.4) in requirements.txt"
        )
    return None


def _check_numpy(
    scan: _EnvScan,
    numpy: str | None,
    python_version: str | None,
    target: ServingTarget,
    layered: bool = False,
) -> None:
    where = f"lib/python{python_version or '3.X'}/site-packages"
    if numpy is None and layered and target.image_version("numpy") is not None:
        return  # the image's numpy, which the env sees (include-system-site-packages)
    if numpy is None:
        scan.warning(where, "no numpy: triton_python_backend_utils imports it")
        return
    problem = numpy_problem(numpy, target)
    if problem:
        scan.error(f"{where}/numpy-{numpy}.dist-info", problem)


def _check_glibc(scan: _EnvScan, target: ServingTarget) -> None:
    for found, allowed, library in (
        (scan.glibc, target.glibc, "GLIBC"),
        (scan.glibcxx, target.glibcxx, "GLIBCXX"),
    ):
        if found is not None and found[0] > version_tuple(allowed):
            scan.error(
                found[2],
                f"needs {library}_{found[1]}, but target {target.image} has {library} {allowed}: "
                f"it would not load there (use a wheel for manylinux within {target.glibc})",
            )
