"""The simulator's aiohttp application: the RunComfy queue API, output files and /_sim/ controls."""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web

from batch_runner.errors import UsageError
from batch_runner.simulator import hostile, money
from batch_runner.simulator.config import SimConfig, apply_overrides, validate
from batch_runner.simulator.faults import DropResponse, Faults, json_error
from batch_runner.simulator.files import FileServer
from batch_runner.simulator.images import CONTENT_TYPES, EXTENSIONS, FORMATS
from batch_runner.simulator.inputs import input_problems
from batch_runner.simulator.media import media_sources
from batch_runner.simulator.models import DEFAULT_LIMIT, ENDPOINT_KINDS, MAX_LIMIT
from batch_runner.simulator.store import FAILED_ERROR, JobStore, SimJob, directives

_TRUE = ("true", "1", "yes")
MAX_BODY = 64 * 1024 * 1024  # RunComfy's limit on one request body (inline media included)


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    moment = datetime.fromtimestamp(stamp, UTC).isoformat(timespec="milliseconds")
    return moment.replace("+00:00", "Z")


def _invalid(detail: list[dict[str, Any]]) -> web.Response:
    """The 422001 answer for invalid inputs or query parameters."""
    body = {"error_code": 422001, "message": "invalid inputs", "detail": detail}
    return web.json_response(body, status=422)


def _paging(query: Any) -> tuple[int, int] | list[dict[str, Any]]:
    """(limit, offset) of a catalogue query, or the 422 details of what is wrong (`kind` is
    the endpoint kind: a media kind such as `image` is refused, as no endpoint has it)."""
    detail = []
    numbers = {}
    for name, default, low, high in (
        ("limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
        ("offset", 0, 0, None),
    ):
        try:
            numbers[name] = int(query.get(name, default))
        except ValueError:
            numbers[name] = -1
        if numbers[name] < low or (high is not None and numbers[name] > high):
            bounds = f"{low}..{high}" if high else f">= {low}"
            msg = f"must be a whole number {bounds}"
            detail.append({"loc": ["query", name], "msg": msg, "type": "value"})
    kind = query.get("kind") or None
    if kind is not None and kind not in ENDPOINT_KINDS:
        msg = f"must be one of {', '.join(ENDPOINT_KINDS)}"
        detail.append({"loc": ["query", "kind"], "msg": msg, "type": "enum"})
    return detail or (numbers["limit"], numbers["offset"])


class Simulator:
    """The state and request handlers behind one simulator application."""

    def __init__(self, config: SimConfig):
        self.config = validate(config)
        self.store = JobStore(config)
        self.faults = Faults(self.store)
        self.files = FileServer(self.store, self.faults)
        self.catalog = self.store.catalog
        self._nonce = itertools.count(1)

    # --- helpers ----------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {self.config.token}"
        return hmac.compare_digest(given.encode(), expected.encode())

    def _gate(self, request: web.Request, kind: str) -> web.StreamResponse | None:
        """Count the call, then answer it with a fault or an auth error if one applies."""
        self.store.stats.requests[kind] += 1
        fault = self.faults.api_gate()
        if fault is not None:
            return fault
        if not self._authorized(request):
            return json_error(401, 400004, "invalid or expired API token")
        return None

    def _urls(self, request: web.Request, job: SimJob) -> dict[str, str]:
        base = f"{request.scheme}://{request.host}/v1/requests/{quote(job.request_id, safe='')}"
        return {"status_url": f"{base}/status", "result_url": f"{base}/result"}

    def _answer(self, kind: str, payload: dict[str, Any]) -> web.StreamResponse:
        return hostile.api_answer(hostile.case_for(self.config, kind), kind, payload)

    async def _lookup(self, request: web.Request, kind: str) -> SimJob | web.StreamResponse:
        refusal = self._gate(request, kind)
        if refusal is not None:
            return refusal
        job = self.store.get(request.match_info["request_id"])
        if job is not None and self.store.expired(job):
            self.faults.count("request_expired")
            job = None
        if job is None:
            return json_error(404, 404001, "request not found or expired")
        return job

    def _model(self, request: web.Request, kind: str, status: int) -> Any:
        """The catalogue entry the path names, or the answer refusing the call (`status` for
        an unknown model: 400 on submit, 404 on the catalogue)."""
        refusal = self._gate(request, kind)
        if refusal is not None:
            return refusal
        model = request.match_info["model_path"]
        entry = self.catalog.entry(model)
        return entry if entry is not None else json_error(status, 400001, f"unknown model: {model}")

    def _runnable(self, request: web.Request) -> Any:
        """The entry a submit names, or its refusal: an unknown model, or an endpoint that is
        not a `kind: model` one (a workflow is listed, but not run by the Model API)."""
        entry = self._model(request, "submit", 400)
        if isinstance(entry, dict) and entry.get("kind", "model") != "model":
            text = f"unknown model: {entry['model_id']} is a {entry['kind']}, not a model endpoint"
            return json_error(400, 400001, text)
        return entry

    # --- API --------------------------------------------------------------------------------

    async def submit(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/models/{model_path}: validate the inputs and create a job."""
        entry = self._runnable(request)
        if not isinstance(entry, dict):
            return entry
        model = entry["model_id"]
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            body, echo = None, None
            detail = [{"loc": ["body"], "msg": "body is not valid JSON", "type": "json_invalid"}]
        else:
            schema = entry.get("input_schema") or {"type": "object"}
            validator = self.catalog.validator(model, schema)
            detail, echo = input_problems(validator, body, self.files.url_problem)
        if detail:
            return _invalid(detail)
        if "error200" in directives(body.get("prompt")):
            return self.faults.error_200()
        if money.estimate(entry, body) > self.config.balance:
            return json_error(402, 400002, "insufficient credits")
        job = self.store.create(model, body, echo)
        self.store.stats.inputs.update(media_sources(schema, body))
        if self.config.submit_delay:
            # the job exists (and is "billed") while the answer is still on its way
            await asyncio.sleep(self.config.submit_delay)
        await self.faults.hold_submit(model, body)
        if self.faults.lost_submit():
            return DropResponse()
        urls = self._urls(request, job)
        cancel_url = urls["status_url"].removesuffix("/status") + "/cancel"
        return self._answer(
            "submit", {"request_id": job.request_id, **urls, "cancel_url": cancel_url}
        )

    async def status(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/requests/{id}/status."""
        job = await self._lookup(request, "status")
        if not isinstance(job, SimJob):
            return job
        return self._answer("status", self._progress(job) | self._urls(request, job))

    async def result(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/requests/{id}/result: the status, and the output once completed."""
        job = await self._lookup(request, "result")
        if not isinstance(job, SimJob):
            return job
        payload = self._progress(job)
        if job.finished_at is None:
            return self._answer("result", payload)
        payload["model_id"] = job.model
        if request.query.get("include_cost", "").lower() in _TRUE and job.cost is not None:
            payload["cost"] = job.cost if job.status == "completed" else 0.0
        if job.status == "completed":
            payload["output"] = self._output(request, job)
        elif job.status == "failed":
            payload["error"] = FAILED_ERROR
        payload["created_at"] = _iso(job.created_at)
        payload["finished_at"] = _iso(job.finished_at)
        return self._answer("result", payload)

    def _progress(self, job: SimJob) -> dict[str, Any]:
        """What /status and /result both say: the id, the status, the place in the queue."""
        payload: dict[str, Any] = {"request_id": job.request_id, "status": job.status}
        if job.status == "in_queue":
            payload["queue_position"] = self.store.queue_position(job)
        return payload

    def _output(self, request: web.Request, job: SimJob) -> dict[str, Any]:
        style = self.config.output_style
        nested = style == "nested"  # the job's own kind, its URLs deep in objects and lists
        if style in ("auto", "nested"):
            style = {"mp4": "video", "wav": "audio"}.get(job.fmt) or (
                "images" if job.sequential else "image"
            )
        forced = {"video": "mp4", "audio": "wav"}.get(style.removesuffix("s"))
        ext = forced or EXTENSIONS[job.fmt]
        case = hostile.case_for(self.config, "result")
        base = hostile.url_base(case, request, f"{request.scheme}://{request.host}")
        query = f"n={next(self._nonce)}"
        if self.config.url_ttl is not None:
            query += f"&exp={time.monotonic() + self.config.url_ttl:.6f}"
        count = job.n_files if style.endswith("s") else 1
        urls = [f"{base}/files/{job.seq}/{k}.{ext}?{query}" for k in range(1, count + 1)]
        if case == "many_urls":
            return {"images": hostile.spoil_urls(case, urls)}
        if nested:
            files = [{"url": u, "content_type": CONTENT_TYPES[FORMATS[ext]]} for u in urls]
            return {"result": {"files": files, "seed": job.seq, "note": "not a URL"}}
        return {style: urls if style.endswith("s") else urls[0]}

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/requests/{id}/cancel: only queued jobs can be cancelled."""
        job = await self._lookup(request, "cancel")
        if not isinstance(job, SimJob):
            return job
        outcome = self.store.cancel(job)
        payload = {"request_id": job.request_id, "status": job.status, "outcome": outcome}
        return self._answer("cancel", payload)

    # --- catalogue and account -------------------------------------------------------------

    async def models(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/models?search=&category=&kind=&include_schema=&limit=&offset=: a page of
        entries (`kind`: the endpoint kind, CONTRACT §1)."""
        refusal = self._gate(request, "catalog")
        if refusal is not None:
            return refusal
        query = request.query
        paging = _paging(query)
        if isinstance(paging, list):
            return _invalid(paging)
        limit, offset = paging
        schema = query.get("include_schema", "").lower() in _TRUE
        return web.json_response(self.catalog.listing(dict(query), schema, limit, offset))

    async def categories(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/models/categories: every category of the catalogue."""
        refusal = self._gate(request, "catalog")
        if refusal is not None:
            return refusal
        return web.json_response({"categories": self.catalog.categories()})

    async def model(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/models/{model_path}: one entry with its input_schema."""
        entry = self._model(request, "catalog", 404)
        return web.json_response(entry) if isinstance(entry, dict) else entry

    async def balance(self, request: web.Request) -> web.StreamResponse:
        """GET /prod/v2/balance: what is left to spend."""
        refusal = self._gate(request, "balance")
        if refusal is not None:
            return refusal
        balance = self.config.balance
        micro = round(balance * 1_000_000)  # exact; the dollars are rounded to a millionth
        body = {"balance_usd": balance, "balance_microdollars": micro, "currency": "USD"}
        return web.json_response(body)

    # --- /_sim/ controls ------------------------------------------------------------------

    def stats_dict(self) -> dict[str, Any]:
        """The counters of /_sim/stats, with the balance left."""
        return self.store.stats.as_dict() | {"balance_usd": self.config.balance}

    async def stats(self, request: web.Request) -> web.Response:
        """GET /_sim/stats: counters (no token needed)."""
        return web.json_response(self.stats_dict())

    async def jobs(self, request: web.Request) -> web.Response:
        """GET /_sim/jobs: every job with its body, status and wall-clock times."""
        return web.json_response(self.store.jobs())

    async def get_config(self, request: web.Request) -> web.Response:
        """GET /_sim/config: the live settings."""
        return web.json_response(self.config.to_dict())

    async def set_config(self, request: web.Request) -> web.Response:
        """POST /_sim/config: apply a JSON object of SimConfig overrides live."""
        try:
            overrides = json.loads(await request.read())
            if not isinstance(overrides, dict):
                raise UsageError("expected a JSON object of settings")
            apply_overrides(self.config, overrides)
        except (ValueError, UsageError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if "seed" in overrides:
            self.store.reseed()
        self.faults.settings_changed()  # held submits may be released
        self.store.pump()  # a larger capacity starts queued jobs now
        return web.json_response(self.config.to_dict())

    async def reset(self, request: web.Request) -> web.Response:
        """POST /_sim/reset: forget every job and counter."""
        self.store.reset()
        return web.json_response({"reset": True})


SIM_KEY = web.AppKey("simulator", Simulator)


def create_app(config: SimConfig) -> web.Application:
    """The simulator as an aiohttp application serving CONTRACT §1 and §5 for `config`."""
    sim = Simulator(config)
    app = web.Application(client_max_size=MAX_BODY)
    app[SIM_KEY] = sim
    app.router.add_get("/v1/models", sim.models)
    app.router.add_get("/v1/models/categories", sim.categories)  # before the model paths
    app.router.add_get("/v1/models/{model_path:.+}", sim.model)  # POST on the same path submits
    app.router.add_post("/v1/models/{model_path:.+}", sim.submit)
    app.router.add_get("/prod/v2/balance", sim.balance)
    app.router.add_get("/v1/requests/{request_id}/status", sim.status)
    app.router.add_get("/v1/requests/{request_id}/result", sim.result)
    app.router.add_post("/v1/requests/{request_id}/cancel", sim.cancel)
    app.router.add_get("/files/{seq}/{name}", sim.files.handle)  # HEAD comes with GET
    app.router.add_get("/_sim/stats", sim.stats)
    app.router.add_get("/_sim/jobs", sim.jobs)
    app.router.add_get("/_sim/config", sim.get_config)
    app.router.add_post("/_sim/config", sim.set_config)
    app.router.add_post("/_sim/reset", sim.reset)
    return app
