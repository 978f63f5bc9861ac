"""What the proxy holds of the store: a read-only view of the libraries, a cache of `Prior`s (one per
library/version/mode/k), and a call log that writes in the background so logging never delays a reply."""

from __future__ import annotations

import threading
import time
from typing import Any

from tfgrpo.errors import StoreError
from tfgrpo_common.chat import CallRecord
from tfgrpo.prior import Prior
from tfgrpo.serve.config import PriorChoice, ProxyConfig, RequestError


class ReadOnlyLibrary:
    """The store as the proxy sees it: it reads libraries and records calls; it has no method that
    changes experiences, so the proxy cannot write them (not even the injection counters)."""

    READS = frozenset({"libraries", "current_version", "resolve_version", "experiences", "search",
                       "search_vector", "count_tokens", "get", "calls", "prior_settings", "require_library"})

    def __init__(self, store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        if name in self.READS:
            return getattr(self._store, name)
        raise AttributeError(f"the proxy's store view has no {name!r}: the proxy never writes experiences")

    def record(self, rec: CallRecord) -> None:
        self._store.record(rec)


class PriorCache:
    """One `Prior` per (library, version, mode, k), built on first use. "Latest" is re-read at most
    every `latest_ttl_s` seconds, so a new version of a library is picked up without a restart."""

    def __init__(self, store: ReadOnlyLibrary, cfg: ProxyConfig, *, latest_ttl_s: float = 2.0,
                 max_entries: int = 64) -> None:
        self.store, self.cfg = store, cfg
        self.latest_ttl_s, self.max_entries = latest_ttl_s, max_entries
        self._priors: dict[tuple, Prior] = {}
        self._latest: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def _version(self, library: str, version: int | None) -> int:
        if version is not None:
            return self.store.resolve_version(library, version)
        now = time.monotonic()
        hit = self._latest.get(library)
        if hit is None or now - hit[0] > self.latest_ttl_s:
            hit = (now, self.store.current_version(library))
            self._latest[library] = hit
        return hit[1]

    def get(self, choice: PriorChoice) -> Prior | None:
        """The `Prior` for `choice` (None when the prior is off); unknown library/version -> RequestError."""
        if choice.library is None:
            return None
        try:
            version = self._version(choice.library, choice.version)
        except StoreError as exc:
            raise RequestError(404, str(exc), code="library_not_found", param="X-TFGRPO-Library") from None
        key = (choice.library, version, choice.mode, choice.k)
        with self._lock:
            prior = self._priors.get(key)
            if prior is None:
                if len(self._priors) >= self.max_entries:
                    self._priors.pop(next(iter(self._priors)))
                prior = Prior.from_store(self.store, choice.library, version, mode=choice.mode, k=choice.k,
                                         token_cap=self.cfg.token_cap, placement=self.cfg.placement)
                self._priors[key] = prior
        return prior
