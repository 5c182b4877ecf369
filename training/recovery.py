"""Interrupted jobs: recognise them, clean up after them, and know when a job really finished.

Every run nextbest opens carries the process that opened it (``nextbest.pid``,
``nextbest.host``), and every run of one :func:`training.pipeline.train` call shares a batch
id (``nextbest.batch``). When every model of the batch is trained, logged and gated, each of
its runs is tagged ``nextbest.batch_complete`` with the kinds it trained.

A job killed with SIGKILL (or a power cut) runs no clean-up: its runs stay RUNNING and its
versions stay registered, one of them aliased ``challenger``. The next ``train`` or
``retrain`` calls :func:`recover` first. A run is debris when the process that opened it is
gone (same host, pid no longer alive) and it is RUNNING, or belongs to a batch that never
completed, or to a retraining job that never ended. Debris runs are marked FAILED with a
``nextbest.interrupted`` tag and their versions are deleted (never a champion). Runs opened
on another host are left alone: their process cannot be checked from here.

:func:`completed_on` answers "was this data already trained?" only with a batch whose every
model finished and was gated, and whose promoted versions are champion now.
"""

from __future__ import annotations

import os
import socket
from collections import defaultdict

from mlflow import MlflowClient
from mlflow.entities import Run

from training.registry import JOBS, REGISTERED

PID, HOST = "nextbest.pid", "nextbest.host"
BATCH, COMPLETE = "nextbest.batch", "nextbest.batch_complete"
JOB_RUN = "nextbest.retrain_run"
INTERRUPTED = "nextbest.interrupted"


def process_tags() -> dict[str, str]:
    """The tags naming this process, for every run it opens."""
    return {PID: str(os.getpid()), HOST: socket.gethostname()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _gone(run: Run, host: str) -> bool:
    """Whether the process that opened ``run`` is known to be gone."""
    tags = run.data.tags
    if tags.get(HOST) != host or not tags.get(PID, "").isdigit():
        return False
    pid = int(tags[PID])
    return pid != os.getpid() and not _alive(pid)


def _experiments(client: MlflowClient, names) -> dict[str, str]:
    found = {}
    for name in names:
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            found[experiment.experiment_id] = name
    return found


def _runs(client: MlflowClient, experiment_ids, filter_string: str) -> list[Run]:
    if not experiment_ids:
        return []
    return list(
        client.search_runs(list(experiment_ids), filter_string=filter_string, max_results=5000)
    )


def recover() -> list[str]:
    """Clean up after training jobs of this host whose process is gone (a SIGKILL).

    A run is debris when the process that opened it is gone and the run is RUNNING, belongs
    to a batch that never completed, or to a retraining job that never ended. Call while
    holding the job lock (:func:`training.jobs.job_lock`).

    Returns
    -------
    list of str
        One line per thing done: runs marked FAILED (tag ``nextbest.interrupted``) and the
        versions deleted with them (never a champion).
    """
    client, host = MlflowClient(), socket.gethostname()
    models = _experiments(client, REGISTERED.values())
    jobs = _experiments(client, [JOBS])
    mine = f"tags.`{HOST}` = '{host}'"  # another host's processes cannot be checked from here
    dead_jobs = [
        run
        for run in _runs(client, jobs, f"attributes.status = 'RUNNING' and {mine}")
        if _gone(run, host)
    ]
    job_ids = {run.info.run_id for run in dead_jobs}
    debris = [
        run
        for run in _runs(client, models, f"attributes.status != 'FAILED' and {mine}")
        if _gone(run, host)
        and (
            run.info.status == "RUNNING"
            or (BATCH in run.data.tags and COMPLETE not in run.data.tags)
            or run.data.tags.get(JOB_RUN) in job_ids
        )
    ]
    done = []
    for run in dead_jobs:
        why = f"process {run.data.tags[PID]} on {host} ended without closing it"
        client.set_tag(run.info.run_id, INTERRUPTED, why)
        client.set_tag(run.info.run_id, "nextbest.outcome", "interrupted")
        client.set_terminated(run.info.run_id, status="FAILED")
        done.append(f"retrain job {run.info.run_id[:8]} was interrupted: marked failed")
    for run in debris:
        run_id, name = run.info.run_id, models[run.info.experiment_id]
        why = f"process {run.data.tags[PID]} on {host} ended before its job finished"
        client.set_tag(run_id, INTERRUPTED, why)
        client.set_terminated(run_id, status="FAILED")
        deleted = []
        for version in client.search_model_versions(f"run_id = '{run_id}'"):
            if "champion" not in version.aliases:
                client.delete_model_version(version.name, version.version)
                deleted.append(f" v{version.version}")
        what = f"{name} run {run.info.run_name!r}"
        done.append(
            f"{what} was interrupted: marked failed"
            + (f", deleted{','.join(deleted)}" if deleted else "")
        )
    return done


def complete(run_ids: list[str], kinds: list[str]) -> None:
    """Mark the runs of one batch complete: every model in ``kinds`` is trained and gated."""

    client = MlflowClient()
    for run_id in run_ids:
        client.set_tag(run_id, COMPLETE, ",".join(sorted(kinds)))


def completed_on(digest: str, as_of: str) -> dict[str, str]:
    """Whether this data was already trained as of this moment, by a job that finished.

    Complete: every kind the batch trained has a FINISHED run and a version that carries its
    gate decision, and every version the gate promoted is champion now (a job stopped between
    its gate and the promotion did not finish).

    Parameters
    ----------
    digest : str
        The data digest (:func:`training.pipeline.data_digest`).
    as_of : str
        The as-of, as the runs' ``as_of`` parameter holds it (ISO text).

    Returns
    -------
    dict of str to str
        The versions of the newest complete batch, by kind; empty if there is none.
    """

    client = MlflowClient()
    models = _experiments(client, REGISTERED.values())
    runs = _runs(
        client,
        models,
        f"tags.`nextbest.data_digest` = '{digest}' and params.as_of = '{as_of}'"
        " and attributes.status = 'FINISHED'",
    )
    batches: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        if COMPLETE in run.data.tags:
            batches[run.data.tags.get(BATCH, run.info.run_id)].append(run)
    newest = sorted(batches.values(), key=lambda b: max(r.info.start_time for r in b))
    for batch in reversed(newest):
        found = _versions_if_complete(client, models, batch)
        if found:
            return found
    return {}


def _versions_if_complete(client: MlflowClient, models: dict, batch: list[Run]) -> dict:
    kinds = set(batch[0].data.tags[COMPLETE].split(","))
    by_name = {name: kind for kind, name in REGISTERED.items()}
    found = {}
    for run in batch:
        kind = by_name[models[run.info.experiment_id]]
        for version in client.search_model_versions(f"run_id = '{run.info.run_id}'"):
            decision = version.tags.get("gate.decision")
            if decision is None:
                return {}
            if decision == "promoted" and "champion" not in _aliases(client, version):
                return {}
            found[kind] = str(version.version)
    return found if set(found) == kinds else {}


def _aliases(client: MlflowClient, version) -> list[str]:
    """The version's aliases now (search results may not carry them)."""
    return client.get_model_version(version.name, version.version).aliases
