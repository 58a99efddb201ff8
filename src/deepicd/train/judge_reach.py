"""Can the reward workers reach the judge? Asked from every node of the Ray cluster, where they run.

VERL places reward workers round-robin on all nodes, so a judge that answers
the launching machine may still be unreachable from the others (a firewall, a
hostname only one node resolves). Preflight therefore runs one tiny Ray task
pinned to each alive node that asks the judge's `/models` endpoint.
"""

from __future__ import annotations

import urllib.error
import urllib.request

PROBE_TIMEOUT_S = 5.0


def probe_url(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> str:
    """'' when the OpenAI-compatible server at `url` answers `GET {url}/models`; otherwise why not."""
    target = url.rstrip("/") + "/models"
    try:
        with urllib.request.urlopen(target, timeout=timeout_s) as response:  # noqa: S310 (http(s) URL checked upstream)
            return "" if response.status < 500 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return "" if exc.code < 500 else f"HTTP {exc.code}"  # the server is there; auth or routing is its business
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{type(reason).__name__}: {reason}"


def probe_from_nodes(address: str, url: str, timeout_s: float = PROBE_TIMEOUT_S) -> dict[str, str]:
    """Node address -> '' (answered) or the failure, for every alive node of the Ray cluster at `address`."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    options = {"include_dashboard": False} if address == "local" else {}  # "local" starts a cluster here
    ray.init(address=address, log_to_driver=False, logging_level="ERROR", **options)
    try:
        probe = ray.remote(num_cpus=0)(probe_url)
        pending = {}
        for node in ray.nodes():
            if not node.get("Alive"):
                continue
            strategy = NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
            pending[node["NodeManagerAddress"]] = probe.options(scheduling_strategy=strategy).remote(url, timeout_s)
        results = {}
        for where, ref in pending.items():
            try:
                results[where] = ray.get(ref, timeout=timeout_s + 60)
            except Exception as exc:  # the task could not run there: as bad as no answer
                results[where] = f"probe did not run: {type(exc).__name__}: {exc}"
        return results
    finally:
        ray.shutdown()


def describe(results: dict[str, str], url: str) -> tuple[bool, str]:
    """(all answered, one line naming the nodes that did not)."""
    failed = {where: why for where, why in results.items() if why}
    if not results:
        return False, "no alive node found in the Ray cluster"
    if not failed:
        return True, f"{url} answers from all {len(results)} node(s)"
    listed = "; ".join(f"{where}: {why}" for where, why in sorted(failed.items()))
    return False, f"{url} does not answer from {len(failed)} of {len(results)} node(s) ({listed})"
