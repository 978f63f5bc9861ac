"""What the proxy holds of the store: a read-only view of the libraries, a cache of `Prior`s (one per
library/version/mode/k), and a call log that writes in the background so logging never delays a reply."""

from __future__ import annotations

import threading
import time
from typing import Any

from fastapi.concurrency import run_in_threadpool

from tfgrpo.errors import StoreError
from tfgrpo_common.chat import CallRecord
from tfgrpo.prior import Prior, inject, render_block
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
    every `latest_ttl_s` seconds, so a new version of a library is picked up without a restart.

    `apply` is what requests use: it never waits for the store on the event loop. A store read (building
    a prior, a topk search, worked-example search) runs on a worker thread; the "latest" re-read runs on
    its own thread while requests go on with the version they had. The store file may be held by another
    process (a trainer's op batch) for a while: only the requests that need a read wait for it."""

    def __init__(self, store: ReadOnlyLibrary, cfg: ProxyConfig, *, latest_ttl_s: float = 2.0,
                 max_entries: int = 64) -> None:
        self.store, self.cfg = store, cfg
        self.latest_ttl_s, self.max_entries = latest_ttl_s, max_entries
        self._priors: dict[tuple, Prior] = {}
        # (block, ids) of the priors that inject the same block into every request: mode all, no worked
        # examples (the others search the store per request)
        self._blocks: dict[tuple, tuple[str, list[int]]] = {}
        self._latest: dict[str, tuple[float, int]] = {}
        self._pinned: dict[tuple[str, int], int] = {}  # (library, asked version) -> resolved; versions never change
        self._refreshing: set[str] = set()
        self._lock = threading.Lock()

    def _version(self, library: str, version: int | None) -> int:
        if version is not None:
            resolved = self._pinned.get((library, version))
            if resolved is None:
                resolved = self.store.resolve_version(library, version)
                if len(self._pinned) < 4096:
                    self._pinned[(library, version)] = resolved
            return resolved
        now = time.monotonic()
        hit = self._latest.get(library)
        if hit is None or now - hit[0] > self.latest_ttl_s:
            hit = (now, self.store.current_version(library))
            self._latest[library] = hit
        return hit[1]

    def get(self, choice: PriorChoice) -> Prior | None:
        """The `Prior` for `choice` (None when the prior is off); unknown library/version -> RequestError.
        May read the store: call it from a worker thread (or at start-up)."""
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
                    old = next(iter(self._priors))
                    self._priors.pop(old)
                    self._blocks.pop(old, None)
                prior = Prior.from_store(self.store, choice.library, version, mode=choice.mode, k=choice.k,
                                         token_cap=self.cfg.token_cap, placement=self.cfg.placement)
                examples = any(e.kind == "example" for e in self.store.experiences(choice.library, version))
                if prior.mode == "all" and not examples:  # every lesson up to the cap, whatever the request
                    lessons, _ = prior.select_all([])
                    self._blocks[key] = (render_block(lessons), [i for i, _ in lessons])
                self._priors[key] = prior
        return prior

    def _cached(self, choice: PriorChoice) -> tuple[Prior, tuple[str, list[int]] | None] | None:
        """The cached prior for `choice` and its block with the injected ids when that is the same for every
        request (None when applying the prior searches the store), without reading the store (None: only
        a read can tell). A stale "latest" is re-read on a thread meanwhile."""
        if choice.version is not None:
            version = self._pinned.get((choice.library, choice.version))
        else:
            hit = self._latest.get(choice.library)
            version = None if hit is None else hit[1]
            if hit is not None and time.monotonic() - hit[0] > self.latest_ttl_s:
                self._refresh_latest(choice.library)
        if version is None:
            return None
        key = (choice.library, version, choice.mode, choice.k)
        prior = self._priors.get(key)
        return None if prior is None else (prior, self._blocks.get(key))

    def _refresh_latest(self, library: str) -> None:
        with self._lock:
            if library in self._refreshing:
                return
            self._refreshing.add(library)
        threading.Thread(target=self._reread_latest, args=(library,), name="tfgrpo-prior-latest",
                         daemon=True).start()

    def _reread_latest(self, library: str) -> None:
        old = self._latest.get(library)
        try:
            self._latest[library] = (time.monotonic(), self.store.current_version(library))
        except Exception:  # store busy or gone: keep the version we have, try again after the TTL
            if old is not None:
                self._latest[library] = (time.monotonic(), old[1])
        finally:
            with self._lock:
                self._refreshing.discard(library)

    async def apply(self, choice: PriorChoice, messages: list[dict]) -> tuple[Prior | None, list[dict], list[int]]:
        """(prior, messages with the prior's block, injected ids) for one request; `messages` unchanged
        and no ids when the prior is off. Store reads happen on worker threads (see the class docstring)."""
        if choice.library is None:
            return None, messages, []
        cached = self._cached(choice)
        if cached is None:
            prior = await run_in_threadpool(self.get, choice)
            block = self._blocks.get((prior.library, prior.version, choice.mode, choice.k))
        else:
            prior, block = cached
        if block is None:
            new, ids = await run_in_threadpool(prior.apply_with_ids, messages)
            return prior, new, ids
        text, ids = block
        return prior, inject(messages, text, prior.placement), list(ids)
