"""Settings of `tfgrpo serve`, the per-request prior choice (headers), and the bind-address rule."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from tfgrpo.errors import ConfigError

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
API_KEY_ENV = "TFGRPO_API_KEY"

#: Request headers a client may send to choose the prior for one call.
H_LIBRARY = "x-tfgrpo-library"  # a library name, or "none" for no prior
H_VERSION = "x-tfgrpo-version"  # an integer version, or "latest"
H_MODE = "x-tfgrpo-mode"  # all | topk
H_K = "x-tfgrpo-k"  # experiences for topk
H_PRIOR = "x-tfgrpo-prior"  # on | off
#: Response headers: what was injected.
H_INJECTED = "x-tfgrpo-injected"


class ProxyConfig(BaseModel):
    """What the proxy injects by default and how it guards itself."""

    model_config = ConfigDict(extra="forbid")

    library: str | None = Field(None, description="Library whose prior is applied by default; None = no prior.")
    version: int | None = Field(None, ge=0, description="Library version (None = the latest).")
    mode: Literal["all", "topk"] | None = Field(None, description="all = every live lesson up to the cap; topk = "
                                                "the k nearest to the last user message (None: as trained).")
    k: int | None = Field(None, ge=1, le=256, description="Lessons per call in topk mode (None: as trained).")
    token_cap: int | None = Field(None, ge=1, description="Max tokens the experience block adds to a prompt "
                                                          "(None: as trained).")
    placement: Literal["system", "user"] | None = Field(None, description="Where the block goes (system keeps the "
                                                        "prompt prefix cacheable; None: as trained).")
    host: str = Field("127.0.0.1", description="Bind address; non-loopback needs an API key.")
    port: int = Field(8400, ge=0, le=65535, description="TCP port (0 = pick a free one).")
    api_key: SecretStr | None = Field(None, description="Clients must send `Authorization: Bearer KEY`.")
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1024, description="Larger request bodies get 413.")
    allow_override: bool = Field(True, description="Let request headers pick another library/version or "
                                                   "turn the prior off.")
    served_model: str = Field("tfgrpo", description="Model id listed by /v1/models.")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`; any other name or address counts as exposed."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond this machine without an API key."""
    if not is_loopback(host) and not api_key:
        raise ConfigError(
            f"refusing to listen on non-loopback address {host!r} without an API key: anyone who can reach it "
            f"could use the upstream model. Pass --api-key-file PATH (or set {API_KEY_ENV}); clients then send "
            "`Authorization: Bearer KEY`. Or keep the default --host 127.0.0.1")


class RequestError(Exception):
    """A client mistake the proxy answers with an OpenAI-style error (never a stack trace)."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 type_: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.code, self.param, self.type = status, code, param, type_


@dataclass(frozen=True)
class PriorChoice:
    """The prior for one request: library (None = off), version (None = latest), mode and k (None: as the
    library was trained)."""

    library: str | None
    version: int | None
    mode: str | None
    k: int | None


def _int_header(name: str, value: str, low: int, high: int) -> int:
    try:
        out = int(value.strip())
    except ValueError:
        out = None
    if out is None or not low <= out <= high:
        raise RequestError(400, f"header {name}: expected an integer in {low}..{high}, got {value!r}",
                           code="invalid_header", param=name)
    return out


_OVERRIDES = (H_LIBRARY, H_VERSION, H_MODE, H_K, H_PRIOR)


def _override_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The X-TFGRPO-* headers sent (the first of each). One pass over an ASGI request's raw headers (names
    already lower case) rather than a scan per name: this runs on every request."""
    raw = getattr(headers, "raw", None)
    if raw is None:
        return {h: headers[h] for h in _OVERRIDES if headers.get(h) is not None}
    sent: dict[str, str] = {}
    for name, value in raw:
        if name.startswith(b"x-tfgrpo-"):
            key = name.decode("latin-1")
            if key in _OVERRIDES and key not in sent:
                sent[key] = value.decode("latin-1")
    return sent


def prior_choice(headers: Mapping[str, str], cfg: ProxyConfig) -> PriorChoice:
    """The configured prior, changed by the request's X-TFGRPO-* headers where overrides are allowed."""
    choice = {"library": cfg.library, "version": cfg.version, "mode": cfg.mode, "k": cfg.k}
    sent = _override_headers(headers)
    if sent and not cfg.allow_override:
        raise RequestError(403, "this proxy does not allow X-TFGRPO-* overrides (started with "
                                "--no-allow-override)", code="override_forbidden")
    if H_LIBRARY in sent:
        lib = sent[H_LIBRARY].strip()
        choice["library"] = None if lib.lower() in ("none", "off", "") else lib
        choice["version"] = None  # another library: its latest unless a version is given too
    if H_VERSION in sent:
        raw = sent[H_VERSION].strip().lower()
        choice["version"] = None if raw == "latest" else _int_header(H_VERSION, raw, 0, 10**9)
    if H_MODE in sent:
        mode = sent[H_MODE].strip().lower()
        if mode not in ("all", "topk"):
            raise RequestError(400, f"header {H_MODE}: expected all or topk, got {mode!r}", code="invalid_header",
                               param=H_MODE)
        choice["mode"] = mode
    if H_K in sent:
        choice["k"] = _int_header(H_K, sent[H_K], 1, 256)
    if H_PRIOR in sent:
        flag = sent[H_PRIOR].strip().lower()
        if flag not in ("on", "off"):
            raise RequestError(400, f"header {H_PRIOR}: expected on or off, got {flag!r}", code="invalid_header",
                               param=H_PRIOR)
        if flag == "off":
            choice["library"] = None
    return PriorChoice(**choice)
