"""The simulator's jobs: a FIFO queue with a capacity, timed generations, and counters.

Every operation is O(1) or O(log n) so that tens of thousands of jobs stay cheap: queue
positions come from a Fenwick tree over queue entries instead of scanning the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import re
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from batch_runner import catalog
from batch_runner.simulator import money
from batch_runner.simulator.av import wav_seconds
from batch_runner.simulator.config import SimConfig, parse_hostile
from batch_runner.simulator.images import hue_bucket, image_size
from batch_runner.simulator.models import SimCatalog, output_type

FAILED_ERROR = "generation failed (simulated)"
_DIRECTIVE = re.compile(r"\[sim:([a-z0-9_]+)(?:=([^\]]*))?\]")
_RECENT_HEADERS = 1000  # echo_headers keeps only the latest answers, so memory stays bounded


@dataclass(eq=False)
class SimJob:
    """One generation request as the simulator tracks it."""

    seq: int
    request_id: str
    model: str
    body: dict[str, Any]
    latency: float
    will_fail: bool
    n_files: int
    fmt: str  # "png", "jpeg", "webp", "mp4" or "wav"
    width: int  # images: pixels; WAV: milliseconds
    height: int
    bucket: int
    sequential: bool  # the job may return several images: answer with an `images` list
    cost: float | None = 0.0  # USD charged if it completes; None: the model has no price
    status: str = "in_queue"
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    finished_mono: float | None = None
    queue_slot: int = 0  # 1-based index in the Fenwick tree while queued, else 0
    timer: asyncio.TimerHandle | None = None

    def summary(self) -> dict[str, Any]:
        """The record /_sim/jobs shows."""
        return {
            "request_id": self.request_id,
            "body": self.body,
            "status": self.status,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


class _Fenwick:
    """Prefix sums over a growing array of 0/1 marks (append, set to 0, prefix) in O(log n)."""

    def __init__(self) -> None:
        self._tree: list[int] = [0]

    def append(self, value: int) -> int:
        i = len(self._tree)
        low = i & -i
        self._tree.append(value + self.prefix(i - 1) - self.prefix(i - low))
        return i

    def add(self, i: int, delta: int) -> None:
        while i < len(self._tree):
            self._tree[i] += delta
            i += i & -i

    def prefix(self, i: int) -> int:
        total = 0
        while i > 0:
            total += self._tree[i]
            i -= i & -i
        return total


def directives(prompt: Any) -> dict[str, str]:
    """The `[sim:name]` / `[sim:name=value]` directives found in a prompt."""
    if not isinstance(prompt, str):
        return {}
    return {m[1]: m[2] or "" for m in _DIRECTIVE.finditer(prompt)}


@dataclass
class Stats:
    """Counters behind /_sim/stats."""

    submitted: int = 0
    bodies: set[bytes] = field(default_factory=set)
    max_concurrent: int = 0
    in_flight: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    inputs: Counter[str] = field(default_factory=Counter)  # media inputs by source (media.py)
    charged_usd: float = 0.0  # the sum of completed jobs' costs
    file_requests_with_auth: int = 0
    files_serving: int = 0  # file requests being answered now
    max_files_serving: int = 0
    submits_during_files: int = 0  # submits that arrived while a file was being answered
    held_submits: int = 0  # submit answers held now (SimConfig.hold_submits)
    held_submits_total: int = 0
    file_request_headers: deque[dict[str, str]] = field(
        default_factory=lambda: deque(maxlen=_RECENT_HEADERS)
    )

    def as_dict(self) -> dict[str, Any]:
        """The JSON answer of /_sim/stats."""
        kinds = ("submit", "status", "result", "cancel", "file")
        requests = {k: self.requests.get(k, 0) for k in kinds}
        # turn-2 kinds appear once counted, so turn-1 readers see the same five keys
        requests |= {k: n for k in ("catalog", "balance") if (n := self.requests.get(k, 0))}
        return {
            "submitted": self.submitted,
            "unique_bodies": len(self.bodies),
            "max_concurrent": self.max_concurrent,
            "in_flight": self.in_flight,
            "requests": requests,
            "faults": dict(self.faults),
            "completed": self.outcomes.get("completed", 0),
            "failed": self.outcomes.get("failed", 0),
            "cancelled": self.outcomes.get("cancelled", 0),
            "charged_usd": round(self.charged_usd, money.DIGITS),
            "input_urls_own": self.inputs.get("own", 0),
            "input_data_uris": self.inputs.get("data", 0),
            "file_requests_with_auth": self.file_requests_with_auth,
            "max_files_serving": self.max_files_serving,
            "submits_during_files": self.submits_during_files,
            "held_submits": self.held_submits,
            "held_submits_total": self.held_submits_total,
            "file_request_headers": list(self.file_request_headers),
        }


class JobStore:
    """Creates jobs, runs them through the queue on the event loop's timers, and counts."""

    def __init__(self, config: SimConfig):
        self.config = config
        self.catalog = SimCatalog(config)
        self.reset()

    def reset(self) -> None:
        """Forget every job and counter, cancel pending timers and reseed the generators."""
        for job in getattr(self, "_by_seq", []):
            if job.timer is not None:
                job.timer.cancel()
        self._by_id: dict[str, SimJob] = {}
        self._by_seq: list[SimJob] = []
        self._queue: deque[SimJob] = deque()
        self._slots = _Fenwick()
        self._running = 0
        self.stats = Stats()
        self.reseed()

    def reseed(self) -> None:
        """Restart the random generators from config.seed (fresh entropy when it is None)."""
        seed = self.config.seed
        self.fault_rng = random.Random(None if seed is None else f"{seed}:faults")
        self._job_rng = random.Random(None if seed is None else f"{seed}:jobs")

    # --- lookup -------------------------------------------------------------------------

    def get(self, request_id: str) -> SimJob | None:
        """The job with this request_id, expired or not."""
        return self._by_id.get(request_id)

    def by_seq(self, seq: int) -> SimJob | None:
        """The job created `seq`-th (0-based), as file URLs name it."""
        return self._by_seq[seq] if 0 <= seq < len(self._by_seq) else None

    def expired(self, job: SimJob) -> bool:
        """Whether request_ttl has made the server forget this finished job."""
        ttl = self.config.request_ttl
        return (
            ttl is not None
            and job.finished_mono is not None
            and (time.monotonic() - job.finished_mono > ttl)
        )

    def jobs(self) -> list[dict[str, Any]]:
        """Every job's /_sim/jobs record, oldest first."""
        return [job.summary() for job in self._by_seq]

    def queue_position(self, job: SimJob) -> int:
        """1-based FIFO position of a queued job (0 when it is not queued)."""
        return self._slots.prefix(job.queue_slot) if job.queue_slot else 0

    # --- life cycle ---------------------------------------------------------------------

    def create(
        self, model: str, body: dict[str, Any], echo: tuple[int, int] | None = None
    ) -> SimJob:
        """Create a job from a validated submit body, queue it and start what capacity allows
        (`echo`: the size of its input image, which its images then take)."""
        job = self._new_job(model, body, echo)
        self._by_id[job.request_id] = job
        self._by_seq.append(job)
        stats = self.stats
        stats.submitted += 1
        stats.submits_during_files += stats.files_serving > 0
        canonical = json.dumps([model, body], sort_keys=True, separators=(",", ":"))
        stats.bodies.add(hashlib.sha256(canonical.encode()).digest())
        stats.in_flight += 1
        stats.max_concurrent = max(stats.max_concurrent, stats.in_flight)
        job.queue_slot = self._slots.append(1)
        self._queue.append(job)
        self.pump()
        return job

    def _new_job(self, model: str, body: dict[str, Any], echo: tuple[int, int] | None) -> SimJob:
        rng, config = self._job_rng, self.config
        seq = len(self._by_seq)
        found = directives(body.get("prompt"))
        latency = rng.uniform(*config.latency)
        if "latency" in found:
            with contextlib.suppress(ValueError):  # a malformed directive is just prompt text
                latency = max(0.0, float(found["latency"]))
        entry = self.catalog.entry(model) or {
            "categories": ["text-to-image"],
            "price_unit": "output",
        }
        outputs = _outputs(entry, body, rng, config.image_scale, echo)
        if parse_hostile(config.hostile)[0] == "weird_request_id":
            request_id = f"../../etc/passwd?x=%2F&n={seq}"
        else:
            request_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        return SimJob(
            seq=seq,
            request_id=request_id,
            model=model,
            body=body,
            latency=latency,
            will_fail="fail" in found or rng.random() < config.fail_rate,
            bucket=hue_bucket(str(body.get("prompt", ""))),
            # a model served without a price (`--catalog` entries may lack one) has no cost
            # to report: /result leaves `cost` out rather than claim the job was free
            cost=money.cost(entry, body, outputs["n_files"])
            if entry.get("base_price_usd") is not None
            else None,
            **outputs,
        )

    def cancel(self, job: SimJob) -> str:
        """Cancel a queued job; anything else is "not_cancellable"."""
        if job.status != "in_queue":
            return "not_cancellable"
        self._unqueue(job)  # it stays in the deque; pump skips it
        self._finish(job, "cancelled")
        return "cancelled"

    def _unqueue(self, job: SimJob) -> None:
        if job.queue_slot:
            self._slots.add(job.queue_slot, -1)
            job.queue_slot = 0

    def pump(self) -> None:
        """Start queued jobs while capacity allows (also after a live capacity change)."""
        # A loop rather than recursion: zero-latency jobs finish inside _start.
        capacity = self.config.capacity
        while self._queue and (capacity <= 0 or self._running < capacity):
            job = self._queue.popleft()
            if job.status == "in_queue":
                self._start(job)

    def _start(self, job: SimJob) -> None:
        self._unqueue(job)
        job.status = "in_progress"
        job.started_at = time.time()
        if job.latency <= 0:
            self._finish(job, "failed" if job.will_fail else "completed")
            return
        self._running += 1
        loop = asyncio.get_running_loop()
        job.timer = loop.call_later(job.latency, self._on_timer, job)

    def _on_timer(self, job: SimJob) -> None:
        job.timer = None
        self._running -= 1
        self._finish(job, "failed" if job.will_fail else "completed")
        self.pump()

    def _finish(self, job: SimJob, status: str) -> None:
        job.status = status
        job.finished_at = time.time()
        job.finished_mono = time.monotonic()
        self.stats.in_flight -= 1
        self.stats.outcomes[status] += 1
        if status == "failed":
            self.stats.faults["fail"] += 1
        if status == "completed" and job.cost:
            self.stats.charged_usd += job.cost
            self.config.balance = round(self.config.balance - job.cost, money.DIGITS)


_IMAGE_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "webp": "webp"}


def _outputs(
    entry: dict[str, Any],
    body: dict[str, Any],
    rng: random.Random,
    scale: float,
    echo: tuple[int, int] | None,
) -> dict[str, Any]:
    """What a job will return: n_files, fmt, width, height, sequential (SimJob fields)."""
    schema = entry.get("input_schema") or {}
    kind = catalog.KINDS[output_type(entry)]  # from the categories: the files of that kind
    if kind == "video":
        return {"n_files": 1, "fmt": "mp4", "width": 32, "height": 32, "sequential": False}
    if kind == "audio":
        millis = round(1000 * wav_seconds(catalog.duration_seconds(schema, body)))
        return {"n_files": 1, "fmt": "wav", "width": millis, "height": 0, "sequential": False}
    upper = catalog.max_outputs(schema, body)
    sequential = body.get("sequential_image_generation") == "auto" or upper > 1
    exact = "num_images" in (schema.get("properties") or {})
    n_files = upper if exact else (rng.randint(1, upper) if sequential else 1)
    props = schema.get("properties") or {}
    default_format = (props.get("output_format") or {}).get("default")
    fmt = _IMAGE_FORMATS.get(str(body.get("output_format", default_format)).lower(), "png")
    width, height = image_size(body, schema, scale, echo)
    return {
        "n_files": n_files,
        "fmt": fmt,
        "width": width,
        "height": height,
        "sequential": sequential,
    }
