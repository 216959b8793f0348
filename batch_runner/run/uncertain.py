"""Which `uncertain` jobs a run sends again, and after how many lost answers one stays uncertain.

A job is uncertain when an answer to its submit was lost: it may exist (and be charged) at the
API, so every new submit of it is counted as a possible duplicate. The one decision, read by
the plan (which jobs a run takes), the estimate (which jobs it may pay for) and the submit:

- automatically (`resubmit_uncertain`, the default): until MAX_LOST_SUBMITS of its answers are
  lost, whatever their kind; then it stays uncertain;
- on request (`--resubmit-uncertain`, this run only, never stored): every job uncertain when the
  run starts is submitted exactly once more, even past the bound; a lost answer again leaves it
  uncertain until the next such request;
- with `--no-resubmit-uncertain` only on request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from batch_runner.jobs import JobState

if TYPE_CHECKING:
    from batch_runner.settings import RunSettings

# submits of one job whose answer was lost or unreadable (HTML, 502/504, reset, timeout): each
# may have created a paid job, so the second such loss ends it uncertain, whatever the cause
MAX_LOST_SUBMITS = 2


def lost_before(state: JobState, duplicates: int) -> int:
    """Lost submit answers a job waiting for a submit carries into this run: each resend after
    a loss was counted as a duplicate, and an uncertain job lost one more (a job back in
    `pending`, e.g. after a failed generation, starts again from none)."""
    return duplicates + 1 if state is JobState.UNCERTAIN else 0


def sends(settings: RunSettings, state: JobState, duplicates: int) -> bool:
    """Whether this run submits a job now in `state` (anything but an uncertain one: yes)."""
    if state is not JobState.UNCERTAIN or settings.resubmit_uncertain_now:
        return True
    return settings.resubmit_uncertain and lost_before(state, duplicates) < MAX_LOST_SUBMITS


def loss_bound(settings: RunSettings, state: JobState, duplicates: int) -> int:
    """How many lost answers in all (earlier runs' too) leave the job uncertain in this run."""
    lost = lost_before(state, duplicates)
    if state is JobState.UNCERTAIN and settings.resubmit_uncertain_now:
        return lost + 1  # asked for: exactly one more submit, past the automatic bound
    return MAX_LOST_SUBMITS if settings.resubmit_uncertain else lost + 1


def lost_reason(lost: int, message: str) -> str:
    """Why a job stays uncertain (the summary says how to send it once more)."""
    what = "submit answer lost" if lost == 1 else f"{lost} submit answers lost or unreadable"
    return f"{what} ({message}); the job may exist"
