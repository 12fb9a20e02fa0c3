"""The package direction: ``adapters`` builds on ``streamcoord``, never the reverse."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]


def _imported_modules(path: pathlib.Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def test_no_streamcoord_module_imports_the_adapters_package():
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "streamcoord").glob("*.py"))
        for name in _imported_modules(path)
        if name == "adapters" or name.startswith("adapters.")
    ]
    assert offenders == []


def test_importing_streamcoord_alone_leaves_adapters_unloaded_until_a_provider_is_named():
    code = (
        "import sys, streamcoord\n"
        "assert 'adapters' not in sys.modules, 'streamcoord imported adapters'\n"
        "client = streamcoord.Client('anthropic', api_key='k')\n"
        "print(type(client.adapter).__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "adapters.anthropic"


def test_importing_one_adapter_module_first_works():
    code = "import adapters.gemini as g; import streamcoord; print(g.GeminiAdapter.name)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "gemini"


def test_the_adapter_protocol_is_public_in_streamcoord():
    import adapters.base
    import streamcoord

    assert adapters.base.Adapter is streamcoord.Adapter
    assert adapters.base.EventParser is streamcoord.EventParser
    assert adapters.base.HTTPRequest is streamcoord.HTTPRequest
