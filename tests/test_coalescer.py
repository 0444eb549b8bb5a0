"""Reload requests are coalesced: one run at a time, at most one waiting, every request served."""

from __future__ import annotations

import threading
import time

from fenliu.serving.reload import Coalescer


class _Reload:
    """A reload that takes ``seconds``, recording how many ran at once and what each served."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.served: list[int] = []
        self.started: list[float] = []
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()

    def __call__(self, served: int) -> None:
        with self.lock:
            self.running += 1
            self.started.append(time.monotonic())
            self.most = max(self.most, self.running)
        time.sleep(self.seconds)
        with self.lock:
            self.running -= 1
            self.served.append(served)


def _wait_for(cond: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(cond) and cond():
            return
        time.sleep(0.01)
    raise AssertionError("timed out")


def test_a_burst_of_requests_is_one_run() -> None:
    reload = _Reload(0.05)
    c = Coalescer(reload, settle=0.1, max_wait=5.0)
    try:
        for _ in range(50):
            c.request()
        _wait_for(lambda: reload.served == [50])
        time.sleep(0.3)
        assert reload.served == [50] and c.runs == 1
    finally:
        c.close()


def test_requests_during_a_run_make_one_more_run_never_two_at_once() -> None:
    reload = _Reload(0.3)
    c = Coalescer(reload, settle=0.02, max_wait=5.0)
    try:
        c.request()
        _wait_for(lambda: reload.running == 1)
        for _ in range(20):  # while the first run runs
            c.request()
        assert reload.running == 1
        _wait_for(lambda: len(reload.served) == 2)
        time.sleep(0.2)
        assert reload.served == [1, 20] and reload.most == 1
    finally:
        c.close()


def test_a_storm_runs_every_max_wait_and_serves_the_last_request_soon() -> None:
    reload = _Reload(0.01)
    c = Coalescer(reload, settle=0.1, max_wait=0.5)
    try:
        started = time.monotonic()
        requests = 0
        while time.monotonic() - started < 1.6:  # a request every 20 ms: never quiet for 0.1 s
            c.request()
            requests += 1
            time.sleep(0.02)
        last = time.monotonic()
        _wait_for(lambda: sum(reload.served) == requests)
        time.sleep(0.3)
        assert 3 <= c.runs <= 6, reload.served  # about one per max_wait, and the last one
        assert sum(reload.served) == requests  # every request served, none twice
        assert 0 <= reload.started[-1] - last < 1.0  # the last request served soon after settling
    finally:
        c.close()
