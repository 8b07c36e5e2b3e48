"""Deterministic env archives: venv-pack's tar rewritten so any machine gives the same bytes.

``normalize_env_archive`` sorts members, zeroes times and owners, fixes modes, drops bytecode and
activation scripts that name the build folder, writes a canonical ``pyvenv.cfg``, links
``bin/python`` to the target's interpreter, refreshes every ``RECORD`` and refuses an archive that
still names a folder of the build machine.
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import io
import logging
import posixpath
import re
import tarfile
from pathlib import Path

from mmetools.build.env.bytecode import is_hash_based_pyc
from mmetools.build.env.slim import SLIM_RULES, slim_rule
from mmetools.core.errors import EnvPackError
from mmetools.core.targets import ServingTarget

logger = logging.getLogger(__name__)

# Activation scripts uv writes with the build folder's absolute path in them; venv-pack adds its
# own relocatable bin/activate and bin/deactivate.
_DROPPED_BIN = re.compile(r"^bin/(activate\..+|activate_this\.py|deactivate\.bat|pydoc\.bat)$")
ENV_FILE_MODE = 0o644
ENV_EXEC_MODE = 0o755


# A script whose interpreter path is too long for a shebang (127 bytes: a deep build folder) gets
# this shell trampoline from the installer instead; venv-pack rewrites only real shebangs.
_LONG_SHEBANG = re.compile(rb"^#!/bin/sh\n'''exec' [^\n]*\n' '''\n")


def _short_shebang(data: bytes) -> bytes:
    """The trampoline replaced by the shebang venv-pack writes (``#!/usr/bin/env python``), so a
    script is the same bytes whatever the length of the build folder's path."""
    return _LONG_SHEBANG.sub(b"#!/usr/bin/env python\n", data, count=1)


def _dropped(name: str) -> bool:
    parts = name.split("/")
    return (
        "__pycache__" in parts
        or name.endswith((".pyc", ".pyo"))
        or _DROPPED_BIN.match(name) is not None
    )


def _kept_bytecode(name: str, data: bytes | None, target: ServingTarget) -> bool:
    """The hash-based bytecode compile_bytecode wrote for the target's Python (reproducible);
    any other bytecode (timestamp-based, another Python's) is dropped."""
    tag = f".cpython-{target.python_version.replace('.', '')}.pyc"
    return (
        data is not None
        and name.endswith(tag)
        and name.split("/")[-2:-1] == ["__pycache__"]
        and is_hash_based_pyc(data)
    )


def _pyvenv_cfg(target: ServingTarget, layered: bool) -> bytes:
    # Only what the image's Python reads: where its interpreter lives, and whether the env sees
    # the image's site-packages (layered: the image provides packages the env leaves out). No
    # build command, no local patch version, no tool versions.
    home = target.interpreter_path.rsplit("/", 1)[0]
    system = "true" if layered else "false"
    return (
        f"home = {home}\ninclude-system-site-packages = {system}\n"
        f"version = {target.python_version}\n"
    ).encode()


def normalize_env_archive(
    raw: Path, output: Path, target: ServingTarget, forbidden: set[str], *, layered: bool = False
) -> dict[str, int]:
    """Rewrite venv-pack's tar as a reproducible .tar.gz.

    Members sorted, mtime 0, uid/gid 0, no owner names, mode 0755 for folders and executables
    else 0644, hard links stored as files, no bytecode, a canonical pyvenv.cfg, ``bin/python``
    a link to the target's interpreter; gzip header without name or time. Any file that still
    names a folder of the build machine (``forbidden``) is an EnvPackError naming it.
    Files a slim rule drops are left out (mmetools.build.env.slim): returns the bytes each rule
    saved. Hash-based bytecode for the target's Python is kept (mmetools.build.env.bytecode).
    """
    entries: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    slimmed = {rule.name: 0 for rule in SLIM_RULES}
    with tarfile.open(raw, "r:") as source:
        for member in source:
            name = posixpath.normpath(member.name.removeprefix("./"))
            if name in (".", ""):
                continue
            rule = slim_rule(name)
            if rule is not None:
                slimmed[rule.name] += member.size if member.isfile() else 0
                continue
            if _dropped(name):
                if not (member.isfile() and name.endswith(".pyc")):
                    continue
                extracted = source.extractfile(member)
                pyc = extracted.read() if extracted is not None else b""
                if _kept_bytecode(name, pyc, target):
                    info = _file_info(name, ENV_FILE_MODE)
                    entries[name] = (info, pyc)
                continue
            info = tarfile.TarInfo(name)
            data: bytes | None = None
            if member.isdir():
                info.type, info.mode = tarfile.DIRTYPE, ENV_EXEC_MODE
            elif member.issym():
                info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, member.linkname
            elif member.isfile() or member.islnk():
                extracted = source.extractfile(member)
                data = extracted.read() if extracted is not None else b""
                if name.startswith("bin/"):
                    data = _short_shebang(data)
                info.type = tarfile.REGTYPE
                info.mode = ENV_EXEC_MODE if member.mode & 0o111 else ENV_FILE_MODE
            else:
                continue
            entries[name] = (info, data)
    entries["pyvenv.cfg"] = (
        _file_info("pyvenv.cfg", ENV_FILE_MODE),
        _pyvenv_cfg(target, layered),
    )
    # The __pycache__ folders of kept bytecode (dropped above with the rest of the bytecode).
    for name in [n for n in entries if n.endswith(".pyc")]:
        folder = posixpath.dirname(name)
        if folder not in entries:
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, ENV_EXEC_MODE
            entries[folder] = (info, None)
    # The env's interpreter is the image's: bin/python -> interpreter_path, the others -> python.
    for link in ("python", "python3", f"python{target.python_version}"):
        info = tarfile.TarInfo(f"bin/{link}")
        info.type, info.mode = tarfile.SYMTYPE, 0o777
        info.linkname = target.interpreter_path if link == "python" else "python"
        entries[info.name] = (info, None)
    _refresh_records(entries)
    leaks = sorted(
        name
        for name, (_, data) in entries.items()
        if data is not None and any(path.encode() in data for path in forbidden if len(path) > 1)
    )
    leaks += sorted(
        f"{name} -> {info.linkname}"
        for name, (info, _) in entries.items()
        if info.issym()
        and any(info.linkname.startswith(path) for path in forbidden if len(path) > 1)
    )
    if leaks:
        raise EnvPackError(
            f"the packed env still names a folder of the build machine in: {', '.join(leaks[:10])}"
            f"{f' and {len(leaks) - 10} more' if len(leaks) > 10 else ''}"
        )
    with output.open("wb") as stream:
        with gzip.GzipFile(filename="", mode="wb", fileobj=stream, mtime=0, compresslevel=6) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for name in sorted(entries, key=lambda n: n.split("/")):
                    info, data = entries[name]
                    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                    if data is None:
                        tar.addfile(info)
                    else:
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
    return slimmed


def _refresh_records(entries: dict[str, tuple[tarfile.TarInfo, bytes | None]]) -> None:
    """Make every ``*.dist-info/RECORD`` describe the files as packed: venv-pack rewrote the
    scripts' shebangs (the build folder's path, whose length changes their hash and size) and
    bytecode is left out. Lines for files that are not packed are dropped."""
    for name in [n for n in entries if n.endswith(".dist-info/RECORD")]:
        info, data = entries[name]
        if data is None:
            continue
        base = posixpath.dirname(posixpath.dirname(name))
        rows = []
        for row in csv.reader(io.StringIO(data.decode("utf-8"))):
            if not row:
                continue
            member = posixpath.normpath(posixpath.join(base, row[0]))
            if member == name:
                rows.append([row[0], "", ""])
                continue
            packed = entries.get(member)
            if packed is None or packed[1] is None:
                if packed is not None:
                    rows.append(row)  # a symlink: listed as it was
                continue
            digest = base64.urlsafe_b64encode(hashlib.sha256(packed[1]).digest()).rstrip(b"=")
            rows.append([row[0], f"sha256={digest.decode()}", str(len(packed[1]))])
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        entries[name] = (info, text.getvalue().encode("utf-8"))


def _file_info(name: str, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.REGTYPE, mode
    return info
