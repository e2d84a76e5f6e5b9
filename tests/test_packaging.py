"""The project's promises about itself: README commands, CI, stubs, CLI."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import causal_rewards
from causal_rewards import _core

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", text, re.DOTALL)
    assert block, "README must start with a code block holding the two commands"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_readme_starts_with_two_commands():
    commands = readme_commands()
    assert len(commands) == 2
    assert "crm demo" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command():
    assert readme_commands()[1] in (ROOT / ".ci" / "run").read_text()


def test_stub_names_every_extension_function():
    stub = (ROOT / "python" / "causal_rewards" / "_core.pyi").read_text()
    public = [name for name in dir(_core) if not name.startswith("_") and callable(getattr(_core, name))]
    for name in public:
        assert f"def {name}(" in stub, name
    assert (ROOT / "python" / "causal_rewards" / "py.typed").exists()


def test_public_functions_have_docstrings():
    for name in causal_rewards.__all__:
        obj = getattr(causal_rewards, name)
        assert inspect.getdoc(obj), name


def test_cli_usage_error_exits_2():
    result = subprocess.run([sys.executable, "-m", "causal_rewards.cli", "no-such-command"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2
