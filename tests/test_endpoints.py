"""MIMIC text only goes to the user's own machines: the URL policy, before any connection."""

from __future__ import annotations

import pytest

from deepicd.endpoints import EndpointRefused, api_key_from_env, check_endpoint, redact


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/v1", "http://localhost:8000/v1", "http://[::1]:8000/v1", "http://10.1.2.3/v1",
     "http://192.168.0.7:8000/v1", "http://172.20.0.5/v1", "https://169.254.1.1/v1"],
)
def test_internal_addresses_are_allowed(url):
    assert check_endpoint(url) == url


@pytest.mark.parametrize("url", ["http://8.8.8.8/v1", "https://1.1.1.1:443/v1", "http://[2001:4860:4860::8888]/v1"])
def test_public_addresses_are_refused_with_the_way_out(url):
    with pytest.raises(EndpointRefused, match="allowed_hosts.*--allow-external-endpoint"):
        check_endpoint(url)


def test_unresolvable_hosts_are_refused():
    with pytest.raises(EndpointRefused, match="does not resolve"):
        check_endpoint("http://judge.invalid/v1")


def test_listed_hosts_and_explicit_permission():
    assert check_endpoint("http://8.8.8.8/v1", allowed_hosts=["8.8.8.8"])
    assert check_endpoint("http://judge.invalid/v1", allowed_hosts=["judge.invalid"])
    assert check_endpoint("https://api.example.com/v1", allow_external=True)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/v1", "127.0.0.1:8000", "http:///v1"])
def test_non_http_urls_are_refused(url):
    with pytest.raises(EndpointRefused, match="not an http"):
        check_endpoint(url)


def test_credentials_never_reach_messages():
    url = "http://user:s3cret@8.8.8.8/v1"
    assert "s3cret" not in redact(url)
    with pytest.raises(EndpointRefused) as refused:
        check_endpoint(url)
    assert "s3cret" not in str(refused.value)


def test_api_key_comes_from_the_named_variable(monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", "abc")
    assert api_key_from_env("MY_JUDGE_KEY") == "abc"
    assert api_key_from_env("") == "EMPTY"
    monkeypatch.delenv("MY_JUDGE_KEY")
    assert api_key_from_env("MY_JUDGE_KEY") == "EMPTY"


@pytest.mark.parametrize("url, loopback", [
    ("http://127.0.0.1:8000/v1", True), ("http://127.0.0.2:8000/v1", True), ("http://localhost:8000/v1", True),
    ("http://[::1]:8000/v1", True), ("http://10.0.0.7:8000/v1", False), ("http://judge.internal/v1", False),
])
def test_is_loopback_tells_this_machine_from_the_cluster(url, loopback):
    from deepicd.endpoints import is_loopback

    assert is_loopback(url) is loopback
