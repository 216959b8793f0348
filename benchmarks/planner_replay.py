"""The poll planner alone, offline: benchmark 6's grid replayed on a fake clock (no sockets).

C slots; each job is submitted (a round trip of RTT), created, queued when the simulated
server is at capacity (FIFO, with `queue_position`), runs for a time drawn from the point's
distribution, and is polled when `PollPlanner` says; a poll that finds it done frees its slot
for the next job. The same seeds every time, so two planners (two commits) compare exactly:
`python -m benchmarks.planner_replay` here, and e.g. in a worktree of another commit with
`PYTHONPATH=that/worktree`. Figures: requests per job (polls + the submit + one file),
detection delay (mean, p50, p95) and throughput over min(C, capacity) / mean running time,
each the mean over SEEDS draws; the same for the 2-s /status poller (`PollerReplay`), and
the ratios. The poller replayed has no CPU cost: under load a real one is slower.
No load, no round-trip noise: what the planner decides, and nothing else.
"""

from __future__ import annotations

import heapq
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from batch_runner.run.polling import PollPlanner
from benchmarks import common as c

RTT = 0.01


def _uniform(a: float, b: float) -> Callable[[random.Random], float]:
    return lambda rng: rng.uniform(a, b)


def _tail(rng: random.Random) -> float:
    return rng.uniform(25, 50) if rng.random() < 0.1 else rng.uniform(5, 10)


DISTS: dict[str, Callable[[random.Random], float]] = {
    "5-10 s": _uniform(5, 10),
    "8-16 s": _uniform(8, 16),
    "20-40 s": _uniform(20, 40),
    "5-10 s +10% x5": _tail,
    "1 s": lambda rng: 1.0,
}


@dataclass
class _Job:
    sent: float
    created: float
    run: float
    token: int = 0
    start: float | None = None
    finish: float | None = None
    done: bool = False
    track: object = None


class Replay:
    """One point: the simulated server, the slots and the planner, on one event heap."""

    def __init__(self, dist: str, inflight: int, jobs: int, capacity: int, seed: int):
        rng = random.Random(seed)
        self.runs = [DISTS[dist](rng) for _ in range(jobs)]
        self.inflight, self.jobs, self.cap = inflight, jobs, capacity or jobs
        self.now = 0.0
        self.planner = PollPlanner(clock=lambda: self.now)
        self.events: list[tuple[float, int, str, int, int]] = []
        self.serial = 0
        self.state: dict[int, _Job] = {}
        self.queue: list[int] = []
        self.running = 0
        self.polls = 0
        self.delays: list[float] = []
        self.blind: set[int] = set()  # jobs waiting for the run's `learned` event
        self.last = 0.0

    def push(self, t: float, what: str, j: int, token: int = 0) -> None:
        self.serial += 1
        heapq.heappush(self.events, (t, self.serial, what, j, token))

    def submit(self, t: float) -> None:
        j = len(self.state)
        if j < self.jobs:
            self.state[j] = _Job(sent=t, created=t + RTT / 2, run=self.runs[j])
            self.push(t + RTT / 2, "create", j)
            self.push(t + RTT, "answer", j)

    def start(self, j: int, t: float) -> None:
        self.running += 1
        job = self.state[j]
        job.start, job.finish = t, t + job.run
        self.push(job.finish, "finish", j)

    def plan(self, j: int) -> None:
        job = self.state[j]
        delay = self.planner.next_delay(job.track)
        job.token += 1
        (self.blind.add if job.track.wake and delay > 0 else self.blind.discard)(j)
        self.push(self.now + delay, "poll", j, job.token)

    def create(self, j: int, _token: int) -> None:
        if self.running < self.cap:
            self.start(j, self.now)
        else:
            self.queue.append(j)

    def finish(self, _j: int, _token: int) -> None:
        self.running -= 1
        if self.queue:
            self.start(self.queue.pop(0), self.now)

    def answer(self, j: int, _token: int) -> None:
        job = self.state[j]
        job.track = self.planner.track(job.sent, self.now)
        self.plan(j)

    def poll(self, j: int, token: int) -> None:
        job = self.state[j]
        if job.done or token != job.token:
            return  # planned again since
        recheck = getattr(self.planner, "recheck", None)  # (planners before session 5 had none)
        if recheck is not None and not job.track.wake and recheck(job.track) > 0:
            self.plan(j)  # as the runner does: a first poll due later by the latest plan waits
            return
        self.polls += 1
        arrives = self.now + RTT / 2
        self.now += RTT
        if job.finish is not None and arrives >= job.finish:
            self.completed(j, job)
        elif job.start is not None and arrives >= job.start:
            self.planner.seen(job.track, "in_progress", None)
            self.plan(j)
        else:
            self.planner.seen(job.track, "in_queue", self.queue.index(j))
            self.plan(j)

    def completed(self, j: int, job: _Job) -> None:
        learned = self.planner.learned
        self.planner.completed(job.track, job.finish - job.created)
        if hasattr(self.planner, "finished"):  # (planners before this round had none)
            self.planner.finished(job.track)
        job.done = True
        self.blind.discard(j)
        self.delays.append(self.now - job.finish)
        self.last = max(self.last, self.now)
        if self.planner.learned and not learned:  # the run's `learned` event
            for b in list(self.blind):
                self.plan(b)
        self.submit(self.now)

    def run(self) -> dict:
        for _ in range(self.inflight):
            self.submit(0.0)
        handlers = {"create": self.create, "finish": self.finish}
        handlers |= {"answer": self.answer, "poll": self.poll}
        while self.events:
            t, _, what, j, token = heapq.heappop(self.events)
            self.now = t
            handlers[what](j, token)
        ideal = min(self.inflight, self.cap) / statistics.fmean(self.runs)
        return {
            "req": self.polls / self.jobs + 2,
            "mean": statistics.fmean(self.delays),
            "p50": c.percentile(self.delays, 0.5),
            "p95": c.percentile(self.delays, 0.95),
            "thru": self.jobs / self.last / ideal,
        }


class PollerReplay(Replay):
    """The same server and slots, polled as benchmarks/status_poller.py does: /status every
    POLL_EVERY s (the first that long after the submit's answer), then /result and the file."""

    POLL_EVERY = 2.0

    def answer(self, j: int, _token: int) -> None:
        self.push(self.now + self.POLL_EVERY, "poll", j)

    def poll(self, j: int, _token: int) -> None:
        job = self.state[j]
        self.polls += 1
        arrives = self.now + RTT / 2
        self.now += RTT
        if job.finish is not None and arrives >= job.finish:
            self.now += RTT  # its /result
            job.done = True
            self.delays.append(self.now - job.finish)
            self.last = max(self.last, self.now)
            self.submit(self.now)
        else:
            self.push(self.now + self.POLL_EVERY, "poll", j)

    def run(self) -> dict:
        figures = super().run()
        return figures | {"req": figures["req"] + 1}  # the /result after the last /status


SEEDS = 5  # each point is the mean over this many draws of the running times (one is luck:
# with 4 probes, when the first duration is learned varies by seconds from draw to draw)


def replay(
    dist: str, inflight: int, jobs: int, capacity: int = 0, seeds: int = SEEDS, kind=Replay
) -> dict:
    runs = [kind(dist, inflight, jobs, capacity, seed).run() for seed in range(1, seeds + 1)]
    return {key: statistics.fmean(r[key] for r in runs) for key in runs[0]}


POINTS = [  # (distribution, C, capacity): benchmark 6's grid, plus benchmark 2's fixed 1 s
    ("5-10 s", 32, 0),
    ("5-10 s", 300, 0),
    ("5-10 s", 1000, 0),
    ("5-10 s", 3000, 0),
    ("20-40 s", 300, 0),
    ("5-10 s", 300, 150),
    ("5-10 s +10% x5", 300, 0),
    ("20-40 s", 1000, 0),
    ("5-10 s", 1000, 500),
    ("5-10 s +10% x5", 1000, 0),
    ("1 s", 32, 64),
    ("8-16 s", 1500, 0),  # issue 30: 0.92x the poller's throughput measured here, 0.38x requests
]


def run(quick: bool = False) -> dict:
    rows = []
    for dist, inflight, capacity in POINTS[:2] if quick else POINTS:
        jobs = 10 * inflight if dist == "1 s" else (2 if inflight >= 3000 else 3) * inflight
        seeds = 1 if quick else SEEDS
        ours = replay(dist, inflight, jobs, capacity, seeds)
        poller = replay(dist, inflight, jobs, capacity, seeds, PollerReplay)
        rows.append((dist, inflight, capacity, jobs, ours, poller))
    return {"rows": rows}


def report(f: dict) -> str:
    header = ["latency", "C", "capacity", "jobs", "req/job", "delay mean / p50 / p95 s", "thru"]
    header += ["poller req/job", "thru poller", "req ratio", "thru ratio"]
    rows = [
        [
            dist,
            inflight,
            capacity or "unlimited",
            jobs,
            f"{r['req']:.2f}",
            f"{r['mean']:.2f} / {r['p50']:.2f} / {r['p95']:.2f}",
            f"{r['thru']:.3f}",
            f"{p['req']:.2f}",
            f"{p['thru']:.3f}",
            f"{r['req'] / p['req']:.2f}",
            f"{r['thru'] / p['thru']:.3f}",
        ]
        for dist, inflight, capacity, jobs, r, p in f["rows"]
    ]
    title = f"6d. The planner replayed offline (fake clock, no load, mean of {SEEDS} draws)"
    return c.table(title, header, rows)


def main() -> None:
    c.main(__doc__ or "", run, report)


if __name__ == "__main__":
    main()
