"""Prediction sharded across processes (several GPUs, several nodes, or CPU processes for testing).

Each rank predicts a disjoint shard of the sorted input list (``todo[rank::world_size]``) and writes its own
images' outputs; rank 0 then gathers every rank's manifest rows, megapixels and label scores
(``torch.distributed.gather_object``) and writes ``manifest.csv``, ``summary.json``, ``index.html`` and
``metrics.json``. Outputs of an image do not depend on which rank predicted it (same windows, same
batches), so a sharded run writes the same files as a single-process run with the same threads.

A rank stopped (Ctrl-C, SIGTERM) or failed (an error that ends its shard) says so in the process group's
store (:class:`_StoreStops`): the others stop at their next image, every rank joins the gather with what it
finished, and the ranks then wait, on the store too (:class:`_StoreBroadcast`), for rank 0's word that the
reports are written and which ranks failed (see :func:`~marsunits.inference.sharded_run.predict_shard`).

With ``adapt_bn=true`` each rank adapts the batch-norm statistics to its own shard, and the ranks add up
their float64 sums (:class:`_RankSum`: a meeting on the store, so that a rank failing or killed during the
pass leaves no rank waiting in the collective, then ``all_gather``, added up in rank order); whether they
adapt or read the statistics the folder keeps is rank 0's decision, which the others wait for
(:class:`_RankWord`), so that no rank adapts, and waits for the others in the meeting, while they read.

Processes come from Lightning Fabric:

* ``predict.py devices=N`` (N > 1) starts N processes itself (Fabric's ``ddp_spawn`` strategy): GPUs
  ``cuda:0..N-1`` with NCCL for ``device=cuda``/``auto`` on a CUDA machine, otherwise N CPU processes with
  gloo, sharing the cores (``threads`` defaults to cores / N).
* Under ``torchrun`` or ``srun`` (a world size above 1 in the environment) the processes already exist;
  Fabric's ``ddp`` strategy only joins them. Pass ``devices`` = processes per node and ``num_nodes``.

Lightning's ``BasePredictionWriter`` was not used: it runs inside ``Trainer.predict``, whose
``DistributedSampler`` pads the dataset with duplicate items so that every rank gets the same number of
batches (duplicates would be predicted and written twice), whose collation expects equally sized images,
and whose loop has no place for the per-file error rows, contact extraction and resumable skipping that
:mod:`marsunits.inference.runner` already does per image.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from marsunits.errors import (
    ConfigError,
    MarsUnitsError,
    ReadableNames,
    TerminatedError,
    sigterm_raises,
    stopping_otherwise,
)
from marsunits.inference.rank_watch import _RankWatch, rank_0_gone, rank_gone_at_the_first_meeting
from marsunits.slurm_world import PREDICT, started_alone
from marsunits.slurm_world import launch_problem as launch_world_problem

if TYPE_CHECKING:
    from lightning.fabric import Fabric

    from marsunits.inference.options import PredictOptions
    from marsunits.inference.run_reports import RunResult
    from marsunits.inference.sharded_run import RankFailedError

log = logging.getLogger(__name__)


def launched_world_size() -> int:
    """World size set up by an external launcher, else 1.

    ``torchrun`` (Lightning's ``TorchElasticEnvironment``: ``WORLD_SIZE``) or a SLURM job step started with
    ``srun`` (``SLURMEnvironment``: ``SLURM_NTASKS``); an interactive SLURM shell does not count, nor does a
    process that SLURM started alone (:func:`~marsunits.slurm_world.started_alone`): an ``sbatch`` script's
    own process (no ``SLURM_STEP_ID``) or a step of one task (``srun --preserve-env``, which keeps the job's
    ``SLURM_NTASKS``), one process whatever ``SLURM_NTASKS`` says. ``python predict.py`` in a script of
    ``--ntasks=4`` (CPUs for the loaders) was taken for rank 0 of 4: Lightning stopped it with a traceback,
    or, with a matching ``--ntasks-per-node``, it waited for ranks nothing starts.
    """
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    if TorchElasticEnvironment.detect():
        return int(os.environ.get("WORLD_SIZE", "1"))
    if SLURMEnvironment.detect() and not started_alone():
        return int(os.environ.get("SLURM_NTASKS", "1"))
    return 1


def launch_problem(devices: int, num_nodes: int) -> str | None:
    """Why the ranks of a sharded ``predict.py devices=<n> num_nodes=<m>`` would not meet, or None
    (:func:`~marsunits.slurm_world.launch_problem` for Fabric's ``ddp``). Said on every rank, before anything
    is written. Under SLURM (:func:`~marsunits.slurm_world.slurm_world_problem`: Fabric takes the world size
    from ``SLURM_NTASKS`` and this rank from ``SLURM_PROCID``):

    * fewer processes started than ``SLURM_NTASKS``: the ``sbatch`` script's own process (``srun``
      forgotten), or a step of ``srun --preserve-env`` with ``SLURM_STEP_NUM_TASKS`` < ``SLURM_NTASKS``;
      Fabric would wait for the missing ranks until the time limit;
    * a step whose layout Fabric refuses with a traceback: ``--ntasks`` without ``--ntasks-per-node``,
      ``--ntasks-per-node`` other than ``devices``, ``--nodes`` other than ``num_nodes``.

    A total of tasks other than ``devices x num_nodes`` (``--ntasks 6`` on two nodes of 4) is not refused:
    the shards follow Fabric's world size, ``SLURM_NTASKS``, so every image is predicted once. Nor is a job
    of one task on one node (``SLURM_NTASKS`` 1, ``num_nodes=1``: ``--ntasks-per-node=1 --gres=gpu:4`` with
    ``devices=4``): no other task exists, and the ranks spawned here take no rank from SLURM (:func:`launch`),
    so its ``--ntasks-per-node`` is not the processes per node (it was refused, naming ``devices=1``).

    Without any launcher (:func:`~marsunits.slurm_world.unlaunched_nodes_problem`): ``num_nodes`` > 1 with
    neither ``NODE_RANK`` nor a ``MASTER_ADDR`` of another machine; Fabric would spawn ``devices`` ranks here
    and wait for the other machines' ranks, which nothing starts.
    """
    ntasks = os.environ.get("SLURM_NTASKS", "").strip()
    if num_nodes == 1 and (not ntasks.isdigit() or int(ntasks) < 2):
        return None
    sharded = {"devices": devices, "num_nodes": num_nodes, "strategy": "ddp"}
    return launch_world_problem(sharded, entry=PREDICT)


def wants_sharding(devices: int, num_nodes: int = 1) -> bool:
    """True when the run should be sharded: more than one process asked for (``devices > 1`` or
    ``num_nodes > 1``), or started by a launcher with world size > 1. ``num_nodes=2 devices=1`` launched by
    hand on two machines (``MASTER_ADDR``, ``NODE_RANK``; no launcher's world size) predicted every image on
    each machine, as two runs of one process.

    Raises:
        ConfigError: ``devices`` or ``num_nodes`` is not a positive integer.
    """
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ConfigError(f"devices must be a positive integer (processes per node), got {devices!r}")
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
        raise ConfigError(
            f"num_nodes must be a positive integer (machines taking part), got {num_nodes!r}; give "
            "num_nodes=1 on one machine"
        )
    return devices > 1 or num_nodes > 1 or launched_world_size() > 1


def _accelerator(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device={device!r} asks for CUDA but no CUDA device is available; use device=cpu"
            )
        return "cuda"
    if device == "cpu":
        return "cpu"
    raise ConfigError(f"sharded prediction (devices > 1) needs device=auto, cpu or cuda, got {device!r}")


def launch(opts: PredictOptions) -> RunResult:
    """Run :func:`_rank_main` on every rank (see module docstring); returns rank 0's result.

    Ranks spawned here (no external launcher: :func:`launched_world_size` is 1) take their ranks from
    Fabric's own ``LightningEnvironment``, never from a SLURM job's variables. Fabric otherwise picks
    ``SLURMEnvironment`` wherever ``SLURM_NTASKS`` is set (outside an interactive job), whose rank is
    ``SLURM_PROCID`` and world ``SLURM_NTASKS``: in an ``sbatch`` script of one task (``--ntasks=1
    --gres=gpu:4``, ``python predict.py devices=4``) every spawned process was rank 0 of 1, each predicted
    every image into the same files, and the run ended in a traceback (the port already in use).

    This process stopped itself (SIGTERM, Ctrl-C) stops the ranks (:func:`stop_spawned_ranks`) and then ends
    as rank 0 recorded the run (its word, :func:`_rank_0_word`: the status ``summary.json`` says, by
    :data:`~marsunits.inference.sharded_run.ENDING_ORDER`), not as its own stop: a SIGTERM here while a rank
    was interrupted ended this process 143 beside a record of 130. Without rank 0's word (the ranks stopped
    before it), its own stop. Not stopped itself, it ends as its ranks' stop, its line saying which rank was
    stopped and how (:func:`~marsunits.inference.sharded_run.tell_stop_with_the_run`): it said the generic
    ``terminated (SIGTERM)`` of a stop that had not come to it. Stopped itself after a rank failed before
    the ranks met (that rank's word, :func:`_failed_rank_word`; rank 0 recorded nothing of it), it ends as
    that failure, naming the rank (:class:`_RankFailedFirst`), not as its own stop.
    """
    from lightning.fabric import Fabric
    from lightning.fabric.plugins.environments import LightningEnvironment

    accelerator = _accelerator(str(opts.device))
    external = launched_world_size() > 1
    words = None if external else tempfile.mkdtemp(prefix="marsunits-predict-")
    word = None if words is None else os.path.join(words, "rank-0-word.pickle")
    stopped_here = False  # this process stopped itself (SIGTERM, Ctrl-C), not only its ranks
    fabric = Fabric(
        accelerator=accelerator,
        devices=opts.devices,
        num_nodes=opts.num_nodes,
        strategy="ddp" if external else "ddp_spawn",
        precision="32-true",  # precision is the predictor's business (runtime.resolve_precision)
        plugins=None if external else [LightningEnvironment()],
    )
    try:
        result = fabric.launch(_rank_main, opts, _log_handlers(), not external, word)  # type: ignore[arg-type]
    except (KeyboardInterrupt, TerminatedError) as stop:
        stopped_here = True
        stop_spawned_ranks(ranks_stopped_too=isinstance(stop, KeyboardInterrupt), word=word)
        # The ranks stopped, rank 0 recorded how the run ended (summary.json): that ends this process too,
        # not its own stop (a SIGTERM here beside a rank's Ctrl-C: the record said 130, this process 143).
        said = _rank_0_word(word)
        failed = _failed_rank_word(words, fabric.node_rank * opts.devices)
        if failed is not None and (said is None or isinstance(said, SpawnedRunStopped)):
            # A rank failed before the ranks met (its error went up to torch's spawn, rank 0 left no word
            # of it): the failure decides how the run ends (ENDING_ORDER), not this process's own stop.
            failure = failed.error(stop)
            raise failure from (failure.errors[0] if failure.errors else None)
        if said is None:  # rank 0 said nothing (stopped before its word, or never started): this stop
            raise
        if isinstance(said, SpawnedRunStopped) and said.sigterm != isinstance(stop, TerminatedError):
            from marsunits.inference.sharded_run import tell_stop_of_another_kind

            ends = TerminatedError() if said.sigterm else KeyboardInterrupt()
            tell_stop_of_another_kind(stop, ends, said.decided or "another rank was stopped")
            raise ends from None
        result = said
    except torch.multiprocessing.ProcessExitedException as exc:
        raise _spawned_rank_gone(exc, fabric.node_rank * opts.devices) from exc
    finally:
        if words is not None:
            shutil.rmtree(words, ignore_errors=True)
    if isinstance(result, SpawnedRunStopped):  # the reports are written: the run ends as the rank's stop
        ends = TerminatedError() if result.sigterm else KeyboardInterrupt()
        if not stopped_here and result.decided is not None:  # a rank alone was stopped: say which
            from marsunits.inference.sharded_run import tell_stop_with_the_run

            tell_stop_with_the_run(ends, result.decided)
        raise ends
    if isinstance(result, SpawnedRunFailed):  # likewise, as the failing rank's error
        raise result.error
    return result


def _rank_0_word(word: str | None) -> RunResult | SpawnedRunStopped | SpawnedRunFailed | None:
    """What rank 0 of spawned ranks left in the file ``word`` as it ended (:func:`_rank_main`): what it
    returned to the launching process, which a stop of that process kept from arriving; None where it left
    nothing."""
    import pickle

    if word is None:
        return None
    try:
        with open(word, "rb") as said:
            return pickle.load(said)  # type: ignore[no-any-return]  # noqa: S301 - rank 0's, this run's
    except (OSError, EOFError, pickle.UnpicklingError):
        return None


@dataclass(frozen=True)
class _RankFailedFirst:
    """What a spawned rank whose error went up to torch's spawn (before the ranks met: a bug in its set-up,
    the first collective's error) leaves beside rank 0's word (:func:`_leave_failure_word`), for a launching
    process stopped (Ctrl-C, SIGTERM) as it ended: torch's spawn, interrupted, no longer raises that rank's
    error there, and the launcher ended with its own stop, 130 or 143, where the failure decides
    (:data:`~marsunits.inference.sharded_run.ENDING_ORDER`). ``status``: the status that error ends a
    command with (:func:`~marsunits.errors.exit_status`: 1 a bug, 2 a user's error); ``said``: its one line
    (``TypeName: message`` for a bug); ``trace``: its traceback, as torch's spawn error file keeps it."""

    rank: int
    pid: int
    status: int
    said: str
    trace: str

    @property
    def cause(self) -> Exception | None:
        """The rank's error as the launcher raises it under :meth:`error`: a bug's traceback (the launcher
        ends as a bug, status 1, and shows it), None for a user's error (said in the one line)."""
        return RuntimeError(f"rank {self.rank}'s error:\n{self.trace}") if self.status == 1 else None

    def error(self, stop: BaseException) -> RankFailedError:
        """The launcher's error, naming this rank, its error and ``stop`` that came to the launcher as it
        ended; its status is the rank's (:class:`~marsunits.errors.OtherProcessError`)."""
        from marsunits.errors import stop_said
        from marsunits.inference.sharded_run import RankFailedError

        message = (
            f"rank {self.rank} of the run (process {self.pid}) failed with exit status {self.status} before "
            f"the ranks met: {self.said}; predict.py was {stop_said(stop)[0]} as it ended, and the failure "
            "decides how the run ends. The outputs of the images finished are kept: run the same command "
            "again, which skips them"
        )
        cause = self.cause
        return RankFailedError(message, [cause] if cause is not None else [])


def _failure_word_file(word: str, rank: int) -> str:
    return os.path.join(os.path.dirname(word), f"rank-{rank}-failed.pickle")


def _leave_failure_word(word: str, rank: int, error: Exception) -> None:
    """Leave, beside rank 0's word ``word``, the word of spawned rank ``rank`` whose ``error`` goes up to
    torch's spawn (:class:`_RankFailedFirst`); left out where it cannot be written, as :func:`_leave_word`."""
    import traceback

    from marsunits.errors import exit_status

    status = exit_status(error)
    said = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if status != 2:
        said = f"{type(error).__name__}: {said}" if said else type(error).__name__
    trace = "".join(traceback.format_exception(error))
    _leave_word(_failure_word_file(word, rank), _RankFailedFirst(rank, os.getpid(), status, said, trace))


def _failed_rank_word(words: str | None, first_rank: int) -> _RankFailedFirst | None:
    """Of the spawned ranks' failure words in the folder ``words`` (:func:`_leave_failure_word`), the one
    whose failure decides the run (:data:`~marsunits.inference.sharded_run.ENDING_ORDER`: a bug before a
    user's error, then the lowest rank), its rank counted in the run (``first_rank``: this machine's first,
    as :func:`_spawned_rank_gone`); None where no rank left one."""
    import pickle

    from marsunits.inference.sharded_run import _ending_order

    if words is None:
        return None
    found: list[_RankFailedFirst] = []
    for name in sorted(os.listdir(words)) if os.path.isdir(words) else []:
        if not (name.startswith("rank-") and name.endswith("-failed.pickle")):
            continue
        try:
            with open(os.path.join(words, name), "rb") as said:
                failed = pickle.load(said)  # noqa: S301 - a rank's of this run
        except (OSError, EOFError, pickle.UnpicklingError):
            continue
        if isinstance(failed, _RankFailedFirst):
            found.append(failed)
    if not found:
        return None
    first = min(found, key=lambda failed: (_ending_order(failed.status), failed.rank))
    return _RankFailedFirst(first_rank + first.rank, first.pid, first.status, first.said, first.trace)


def _leave_word(word: str, returned: object) -> None:
    """Write ``returned``, what rank 0 of spawned ranks returns, pickled to the file ``word`` (atomically),
    for :func:`_rank_0_word`; a word that cannot be written is left out (the launcher then ends with its own
    stop, as it did)."""
    import pickle

    from marsunits.atomic import atomic_write_bytes

    try:
        atomic_write_bytes(word, pickle.dumps(returned))
    except Exception:  # noqa: BLE001 - the run's end matters more than this word
        log.debug("could not leave rank 0's word in %s", word, exc_info=True)


def _spawned_rank_gone(exc: torch.multiprocessing.ProcessExitedException, first_rank: int) -> Exception:
    """The one-line error of ``predict.py devices=N`` whose spawned rank ended without a word (SIGKILL, the
    out-of-memory killer, a crash in native code): torch's spawn stopped the other ranks (SIGTERM, then
    SIGKILL after 30 s) and raised ``ProcessExitedException``, a traceback ending in ``process 1
    terminated with signal SIGKILL`` that said neither that the finished outputs are kept nor what to do.
    ``first_rank``: the run's rank of this machine's first process (Fabric's ``node_rank x devices``:
    ``NODE_RANK``, else ``GROUP_RANK``; ``NODE_RANK`` alone named a rank of the first machine)."""
    from marsunits.inference.sharded_run import RankFailedError

    rank = first_rank + exc.error_index
    if exc.signal_name:
        how = f"was killed by {exc.signal_name}"
        if exc.signal_name == "SIGKILL":
            how += " (the out-of-memory killer, or kill -9)"
    else:
        how = f"ended with exit status {exc.exit_code}"
    # torch 2.6 and older keep the process id as ``pid`` (their ``__slots__`` name ``error_pid``, never set)
    pid = getattr(exc, "error_pid", None) or getattr(exc, "pid", "unknown")
    return RankFailedError(
        f"rank {rank} of the run (process {pid}) {how} without a word, and the other ranks were "
        "stopped. The outputs of the images finished are kept: run the same command again, which skips them "
        "and writes the reports"
    )


@dataclass  # not frozen: Lightning's apply_to_collection, which hands rank 0's result back, refuses one
class SpawnedRunStopped:
    """What rank 0 of spawned ranks returns to the launching process when a rank was stopped (Ctrl-C,
    SIGTERM) and the reports of what the ranks finished are written: raised there as that stop. A rank
    ending in the stop's exception was a spawn traceback, status 1. ``decided``: the ranks whose stop the
    run's is (``rank 1 was interrupted (Ctrl-C)``), for a launching process stopped another way, whose line
    says both (:func:`~marsunits.inference.sharded_run.tell_stop_of_another_kind`)."""

    sigterm: bool
    decided: str | None


@dataclass  # not frozen, as SpawnedRunStopped
class SpawnedRunFailed:
    """What rank 0 of spawned ranks returns to the launching process when a rank failed (an error that ended
    its shard: a full disk, a dead loader worker, a bug) and the reports of what the ranks finished are
    written: raised there, so that ``predict.py devices=2`` ends as one process with that error does (a user
    error in one line, status 2). ``error`` is the failing rank's own error, or, where it could not be sent
    between processes, the :class:`~marsunits.inference.sharded_run.RankFailedError` naming it (a user's
    error) or a ``RuntimeError`` saying it (a bug's: not ended as a user's error, status 1); where several
    ranks failed with a user's error each, the ``RankFailedError`` naming them all
    (:func:`~marsunits.inference.sharded_run.errors_named`). Each rank raising its error instead was a spawn
    traceback, status 1, of whichever rank torch saw end first."""

    error: Exception


#: Seconds :func:`stop_spawned_ranks` gives each rank to end on a stop before it is killed.
STOP_GRACE_S = 10.0

#: At most this many seconds more while rank 0 writes the run's reports (:func:`stop_spawned_ranks`).
REPORTS_WAIT_S = 600.0


def _reports_mark(word: str) -> str:
    """The file, beside rank 0's word ``word``, that rank 0 of spawned ranks makes once the ranks have met
    in the gather, as it starts writing the run's reports (:func:`rank_0_writing_reports`)."""
    return os.path.join(os.path.dirname(word), "rank-0-writing-reports")


def _mark_reports(word: str) -> None:
    """Make :func:`_reports_mark` (left out where it cannot be made: the launcher then waits as before)."""
    try:
        with open(_reports_mark(word), "wb"):
            pass
    except OSError:
        log.debug("could not say that rank 0 writes the reports", exc_info=True)


def rank_0_writing_reports(word: str | None) -> bool:
    """Whether rank 0 of spawned ranks is writing the run's reports now: it has met the others in the
    gather (:func:`_reports_mark`) and not yet left its word ``word`` (:func:`_leave_word`, once written)."""
    return word is not None and os.path.exists(_reports_mark(word)) and not os.path.exists(word)


def stop_spawned_ranks(
    grace_s: float | None = None,
    ranks_stopped_too: bool = False,
    word: str | None = None,
    reports_wait_s: float | None = None,
) -> None:
    """Stop the rank processes this process spawned (``ddp_spawn``), when the run is stopped here.

    A SIGTERM to the launching process alone (``kill``, ``timeout``, a scheduler that signals only the
    process it started) raised :class:`~marsunits.errors.TerminatedError` in it, but its spawned ranks
    predicted on to the end of their shards while it waited for them, and the run said "terminated" after
    finishing every image. Each rank gets SIGTERM (it stops predicting, and rank 0 writes the reports of
    what the ranks finished: :func:`_rank_main`) and, if still alive after ``grace_s``, SIGKILL.

    ``ranks_stopped_too``: the launcher was stopped by Ctrl-C, which in a terminal reaches the ranks by
    itself (the whole process group): each rank is first given ``grace_s`` to end on its own, since a
    SIGTERM at once stopped rank 0 while it wrote the reports.

    ``grace_s``: :data:`STOP_GRACE_S` by default. While rank 0 writes the run's reports (rank 0's word file
    ``word``: :func:`rank_0_writing_reports`) no rank is stopped or killed, for at most ``reports_wait_s``
    (:data:`REPORTS_WAIT_S`, 10 minutes) more: the reports of a big folder, or with ``map=true`` (the
    contact map of 200 small images took minutes), took longer than the 10 s given, and rank 0 was killed
    in the middle of them, leaving no ``summary.json`` or ``index.html`` of the run. The ranks waiting for
    rank 0's last word meanwhile wait too. The wait is said in the log.
    """
    import multiprocessing

    grace = STOP_GRACE_S if grace_s is None else grace_s
    wait_s = REPORTS_WAIT_S if reports_wait_s is None else reports_wait_s
    children = multiprocessing.active_children()
    if ranks_stopped_too:
        wait_s = _join_ranks(children, grace, word, wait_s)
    else:  # a SIGTERM now would stop rank 0 in the middle of the reports (its first, raised there)
        wait_s = _wait_for_reports(children, grace, word, wait_s)
    children = [child for child in children if child.is_alive()]
    for child in children:
        child.terminate()
    _join_ranks(children, grace, word, wait_s)
    for child in children:
        if child.is_alive():
            child.kill()
            child.join()


def _join_ranks(children: list[Any], grace_s: float, word: str | None, wait_s: float) -> float:
    """Wait for the rank processes ``children`` to end, ``grace_s`` at most, and then, while rank 0 writes
    the run's reports (:func:`_wait_for_reports`), ``wait_s`` more at most; return what is left of
    ``wait_s``."""
    _join_within(children, grace_s)
    return _wait_for_reports(children, grace_s, word, wait_s)


def _join_within(children: list[Any], seconds: float) -> None:
    """Wait for the rank processes ``children`` to end, ``seconds`` at most for them all."""
    deadline = time.monotonic() + seconds
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))


def _wait_for_reports(children: list[Any], grace_s: float, word: str | None, wait_s: float) -> float:
    """While rank 0 writes the run's reports (:func:`rank_0_writing_reports`) and a rank of ``children`` is
    alive, wait, ``wait_s`` at most (said in the log), then ``grace_s`` for the ranks to end; return what is
    left of ``wait_s``."""
    if wait_s <= 0 or not any(c.is_alive() for c in children) or not rank_0_writing_reports(word):
        return wait_s
    log.warning(
        "waiting for rank 0 to finish writing the run's reports (summary.json, index.html; at most %.0f s) "
        "before the ranks are stopped",
        wait_s,
    )
    started = time.monotonic()
    while rank_0_writing_reports(word) and time.monotonic() - started < wait_s:
        alive = [child for child in children if child.is_alive()]
        if not alive:
            break
        alive[0].join(0.2)
    left = max(0.0, wait_s - (time.monotonic() - started))
    # Rank 0's word is left (or the wait is over): rank 0 ends now, the others once they have read its word.
    _join_within(children, grace_s)
    return left


class _StoreStops:
    """The ranks' stop and failure flags (:class:`~marsunits.inference.sharded_run.RankStops`), two keys of
    the process group's store (the TCP or file store its ranks met through): each rank checks them before an
    image, a round trip of well under a millisecond each.

    The keys are under a name that rank 0 draws for the run and sends the others (one collective, as the
    ranks start), so that no run reads what an earlier one left in the store: a second run in one process
    group (a notebook under torchrun), or a run that torchrun restarts after a failure, whose agent keeps
    one store for every attempt (its default static rendezvous). Numbered by the runs each process made,
    the restarted ranks, numbering from 1 again, read the failed attempt's flag before their first image
    and all stopped there, predicting nothing. A rank whose process ended before that collective (killed as
    it started) ended the others in gloo's traceback, ``Connection reset by peer`` naming an address: they
    now end in one line, naming it where it is the only other rank
    (:func:`~marsunits.inference.rank_watch.rank_gone_at_the_first_meeting`; on NCCL they still wait in
    the collective, until its timeout). A store that cannot be reached (the
    process holding it is gone) reads as no stop: the gather then fails as it would. Without a process group
    (a rank's set-up called alone) there is no flag.
    """

    def __init__(self) -> None:
        import uuid

        import torch.distributed as dist
        from torch.distributed.distributed_c10d import _get_default_store

        #: This rank's error, once it told the others that it failed.
        self.failure: Exception | None = None
        self.store: Any = None
        #: The other ranks' signs of life (:class:`_RankWatch`), once set up: a rank gone silent stops this
        #: one at its next image, as a failure said would.
        self.watch: _RankWatch | None = None
        if dist.is_initialized():
            run = [uuid.uuid4().hex if dist.get_rank() == 0 else None]
            try:
                dist.broadcast_object_list(run, src=0)
            except RuntimeError as exc:  # a rank ended first (gloo: "Connection closed by peer")
                gone = rank_gone_at_the_first_meeting(exc, dist.get_rank(), dist.get_world_size())
                if gone is None:
                    raise
                raise gone from exc
            self.store = dist.PrefixStore(f"marsunits/predict/{run[0]}/", _get_default_store())

    def announce(self, failure: Exception | None = None) -> None:
        if failure is not None:
            self.failure = failure
        if self.store is None:
            return
        try:
            self.store.set("stopped" if failure is None else "failed", "1")
        except RuntimeError:  # torch's DistStoreError and the like: nobody left to tell
            log.debug("could not tell the other ranks of the stop", exc_info=True)

    def announced(self) -> str | None:
        if self.store is None:
            return None
        for said in ("failed", "stopped"):  # a failure first: it decides how the other ranks end
            try:
                if self.store.check([said]):
                    return said
            except RuntimeError:
                return None
        if self.watch is not None and self.watch.gone() is not None:  # a rank died without a word
            return "failed"  # the gather's meeting (_RankWatch.meet) then names it
        return None


class _StoreBroadcast:
    """``broadcast(obj) -> obj`` for :func:`~marsunits.inference.sharded_run.predict_shard` through the run's
    keys of the process group's store (:class:`_StoreStops`): rank 0 sets the pickled object, the others
    wait for it and say they have read it.

    Not ``torch.distributed.broadcast_object_list``: ranks waiting in a collective for a rank 0 that is gone
    (killed while it wrote the reports: SIGKILL, the out-of-memory killer) wait, on NCCL, until the
    collectives' timeout (30 minutes). The store of spawned ranks and of ``srun``'s is a TCP store that
    rank 0's process holds: once it is gone, a rank waiting for the key fails at once, and says so in one
    line. (Under ``torchrun`` the store is the agent's, which ends every rank when one dies.) Rank 0 waits
    for the others to have read the object (at most ``read_wait_s``) before it goes on: ending, its process
    would take the store, and the object not yet read, with it. A rank says it has read it however its
    wait ends (a SIGTERM raised as the object arrives too), so rank 0 waits only for ranks still waiting,
    and not for one the run's watch finds gone (:class:`_RankWatch`: its process ended, or no sign of life
    for ``rank_timeout_s``; the others then stop at their first image). A rank killed before it read rank
    0's first word (whether the run may start) kept rank 0 waiting the whole ``read_wait_s``, 60 s,
    whatever ``rank_timeout_s``, before the watch, asked only once rank 0 predicted, stopped the run; so did
    a rank killed after the gather, before it read rank 0's last word (the watch no longer looked once the
    ranks had met): rank 0 now stops waiting once a rank that has not read the word is seen gone.
    """

    def __init__(self, stops: _StoreStops, rank: int, world_size: int, read_wait_s: float = 60.0) -> None:
        self._stops = stops
        self._store = stops.store
        self._rank = rank
        self._world_size = world_size
        self._read_wait_s = read_wait_s
        self._calls = 0
        #: The object of the last call, as this rank has it (rank 0's last word: which ranks failed).
        self.last: Any = None

    def __call__(self, obj: Any) -> Any:
        import contextlib
        import pickle

        import torch.distributed as dist

        if self._store is None:
            raise RuntimeError("a sharded run's broadcast needs a process group")
        self._calls += 1  # every rank broadcasts the same times: the n-th call's key is the same everywhere
        key = f"broadcast/{self._calls}"
        if self._rank == 0:
            self.last = obj
            self._store.set(key, pickle.dumps(obj))  # type: ignore[arg-type]  # bytes: torch takes them
            read = [f"{key}/read/{rank}" for rank in range(1, self._world_size)]
            # Asked in turns, not one wait: a wait holds the TCP store's client, which this rank's counting
            # thread shares (_RankWatch), and the ranks already predicting took this silent rank for gone.
            started = time.monotonic()
            deadline = started + self._read_wait_s
            watch = self._stops.watch
            looked = started
            try:
                while not self._store.check(read) and time.monotonic() < deadline:
                    if watch is not None and watch.gone() is not None:  # decided for the run: it stops
                        break
                    if watch is not None and time.monotonic() - looked >= 1.0:
                        looked = time.monotonic()
                        if self._unread_rank_gone(watch, key, started):
                            break
                    time.sleep(0.2)
            except dist.DistError:  # the store gone meanwhile: nobody left to wait for
                log.debug("not every rank said it read %s", key, exc_info=True)
            return obj
        try:
            raw = self._store.get(key)
        except dist.DistNetworkError as exc:  # the store's connection: rank 0's process is gone
            # Not only a kill: rank 0 ending with its own error before its word (its claim on a full disk,
            # a check that fails on its machine alone) is said the same way; this rank cannot tell which.
            raise rank_0_gone() from exc
        finally:
            # Said whatever ends the wait: a SIGTERM that came while this rank waited is raised as the get
            # returns (sigterm_raises), and rank 0 then waited the whole read_wait_s for it before it ended.
            with contextlib.suppress(dist.DistError):  # rank 0's store gone: nobody waits
                self._store.set(f"{key}/read/{self._rank}", "1")
        self.last = pickle.loads(raw)  # noqa: S301 - rank 0's pickle, as the collective's
        return self.last

    def _unread_rank_gone(self, watch: _RankWatch, key: str, started: float) -> bool:
        """On rank 0 waiting since ``started`` for the others to read ``key``: True, said in a warning, when
        a rank that has not read it is gone (:meth:`_RankWatch.gone_while_waited_for`: its process ended,
        or ``rank_timeout_s`` without a sign of life). Once the ranks had met in the gather the run's watch
        no longer looked, and a rank killed after the gather kept rank 0, its reports written, waiting the
        whole ``read_wait_s`` (60 s measured) for it to read the last word. Asked once a second: a round
        trip per rank."""
        unread = [r for r in range(1, self._world_size) if not self._store.check([f"{key}/read/{r}"])]
        seen = watch.gone_while_waited_for(unread, started)
        if seen is None:
            return False
        rank, how = seen
        log.warning(
            "rank %d of the run's %d ranks went away before it read rank 0's %s: %s; rank 0 stopped waiting "
            "for it",
            rank,
            self._world_size,
            "first word (whether the run may start)"
            if self._calls == 1
            else "last word (which ranks failed)",
            how,
        )
        return True


class _RankSum:
    """``all_sum(vector) -> vector`` for :func:`~marsunits.inference.sharded_run.predict_shard`: the sum of
    every rank's float64 ``vector`` (the batch-norm totals of ``adapt_bn=true``, each rank's over its shard),
    bit for bit the same on every rank.

    The ranks first meet through the run's keys of the process group's store (:class:`_StoreStops`): each
    says it has arrived (``adapt_bn/<n>/arrived/<rank>``, ``n`` counting the calls), and one decision, the
    first put to the key ``adapt_bn/<n>/verdict``, holds for every rank: ``met`` once every rank has
    arrived, or how another rank ended (``failed``, ``stopped``) where the run's stop keys or watch
    (:class:`_RankWatch`: a rank killed without a word) say so first. Then, on ``met``, every rank takes
    part in one collective,
    ``all_gather`` (gloo on the CPU, NCCL on GPUs), and adds up the vectors in rank order on the CPU, so that
    every rank holds the same bits whatever the backend's reduction order; else every rank raises
    :class:`~marsunits.inference.sharded_run._StoppedWithTheRun` and joins the gather, where the run ends
    naming the failing rank. Without the meeting, a rank failing or killed during its part of the pass left
    the others waiting in the collective (on NCCL until the collectives' timeout, 30 minutes); deciding
    alone, one rank could enter the collective while another left.
    """

    def __init__(self, stops: _StoreStops, rank: int, world_size: int, poll_s: float = 0.1) -> None:
        self._stops = stops
        self._rank = rank
        self._world_size = world_size
        self._poll_s = poll_s
        self._calls = 0

    def __call__(self, vector: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        self._calls += 1  # every rank calls it the same times: the n-th call's keys are the same everywhere
        stop = self._meet(f"adapt_bn/{self._calls}")
        # NCCL takes this rank's GPU's tensors (where the pass ran: the rank's device), gloo the CPU's.
        nccl = dist.get_backend() == "nccl"
        if nccl and vector.device.type == "cuda":
            device = vector.device
        else:
            device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
        mine = vector.to(device=device, dtype=torch.float64).contiguous()
        every = [torch.empty_like(mine) for _ in range(self._world_size)]
        dist.all_gather(every, mine)
        total = every[0].cpu().clone()
        for other in every[1:]:  # elementwise, in rank order: the same bits on every rank
            total += other.cpu()
        if stop is not None:  # this rank's stop, which came once the others were in the collective
            raise stop
        return total.to(vector.device)

    def _meet(self, name: str) -> KeyboardInterrupt | TerminatedError | None:
        """Return once every rank has arrived (the decision ``met``); raise
        :class:`~marsunits.inference.sharded_run._StoppedWithTheRun` on every rank where the run decided it
        stops (another rank failed, was stopped, or went away) before they all had.

        This rank stopped as it waits (Ctrl-C, SIGTERM): the run's decision becomes ``stopped`` (the others
        stop, and the stop is raised) unless it was ``met`` already, where the others may be in the
        collective: the stop is then returned, for the caller to raise once this rank has taken part."""
        import torch.distributed as dist

        from marsunits.inference.sharded_run import _StoppedWithTheRun

        store = self._stops.store
        if store is None:
            raise RuntimeError("a sharded run's sum over its ranks needs a process group")
        verdict = f"{name}/verdict"
        everyone = [f"{name}/arrived/{rank}" for rank in range(self._world_size)]
        try:
            store.set(everyone[self._rank], "1")
            while True:
                if store.check([verdict]):  # decided, by another rank
                    decided = store.get(verdict).decode()
                elif store.check(everyone):
                    decided = store.compare_set(verdict, "", "met").decode()
                else:
                    said = self._stops.announced()  # a rank's failure or stop, or one gone (the watch)
                    if said is None:
                        time.sleep(self._poll_s)
                        continue
                    decided = store.compare_set(verdict, "", said).decode()
                if decided == "met":
                    return None
                stopping_otherwise()  # this rank's own SIGTERM, coming next, must not cut the ranks' meeting
                raise _StoppedWithTheRun(decided)
        except (KeyboardInterrupt, TerminatedError) as stop:
            try:
                decided = store.compare_set(verdict, "", "stopped").decode()
            except dist.DistError:  # the store is gone: nobody waits in the collective
                raise stop from None
            if decided == "met":
                return stop
            raise
        except dist.DistNetworkError as exc:  # the store's connection: rank 0's process is gone
            raise rank_0_gone() from exc


class _RankWord:
    """``rank_0_word(obj) -> obj`` for :func:`~marsunits.inference.sharded_run.predict_shard`: rank 0's
    ``obj`` on every rank, as the ranks set up (``adapt_bn=true``: whether the run reads the folder's kept
    batch-norm statistics, and their bytes, or adapts), through the run's keys of the process group's store
    (:class:`_StoreStops`; ``word/<n>``, ``n`` counting the calls).

    Rank 0 sets the key and goes on; the others wait for it, looking at the run's stop keys and watch
    between looks, as the ranks' meeting before their sum does (:class:`_RankSum`): a rank that failed or
    was stopped first (rank 0 among them, before its word) or went away ends the wait with
    :class:`~marsunits.inference.sharded_run._StoppedWithTheRun`. Not :class:`_StoreBroadcast`, whose calls
    are counted with the run's first and last words (a rank failing before this word would skip one, and
    read the next as rank 0's last), and whose rank 0 waits for the others to read it.
    """

    def __init__(self, stops: _StoreStops, rank: int, poll_s: float = 0.1) -> None:
        self._stops = stops
        self._rank = rank
        self._poll_s = poll_s
        self._calls = 0

    def __call__(self, obj: Any) -> Any:
        import pickle

        import torch.distributed as dist

        from marsunits.inference.sharded_run import _StoppedWithTheRun

        store = self._stops.store
        if store is None:
            raise RuntimeError("a sharded run's word of rank 0 needs a process group")
        self._calls += 1  # every rank calls it the same times: the n-th call's key is the same everywhere
        key = f"word/{self._calls}"
        if self._rank == 0:
            store.set(key, pickle.dumps(obj))
            return obj
        try:
            while not store.check([key]):
                said = self._stops.announced()  # a rank's failure or stop, or one gone (the watch)
                if said is not None:
                    stopping_otherwise()  # this rank's own SIGTERM, coming next, must not cut the gather
                    raise _StoppedWithTheRun(said)
                time.sleep(self._poll_s)
            return pickle.loads(store.get(key))  # noqa: S301 - rank 0's pickle, as the collective's
        except dist.DistNetworkError as exc:  # the store's connection: rank 0's process is gone
            raise rank_0_gone() from exc


#: ``(file name or None for the console, format)`` of a logging handler, as a spawned process rebuilds it.
_HandlerSpec = tuple[str | None, str | None]


def _log_handlers() -> list[_HandlerSpec]:
    """The root logger's console and file handlers (Hydra's ``predict.log``), described so that a spawned
    process can rebuild them: ``ddp_spawn`` children start with no logging set up, so a ``devices=2`` run
    logged nothing, on the console or in its log file."""
    specs: list[_HandlerSpec] = []
    for handler in logging.getLogger().handlers:
        fmt = handler.formatter._fmt if handler.formatter else None  # noqa: SLF001 - no public accessor
        if isinstance(handler, logging.FileHandler):
            specs.append((handler.baseFilename, fmt))
        elif isinstance(handler, logging.StreamHandler):
            specs.append((None, fmt))
    return specs


def _restore_logging(specs: list[_HandlerSpec], rank: int) -> None:
    """Rebuild the parent's handlers in a spawned child (see :func:`_log_handlers`); nothing if it has some.

    Rank 0 logs what a one-process run logs; the other ranks only warnings (their images' errors), so the
    run's INFO lines are not repeated once per process.
    """
    root = logging.getLogger()
    if root.handlers or not specs:
        return
    for filename, fmt in specs:
        handler: logging.Handler = (
            logging.StreamHandler() if filename is None else logging.FileHandler(filename, mode="a")
        )
        handler.setFormatter(logging.Formatter(fmt))
        handler.addFilter(ReadableNames())  # as predict.py's job has it (readable_log_handlers)
        root.addHandler(handler)
    root.setLevel(logging.INFO if rank == 0 else logging.WARNING)


def _rank_work(
    fabric: Fabric,
    opts: PredictOptions,
    log_handlers: list[_HandlerSpec] | None = None,
    spawned: bool = False,
    word: str | None = None,
) -> RunResult | SpawnedRunStopped | SpawnedRunFailed | None:
    """One rank's work: predict its shard with its own device, then gather the reports on rank 0.

    ``spawned``: the rank is a process :func:`launch` spawned; a stop (Ctrl-C, SIGTERM) that ended the run
    is then returned (:class:`SpawnedRunStopped` from rank 0, None from the others) instead of raised, and
    so is a rank's failure once the ranks have met after it (:class:`SpawnedRunFailed`; the failing rank
    logs the traceback of an error that is not a user's). Ranks of torchrun or srun raise it, each ending as
    its own ``predict.py`` does. Any other error is raised: torch's spawn then ends the other ranks.

    ``word``: a file where rank 0 of spawned ranks also leaves what it returns (:func:`_leave_word`), for a
    launching process stopped itself while the ranks ended (:func:`launch`): torch's spawn no longer hands
    it rank 0's result then."""
    import torch.distributed as dist

    _restore_logging(log_handlers or [], fabric.global_rank)

    from marsunits.inference.sharded_run import RankFailedError, Shard, errors_named, predict_shard

    device = str(fabric.device) if fabric.device.type == "cuda" else "cpu"
    rank_opts = opts.with_values(device=device, devices=1)  # refusals in the launcher's words
    # Processes per machine: ``devices``, which Fabric holds to --ntasks-per-node (SLURM), to WORLD_SIZE /
    # num_nodes (torchrun) and spawns itself. world_size // num_nodes undercounted a node of a SLURM step of
    # fewer tasks (-n 6 on two nodes of 4: 3, on a node running 4), whose ranks then took too many threads.
    shard = Shard(
        rank=fabric.global_rank,
        world_size=fabric.world_size,
        local_world_size=max(1, min(opts.devices, fabric.world_size)),
    )

    def gather(obj: Any) -> list[Any] | None:
        if stops.watch is not None:  # no collective with a rank that is gone (_RankWatch)
            stops.watch.meet()
        out: list[Any] | None = [None] * fabric.world_size if fabric.global_rank == 0 else None
        dist.gather_object(obj, out, dst=0)
        if word is not None and fabric.global_rank == 0:  # the reports come next: a stopping launcher waits
            _mark_reports(word)
        return out

    # A spawned rank has no SIGTERM handler of its own: a SIGTERM (a scheduler's, or the launcher's from
    # stop_spawned_ranks) ended it at once, without its rows, and the run wrote no reports. Raised as
    # TerminatedError, it stops predicting, the other ranks stop at their next image (_StoreStops), and all
    # join the gather (predict_shard). Later SIGTERMs are ignored (once): the launcher's, which follows a
    # scheduler's to every process of the job, stopped rank 0 in the middle of the reports.
    stops = _StoreStops()
    if stops.store is not None:
        stops.watch = _RankWatch(stops.store, shard.rank, shard.world_size, float(opts.rank_timeout_s))
    broadcast = _StoreBroadcast(stops, shard.rank, shard.world_size)

    def ended() -> RunResult | SpawnedRunStopped | SpawnedRunFailed | None:
        try:
            return predict_shard(
                rank_opts,
                shard,
                gather,
                broadcast,
                stops,
                _RankSum(stops, shard.rank, shard.world_size),
                _RankWord(stops, shard.rank),
            )
        except (KeyboardInterrupt, TerminatedError) as stop:
            if not spawned:
                raise
            if fabric.global_rank != 0:
                return None
            last = broadcast.last
            decided = last[2] if isinstance(last, tuple) and len(last) > 2 else None
            return SpawnedRunStopped(isinstance(stop, TerminatedError), decided)
        except Exception as exc:
            if not spawned:
                raise
            if isinstance(exc, RankFailedError):  # another rank failed; the ranks met after it
                error: Exception = exc.errors[0] if exc.errors else exc
            elif exc is stops.failure:  # this rank's own failure, raised after the ranks met (predict_shard)
                error = exc
                if not isinstance(exc, MarsUnitsError):  # a bug: its traceback, which the launcher lacks
                    log.error("rank %d of %d failed", fabric.global_rank, fabric.world_size, exc_info=exc)
            else:  # before the ranks met (a refusal at start, a collective's error): torch's spawn ends
                raise  # the rest
            if fabric.global_rank != 0:
                return None
            # Several ranks failed with a user's error each (a full disk, a dead loader worker): the
            # launching process names them all, as summary.json does, not the lower rank's alone.
            return SpawnedRunFailed(errors_named(broadcast.last, fabric.world_size) or error)

    try:
        with sigterm_raises(once=True):
            returned = ended()
            if word is not None and fabric.global_rank == 0:
                _leave_word(word, returned)
        return returned
    finally:
        if stops.watch is not None:
            stops.watch.close()


def _rank_main(
    fabric: Fabric,
    opts: PredictOptions,
    log_handlers: list[_HandlerSpec] | None = None,
    spawned: bool = False,
    word: str | None = None,
) -> RunResult | SpawnedRunStopped | SpawnedRunFailed | None:
    """One rank's work (:func:`_rank_work`, which says what it returns): predict its shard with its own
    device, then gather the reports on rank 0.

    A spawned rank's error that goes up to torch's spawn (before the ranks met: a bug in its set-up, the
    first collective's error) is also left beside rank 0's ``word`` (:func:`_leave_failure_word`), for a
    launching process stopped as the rank ended: the failure, not that stop, ends the run there
    (:func:`launch`)."""
    try:
        return _rank_work(fabric, opts, log_handlers, spawned, word)
    except Exception as exc:
        if word is not None:
            _leave_failure_word(word, fabric.global_rank, exc)
        raise
