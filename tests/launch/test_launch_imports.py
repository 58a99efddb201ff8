"""The VERL launch path imports on this CPU machine, failing only on CUDA-only packages we allow.

Each launch module (launchkit.LAUNCH_MODULES) is imported in a fresh interpreter.
A failure is excused only when the module that stopped it is in ALLOWED_MISSING
and really absent here; anything else missing (transfer_queue, cachetools, ...)
fails, naming the module and its distribution.

What a CPU run cannot see, said plainly: verl's vLLM replica stops at vllm, so the
rest of `verl.workers.rollout.vllm_rollout` (and the verl modules only it loads)
never runs here. A placeholder `vllm` module would not get further: verl checks
the installed vllm *distribution's* version first and then imports a dozen vllm
submodules by name. So that remainder is read instead of run: its module-level
import statements are followed (static_closure) and every outside module they name
must be installed here or be allowed, and must be in the GPU lock
(test_gpu_lock.py). Imports inside functions are not followed, as in a real import.
"""

from __future__ import annotations

import pytest
from launchkit import (
    ALLOWED_MISSING,
    LAUNCH_MODULES,
    is_installed,
    judge,
    static_closure,
)


@pytest.mark.parametrize("module", list(LAUNCH_MODULES))
def test_launch_module_imports(module, launch_records):
    """The module imports, or stops only at an allowed CUDA-only module that is absent here."""
    problem = judge(launch_records[module])
    assert problem is None, f"{module} ({LAUNCH_MODULES[module]}): {problem}"


def test_code_behind_an_allowed_module_imports_only_installed_modules(launch_records):
    """Module-level imports that a missing vllm hides from the run are installed here (or allowed)."""
    hidden = {}
    for module, record in launch_records.items():
        if not record["ok"] and judge(record) is None:
            for top, importer in static_closure(module, set(record["loaded"])).items():
                if top not in ALLOWED_MISSING and not is_installed(top):
                    hidden[top] = importer
    assert not hidden, f"modules imported behind an allowed missing module are not installed: {hidden}"


def test_missing_transfer_queue_is_not_excused():
    """A launch module failing on transfer_queue is reported with the distribution that provides it."""
    record = _failed_record(ModuleNotFoundError, "No module named 'transfer_queue'", missing_module="transfer_queue")
    problem = judge(record)
    assert problem is not None and "transfer_queue" in problem and "TransferQueue" in problem


def test_verl_vllm_guard_counts_as_missing_vllm():
    """verl's ValueError for an absent vllm distribution is excused like a missing vllm module, and only then."""
    record = _failed_record(ValueError, "vllm version None not supported",
                            raised_in="/site-packages/verl/third_party/vllm/__init__.py")
    assert (judge(record) is None) == (not is_installed("vllm"))
    other = _failed_record(ValueError, "vllm version None not supported", raised_in="/site-packages/verl/x.py")
    assert judge(other) is not None


def _failed_record(kind: type, message: str, missing_module: str | None = None, raised_in: str | None = None) -> dict:
    error = {"type": kind.__name__, "message": message, "missing_module": missing_module,
             "missing_distribution": None, "raised_in": raised_in, "traceback": f"{kind.__name__}: {message}"}
    return {"module": "verl.example", "ok": False, "error": error, "loaded": {}}
