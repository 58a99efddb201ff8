"""Keep MIMIC-IV text at home: refuse model endpoints outside the user's own machines.

The MIMIC-IV data use agreement forbids sending notes to third-party services.
Every component that sends a note to a server (the judge, a distillation
teacher, an evaluation server) checks its URL here first: loopback, private
ranges and hosts the user lists are allowed; anything else is refused before a
single request, unless the user explicitly allows external endpoints.
API keys are read from a named environment variable and never stored or logged.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar
from urllib.parse import urlsplit, urlunsplit

from deepicd.errors import UserError
from deepicd.schema import choice, require

ALLOW_HINT = (
    "If this server is yours and the data use agreement permits it, add the host to 'allowed_hosts' "
    "or pass --allow-external-endpoint (config: allow_external_endpoint=true)."
)


class EndpointRefused(UserError, ValueError):
    """A URL that would send MIMIC text off the user's own machines or cluster."""


class Api(StrEnum):
    """Which OpenAI endpoint carries a request."""

    completions = "completions"  # /completions: one text prompt, rendered here
    chat = "chat"  # /chat/completions: messages; the server applies the chat template


@dataclass
class EndpointConfig:
    """Where an OpenAI-compatible server is and how patiently to talk to it; the judge and generators share it."""

    url: str = "http://127.0.0.1:8000/v1"  # base URL of the server (yours, not a third party's)
    # Model name sent with each request; the judge takes the first one the server lists when this is empty.
    model: str = ""
    api: str = "completions"  # completions | chat
    api_key_env: str = ""  # name of the environment variable holding the key, never the key; empty for local servers
    concurrency: int = 16  # requests in flight at once, per event loop
    timeout_s: float = 600.0  # one attempt of one request, in seconds
    retries: int = 3  # further attempts after a connection error, timeout, 408, 409, 429 or 5xx
    # The first retry waits about this long (or as long as the server's Retry-After asks), doubling after each.
    backoff_s: float = 1.0
    allowed_hosts: list[str] = field(default_factory=list)  # hosts outside loopback and private networks you vouch for
    allow_external_endpoint: bool = False  # allow any host: only if the data use agreement permits it
    # Where this block sits in a stage's config ("judge.", "generator."), so that errors name the full key.
    KEY_PREFIX: ClassVar[str] = ""

    def __post_init__(self) -> None:
        where, prefix = "endpoint config", self.KEY_PREFIX
        self.api = choice(Api, self.api, f"{prefix}api", where)
        require(self.concurrency >= 1, where, f"{prefix}concurrency", "must be at least 1", self.concurrency)
        require(self.timeout_s > 0, where, f"{prefix}timeout_s", "must be positive", self.timeout_s)
        require(self.retries >= 0, where, f"{prefix}retries", "must be 0 or more", self.retries)
        require(self.backoff_s >= 0, where, f"{prefix}backoff_s", "must be 0 or more", self.backoff_s)


def _is_internal(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_loopback or ip.is_private or ip.is_link_local


def _resolve(host: str) -> list[str]:
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(host, None)})
    except socket.gaierror:
        return []


def check_endpoint(url: str, allowed_hosts: list[str] | tuple[str, ...] = (), allow_external: bool = False) -> str:
    """Return the URL if it may receive notes; raise EndpointRefused otherwise.

    A host is internal when it is listed in `allowed_hosts` or every address it
    resolves to is loopback, private or link-local. A host that does not resolve
    is refused too: we cannot tell where it is.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise EndpointRefused(f"not an http(s) URL: {redact(url)!r}")
    host = parts.hostname
    if allow_external or host in set(allowed_hosts):
        return url
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        addresses = _resolve(host)
    if addresses and all(_is_internal(address) for address in addresses):
        return url
    where = ", ".join(addresses) if addresses else "an address that does not resolve"
    raise EndpointRefused(
        f"refusing to send MIMIC-derived text to {redact(url)} ({host} -> {where}): only loopback, private "
        f"networks and listed hosts are allowed. {ALLOW_HINT}"
    )


def is_loopback(url: str) -> bool:
    """True when the URL's host is this machine only (127.0.0.0/8, ::1, localhost): unreachable from other nodes."""
    host = (urlsplit(url).hostname or "").lower()
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redact(url: str) -> str:
    """The URL without user info (user:password@), for logs and error messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def api_key_from_env(variable: str) -> str:
    """The API key held in environment variable `variable` (empty name or unset: a dummy key).

    OpenAI-compatible local servers (vllm serve, transformers serve) accept any key;
    the client library needs a non-empty one.
    """
    if not variable:
        return "EMPTY"
    return os.environ.get(variable, "") or "EMPTY"
