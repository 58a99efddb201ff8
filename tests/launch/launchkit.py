"""What the VERL launch path imports, and how to check it on a CPU machine.

deepicd starts `python -m verl.trainer.main_ppo` and `python -m verl.model_merger`
on GPU nodes, where the modules below are loaded (by the driver, the Ray task
runner, the trainer and the reward-loop workers). CI has no GPU and never
installs the `gpu` extra, so it checks two things instead: each module imports
here, in a fresh interpreter, failing only on CUDA-only packages named in
ALLOWED_MISSING; and every distribution those imports load is in the GPU lock.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata as metadata
import importlib.util
import inspect
import json
import os
import site
import subprocess
import sys
import tempfile
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
PROBE = HERE / "import_probe.py"
LOCK_SCRIPT = REPO_ROOT / "scripts" / "lock_gpu.py"
PROBE_TIMEOUT_S = 300
OWN_PACKAGE = "deepicd"

# module -> why the launch loads it. Everything these import at module level is checked. The order
# matters only for speed: later modules are usually loaded by earlier ones (see probe_all).
LAUNCH_MODULES = {
    "verl.trainer.main_ppo": "the entry point: python -m verl.trainer.main_ppo",
    "verl.trainer.ppo.v1": "TaskRunnerV1 (trainer.use_v1=true, verl's default): trainers, AgentLoopManagerTQ",
    "verl.experimental.reward_loop.reward_manager.naive": "reward.reward_manager.name=naive (no judge)",
    "verl.workers.rollout.vllm_rollout.vllm_async_server": "the vLLM replica (actor_rollout_ref.rollout.name=vllm)",
    "verl.model_merger.fsdp_model_merger": "the --backend fsdp merger",
    "verl.model_merger.__main__": "python -m verl.model_merger merge",
    "deepicd.rewards.verl_entry": "our compute_score, loaded by path in every reward-loop worker",
    "deepicd.rewards.scorer": "built lazily by compute_score in the reward worker",
    "deepicd.rewards.judge": "built by the scorer when the reward preset lists the judge (paper-judge), with the "
                             "shared OpenAI client (deepicd.openai_client, the openai SDK)",
    "transfer_queue": "TaskRunnerV1.run imports it before building the trainer",
    "verl.experimental.reward_loop": "RewardLoopManager and the RewardLoopWorker actors that score responses",
    "verl.experimental.reward_loop.reward_manager.limited": "reward.reward_manager.name=rate_limited (judge)",
    "verl.workers.engine_workers": "ActorRolloutRefWorker, the FSDP actor/reference worker",
    "verl.workers.engine.fsdp": "the FSDP training engine (actor.strategy=fsdp)",
}


@dataclass(frozen=True)
class Allowed:
    """A module the CPU environment may lack, why, and the distribution a GPU node installs for it (if any)."""

    reason: str
    distribution: str | None


# Only these may stop an import here. The vLLM replica is the one launch module they stop: see
# static_closure for how the part of it that never runs here is still checked.
ALLOWED_MISSING = {
    "vllm": Allowed("CUDA-only wheels, in the gpu extra; verl's vLLM rollout needs it", "vllm"),
    "flash_attn": Allowed("CUDA-only; optional for verl (torch fallbacks), deepicd uses sdpa", None),
    "sglang": Allowed("another rollout engine (rollout.name=sglang); deepicd uses vllm", None),
    "megatron": Allowed("another training engine (strategy=megatron); deepicd uses fsdp", None),
}

# Files that raise on purpose when an allowed module is absent, instead of an ImportError.
GUARD_SITES = {
    "verl/third_party/vllm/__init__.py": "vllm",  # ValueError: "vllm version None not supported"
}

# Distributions of launch dependencies that may be absent here, so importlib.metadata cannot name them.
KNOWN_DISTRIBUTIONS = {
    "vllm": "vllm",
    "transfer_queue": "TransferQueue",
    "zmq": "pyzmq",
    "cachetools": "cachetools",
    "tensordict": "tensordict",
    "codetiming": "codetiming",
    "msgspec": "msgspec",
}

# Needed on the node whatever the CPU imports show: the engines themselves.
REQUIRED_DISTRIBUTIONS = {
    "vllm": "the rollout engine (rollout.name=vllm)",
    "ray": "main_ppo starts a Ray cluster and every worker is a Ray actor",
    "TransferQueue": "verl's default v1 trainer moves batches through it",
    "torch": "the training engine",
}


def top_level(module: str) -> str:
    return module.partition(".")[0]


def probe(module: str) -> dict:
    """Import `module` in a fresh interpreter (isolated mode, warnings off) and return its record."""
    with tempfile.TemporaryDirectory(prefix="deepicd-probe-") as tmp:
        out = Path(tmp) / "record.json"
        command = [sys.executable, "-I", "-W", "ignore", str(PROBE), module, str(out)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, cwd=tmp)
        if not out.is_file():
            raise RuntimeError(f"import probe of {module} died (exit {done.returncode}):\n{done.stderr[-3000:]}")
        return json.loads(out.read_text(encoding="utf-8"))


def probe_all(modules: list[str]) -> dict[str, dict]:
    """Probe the modules, a few at a time, skipping those an earlier successful probe already imported.

    Each probe re-imports torch, transformers and ray from scratch (seconds each),
    and most launch modules load one another (the v1 trainer loads the engine
    workers and the reward loop), so a module found in the finished import of an
    earlier probe is recorded as covered by it instead of probed again. A module
    is only probed on its own when nothing before it loaded it cleanly, which is
    also what happens to every module behind a failure, so failures stay isolated.
    """
    records: dict[str, dict] = {}
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        running = {}
        queue = list(modules)
        while queue or running:
            while queue and len(running) < workers:
                module = queue.pop(0)
                cover = _covered_by(module, records)
                if cover:
                    records[module] = {"module": module, "ok": True, "error": None, "loaded": {}, "covered_by": cover}
                else:
                    running[pool.submit(probe, module)] = module
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                records[running.pop(future)] = future.result()
            queue = [m for m in queue if m not in records]
    return {module: records[module] for module in modules}


def _covered_by(module: str, records: dict[str, dict]) -> str | None:
    return next((name for name, rec in records.items() if rec["ok"] and module in rec["loaded"]), None)


def blocked_by(error: dict) -> str | None:
    """The module whose absence caused this failure, when the failure says so; else None."""
    if error["missing_module"]:
        return top_level(error["missing_module"])
    if error["missing_distribution"]:
        name = canonicalize_name(error["missing_distribution"])
        return next((mod for mod, dist in KNOWN_DISTRIBUTIONS.items() if canonicalize_name(dist) == name), name)
    raised_in = (error["raised_in"] or "").replace(os.sep, "/")
    return next((mod for path, mod in GUARD_SITES.items() if raised_in.endswith(path)), None)


def is_installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def judge(record: dict) -> str | None:
    """None when the import succeeded or stopped only at an allowed, really absent module; else the problem."""
    if record["ok"]:
        return None
    error = record["error"]
    culprit = blocked_by(error)
    if culprit in ALLOWED_MISSING and not is_installed(culprit):
        return None
    if error["missing_module"] or error["missing_distribution"]:
        dist = ", ".join(distribution_names(culprit, []) or [KNOWN_DISTRIBUTIONS.get(culprit, "unknown")])
        return (f"{record['module']} needs module {culprit!r} (distribution {dist}), which is missing here "
                f"and not in ALLOWED_MISSING:\n{error['traceback']}")
    return f"{record['module']} failed to import:\n{error['traceback']}"


@functools.lru_cache(maxsize=1)
def _packages() -> dict[str, list[str]]:
    return metadata.packages_distributions()


@functools.lru_cache(maxsize=None)
def _files_of(dist: str) -> frozenset[str]:
    files = metadata.distribution(dist).files or []
    return frozenset(str(Path(metadata.distribution(dist).locate_file(f)).resolve()) for f in files)


def distribution_names(top: str, files: list[str]) -> list[str]:
    """The installed distributions that provide module `top` (narrowed by file when several share it)."""
    candidates = sorted(set(_packages().get(top, [])))
    if len(candidates) <= 1 or not files:
        return candidates
    resolved = {str(Path(f).resolve()) for f in files}
    owners = [dist for dist in candidates if resolved & _files_of(dist)]
    return owners or candidates


@functools.lru_cache(maxsize=1)
def _site_dirs() -> tuple[Path, ...]:
    return tuple(Path(p).resolve() for p in site.getsitepackages())


def owning_top(name: str, file: str | None) -> str | None:
    """The site-packages entry a loaded module comes from (its top-level name), or None if not third-party.

    Going by file, not by module name, also places modules that packages put on
    sys.path themselves (ray's vendored colorama, scipy's extension modules).
    Modules outside site-packages (the standard library, our own source tree,
    files generated at run time) and file-less runtime artefacts give None.
    """
    if name.startswith("__"):
        return None
    if not file:
        top = top_level(name)
        return top if top in _packages() else None
    path = Path(file).resolve()
    for root in _site_dirs():
        if path.is_relative_to(root):
            first = path.relative_to(root).parts[0]
            return inspect.getmodulename(first) or first
    return None


def loaded_distributions(record: dict) -> dict[str, str]:
    """distribution -> a module of it that this record's import loaded (our own package left out)."""
    files_by_top: dict[str, list[str]] = {}
    for name, file in record["loaded"].items():
        top = owning_top(name, file)
        if top and top != OWN_PACKAGE:
            files_by_top.setdefault(top, []).extend([file] if file else [])
    found = {}
    for top, files in files_by_top.items():
        for dist in distribution_names(top, files) or [KNOWN_DISTRIBUTIONS.get(top, f"<unmapped module {top}>")]:
            found.setdefault(dist, top)
    return found


def _optional_import(node: ast.Try) -> bool:
    """A try whose handler catches ImportError (or broader): its imports are optional by design."""
    caught = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
    for handler in node.handlers:
        if handler.type is None:
            return True
        names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(isinstance(n, ast.Name) and n.id in caught for n in names):
            return True
    return False


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _package_of(module: str, is_package: bool, level: int) -> str:
    parts = module.split(".") if is_package else module.split(".")[:-1]
    return ".".join(parts[: len(parts) - (level - 1)])


def required_imports(source: str, module: str, is_package: bool) -> set[str]:
    """Absolute names a module imports when it is loaded (not inside functions), minus optional and type-only ones."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Try) and _optional_import(node):
            for child in node.orelse + node.finalbody:
                visit(child)
            return
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return  # runs only if called: lazy imports depend on the run's settings, as in the live import
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package_of(module, is_package, node.level)
                base = f"{package}.{base}" if base else package
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def _source_of(module: str, root: Path) -> tuple[Path, bool] | None:
    """The file of a module of the package at `root` (its parent holds the top-level folder), if any."""
    path = root.parent.joinpath(*module.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py", True
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py"), False
    return None


def static_closure(start: str, executed: set[str]) -> dict[str, str]:
    """Outside modules named by import statements of `start` and of the package modules it loads that never ran.

    When an allowed module (vllm) stops an import, the rest of that module and of
    the package modules it would load are never executed on this machine. Their
    module-level import statements are read instead, following the package's own
    modules that did not run (those in `executed` ran and were checked for real).
    Returns each outside top-level module with the first package module naming it,
    to be checked for presence here and in the GPU lock. Imports guarded by
    `except ImportError` or `if TYPE_CHECKING`, and imports inside functions
    (lazy, settings-dependent, as in a real import), are left out.
    """
    package = top_level(start)
    root = Path(importlib.util.find_spec(package).origin).parent
    parents = [".".join(start.split(".")[:i]) for i in range(2, start.count(".") + 2)]
    todo = [name for name in parents if name not in executed]
    seen: set[str] = set()
    outside: dict[str, str] = {}
    while todo:
        name = todo.pop(0)
        located = _source_of(name, root)
        if name in seen or located is None:
            continue
        seen.add(name)
        path, is_package = located
        for imported in sorted(required_imports(path.read_text(encoding="utf-8"), name, is_package)):
            top = top_level(imported)
            if top != package:
                if top and top not in sys.stdlib_module_names:
                    outside.setdefault(top, name)
            elif imported not in executed and imported not in seen:
                todo.append(imported)
    return outside


def imported_distributions(records: dict[str, dict]) -> dict[str, str]:
    """distribution -> why, for everything the launch modules import, derived from the probes alone.

    The union of the distributions each probe loaded, of the modules that stopped
    an import (vllm here, or transfer_queue if it were missing), and of what the
    statically read remainder of a stopped module imports. Allowed modules that
    a GPU node does not install either (flash_attn, sglang, megatron) are left out.
    """
    needed: dict[str, str] = {}
    for module, record in records.items():
        for dist, top in loaded_distributions(record).items():
            needed.setdefault(dist, f"module {top}, loaded by {module}")
        if record["ok"]:
            continue
        culprit = blocked_by(record["error"])
        outside = static_closure(module, set(record["loaded"])) if culprit in ALLOWED_MISSING else {}
        for top, by in {**outside, **({culprit: module} if culprit else {})}.items():
            if top in ALLOWED_MISSING:
                dists = [ALLOWED_MISSING[top].distribution] if ALLOWED_MISSING[top].distribution else []
            else:
                dists = distribution_names(top, []) or [KNOWN_DISTRIBUTIONS.get(top, f"<unmapped module {top}>")]
            for dist in dists:
                needed.setdefault(dist, f"module {top}, imported by {by}")
    return needed


def launch_needs(records: dict[str, dict]) -> dict[str, str]:
    """What a GPU node must install for the launch: the imported distributions plus the engines themselves."""
    return {**{dist: f"required: {why}" for dist, why in REQUIRED_DISTRIBUTIONS.items()},
            **imported_distributions(records)}


def missing_from_lock(needed: dict[str, str], pins: dict[str, str]) -> dict[str, str]:
    """The needed distributions (name -> why) that the lock does not pin, compared by normalized name."""
    locked = {canonicalize_name(name) for name in pins}
    return {dist: why for dist, why in needed.items() if canonicalize_name(dist) not in locked}


def load_lock_script():
    """scripts/lock_gpu.py as a module: the tests use its digest and lock reader, not a copy of them."""
    spec = importlib.util.spec_from_file_location("lock_gpu", LOCK_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
