"""The poll planner (batch_runner/run/polling.py): pure, on a fake clock, no sockets."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_runner.run.durations import Survival, schedule
from batch_runner.run.polling import PollPlanner, PollTrack

P = PollPlanner


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def trained(durations: list[float]) -> tuple[PollPlanner, Clock]:
    """A planner that saw jobs complete with these server durations (probes used up)."""
    clock = Clock()
    planner = PollPlanner(clock=clock)
    for d in durations:
        t = planner.track(clock.now, clock.now)
        clock.now += d
        planner.completed(t, d)
    return planner, clock


def uniform(lo: float, hi: float, n: int = 64) -> list[float]:
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def poll_times(planner: PollPlanner, clock: Clock, t: PollTrack, n: int) -> list[float]:
    """The first `n` poll times of a job that stays in progress, relative to its submit."""
    times = []
    for _ in range(n):
        clock.now += planner.next_delay(t)
        times.append(clock.now - t.submitted)
        planner.seen(t, "in_progress", None)
    return times


def test_probes_poll_at_once_and_the_others_wait_for_a_first_duration():
    clock = Clock()
    planner = PollPlanner(clock=clock)
    tracks = [planner.track(clock.now, clock.now) for _ in range(P.PROBES + 4)]
    delays = [planner.next_delay(t) for t in tracks]
    assert delays[: P.PROBES] == [0.0] * P.PROBES
    rest = tracks[P.PROBES :]
    assert all(t.wake for t in rest)
    assert all(d >= planner.max_delay * P.LATE for d in delays[P.PROBES :])


def test_probes_back_off_geometrically_before_anything_is_learned():
    clock = Clock()
    planner = PollPlanner(clock=clock)
    t = planner.track(clock.now, clock.now)
    times = poll_times(planner, clock, t, 7)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert times[0] == 0.0 and gaps == sorted(gaps)
    assert gaps[-1] <= planner.max_delay


def test_a_resumed_job_is_polled_at_once():
    planner, _ = trained(uniform(5, 10))
    assert planner.next_delay(planner.track()) == 0.0


def test_instant_jobs_cost_no_waiting():
    planner, clock = trained([0.0] * 20)
    assert planner.next_delay(planner.track(clock.now, clock.now)) == 0.0


def test_fixed_durations_are_polled_at_the_duration_then_soon_again():
    planner, clock = trained([1.0] * 16)
    t = planner.track(clock.now, clock.now)
    times = poll_times(planner, clock, t, 3)
    assert times[0] == pytest.approx(1.0, rel=P.STAGGER)
    assert times[1] - times[0] <= P.REL * times[0] + 1e-9  # late: soon again


def test_spread_durations_polls_close_in_as_the_window_ends_then_back_off():
    planner, clock = trained(uniform(5, 10))
    t = planner.track(clock.now, clock.now)
    times = poll_times(planner, clock, t, 10)
    # two polls in the window: the first at (15 + budget) / 2, where the next poll's cost
    # and the delay it saves balance (8.1 s for a budget of 1.25 s)
    assert 5.0 < times[0] < 7.5 + P.BUDGET
    pairs = list(zip(times, times[1:], strict=False))
    inside = [b - a for a, b in pairs if b <= 10.0]
    past = [b - a for a, b in pairs if a >= 10.0]
    assert inside == sorted(inside, reverse=True)  # more likely to be done: asked sooner
    assert past == sorted(past) and past[-1] <= planner.max_delay  # overdue: the gaps grow


def test_a_sparse_tail_is_polled_seldom():
    durations = uniform(5, 10, 90) + uniform(25, 50, 10)
    planner, clock = trained(durations)
    dense, tail = (planner.track(clock.now, clock.now) for _ in range(2))
    gaps = []
    for t, age in ((dense, 6.0), (tail, 12.0)):
        clock.now = t.submitted + age
        planner.seen(t, "in_progress", None)
        gaps.append(planner.next_delay(t))
    assert gaps[1] > 3 * gaps[0]


def test_a_job_asked_well_before_the_first_planned_age_is_asked_at_it():
    # 90 % of the jobs take 5-10 s: every schedule asks by 10 s, whatever the job's budget;
    # a job asked at 6 s (blind, or planned before the run learned) must not skip that age
    durations = uniform(5, 10, 90) + uniform(25, 50, 10)
    planner, clock = trained(durations)
    for _ in range(P.BUCKETS * 2):  # jobs of every phase bucket
        t = planner.track(clock.now, clock.now)
        clock.now = t.submitted + 6.0
        planner.seen(t, "in_progress", None)
        assert 6.0 + planner.next_delay(t) <= 10.0 * (1 + P.STAGGER) + 1e-9
        clock.now = t.submitted


def cost(values: list[float], ages: list[float], budget: float) -> float:
    """Polls + delay / budget per job, for jobs with these durations polled at these ages."""
    total = 0.0
    for v in values:
        k = next(i for i, a in enumerate(ages) if a >= v)
        total += (k + 1) + (ages[k] - v) / budget
    return total / len(values)


def least_cost(values: list[float], budget: float) -> float:
    """The least `cost` of any set of poll ages ending at the longest value (all of them tried)."""
    earlier = sorted(set(values))[:-1]
    return min(
        cost(values, [*chosen, values[-1]], budget)
        for r in range(len(earlier) + 1)
        for chosen in itertools.combinations(earlier, r)
    )


def test_the_schedule_is_the_best_of_all_poll_ages():
    values = sorted([1.0, 1.5, 1.6, 2.0, 2.1, 2.2, 4.0, 9.0])
    for budget in (0.1, 0.5, 1.0, 3.0):
        ages = schedule(values, budget)
        assert ages[-1] == values[-1] and ages == sorted(ages)
        assert cost(values, ages, budget) == pytest.approx(least_cost(values, budget))
    assert schedule([3.0] * 10, 0.5) == [3.0]  # a cluster is asked once, at its value
    assert len(schedule(values, 0.01)) > len(schedule(values, 10.0))  # dear delay: more polls


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(0.0, 60.0).map(lambda x: round(x, 1)), min_size=1, max_size=9),
    st.sampled_from([0.01, 0.2, 1.0, 1.25, 4.0, 50.0]),
)
def test_no_set_of_poll_ages_costs_less_than_the_schedule(values, budget):
    values.sort()
    ages = schedule(values, budget)
    assert ages[-1] == values[-1] and ages == sorted(set(ages)) and set(ages) <= set(values)
    best = least_cost(values, budget)
    assert cost(values, ages, budget) == pytest.approx(best, rel=1e-9, abs=1e-9)


class Job:
    def __init__(
        self, submitted: float, duration: float | None = None, last_poll: float | None = None
    ):
        self.submitted, self.duration, self.gone = submitted, duration, duration is not None
        self.last_poll = last_poll  # when a poll last found it running


def test_jobs_still_running_count_against_the_quick_ones_seen_first():
    """Early in a run only the quick jobs are done: the estimate keeps the running ones at
    risk, so among jobs done by 20 s the durations keep their weights, and half the mass of
    the sample is still running (it does not pretend the quick ones are all there is)."""
    sample = Survival(256, 4)
    jobs = [Job(0.0, 5.0 + i) for i in range(4)] + [Job(0.0, None, 20.0) for _ in range(4)]
    jobs += [Job(17.0, None, 19.0) for _ in range(4)]  # younger than any duration seen
    jobs += [Job(0.0) for _ in range(4)]  # never polled: nothing known of them yet
    for job in jobs:
        assert sample.add(job)
        if job.duration is not None:
            sample.completed()
    assert sample.values(20.0) == [5.0, 6.0, 7.0, 8.0]
    late = Survival(256, 4)  # the same durations, but the slow ones finished long ago
    for job in [Job(0.0, 5.0 + i) for i in range(4)] + [Job(0.0, 30.0) for _ in range(4)]:
        late.add(job)
        late.completed()
    assert late.values(40.0) == [6.0, 8.0, 30.0, 30.0]


def test_a_job_is_at_risk_only_up_to_its_last_poll():
    """A job done but not yet seen done is not "still running": it counts as running only up
    to the last poll that found it so (else every estimate grows by the detection delay)."""
    sample = Survival(256, 4)
    jobs = [Job(0.0, 5.0 + i) for i in range(4)] + [Job(0.0, None, 5.5) for _ in range(4)]
    for job in jobs:
        sample.add(job)
        if job.duration is not None:
            sample.completed()
    # at 5 s: 1 of 8 done; the 4 running are censored at 5.5; 6, 7 and 8 share the rest
    assert sample.values(20.0) == [6.0, 7.0, 8.0, 8.0]


def test_a_first_poll_planned_early_waits_for_what_the_run_learned_since():
    """Early in a run only the quick jobs are known, so a job submitted then is planned to
    be asked early. When that poll is due and the run has learned that jobs take longer,
    `recheck` says how much longer to wait, once, for the first poll only."""
    planner, clock = trained(uniform(5, 6, 16))
    t = planner.track(clock.now, clock.now)
    first = planner.next_delay(t)
    assert first < 6.5
    for d in uniform(9, 10, 64):  # the run learns: most jobs take 9-10 s
        done = planner.track(clock.now - d, clock.now - d)
        planner.seen(done, "in_progress", None)
        planner.completed(done, d)
        clock.now += first / 64
    assert clock.now == pytest.approx(t.submitted + first)
    later = planner.recheck(t)
    assert later > 1.0 and planner.next_delay(t) == pytest.approx(later)
    clock.now += later
    assert planner.recheck(t) == 0.0  # due now by the latest plan
    planner.seen(t, "in_progress", None)
    assert planner.recheck(t) == 0.0  # later polls are planned when the last one is answered
    resumed = planner.track()
    assert planner.recheck(resumed) == 0.0  # its age is unknown: asked at once


def test_the_sample_stays_bounded_and_spread_over_the_run():
    sample = Survival(64, 8)
    for i in range(10_000):
        sample.add(Job(float(i), 1.0))
        sample.completed()
    assert len(sample._jobs) <= 64
    sample.forget_before(9_990.0, 8)
    assert len(sample._jobs) == 8  # the newest, however old
    sample.forget_before(9_000.0, 0)
    assert all(j.submitted >= 9_000.0 for j in sample._jobs)


def test_jobs_submitted_together_are_polled_at_different_moments():
    planner, clock = trained(uniform(20, 40))
    firsts = [planner.next_delay(planner.track(clock.now, clock.now)) for _ in range(50)]
    assert len(set(firsts)) == len(firsts)
    # spread over most of a second, not a wave (the budget here is ~0.56 s: the run spent one
    # poll a job, far below its request bound; at the default 1.25 s the spread is ~1.5 s)
    assert max(firsts) - min(firsts) >= 0.5


def test_a_completion_does_not_touch_the_plans_of_other_jobs():
    planner, clock = trained(uniform(5, 10))
    waiting = [planner.track(clock.now, clock.now) for _ in range(100)]
    plans = [planner.next_delay(t) for t in waiting]
    before = [repr(t) for t in waiting]
    other = planner.track(clock.now, clock.now)
    planner.completed(other, 7.0)
    assert [repr(t) for t in waiting] == before  # nothing re-planned, nobody woken
    assert not any(t.wake for t in waiting) and all(d > 0 for d in plans)


def test_what_the_planner_keeps_does_not_grow_with_the_jobs_seen():
    planner, clock = trained(uniform(5, 10, 5000))
    assert len(planner._durations) == P.WINDOW
    assert len(planner._done_at) <= P.WINDOW


def test_the_window_follows_recent_durations():
    planner, clock = trained([2.0] * P.WINDOW + [20.0] * P.WINDOW)
    t = planner.track(clock.now, clock.now)
    assert planner.next_delay(t) == pytest.approx(20.0, rel=P.STAGGER)


def test_a_queued_job_is_not_polled_before_the_queue_can_have_drained():
    planner, clock = trained(uniform(5, 10))
    t = planner.track(clock.now, clock.now)
    clock.now += 7.0
    planner.seen(t, "in_queue", 100)
    clock.now += 1.0
    planner.seen(t, "in_queue", 90)  # 10 positions per second
    delay = planner.next_delay(t)
    assert delay >= 90 / 10 * (1 - P.QUEUE_SLACK) - 1e-9
    u = planner.track(clock.now, clock.now)
    clock.now += 7.0
    planner.seen(u, "in_queue", 2)  # near the front: planned as usual
    assert planner.next_delay(u) < delay


def blind_then_learned(
    n: int, later: float, duration: float
) -> tuple[PollPlanner, list[PollTrack]]:
    """`n` jobs planned blind together; `later` s on, the first of them completes in
    `duration` s. Returns the others, still waiting for that news (`wake`)."""
    clock = Clock()
    planner = PollPlanner(clock=clock)
    tracks = [planner.track(clock.now, clock.now) for _ in range(n)]
    for t in tracks:
        planner.next_delay(t)
    clock.now += later
    planner.completed(tracks[0], duration)
    assert planner.learned
    return planner, [t for t in tracks[P.PROBES :] if t.wake]


def test_blind_jobs_replan_once_learned_without_a_wave():
    planner, woken = blind_then_learned(40, 12.0, 6.0)  # they should be done by now
    delays = [planner.next_delay(t) for t in woken]
    assert woken and all(0 <= d <= P.WAVE_MAX for d in delays)
    assert len(set(delays)) == len(delays)  # staggered by phase
    assert not any(t.wake for t in woken)


def test_nonsense_durations_are_not_learned():
    clock = Clock()
    planner = PollPlanner(clock=clock)
    for d in (float("nan"), -1.0, float("inf"), None):
        t = planner.track(clock.now, clock.now)
        clock.now += 1.0
        planner.completed(t, d)
    assert all(math.isfinite(v) and v >= 0 for v in planner._durations._sorted)


def test_a_job_seen_leaving_the_queue_is_timed_from_its_start():
    planner, clock = trained(uniform(5, 10))
    for _ in range(P.FEW):  # jobs that waited 20 s in the queue, then ran 2 s
        t = planner.track(clock.now, clock.now)
        clock.now += 19.95
        planner.seen(t, "in_queue", 1)
        clock.now += 0.1
        planner.seen(t, "in_progress", None)
        clock.now += 1.95
        planner.completed(t, 22.0)
    assert planner._runs.quantile(0.5) == pytest.approx(2.0)
    t = planner.track(clock.now, clock.now)
    clock.now += 30.0
    planner.seen(t, "in_queue", 1)
    clock.now += 0.1
    planner.seen(t, "in_progress", None)  # started ~0.05 s ago: done in about 2 s
    assert 1.0 <= planner.next_delay(t) <= 2.5


def test_the_spread_after_learning_is_short_for_short_jobs():
    planner, woken = blind_then_learned(20, 2.0, 1.0)  # one-second jobs: asked within 0.1 s
    delays = [planner.next_delay(t) for t in woken]
    assert woken and max(delays) <= P.WAVE * 1.0 + 1e-9


def test_early_the_jobs_past_the_quick_ones_are_polled_as_often_as_the_run_finishes_jobs():
    """100 jobs submitted together; 10 finish within a second, around 20 s. The other 90 are
    older than every duration seen: their gaps follow the hazard the run shows (10 of 100
    jobs a second: about one in ten of those running), not a fraction of their age."""
    clock = Clock()
    planner = PollPlanner(clock=clock)
    start = clock.now
    tracks = [planner.track(start, start) for _ in range(100)]
    for i, t in enumerate(tracks[:10]):
        clock.now = start + 20.0 + i / 9
        planner.completed(t, clock.now - start)
        planner.finished(t)
    waiting = tracks[10]
    clock.now = start + 21.5
    planner.seen(waiting, "in_progress", None)
    gap = planner.next_delay(waiting)
    hazard = 9 / 1.0 / 90
    assert gap == pytest.approx(math.sqrt(2 * P.BUDGET / hazard), rel=0.01)
    assert gap < P.REL * 21.5
    for t in tracks[10:]:
        planner.finished(t)
    planner.finished(tracks[10])  # once per job, however often it is said
    assert planner._in_flight == 0


def test_while_jobs_queue_the_recent_durations_are_planned_with():
    """Half of a batch took 5 s, the later half 15 s: the run-long sample says 5 or 15; once
    the API reports a queue (which changes what "normal" is), the recent ones say 15."""
    clock = Clock()
    planner = PollPlanner(clock=clock)
    start = clock.now
    tracks = [planner.track(start, start) for _ in range(2 * P.WINDOW)]
    for i, t in enumerate(tracks):
        duration = 5.0 if i < P.WINDOW else 15.0
        clock.now = start + duration
        planner.completed(t, duration)
        planner.finished(t)
    fresh = planner.track(clock.now, clock.now)
    assert planner.next_delay(fresh) == pytest.approx(5.0, rel=P.STAGGER)
    queued = planner.track(clock.now, clock.now)
    clock.now += 1.0
    planner.seen(queued, "in_queue", 3)
    bucket = int(fresh.phase * P.BUCKETS)  # one of the same phase: no schedule kept from before
    later = next(
        t
        for t in iter(lambda: planner.track(clock.now, clock.now), None)
        if int(t.phase * P.BUCKETS) == bucket
    )
    assert planner.next_delay(later) == pytest.approx(15.0, rel=P.STAGGER)


def spent(durations: list[float], polls: int, cls: type = PollPlanner) -> tuple[PollPlanner, Clock]:
    """`trained`, each job having taken `polls` polls (the last one saw it done)."""
    clock = Clock()
    planner = cls(clock=clock)
    for d in durations:
        t = planner.track(clock.now, clock.now)
        for _ in range(polls - 1):
            planner.seen(t, "in_progress", None)
        clock.now += d
        planner.completed(t, d)
    return planner, clock


def next_jobs(planner: PollPlanner, clock: Clock, lo: float, hi: float) -> tuple[float, float]:
    """Polls per job and mean detection delay of 16 jobs, one of each duration in lo..hi."""
    polls, delays = 0, []
    for d in uniform(lo, hi, 16):
        t = planner.track(clock.now, clock.now)
        times = poll_times(planner, clock, t, 200)
        hit = next(x for x in times if x >= d)
        polls += times.index(hit) + 1
        delays.append(hit - d)
    return polls / 16, sum(delays) / 16


class FixedBudget(PollPlanner):
    BUDGETS = (PollPlanner.BUDGET, PollPlanner.BUDGET)  # a poll always worth 1.25 s (session 6)


def test_long_jobs_spend_the_requests_they_leave_on_earlier_detection():
    """The request bound: half a 2-s poller's requests, at most 4.5 a job. 8-16 s jobs leave
    room under it (a poller asks ~9.5 times a job): a run at its bound so far polls more
    than the default budget would, within the bound, and sees jobs done sooner."""
    poller = 3 + sum(math.ceil(v / 2) for v in uniform(8, 16)) / 64
    bound = min(P.SHARE * poller, P.REQUEST_CAP)
    planner, clock = spent(uniform(8, 16), 2)  # 4 requests a job so far
    polls, delay = next_jobs(planner, clock, 8, 16)
    assert planner.budget < 0.75 * P.BUDGET
    fixed, fixed_clock = spent(uniform(8, 16), 2, FixedBudget)
    fixed_polls, fixed_delay = next_jobs(fixed, fixed_clock, 8, 16)
    assert polls > fixed_polls + 0.5
    assert delay < 0.7 * fixed_delay
    assert P.OWN + polls <= bound


def test_polls_above_the_request_bound_are_paid_back():
    # 8-16 s, every job so far took 4 polls (6 requests): the next ones get the default budget
    planner, clock = spent(uniform(8, 16), 4)
    next_jobs(planner, clock, 8, 16)
    assert planner.budget == P.BUDGET
    # 5-10 s leave no room under the bound (a poller asks ~7.2 times): the default too
    planner, clock = spent(uniform(5, 10), 2)
    next_jobs(planner, clock, 5, 10)
    assert planner.budget == P.BUDGET
