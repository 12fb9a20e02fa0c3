"""tox loads this file as a plugin: Python discovery also finds the interpreters pyenv
installed, not only those on PATH.

pyenv's shims run only the versions made global or local (``pyenv global 3.11``): on a
machine with 3.9-3.13 installed, ``python3.9`` on PATH fails and tox would skip py39. The
plugins meant for this (virtualenv-pyenv 0.7, tox-pyenv-redux 1.2) fail with tox 4.67 and
virtualenv 21.15 ("major version component is required": they cannot parse the
``VIRTUALENV_PYTHON=<0`` that tox sets), so this hands tox's own ``--discover`` option the
newest interpreter under ``$PYENV_ROOT/versions`` of each Python the env list names
(``py39`` -> 3.9.x). Discovery still checks each against the environment's spec; PATH is
tried after them, as before. Only those: one interpreter discovery cannot query (pyenv's
2.7) would make it fail for every environment.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Collection, Dict, List, Tuple

from tox.plugin import impl

_RELEASE = re.compile(r"(\d+)\.(\d+)\.(\d+)")  # final CPython releases as pyenv names them
_PY_FACTOR = re.compile(r"(?:^|-)py(\d)(\d+)(?=-|$)")  # py39, py313-web


def pyenv_interpreters(wanted: Collection[Tuple[int, int]]) -> List[str]:
    """The newest pyenv-installed interpreter of each wanted (major, minor)."""
    versions = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    newest: Dict[Tuple[int, int], Tuple[Tuple[int, ...], Path]] = {}
    for entry in sorted(versions.iterdir()) if versions.is_dir() else ():
        match = _RELEASE.fullmatch(entry.name)
        if not match or (int(match[1]), int(match[2])) not in wanted:
            continue
        release = tuple(int(part) for part in match.groups())
        executable = entry / "bin" / f"python{release[0]}.{release[1]}"
        if os.access(executable, os.X_OK) and release > newest.get(release[:2], ((), executable))[0]:
            newest[release[:2]] = (release, executable)
    return [str(executable) for _, (_, executable) in sorted(newest.items())]


@impl
def tox_add_core_config(core_conf: Any, state: Any) -> None:
    options = state.conf.options
    if not hasattr(options, "discover"):  # only the commands that create environments have it
        return
    wanted = {(int(m[1]), int(m[2])) for name in core_conf["env_list"] for m in _PY_FACTOR.finditer(name)}
    # the user's own --discover come first
    options.discover = list(options.discover) + [p for p in pyenv_interpreters(wanted) if p not in options.discover]
