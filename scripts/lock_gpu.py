"""Resolve deepicd's `gpu` extra for a CUDA node and write the checked-in lock file.

The GPU set (torch, vllm, verl's TransferQueue, ...) is CUDA-only and far too big
for CI to install, so CI checks a lock instead: this script asks pip to resolve
the base dependencies plus the `gpu` extra for the GPU node's platform (CPython
3.11, Linux x86_64, glibc >= 2.31, wheels only) without installing anything, and
writes every distribution of the result as `name==version`. The header records
the inputs and their digest so the tests can tell when pyproject.toml moved on
without the lock.

    python scripts/lock_gpu.py            # resolve (minutes) and rewrite the lock
    python scripts/lock_gpu.py --check    # only say whether the lock is current

By default pip runs without this machine's pip configuration (mirrors, local
wheel folders, constraint files), so the lock depends only on pyproject.toml
and the index; `--use-pip-config` keeps that configuration for sites that can
only reach a mirror.

On a GPU node, use the lock as constraints:
    pip install -c requirements/gpu-py311-manylinux_x86_64.txt -e '.[gpu]'
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = REPO_ROOT / "pyproject.toml"
LOCK = REPO_ROOT / "requirements" / "gpu-py311-manylinux_x86_64.txt"
INDEX_URL = "https://pypi.org/simple"

# The GPU node. vllm 0.24's llguidance ships manylinux_2_31 wheels only, so glibc 2.31 is the floor.
PYTHON_VERSION = "3.11"
ABI = "cp311"
GLIBC_MINOR = 31
ARCH = "x86_64"

# Dependencies published as source only. pip refuses source distributions when told to resolve for
# another platform, so these (pure Python) are built into wheels first and offered next to the index.
SOURCE_ONLY = ("antlr4-python3-runtime==4.9.*", "pylatexenc")

DIGEST_PREFIX = "# inputs-sha256: "
INPUT_PREFIX = "# input: "


def platform_tags() -> list[str]:
    """Every manylinux tag a glibc-2.31 x86_64 node accepts: pip does not expand `manylinux_2_31` itself."""
    tags = [f"manylinux_2_{minor}_{ARCH}" for minor in range(GLIBC_MINOR, 4, -1)]
    return tags + [f"manylinux2014_{ARCH}", f"manylinux2010_{ARCH}", f"manylinux1_{ARCH}"]


def load_inputs(pyproject: Path = PYPROJECT) -> list[str]:
    """The requirements the lock is made from: base dependencies, then the `gpu` extra, as written."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    base = [f"dependencies: {req}" for req in project["dependencies"]]
    gpu = [f"gpu: {req}" for req in project["optional-dependencies"]["gpu"]]
    return base + gpu


def target_description() -> str:
    """The resolution target and method, part of the digest so changing them also invalidates the lock."""
    return (f"CPython {PYTHON_VERSION} ({ABI}), Linux {ARCH}, glibc >= 2.{GLIBC_MINOR}, wheels only; "
            f"built from source: {', '.join(SOURCE_ONLY)}")


def inputs_digest(inputs: list[str]) -> str:
    """A digest of the inputs and the target: equal digests mean the lock answers the same question."""
    payload = json.dumps({"inputs": inputs, "target": target_description()}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def read_lock(path: Path = LOCK) -> tuple[dict[str, str], dict[str, str]]:
    """The lock's pins (name -> version) and header fields (`digest`, `inputs` joined by newlines)."""
    pins: dict[str, str] = {}
    inputs: list[str] = []
    header = {"digest": ""}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(DIGEST_PREFIX):
            header["digest"] = line[len(DIGEST_PREFIX):].strip()
        elif line.startswith(INPUT_PREFIX):
            inputs.append(line[len(INPUT_PREFIX):])
        elif line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.strip()] = version.strip()
    header["inputs"] = "\n".join(inputs)
    return pins, header


def pip_environment(use_pip_config: bool) -> dict[str, str]:
    """The environment for pip: without local configuration, unless asked, so only the index decides."""
    env = dict(os.environ)
    if use_pip_config:
        return env
    for key in [key for key in env if key.startswith("PIP_") and key != "PIP_CERT"]:
        del env[key]
    env["PIP_CONFIG_FILE"] = os.devnull  # pip skips every configuration file when this is os.devnull
    return env


def index_options(index_url: str | None) -> list[str]:
    return ["--index-url", index_url] if index_url else []


def build_source_only(wheel_dir: Path, env: dict[str, str], index_url: str | None) -> None:
    """Build the source-only dependencies into wheels; each must come out pure Python to fit any node."""
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
               "--wheel-dir", str(wheel_dir), *index_options(index_url), *SOURCE_ONLY]
    subprocess.run(command, check=True, env=env)
    impure = [wheel.name for wheel in wheel_dir.glob("*.whl") if not wheel.name.endswith("-none-any.whl")]
    if impure:
        raise SystemExit(f"source-only dependencies built platform wheels, which would not fit the node: {impure}")


def resolve_command(requirements: Path, report: Path, target: Path, wheel_dir: Path,
                    index_url: str | None) -> list[str]:
    """pip's dry run for the node's platform: `--target` is how pip allows platform options at all."""
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--disable-pip-version-check", "--target", str(target), "--report", str(report),
               "--requirement", str(requirements), "--find-links", str(wheel_dir), *index_options(index_url),
               "--only-binary=:all:",
               "--python-version", PYTHON_VERSION, "--implementation", "cp", "--abi", ABI]
    for tag in platform_tags():
        command += ["--platform", tag]
    return command


def resolve(inputs: list[str], index_url: str | None = INDEX_URL, use_pip_config: bool = False) -> dict[str, str]:
    """Resolve the inputs for the GPU node with pip and return every distribution it would install."""
    env = pip_environment(use_pip_config)
    with tempfile.TemporaryDirectory(prefix="deepicd-lock-") as tmp:
        work = Path(tmp)
        requirements = work / "requirements.txt"
        requirements.write_text("".join(item.split(": ", 1)[1] + "\n" for item in inputs), encoding="utf-8")
        wheel_dir = work / "wheels"
        wheel_dir.mkdir()
        build_source_only(wheel_dir, env, index_url)
        report = work / "report.json"
        command = resolve_command(requirements, report, work / "target", wheel_dir, index_url)
        subprocess.run(command, check=True, env=env)
        installs = json.loads(report.read_text(encoding="utf-8"))["install"]
    return {item["metadata"]["name"]: item["metadata"]["version"] for item in installs}


def pip_version() -> str:
    from importlib.metadata import version

    return version("pip")


def render(pins: dict[str, str], inputs: list[str], source: str) -> str:
    """The lock file: a header saying what it answers and how it was made, then sorted `name==version` lines."""
    header = [
        "# deepicd `gpu` extra resolved for a CUDA node. Generated; do not edit by hand.",
        "# Regenerate after changing the dependencies or the gpu extra: make lock-gpu (python scripts/lock_gpu.py).",
        f"# Target: {target_description()}.",
        f"# Resolved on {dt.date.today().isoformat()} by pip {pip_version()} from {source}.",
        f"# On a GPU node: pip install -c {LOCK.relative_to(REPO_ROOT).as_posix()} -e '.[gpu]'",
        f"{DIGEST_PREFIX}{inputs_digest(inputs)}",
        *[f"{INPUT_PREFIX}{item}" for item in inputs],
    ]
    body = [f"{name}=={pins[name]}" for name in sorted(pins, key=str.lower)]
    return "\n".join(header + body) + "\n"


def is_current(path: Path = LOCK, pyproject: Path = PYPROJECT) -> bool:
    """Whether the lock was made from the inputs pyproject.toml has now (no network, no pip)."""
    if not path.is_file():
        return False
    return read_lock(path)[1]["digest"] == inputs_digest(load_inputs(pyproject))


def check_host() -> None:
    """pip evaluates environment markers (sys_platform, platform_machine) on this machine, not the target."""
    if sys.platform != "linux" or platform.machine() != ARCH or sys.version_info[:2] != (3, 11):
        raise SystemExit(f"run this on Linux {ARCH} with Python {PYTHON_VERSION}: pip evaluates dependency "
                         f"markers on the running machine, so another host would lock a different set")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the lock is stale; resolve nothing")
    parser.add_argument("--output", type=Path, default=LOCK, help="where to write the lock")
    parser.add_argument("--index-url", default=INDEX_URL, help="the package index to resolve against")
    parser.add_argument("--use-pip-config", action="store_true",
                        help="keep this machine's pip configuration (index mirrors); --index-url is then ignored")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.check:
        current = is_current(args.output)
        print(f"{args.output}: {'current' if current else 'stale; run make lock-gpu'}")
        return 0 if current else 1
    check_host()
    inputs = load_inputs()
    index_url = None if args.use_pip_config else args.index_url
    started = time.monotonic()
    pins = resolve(inputs, index_url, args.use_pip_config)
    source = "the local pip configuration" if args.use_pip_config else args.index_url
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(pins, inputs, source), encoding="utf-8")
    print(f"wrote {len(pins)} pins to {args.output} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
