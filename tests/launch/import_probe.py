"""Import one module in this fresh interpreter and write what happened as JSON.

Run as `python -I import_probe.py MODULE OUT.json` by tests/launch: a fresh
interpreter per module keeps one failure from hiding or causing another. The
record holds the modules the import loaded (names and files, standard library
left out) whether or not it succeeded, so the tests can map them to the
distributions a GPU node must have, and on failure the exception, the missing
module or distribution, and the file that raised.
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback
from importlib.metadata import PackageNotFoundError


def describe(exc: BaseException) -> dict:
    """The failure: type, message, missing module or distribution, and where it was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    return {
        "type": type(exc).__name__,
        "message": str(exc)[:1000],
        "missing_module": exc.name if isinstance(exc, ModuleNotFoundError) else None,
        "missing_distribution": exc.name if isinstance(exc, PackageNotFoundError) else None,
        "raised_in": frames[-1].filename if frames else None,
        "traceback": "".join(traceback.format_exception(exc))[-4000:],
    }


def third_party(names: set[str]) -> dict[str, str | None]:
    """The loaded modules outside the standard library, each with its file (None for namespaces)."""
    loaded = {}
    for name in sorted(names):
        if name.partition(".")[0] in sys.stdlib_module_names:
            continue
        module = sys.modules.get(name)
        loaded[name] = getattr(module, "__file__", None)
    return loaded


def main(module: str, out: str) -> None:
    baseline = set(sys.modules)
    record: dict = {"module": module, "ok": True, "error": None}
    try:
        importlib.import_module(module)
    except BaseException as exc:  # any failure is data here; the tests judge it
        record["ok"] = False
        record["error"] = describe(exc)
    record["loaded"] = third_party(set(sys.modules) - baseline)
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(record, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
