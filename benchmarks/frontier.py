"""What any poller can reach on benchmark 6's latency distributions (issue 18): a bound, not a run.

A job's only signal is "not finished yet", so for a known distribution of running times T the
best any client can do is a fixed schedule of poll ages p1 < p2 < ... (the last at the longest
T): a job with T in (p_i-1, p_i] costs i polls and is seen p_i - T late. Dynamic programming over
poll ages on a fine grid finds the schedules on the frontier of (polls per job, delay):

- `p50 <= 1 s`: the fewest requests per job of any schedule whose median delay is at most 1 s.
  The Lagrangian dual (max over lambda of min over schedules of polls - lambda x P(delay <= 1)
  + lambda / 2) is a lower bound: no poller, ours included, can need fewer.
- the least mean and median delay of any schedule within the target's requests per job
  (min(0.5 x the poller's, 1.5 x 3), as issue 18 sets them), again as dual lower bounds.
- the status poller (a /status every 2 s, then /result) computed the same way, for reference;
- the best schedule for batch_runner's own objective (polls + delay / PollPlanner.BUDGET):
  what its planner would reach knowing the distribution exactly, with no round trips.

Requests per job = polls + 2 (the submit and the file). Delays are the polls' alone: no round
trip, no download, so real clients land above these figures. `python -m benchmarks.frontier`
(numpy, from the test extra); benchmark 6 prints it after its own table.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from batch_runner.run.polling import PollPlanner
from benchmarks import common as c

EXTRA = 2  # the submit and the file
LOWER_BOUND = 3.0


@dataclass(frozen=True)
class Dist:
    label: str
    pdf: Callable[[np.ndarray], np.ndarray]  # unnormalised density
    high: float  # the longest running time
    step: float  # grid step (s)


def _uniform(a: float, b: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda t: ((t >= a) & (t <= b)).astype(float) / (b - a)


def dists(quick: bool = False) -> list[Dist]:
    short, long_ = _uniform(5, 10), _uniform(25, 50)
    if quick:
        return [Dist("5-10 s", short, 10, 0.05)]
    return [
        Dist("5-10 s", short, 10, 0.01),
        Dist("20-40 s", _uniform(20, 40), 40, 0.04),
        Dist("5-10 s +10% x5", lambda t: 0.9 * short(t) + 0.1 * long_(t), 50, 0.05),
    ]


class Grid:
    """Running times on a grid: mass m_k at t_k (the cell ending at t_k), prefix sums."""

    def __init__(self, d: Dist):
        n = int(round(d.high / d.step))
        self.t = np.arange(n + 1) * d.step
        mid = self.t - d.step / 2
        m = np.where(self.t > 0, d.pdf(mid), 0.0)
        self.m = m / m.sum()
        self.M = np.concatenate([[0.0], np.cumsum(self.m)])  # M[k] = mass of cells < k
        self.W = np.concatenate([[0.0], np.cumsum(self.m * self.t)])
        self.step = d.step
        self.first = int(np.argmax(self.m > 0))  # no poll before the shortest running time

    def solve(self, mu: float, lam: float, d: float) -> tuple[float, float, float]:
        """The schedule minimising polls + mu x mean delay - lam x P(delay <= d).

        Returns (polls per job, mean delay, P(delay <= d)). States: the last poll at t_i
        (index i + 1 in the tables; 0 = none yet). A poll at t_j after one at t_i is made by
        every job longer than t_i and sees those in (t_i, t_j]."""
        t, M, W = self.t, self.M, self.W
        n = len(t)
        lag = int(round(d / self.step))
        value = np.full(n + 1, np.inf)
        polls = np.zeros(n + 1)
        delay = np.zeros(n + 1)
        cover = np.zeros(n + 1)
        value[0] = 0.0
        prev_idx = np.arange(-1, n)  # state s means last poll at t[s - 1]; s = 0: none
        for j in range(max(self.first, 1), n):
            s = np.arange(0, j + 1)  # previous states: none, or a poll at t[0..j-1]
            lo = np.maximum(prev_idx[s] + 1, 0)  # cells (i, j] -> indexes i+1 .. j
            alive = 1.0 - M[lo]  # jobs still running at the previous poll
            seen = M[j + 1] - M[lo]
            late = t[j] * seen - (W[j + 1] - W[lo])
            quick = M[j + 1] - M[np.maximum(lo, j - lag + 1)]
            quick = np.where(j - lag + 1 <= j, quick, 0.0)
            cost = value[s] + alive + mu * late - lam * quick
            best = int(np.argmin(cost))
            value[j + 1] = cost[best]
            polls[j + 1] = polls[best] + alive[best]
            delay[j + 1] = delay[best] + late[best]
            cover[j + 1] = cover[best] + quick[best]
        return float(polls[n]), float(delay[n]), float(cover[n])


def fewest_requests_p50(g: Grid, d: float = 1.0) -> tuple[float, float]:
    """(dual lower bound, best schedule found) on requests per job with P(delay <= d) >= 1/2."""
    bound, found = 0.0, math.inf
    for lam in np.geomspace(0.05, 400, 40):
        polls, _, cov = g.solve(0.0, lam, d)
        bound = max(bound, polls - lam * cov + lam / 2)
        if cov >= 0.5:
            found = min(found, polls)
    return bound + EXTRA, found + EXTRA


def least_delay(g: Grid, requests: float) -> float:
    """Dual lower bound on the mean delay of any schedule within `requests` per job."""
    budget = requests - EXTRA
    best = 0.0
    for mu in np.geomspace(0.02, 200, 40):
        polls, delay, _ = g.solve(mu, 0.0, 0.0)
        best = max(best, delay + (polls - budget) / mu)
    return max(best, 0.0)


def least_p50(g: Grid, requests: float) -> float:
    """The smallest d (0.05 s steps) not ruled out: P(delay <= d) >= 1/2 within `requests`."""
    lo, hi = 0.0, 20.0
    while hi - lo > 0.05:
        mid = (lo + hi) / 2
        if fewest_requests_p50(g, mid)[0] <= requests:
            hi = mid
        else:
            lo = mid
    return hi


def status_poller(g: Grid, every: float = 2.0) -> tuple[float, float, float]:
    """(requests per job, mean delay, p50 delay) of /status every `every` s, then /result."""
    k = np.ceil(np.maximum(g.t, 1e-9) / every - 1e-9)
    late = k * every - g.t
    order = np.argsort(late)
    cum = np.cumsum(g.m[order])
    p50 = float(late[order][np.searchsorted(cum, 0.5)])
    return float((g.m * k).sum()) + 1 + EXTRA, float((g.m * late).sum()), p50


def run(quick: bool = False) -> dict:
    rows = []
    for d in dists(quick):
        g = Grid(d)
        poller_req, poller_mean, poller_p50 = status_poller(g)
        target = min(0.5 * poller_req, 1.5 * LOWER_BOUND)
        bound, found = fewest_requests_p50(g)
        polls, mean, _ = g.solve(1 / PollPlanner.BUDGET, 0.0, 0.0)
        rows.append(
            {
                "label": d.label,
                "poller": (poller_req, poller_mean, poller_p50),
                "target": target,
                "p50_bound": bound,
                "p50_found": found,
                "mean_at_target": least_delay(g, target),
                "p50_at_target": least_p50(g, target),
                "budget": (polls + EXTRA, mean),
            }
        )
    return {"rows": rows}


def report(f: dict) -> str:
    header = [
        "latency",
        "status poller: req/job, mean / p50 delay s",
        "req/job target",
        "fewest req/job with p50 <= 1 s (bound / a schedule)",
        "within the target: least mean delay s",
        "least p50 delay s",
        f"best for a poll = {PollPlanner.BUDGET:g} s of delay (ours): req/job, mean delay s",
    ]
    rows = []
    for r in f["rows"]:
        req, mean, p50 = r["poller"]
        rows.append(
            [
                r["label"],
                f"{req:.2f}, {mean:.2f} / {p50:.2f}",
                f"{r['target']:.2f}",
                f"{r['p50_bound']:.2f} / {r['p50_found']:.2f}",
                f"{r['mean_at_target']:.2f}",
                f"{r['p50_at_target']:.2f}",
                "{:.2f}, {:.2f}".format(*r["budget"]),
            ]
        )
    title = "6c. What any poller can reach (exact, for these running-time distributions)"
    return c.table(title, header, rows)


def main() -> None:
    c.main(__doc__ or "", run, report)


if __name__ == "__main__":
    main()
