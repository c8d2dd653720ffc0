"""``dealsync import accounts|contacts|opportunities [--wait]``, ``dealsync import status [JOB]``,
``dealsync import resume JOB``: the imports of DESIGN 1.8.

Starting an import creates the job and puts its start on the ImportQueue; the ``import_batch``
workers enumerate Salesforce and write the chunks, so the job goes on whether or not this command
waits. ``--wait`` shows a live progress line (done/total, failed, rate, ETA) until the job ends.

Exit status: 0 done (no failed record), 3 refused (the message names the missing step: accounts and
contacts need company sync, opportunities need deal sync), 4 completed with failed records (see
their sync errors), 1 the job failed or an error, 5 ``--timeout`` passed before the job ended.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from dealsync_cli.errors import CommandError
from dealsync_cli.progress import RateMeter, format_duration, progress_line
from dealsync_cli.target import (
    EXIT_FAILURES,
    EXIT_REFUSED,
    EXIT_TIMEOUT,
    Target,
    add_target_arguments,
    connect,
    refused,
)

KINDS = ("accounts", "contacts", "opportunities")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "import", help="import accounts, contacts or opportunities; job status and resume", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="import_command", metavar="WHAT", required=True)
    for kind in KINDS:
        start = commands.add_parser(kind, help=f"start an import of every Salesforce {kind[:-1]}")
        start.add_argument("--wait", action="store_true", help="show progress until the job ends")
        start.add_argument("--chunk-size", type=int, default=100, metavar="N",
                           help="records per chunk on the import queue, 1 to 100 (default: 100)")
        _wait_options(start)
        start.set_defaults(func=run_start, kind=kind)
    status = commands.add_parser("status", help="recent jobs, or one job")
    status.add_argument("job", nargs="?", metavar="JOB", help="a job id (default: the recent jobs)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    add_target_arguments(status)
    status.set_defaults(func=run_status)
    resume = commands.add_parser("resume", help="queue a job's unfinished chunks again")
    resume.add_argument("job", metavar="JOB")
    resume.add_argument("--wait", action="store_true", help="show progress until the job ends")
    _wait_options(resume)
    resume.set_defaults(func=run_resume)


def _wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="with --wait: give up waiting after this long (exit 5; the job goes on)")
    parser.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                        help="with --wait: how often to read the job (default: 1)")
    parser.add_argument("--json", action="store_true", help="machine-readable output (the job, at the end)")
    add_target_arguments(parser)


def job_json(job: Any) -> dict[str, Any]:
    data: dict[str, Any] = job.model_dump(mode="json")
    return data


def _exit_status(job: Any) -> int:
    from dealsync.models.domain import JobStatus

    if job.status is JobStatus.FAILED:
        return 1
    if job.status is JobStatus.COMPLETED and job.failed:
        return EXIT_FAILURES
    return 0


def wait_for_job(target: Target, job_id: str, *, timeout: float | None, interval: float,
                 quiet: bool = False) -> tuple[Any, bool]:
    """Poll the job, drawing the progress line on stderr, until it ends; (job, ended)."""
    from dealsync.models.domain import JobStatus

    store = target.context.store
    meter = RateMeter()
    started = time.monotonic()
    live = sys.stderr.isatty()
    last_key = ""
    while True:
        job = store.jobs.get(job_id)
        if job is None:
            raise CommandError(f"no import job {job_id}")
        now = time.monotonic()
        meter.add(now, job.done + job.failed)
        ended = job.status in (JobStatus.COMPLETED, JobStatus.FAILED)
        enumerating = job.status is JobStatus.PENDING
        line = progress_line(job.kind, str(job.status), job.done, job.failed, job.total, meter.rate,
                             None if enumerating else meter.eta(job.total - job.done - job.failed),
                             enumerating=enumerating)
        # A terminal redraws one line; a log (not a terminal) gets a line when the counts move.
        key = line if live else f"{job.status} {job.done} {job.failed} {job.total}"
        if not quiet and key != last_key:
            if live:
                print(f"\r{line}\x1b[K", end="" if not ended else "\n", file=sys.stderr, flush=True)
            else:
                print(line, file=sys.stderr, flush=True)
            last_key = key
        if ended:
            return job, True
        if timeout is not None and now - started >= timeout:
            if live and not quiet:
                print(file=sys.stderr)
            return job, False
        time.sleep(interval)


def _finish(args: argparse.Namespace, target: Target, job_id: str, started: float) -> int:
    job, ended = wait_for_job(target, job_id, timeout=args.timeout, interval=args.interval, quiet=args.json)
    if args.json:
        print(json.dumps(job_json(job)))
    elif ended:
        print(f"job {job.job_id} {job.status}: {job.done} imported, {job.failed} failed of {job.total} "
              f"in {format_duration(time.monotonic() - started)}")
        if job.failed:
            print("  failed records are listed as sync errors (dealsync status)")
    else:
        print(f"job {job.job_id} still {job.status} after {format_duration(args.timeout)}: "
              f"follow it with `dealsync import status {job.job_id}`")
    return _exit_status(job) if ended else EXIT_TIMEOUT


def run_start(args: argparse.Namespace) -> int:
    from dealsync.services.imports import start_import
    from dealsync.store import ToggleRefusedError

    if not 1 <= args.chunk_size <= 100:
        raise CommandError("--chunk-size must be between 1 and 100", 2)
    target = connect(args)
    started = time.monotonic()
    try:
        job = start_import(target.context, args.kind, chunk_size=args.chunk_size)
    except ToggleRefusedError as error:
        return refused(error, args.json)
    if not args.wait:
        print(json.dumps(job_json(job)) if args.json else job.job_id)
        return 0
    if not args.json:
        print(f"import {args.kind} started: job {job.job_id}")
    return _finish(args, target, job.job_id, started)


def run_status(args: argparse.Namespace) -> int:
    target = connect(args)
    store = target.context.store
    if args.job:
        job = store.jobs.get(args.job)
        if job is None:
            raise CommandError(f"no import job {args.job}")
        if args.json:
            print(json.dumps(job_json(job)))
        else:
            print(f"job {job.job_id}  {job.kind}  {job.status}")
            print(f"  records: {job.done} done, {job.failed} failed, {job.total} total")
            print(f"  chunks:  {job.chunks_done}/{job.chunks_total}")
            print(f"  created {job.created_at:%Y-%m-%d %H:%M:%S}Z, updated {job.updated_at:%H:%M:%S}Z"
                  + (f", finished {job.finished_at:%H:%M:%S}Z" if job.finished_at else ""))
            if job.message:
                print(f"  {job.message}")
        return 0
    jobs = store.jobs.recent(20)
    if args.json:
        print(json.dumps([job_json(job) for job in jobs]))
        return 0
    if not jobs:
        print("no jobs yet (start one with `dealsync import accounts`)")
        return 0
    print(f"{'JOB':<14}{'KIND':<15}{'STATUS':<11}{'DONE':>7}{'FAILED':>8}{'TOTAL':>8}  CREATED")
    for job in jobs:
        print(f"{job.job_id:<14}{job.kind:<15}{job.status!s:<11}{job.done:>7}{job.failed:>8}{job.total:>8}"
              f"  {job.created_at:%Y-%m-%d %H:%M:%S}Z")
    return 0


def run_resume(args: argparse.Namespace) -> int:
    from dealsync.services.imports import ImportNotFoundError, resume_import
    from dealsync.store import ToggleRefusedError

    target = connect(args)
    started = time.monotonic()
    try:
        report = resume_import(target.context, args.job)
    except ImportNotFoundError as error:
        raise CommandError(str(error)) from error
    except ToggleRefusedError as error:
        print(f"dealsync: refused. {error}", file=sys.stderr)
        return EXIT_REFUSED
    summary = (f"job {args.job}: {report.requeued_chunks} chunks queued again"
               + (", enumeration restarted" if report.coordinator_restarted else ""))
    if not args.wait:
        if args.json:
            print(json.dumps({"job": job_json(report.job), "requeued_chunks": report.requeued_chunks,
                              "coordinator_restarted": report.coordinator_restarted}))
        else:
            print(f"{summary} ({report.job.status})")
        return 0
    if not args.json:
        print(summary)
    return _finish(args, target, args.job, started)
