"""The error policy: one hierarchy, library code free of the CLI, and one line with exit 2 for every
expected failure, including path, permission and disk problems."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
from pathlib import Path

from typer.testing import CliRunner

import deepicd
from deepicd.cli import app
from deepicd.commands import describe_os_error
from deepicd.errors import ConfigError, DeepicdError, UserError

SRC = Path(deepicd.__file__).parent
runner = CliRunner()


def library_modules() -> list[Path]:
    return [p for p in SRC.rglob("*.py") if "commands" not in p.relative_to(SRC).parts and p.name not in ("cli.py", "__main__.py")]


def test_library_code_never_imports_the_cli_package():
    offenders = []
    for path in library_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            if any(n == "deepicd.commands" or n.startswith("deepicd.commands.") or n == "deepicd.cli" for n in names):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert offenders == []


def public_exceptions() -> dict[str, type]:
    """Every public exception class defined in the package (private retry signals are internal)."""
    found = {}
    for info in pkgutil.walk_packages(deepicd.__path__, "deepicd."):
        if info.name in {"deepicd.__main__"}:
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional engine (vllm, verl) that this machine lacks
            continue
        for name, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == info.name
                    and not name.startswith("_")):
                found[f"{info.name}.{name}"] = value
    return found


def test_every_public_exception_is_a_deepicd_error():
    exceptions = public_exceptions()
    assert "deepicd.errors.UserError" in exceptions and "deepicd.endpoints.EndpointRefused" in exceptions
    # The demo's own failure is the demo runner's exit status, not a stage error.
    strays = [name for name, cls in exceptions.items()
              if not issubclass(cls, DeepicdError) and name != "deepicd.demo.DemoFailed"]
    assert strays == []


def test_config_errors_are_user_errors_and_still_value_errors():
    assert issubclass(ConfigError, UserError) and issubclass(ConfigError, ValueError)


def test_os_error_is_one_line_naming_the_path():
    assert describe_os_error(PermissionError(13, "Permission denied", "/data/out")) == "Permission denied: /data/out"
    assert describe_os_error(OSError(18, "Invalid cross-device link", "a", None, "b")) == "Invalid cross-device link: a -> b"
    assert describe_os_error(OSError("disk full")) == "disk full"


def test_score_output_that_is_a_folder_is_one_line_exit_2(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"completion": "", "gold": "I10"}) + "\n")
    folder = tmp_path / "taken"
    folder.mkdir()
    result = runner.invoke(app, ["score", "--preset", "paper", "-i", str(source), "-o", str(folder)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and str(folder) in result.output


def test_output_under_a_file_is_one_line_exit_2(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"completion": "", "gold": "I10"}) + "\n")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = runner.invoke(app, ["score", "--preset", "paper", "-i", str(source), "-o", str(blocker / "out.jsonl")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and str(blocker) in result.output
