"""A process's resident memory sampled on a thread: peaks per window, for benches that check memory is flat."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class HasMemory(Protocol):
    def memory_mb(self) -> tuple[float, float]: ...  # (VmRSS, VmHWM) in MiB


class RssSampler:
    """VmRSS of the proxy every `every_s` seconds, on a thread of its own (the client's event loop is busy)."""

    def __init__(self, proxy: HasMemory, every_s: float = 0.02) -> None:
        self.proxy, self.every_s = proxy, every_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self.t0 = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.samples.append((time.monotonic() - self.t0, self.proxy.memory_mb()[0]))
            except (OSError, KeyError):
                return  # the proxy is gone

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def window_peaks(rss: list[tuple[float, float]], ramp_s: float, wall: float) -> tuple[float, float]:
    """Peak VmRSS in the window after the ramp-up, and in the last window of the same length."""
    width = max(ramp_s, 1.0)
    first = [m for t, m in rss if ramp_s <= t < ramp_s + width]
    last = [m for t, m in rss if t >= wall - width]
    return max(first, default=float("nan")), max(last, default=float("nan"))


def per_window(rss: list[tuple[float, float]], width: float) -> list[tuple[float, float]]:
    """(window start, peak VmRSS) for consecutive windows of `width` seconds."""
    peaks: dict[int, float] = {}
    for t, m in rss:
        k = int(t // width)
        peaks[k] = max(peaks.get(k, 0.0), m)
    return [(k * width, m) for k, m in sorted(peaks.items())]
