"""The serving image's Python in an unpacked artifact under test (``mmetools test --artifact``).

A Python step with a packed env runs in that env (layered on the image's site-packages when it
leaves packages to the image); a Python step with no env runs in the image's Python itself. The
emulated target (:class:`mmetools.testing.triton.TargetPython`) maps a local interpreter of the
target's minor version onto the image's prefix with the image's packages as its site-packages;
this module points the steps of the unpacked copy at it. The artifact's bytes are never touched.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

from mmetools.model.config import CONFIG_FILE, load_config
from mmetools.model.folder import EXECUTION_ENV_KEY
from mmetools.testing.triton import TargetPython

_PYTHON_BACKEND_TEXT = re.compile(rb'^\s*backend:\s*"python"', re.MULTILINE)


def python_steps_in(path: Path) -> tuple[str, ...]:
    """The steps of the tarball whose config names the python backend (read as a stream)."""
    steps = []
    with tarfile.open(path, "r|gz") as tar:
        for member in tar:
            parts = member.name.removeprefix("./").split("/")
            if len(parts) == 2 and parts[1] == CONFIG_FILE and member.isfile():
                extracted = tar.extractfile(member)
                if extracted is not None and _PYTHON_BACKEND_TEXT.search(extracted.read(1 << 20)):
                    steps.append(parts[0])
    return tuple(sorted(steps))


def steps_using_an_env(model_dir: Path) -> tuple[str, ...]:
    """The steps of an unpacked artifact whose config sets EXECUTION_ENV_PATH: their own copy or
    the model's one env at the root (several steps, one archive)."""
    return tuple(
        sorted(
            config.parent.name
            for config in model_dir.glob(f"*/{CONFIG_FILE}")
            if EXECUTION_ENV_KEY in load_config(config).parameters
        )
    )


# In the unpacked copy only: the image's own Python as a folder env (its interpreter, its
# site-packages), for the Python steps that ship no env and so run in the image's Python.
IMAGE_PYTHON_DIR = ".image_python"
_ACTIVATE = (
    'VIRTUAL_ENV="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"\n'
    'PATH="$VIRTUAL_ENV/bin:$PATH"\nexport VIRTUAL_ENV PATH\n'
)


def give_image_python(model_dir: Path, python: TargetPython) -> tuple[str, ...]:
    """Point each Python step of the unpacked copy that sets no EXECUTION_ENV_PATH at a folder
    env that is the emulated image's Python (``include-system-site-packages``: the image's
    packages and nothing else), so it runs as in the container. The artifact is not touched.
    Returns the steps it pointed there."""
    steps = [
        config
        for config in sorted(model_dir.glob(f"*/{CONFIG_FILE}"))
        if _PYTHON_BACKEND_TEXT.search(config.read_bytes())
        and EXECUTION_ENV_KEY not in load_config(config).parameters
    ]
    if not steps:
        return ()
    env = model_dir / IMAGE_PYTHON_DIR
    (env / "bin").mkdir(parents=True, exist_ok=True)
    (env / "pyvenv.cfg").write_text(
        f"home = {python.prefix}/bin\ninclude-system-site-packages = true\n"
        f"version = {python.version}\n"
    )
    (env / "bin" / "activate").write_text(_ACTIVATE)
    for link in ("python", "python3", f"python{python.version}"):
        target = f"{python.prefix}/bin/python{python.version}" if link == "python" else "python"
        (env / "bin" / link).symlink_to(target)
    for config in steps:
        with config.open("a", encoding="utf-8") as stream:
            stream.write(f'\nparameters: {{ key: "{EXECUTION_ENV_KEY}" value: {{ string_value: '
                         f'"$$TRITON_MODEL_DIRECTORY/../{IMAGE_PYTHON_DIR}" }} }}\n')  # fmt: skip
    return tuple(config.parent.name for config in steps)
