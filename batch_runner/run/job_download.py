"""One finished job's files: each downloaded (fresh URLs asked for when they expired), then
the file records and `done` in one commit, then its metadata lines."""

from __future__ import annotations

import asyncio
import dataclasses
import functools

from batch_runner.api.policy import Action, classify, retry_delay
from batch_runner.catalog import bundled_entry, read_cached
from batch_runner.errors import ApiError, RemoteError
from batch_runner.jobs import FileRecord, JobRecord
from batch_runner.outputs.metadata import metadata_line, parameters_text
from batch_runner.run.file_names import FileNames
from batch_runner.run.job_base import MAX_CALL_RETRIES, MAX_URL_REFRESHES, S
from batch_runner.run.job_poll import PollSteps


class DownloadSteps(PollSteps):
    """Downloads ask /result again for fresh URLs, with the poll steps' error handling."""

    async def _fresh_outputs(self, job: JobRecord) -> list[str]:
        """Outputs of a completed job from a new /result call (file URLs may have expired)."""
        for errors in range(1, MAX_CALL_RETRIES + 2):
            try:
                poll = await self.client.result(job.request_id)
            except ApiError as exc:
                await self._poll_error(job, exc, errors)
                continue
            if poll.status != "completed":
                said = poll.raw_status or poll.status
                self._fail(job, f"expected a completed job, the API says '{said}'")
            self._model_id(job, poll.model_id)
            return list(poll.outputs)
        self._fail(job, "could not fetch the result again")

    async def _download(self, job: JobRecord, urls: list[str]) -> None:
        if not urls:
            self._fail(job, "completed without any output file")
        self._note(job, S.DOWNLOADING)
        have = {f.k: f for f in job.files if (self.run_dir / f.file_name).is_file()}
        got = []
        for k in range(1, len(urls) + 1):
            if k in have and (self.run_dir / have[k].file_name).stat().st_size == have[k].bytes:
                continue
            record = await self._download_one(job, urls, k)
            self.store.record_file(job.index, record)
            got.append(record)
        await self._complete(job, got, urls)

    async def _complete(self, job: JobRecord, got: list[FileRecord], urls: list[str]) -> None:
        """The file records, `done` and (in a pipeline) the children on disk in one commit,
        then the metadata lines (each exactly once: a crash before them leaves fewer lines than
        files, which the next start rebuilds from the state)."""
        self._move(job, S.DONE)
        kids = self.children.create(job, _with_urls(job, got, urls)) if self.children else []
        await self.store.durable()
        if kids:
            self.children.queue(kids)  # type: ignore[union-attr]
        for record in got:
            if any(f.k == record.k for f in job.files):
                job.files = [f for f in job.files if f.k != record.k]
                self.metadata_stale = True  # its line exists already; rebuilt after the run
            else:
                self.metadata.append(metadata_line(job, record, job.request_id))
            job.files.append(record)
            self.tally.count_file(record.bytes)
        self._finished()

    async def _download_one(self, job: JobRecord, urls: list[str], k: int) -> FileRecord:
        n_files = len(urls)
        names = FileNames.of(
            self.settings.name_template, job, n_files, self.store.job_by_key, self.children
        )
        expect = _kinds_made_by(self.settings.api_base, job.model)

        refreshes = tries = 0
        while True:
            try:
                got = await self.fetch(
                    urls[k - 1],
                    run_dir=names.base(self.run_dir),
                    name_for=functools.partial(names.name, k),
                    parameters=parameters_text(job.model, job.inputs),
                    expect=expect,
                )
            except RemoteError as exc:  # a DownloadError (the file host is not the API)
                decision = classify(exc, "download")
                self.store.count_retry(decision.cause)
                match decision.action:
                    case Action.REFRESH if refreshes < MAX_URL_REFRESHES:
                        refreshes += 1
                        fresh = await self._fresh_outputs(job)
                        if len(fresh) != n_files:
                            self._fail(job, "the result changed its number of files")
                        urls[:] = fresh
                    case Action.RETRY if tries < MAX_CALL_RETRIES:
                        tries += 1
                        await asyncio.sleep(retry_delay(exc, tries, self.rng))
                    case _:
                        self._fail(job, f"download failed: {exc.message}")
                continue
            return FileRecord(names.recorded(got.name), k, got.sha256, got.bytes, urls[k - 1])


def _with_urls(job: JobRecord, got: list[FileRecord], urls: list[str]) -> list[FileRecord]:
    """Every file of a done job with the URL it was (or would be) fetched from."""
    files = {f.k: f for f in job.files} | {f.k: f for f in got}
    return [dataclasses.replace(f, url=urls[f.k - 1]) for f in files.values() if f.k <= len(urls)]


@functools.lru_cache(maxsize=256)
def _kinds_made_by(api_base: str, model: str) -> frozenset[str] | None:
    """The media kinds a model's files may be (its catalogue `output_type`: the live entry the
    run resolved and cached, else the bundled one); None: unknown, any kind is taken."""
    entry = read_cached(api_base, model, max_age=None) or bundled_entry(model)
    kind = entry.kind if entry is not None else None
    return frozenset({kind}) if kind else None
