"""Preflight asks the judge from every node of the Ray cluster, because that is where reward workers run."""

from __future__ import annotations

import pytest
from fake_openai import FakeOpenAIServer, error

from deepicd.serving import free_port
from deepicd.train import judge_reach


@pytest.fixture()
def judge_url():
    with FakeOpenAIServer(lambda path, body: error(404)) as server:  # answers GET /v1/models
        yield server.url


def test_probe_url_tells_an_answering_server_from_a_silent_port(judge_url):
    assert judge_reach.probe_url(judge_url) == ""
    silent = judge_reach.probe_url(f"http://127.0.0.1:{free_port()}/v1", timeout_s=1)
    assert "refused" in silent.lower() or "error" in silent.lower()


def test_describe_names_the_nodes_that_cannot_reach_it():
    ok, line = judge_reach.describe({"10.0.0.1": "", "10.0.0.2": "ConnectionRefusedError: refused"}, "http://j/v1")
    assert not ok and "10.0.0.2: ConnectionRefusedError" in line and "1 of 2 node(s)" in line
    assert judge_reach.describe({"10.0.0.1": ""}, "http://j/v1") == (True, "http://j/v1 answers from all 1 node(s)")


@pytest.mark.slow
def test_probe_runs_on_each_node_of_a_real_ray_cluster(judge_url):
    """A one-node local Ray cluster: the task is pinned to the node and reaches the judge from there."""
    results = judge_reach.probe_from_nodes("local", judge_url)
    assert len(results) == 1 and list(results.values()) == [""]
    dead = judge_reach.probe_from_nodes("local", f"http://127.0.0.1:{free_port()}/v1", timeout_s=1)
    assert list(dead.values())[0] != ""
