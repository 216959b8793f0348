"""Jobs made from manifest entries, one at a time: a plain entry's, a sweep's combinations
(sweep_plan.py), a top-level sample's; defaults and --set overrides applied, identical inputs
numbered as further copies (manifest/expand.py runs the passes)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from batch_runner.digests import DigestMap, key_digest
from batch_runner.errors import Problem
from batch_runner.jobs import JobSpec, Location
from batch_runner.manifest.media import is_files_axis
from batch_runner.manifest.rows import Entry, Manifest, repeat_problem
from batch_runner.manifest.sampling import DEFAULT_SEED, draw_across, sample_problem, seed_problem
from batch_runner.manifest.sweep_plan import SweepPlan, parse_template

JOB_KEYS = frozenset({"repeat", "meta", "vars"})

# a model -> (defaults, overrides) its jobs get: defaults under the job's inputs, overrides over
Base = Callable[[str], tuple[dict[str, Any], dict[str, Any]]]


class JobBuilder:
    """Accumulates jobs, problems and warnings while entries are expanded in order."""

    def __init__(self, manifest: Manifest, overrides: dict[str, Any], base: Base | None):
        self.m = manifest
        self.base = base or (lambda model: (_plain_defaults(manifest, model), overrides))
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.duplicates = 0
        self.sweep_counts: list[tuple[Location, int]] = []
        self._next_copy = DigestMap()  # identity key → copies so far (compact: a million jobs)
        self._templates: dict[str, list] = {}
        self._reported: set[tuple[Location, str]] = set()

    def problem(self, entry: Entry, field: str | None, message: str) -> None:
        line = entry.field_lines.get(field, entry.source.line) if field else entry.source.line
        self.problems.append(Problem(entry.source.file, line, field, message))

    def _extras(self, entry: Entry, data: dict[str, Any]) -> tuple[int, dict, bool]:
        """Read `repeat` and `meta`; the flag is False when either is unusable."""
        ok = True
        repeat = data.get("repeat", 1)
        problem = repeat_problem(repeat)
        if problem is not None:
            self.problem(entry, "repeat", problem)
            ok = False
        meta = data.get("meta", {})
        if meta is None:
            meta = {}
        if not isinstance(meta, dict):
            self.problem(entry, "meta", "must be a mapping")
            ok = False
        return repeat, meta, ok

    def add_all(self, entries: Iterable[Entry]) -> Iterator[JobSpec]:
        """Every entry's jobs, in order."""
        for entry in entries:
            if entry.kind == "sweep":
                plan = SweepPlan(entry, self)
                yield from self.add_sweep(plan, len(self.sweep_counts))
            else:
                yield from self.add_job(entry)

    def add_sampled(self, entries: list[Entry]) -> Iterator[JobSpec]:
        """The jobs of the combinations a top-level `sample:` keeps, in entry order."""
        plans = [SweepPlan(e, self) if e.kind == "sweep" else None for e in entries]
        chosen = self.top_sample(plans)
        for entry, plan, only in zip(entries, plans, chosen, strict=True):
            if plan is not None:
                yield from self.add_sweep(plan, len(self.sweep_counts), only)
            elif only is None or only:
                yield from self.add_job(entry)

    def _emit(
        self, entry: Entry, inputs: dict, n: int, meta: dict, variables: dict, sweep
    ) -> Iterator[JobSpec]:
        model = inputs.pop("model", None) if "model" in inputs else self.m.job_model
        if not isinstance(model, str) or not model.strip() or model != model.strip():
            example = self.m.job_model
            self.problem(entry, "model", f"must be a model id like {example}, not {model!r}")
            return
        defaults, overrides = self.base(model)
        final = {**defaults, **inputs, **overrides}
        if None in final.values():
            final = {k: v for k, v in final.items() if v is not None}
        # the same inputs as an earlier job are further copies of it: the key of copy 0 is
        # the identity (computed once, then kept by that spec)
        spec = JobSpec(model, final, 0, meta, variables, entry.source, sweep)
        first = self._next_copy.add(key_digest(spec.key), n)
        if first:
            self.duplicates += 1
        for copy in range(first, first + n):
            yield spec if copy == 0 else dataclasses.replace(spec, copy=copy)

    def add_job(self, entry: Entry) -> Iterator[JobSpec]:
        data = entry.data
        if isinstance(data, str):
            yield from self._emit(entry, {"prompt": data}, self.m.repeat, {}, {}, None)
            return
        for key, value in data.items():
            if key in ("zip", "exclude") or is_files_axis(value):
                self.problem(entry, key, "only allowed in sweep: entries")
                return
        repeat, meta, ok = self._extras(entry, data)
        variables = data.get("vars") or {}
        if not isinstance(variables, dict):
            self.problem(entry, "vars", "must be a mapping")
            ok = False
        if ok:
            inputs = {k: v for k, v in data.items() if k not in JOB_KEYS}
            yield from self._emit(entry, inputs, repeat * self.m.repeat, meta, variables, None)

    def top_sample(self, plans: list[SweepPlan | None]) -> list[list[int] | None]:
        """The top-level `sample:`: which combinations of each entry are kept (None: all)."""
        m = self.m
        if m.sample is None:
            return [None] * len(plans)
        bad = sample_problem(m.sample) or seed_problem(m.seed)
        if bad is not None:
            key = "sample" if sample_problem(m.sample) else "seed"
            self.problems.append(Problem(m.source.file, m.lines.get(key), key, bad))
            return [[] for _ in plans]
        spaces = [p.chosen() if p is not None and p.ok else range(p is None) for p in plans]

        def keep(entry: int, index: int) -> bool:
            plan = plans[entry]
            return plan is None or plan.combo(index) is not None

        seed = DEFAULT_SEED if m.seed is None else m.seed
        chosen, complete = draw_across(spaces, m.sample, seed, keep)
        if not complete:
            self.warnings.append(f"sample: {m.sample}: most combinations are excluded; kept fewer")
        return chosen

    def add_sweep(
        self, plan: SweepPlan, index: int, only: list[int] | None = None
    ) -> Iterator[JobSpec]:
        """Expand one sweep entry (`only`: these combinations); its count in sweep_counts."""
        entry = plan.entry
        made = 0
        if not plan.ok:
            self.sweep_counts.append((entry.source, 0))
            return
        n = plan.repeat * self.m.repeat
        for number in plan.chosen() if only is None else only:
            combo = plan.combo(number)
            if combo is None:
                continue
            inputs, variables = combo
            inputs = {k: self._fill(entry, k, v, variables) for k, v in inputs.items()}
            for job in self._emit(entry, inputs, n, plan.meta, variables, index):
                made += 1
                yield job
        self.sweep_counts.append((entry.source, made))
        if made == 0 and only is None:  # a top-level sample may pick none of it
            self.warnings.append(f"{entry.source}: this sweep produces no jobs")

    def _fill(self, entry: Entry, field: str, value: Any, variables: dict[str, Any]) -> Any:
        if not isinstance(value, str) or ("{" not in value and "}" not in value):
            return value
        parts = self._templates.get(value)
        if parts is None:
            parts = self._templates[value] = parse_template(value)
        out = []
        for part in parts:
            if isinstance(part, str):
                out.append(part)
                continue
            name, spec = part
            try:
                out.append(format(variables[name], spec or ""))
            except (KeyError, ValueError, TypeError) as exc:
                msg = f"cannot fill {{{name}}}: {exc}"
                if (entry.source, msg) not in self._reported:
                    self._reported.add((entry.source, msg))
                    self.problem(entry, field, msg)
                return value
        return "".join(out)


def _plain_defaults(manifest: Manifest, model: str) -> dict[str, Any]:
    return {**manifest.defaults, **manifest.model_defaults.get(model, {})}
