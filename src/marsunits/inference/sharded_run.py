"""How the ranks of a sharded prediction run work together: what each rank predicts, how a stop or a failure
of one rank reaches the others, and how the run ends once rank 0 has written the reports.

:func:`predict_shard` is the run of one process, whether it is the only one (``predict.py`` without
sharding: the default :class:`Shard`) or one rank of several: rank 0 claims ``output_dir`` and tells the
others whether the run may start, each rank predicts its part of the inputs
(:class:`~marsunits.inference.runner._Session`), a rank stopped or failed says so (:class:`RankStops`) and
the others stop at their next image, rank 0 merges every rank's rows and scores into the reports, and each
rank then ends as its own ``predict.py`` would (its stop, its error, or :class:`RankFailedError` naming the
rank that failed).

Not in :mod:`marsunits.inference.distributed`, which holds the processes and their transport: Lightning
Fabric's launch, the process group's store (the stop flags and rank 0's word), the logging of spawned
processes. This module needs none of that: the ranks' ``gather``, ``broadcast``, ``stops``, ``all_sum``
(the batch-norm sums of ``adapt_bn=true``, added up over the ranks) and ``rank_0_word`` (rank 0's decision
whether they adapt or read the kept statistics) are handed to :func:`predict_shard` (tests give it plain
functions), and the one-process run goes through it too.

Imports: :mod:`marsunits.inference.runner` builds its session on :class:`Shard`, :class:`RankStops` and
:class:`_StoppedWithTheRun` and calls :func:`predict_shard`, so it imports this module; the session itself
(``_Session``) is imported from the runner, and ``RunResult`` from :mod:`marsunits.inference.run_reports`,
inside the functions that use them, when the runner is loaded.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, Protocol

from marsunits.atomic import remove_stale_temporaries
from marsunits.errors import (
    STORAGE_ERRNOS,
    USER_ERRORS,
    ConfigError,
    OtherProcessError,
    TerminatedError,
    counted,
    ending_recorded,
    exit_status,
    stop_said,
    stop_told,
    stop_words,
    stopping_otherwise,
    storage_problem,
)
from marsunits.inference.inputs import check_folders
from marsunits.inference.output_writable import check_output_writable
from marsunits.inference.run_summary_text import console_text
from marsunits.inference.writers import printable
from marsunits.run_folder_claim import claimed_output_dir

if TYPE_CHECKING:
    import torch

    from marsunits.inference.evaluation import Evaluation
    from marsunits.inference.options import PredictOptions
    from marsunits.inference.run_reports import RunResult
    from marsunits.inference.runner import _Session

#: The run's logger: its lines are the runner's (``[marsunits.inference.runner]`` in ``predict.log``), as
#: they were before this module was split from it.
log = logging.getLogger("marsunits.inference.runner")


@dataclass(frozen=True)
class Shard:
    """This process's part of a sharded run: it predicts ``todo[rank::world_size]``.

    Attributes:
        rank: Global rank (0 writes the reports).
        world_size: Number of prediction processes.
        local_world_size: Processes on this machine (they share its cores).
    """

    rank: int = 0
    world_size: int = 1
    local_world_size: int = 1


class RankStops(Protocol):
    """How the ranks of a sharded run tell each other that one was stopped (Ctrl-C, SIGTERM) or failed (an
    error that ends its part of the run: a full disk, a dead loader worker, a bug), so that every rank stops
    at its next image (:mod:`marsunits.inference.distributed` keeps the flags in the process group's
    store)."""

    def announce(self, failure: Exception | None = None) -> None:
        """Say that this rank was stopped, or, given ``failure``, that it failed with that error."""

    def announced(self) -> str | None:
        """``"failed"`` when a rank said it failed, else ``"stopped"`` when one said it was stopped, else
        None."""


#: The order in which the endings of a sharded run's ranks decide how the run ends, by exit status
#: (:func:`~marsunits.errors.exit_status`), whichever ranks had them: a bug's (1), a user's error (2: a full
#: disk, a dead loader worker, a stop the run decided itself), a Ctrl-C (130: a person stopped the run), a
#: SIGTERM (143: a scheduler's time limit or pre-emption, ``kill``). The run's ``summary.json``, its closing
#: paragraph and every rank's exit status follow the first ending in this order; between two endings of one
#: status, the lower rank's. The lowest stopped rank's stop decided between a Ctrl-C and a SIGTERM, so the
#: same two stops recorded 130 or 143 by which rank had which. A Ctrl-C goes before a SIGTERM: a wrapper that
#: resubmits a job ended with 143 (pre-empted) does not resubmit a run someone stopped by hand.
ENDING_ORDER = (1, 2, 130, 143)


def _ending_order(status: int) -> int:
    """Where an ending of exit status ``status`` stands in :data:`ENDING_ORDER` (an unknown one last)."""
    return ENDING_ORDER.index(status) if status in ENDING_ORDER else len(ENDING_ORDER)


def _run_stop(stopped: Sequence[tuple[int, str, bool]]) -> bool | None:
    """Of the stopped ranks' ``(rank, how it was stopped, by SIGTERM)``, whether the stop that ends the run
    where no rank failed is a SIGTERM (True) or a Ctrl-C (False), in :data:`ENDING_ORDER` (a Ctrl-C
    before a SIGTERM); None where no rank was stopped."""
    if not stopped:
        return None
    return min((by_sigterm for _, _, by_sigterm in stopped), key=lambda s: _ending_order(143 if s else 130))


class _StoppedWithTheRun(Exception):  # noqa: N818 - a stop, not an error
    """This rank stops because another rank of the run was stopped or failed (:class:`RankStops`): the
    argument is ``"stopped"`` or ``"failed"``."""


class RankFailedError(OtherProcessError):
    """Another rank of a sharded run failed: this rank stopped at its next image (or was stopped itself, or
    failed with an error of another status than the run's: a full disk beside a bug), the reports of what
    every rank finished are written, and the message names the failing rank and its error (which that rank
    raises itself, in its own output or log).

    Attributes:
        errors: The failing ranks' own errors, bugs' first, else in rank order, those that could be sent
            between processes (pickled), and for a bug's that could not, a ``RuntimeError`` saying it: ranks
            spawned by ``predict.py`` end the launching process with the first of them, and a rank of
            ``torchrun`` raising this one exits with its status (:func:`~marsunits.errors.exit_status`), as
            the run's ``summary.json`` records it.
    """


class _RankPart(NamedTuple):
    """What one rank of a sharded run sends rank 0 in the gather: its part of the reports and how its part
    of the run ended. Built by :func:`_rank_part` alone, for a rank that predicted and for one that failed
    before predicting: it was a positional tuple of nine items written out in both places, and one gaining
    an item the other lacked (``grey_predicted``) broke rank 0's unpacking of every part.

    Attributes:
        rows: Its manifest rows, by input path.
        megapixels: Megapixels it predicted.
        loop_seconds: Seconds of its prediction loop.
        evaluation: Its label scores (``labels_dir``), or None.
        map_items: Its images with a camera, for ``map=true``.
        stop: ``(how it was stopped, by SIGTERM)`` for a rank stopped (Ctrl-C, SIGTERM), else None.
        redone: Images it predicted (written) this run.
        grey_predicted: Greyscale images it predicted this run.
        failure: ``(what it failed with, its error if it could be sent)`` for a rank that failed, else None.
        predicting: The input it was predicting as it ended (its path under ``input_dir``), None between
            images: where a rank's bug ended the run, said by the run's last paragraph.
        marked: Whether it marked the settings record pending (``overwrite``, its first image begun).
        stopped_as_it_failed: How a stop that came as its failure went up was said (``"interrupted
            (Ctrl-C)"``), else None: the failure ends its part all the same, and rank 0's last paragraph says
            the stop after it (``Also, rank 1 was interrupted (Ctrl-C) as it failed.``), as one process's
            does. The stop stayed on that rank, and the paragraph left it out.
        planned: Whether it looked at its shard's outputs (``_Session.plan``): a rank stopped or failed
            before that sends no row of the images an earlier run finished, which rank 0 lists for it.
    """

    rows: dict[str, dict[str, Any]]
    megapixels: float
    loop_seconds: float
    evaluation: Evaluation | None
    map_items: list[Any]
    stop: tuple[str, bool] | None
    redone: int
    grey_predicted: int
    failure: tuple[str, Exception | None] | None
    predicting: str | None
    marked: bool
    stopped_as_it_failed: str | None
    planned: bool


def _rank_part(
    session: _Session | None,
    stop: tuple[str, bool] | None = None,
    failure: tuple[str, Exception | None] | None = None,
) -> _RankPart:
    """This rank's :class:`_RankPart`; ``session`` None: a rank that failed before predicting (no image)."""
    if session is None:
        return _RankPart(
            rows={},
            megapixels=0.0,
            loop_seconds=0.0,
            evaluation=None,
            map_items=[],
            stop=stop,
            redone=0,
            grey_predicted=0,
            failure=failure,
            predicting=None,
            marked=False,
            stopped_as_it_failed=None,
            planned=False,
        )
    return _RankPart(
        rows=session.rows,
        megapixels=session.megapixels,
        loop_seconds=session.loop_seconds,
        evaluation=session.evaluation,
        map_items=session.map_items,
        stop=stop,
        redone=session.redone,
        grey_predicted=session.grey_predicted,
        failure=failure,
        predicting=session.predicting,
        marked=session.marked,
        stopped_as_it_failed=session.stopped_as_it_failed if failure is not None else None,
        planned=True,
    )


def predict_shard(
    opts: PredictOptions,
    shard: Shard = Shard(),
    gather: Any = None,
    broadcast: Any = None,
    stops: RankStops | None = None,
    all_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
    rank_0_word: Callable[[Any], Any] | None = None,
) -> RunResult:
    """Predict this process's shard (all inputs when ``shard`` is the default) and write the reports.

    Args:
        opts: The run's options.
        shard: Which part of the inputs this process predicts.
        gather: For ``world_size > 1``: ``gather(obj) -> list | None`` collecting one picklable object per
            rank on rank 0 (None elsewhere), e.g. ``torch.distributed.gather_object``.
        broadcast: For ``world_size > 1``: ``broadcast(obj) -> obj`` giving every rank rank 0's object.
        stops: For ``world_size > 1``: the ranks' shared stop flag (:class:`RankStops`); None: a stopped rank
            does not stop the others.
        all_sum: For ``world_size > 1``: ``all_sum(vector) -> vector``, the sum of every rank's float64
            vector, bit for bit the same on every rank, for ``adapt_bn=true`` (each rank adapts the batch-norm
            statistics to its shard, and the ranks add up their totals: the statistics of every input). It
            returns only once every rank has called it, or raises :class:`_StoppedWithTheRun` on every rank
            where a rank failed, was stopped or went away first. None: each rank adapts to every input.
        rank_0_word: For ``world_size > 1``: ``rank_0_word(obj) -> obj``, rank 0's ``obj`` on every rank (the
            others' ``obj`` is ignored), or :class:`_StoppedWithTheRun` where a rank failed, was stopped or
            went away first: whether ``adapt_bn=true`` reads the statistics the folder keeps (their bytes, as
            rank 0 read them) or adapts, decided by rank 0 alone. Deciding each for itself, a rank that saw
            the file read it while another, to which the file was not visible yet (a shared filesystem's
            lag), adapted, and waited for it in the ranks' meeting forever. None: each rank decides alone.

    Rank 0 first claims ``output_dir`` (:func:`~marsunits.run_folder_claim.claimed_output_dir`): while
    another ``predict.py`` runs into the folder, every rank stops with a ``ConfigError`` before loading the
    model, and nothing in the folder is touched.

    Rank 0 merges the rows, megapixels and label scores of every rank and writes ``manifest.csv``,
    ``summary.json``, ``index.html`` (and ``metrics.json``); the other ranks write only their images'
    outputs and return a result without reports. A rank stopped by Ctrl-C or SIGTERM stops predicting and
    joins the gather with the images it finished (it left without them, and no report was written at all);
    rank 0 writes the reports of what every rank finished, counting the inputs not reached on every shard,
    with ``stopped_early`` naming the stopped ranks (and, with ``overwrite``, without removing any output),
    and then every rank raises the run's stop, as one process does after its reports: a Ctrl-C's where any
    rank was interrupted, else a SIGTERM's (:data:`ENDING_ORDER`; a rank that stopped with the run, or had
    finished its shard, returned as if all went well, and each stopped rank raised its own stop, whatever
    the record said). With ``stops``, the ranks not stopped stop at their next image (they predicted
    their shards to the end while the stopped rank waited in the gather, and beyond the collectives' timeout,
    30 minutes, both ended in a traceback without reports); an interrupted sharded run is resumed by running
    it again: finished outputs are skipped.

    A rank that fails (an ``Exception`` out of its shard's loop, not an image's error row: a full disk's
    :class:`OutputWriteError`, a dead loader worker's ``LoaderWorkerError``, a bug) does the same: it says so
    through ``stops`` (the others stop at their next image), joins the gather with the images it finished,
    and once rank 0 has written the reports (``stopped_early`` naming the failing rank and its error, the
    images not reached counted; for a bug, status 1, the record of one process's bug: ``failed``,
    ``stopped_early`` null, the last paragraph naming the image and the rank) it raises its own error (where
    several ranks failed with a user's error each, the :class:`RankFailedError` naming them all);
    every other rank, rank 0 included, raises :class:`RankFailedError` naming the failing rank and its
    error. It left the run at once, and the others
    predicted their shards, then waited in the gather for it (on NCCL until the collectives' timeout, 30
    minutes; on gloo until its process had ended) and ended in a traceback, no report written. A failure
    on any rank decides how the run ends, whichever ranks were stopped beside it: a bug's (status 1) before
    a user's error's (2), either before a stop's (130, 143); the stops are said too (by ``stopped_early``,
    or after a bug's sentence in the last paragraph), and every rank ends with that status: one that was
    stopped, or whose error's status is not the run's, raises :class:`RankFailedError`. Rank 0
    failing as it writes the reports likewise ends the others with :class:`RankFailedError`, and so does a
    rank failing before its first image (its model on its device, its shard's outputs, rank 0's settings
    record): it joins the gather with no image; rank 0 failing so writes no report. A rank stopped (Ctrl-C,
    SIGTERM) before its first image joins the gather with no image too, and rank 0 lists in the reports its
    images an earlier run finished (:meth:`~marsunits.inference.runner._Session.finished_before`); rank 0
    itself stopped there once set up writes the reports all the same, as one process stopped there does.
    """
    _, output_dir = check_folders(opts.input_dir, opts.output_dir)
    check_output_writable(output_dir)
    made = _folders_to_make(output_dir)
    try:
        with contextlib.ExitStack() as claim:
            refusal: str | None = None
            if shard.rank == 0:
                try:
                    claim.enter_context(claimed_output_dir(output_dir, take=True))
                except ConfigError as exc:
                    refusal = str(exc)
            if shard.world_size > 1:
                refusal = broadcast(refusal)  # every rank stops, not only rank 0
            if refusal is not None:
                raise ConfigError(refusal)
            return _predict_claimed_shard(opts, shard, gather, broadcast, stops, all_sum, rank_0_word)
    except BaseException:
        if shard.rank == 0:  # a run refused at start leaves no empty folders made for its claim
            _remove_empty(made)
        raise


def _folders_to_make(folder: Path) -> list[Path]:
    """The folders on the way to ``folder`` (itself first) that do not exist yet."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove each of ``folders`` (in order: deepest first) that is empty; keep the others."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _check_output_dir_free(opts: PredictOptions) -> None:
    """Raise the ``ConfigError`` of :func:`~marsunits.run_folder_claim.claimed_output_dir` if another
    ``predict.py`` holds ``output_dir`` (checked, then released: the spawned rank 0 claims it for the run).
    Folders made for the check are removed again."""
    _, output_dir = check_folders(opts.input_dir, opts.output_dir)
    check_output_writable(output_dir)
    made = _folders_to_make(output_dir)
    try:
        with claimed_output_dir(output_dir, take=True):
            pass
    finally:
        _remove_empty(made)


def _predict_claimed_shard(
    opts: PredictOptions,
    shard: Shard,
    gather: Any,
    broadcast: Any,
    stops: RankStops | None,
    all_sum: Callable[[torch.Tensor], torch.Tensor] | None,
    rank_0_word: Callable[[Any], Any] | None,
) -> RunResult:
    """:func:`predict_shard`, with ``output_dir`` claimed."""
    from marsunits.inference.run_reports import RunResult
    from marsunits.inference.runner import _Session  # the runner imports this module

    started = time.perf_counter()
    overwriting = bool(opts.overwrite)
    session: _Session | None = None
    todo: list[Any] = []
    stopped_before: KeyboardInterrupt | TerminatedError | None = None  # rank 0, set up, then stopped
    try:
        session = _Session(opts, shard, stops, all_sum, rank_0_word)
        overwriting = bool(session.opts.overwrite)  # a run going on with a stopped overwrite is one too
        if shard.rank == 0 and session.output_dir.is_dir():
            # Temporaries of a killed earlier run (SIGKILL skips every cleanup); live writers' files are kept.
            stale = remove_stale_temporaries(session.output_dir)
            if stale:
                log.info("removed %s left by an interrupted run", counted(len(stale), "temporary file"))
        todo = session.plan()  # this rank's shard only (see _Session)
        if shard.rank == 0 and not overwriting:
            # The adapted statistics first (adapt_bn): a record without them would be adapted again.
            session.store_adapted_state()
            session.save_settings()
    except Exception as exc:  # _StoppedWithTheRun too: another rank failed as the ranks adapted (adapt_bn)
        if shard.world_size == 1:
            raise
        _leave_the_ranks(exc, shard, gather, broadcast, stops)
    except (KeyboardInterrupt, TerminatedError) as stopped_first:
        # Stopped before its first image (as the ranks adapt the batch norm, adapt_bn: minutes on a big
        # folder): said, so that the others stop too rather than wait for it, and the run ends as the stop.
        if shard.world_size == 1:
            if session is not None:  # set up: the run's end is recorded, as a sharded run's rank 0 does
                _report_a_stop_before_predicting(session, stopped_first, started)
            raise
        if shard.rank != 0 or session is None:
            _leave_the_ranks(stopped_first, shard, gather, broadcast, stops)
        # Rank 0 set up: it writes the reports as for any stopped rank (it wrote none), the images finished
        # earlier listed from their outputs (_RankPart.planned), as one process stopped here records its end.
        stopped_before = stopped_first
    # Overwriting: each rank marks the record pending before its first image is replaced (predict_all), so an
    # interrupted overwrite, which leaves old and new outputs side by side, is resumed only with its settings.
    # Not len(session.rows) - len(session.problems): that counted an input refused before predicting (an
    # output name too long, a path escaping output_dir) as skipped, "skipping 1 inputs" in a new folder.
    skipped = session.complete
    if skipped and stopped_before is None:
        why = (
            session.skipped_note  # going on with a stopped overwrite=true run: the images it finished
            if session.continues_overwrite
            else "whose outputs are complete (overwrite=true redoes them)"
        )
        log.info("skipping %s %s", counted(skipped, "input"), why)
    loop_start = time.perf_counter()
    if shard.world_size == 1:
        return _predict_one_process(session, todo, started, loop_start)

    # A rank stopped (Ctrl-C, SIGTERM) joins the gather with the images it finished instead of leaving the
    # run: it left without its rows, the other ranks' gather failed, and no report was written at all. So does
    # a rank that failed (a full disk, a dead loader worker, a bug): it left, and the others predicted their
    # shards and then waited in the gather for it until the collectives' timeout (30 minutes).
    stop: KeyboardInterrupt | TerminatedError | None = None
    rank_stop: tuple[str, bool] | None = None  # (how far the rank got and what next, by SIGTERM), if stopped
    failure: Exception | None = None
    planned = stopped_before is None
    try:
        if stopped_before is not None:
            session.rows, todo = {}, []  # what its plan had recorded: listed again by rank 0 (planned)
            raise stopped_before
        session.predict_all(todo)
    except (KeyboardInterrupt, TerminatedError) as exc:
        stop = exc
        # A SIGTERM coming next (``devices=2``'s launcher stopping its ranks) must not cut the gather or the
        # reports: it raised after the gather, and the run lost this rank's word (or wrote no reports).
        stopping_otherwise()
        if stops is not None:  # the other ranks stop at their next image, as one process stopped would
            stops.announce()
        how_far = session.stopped_early if planned else f"was {stop_said(exc)[0]} before predicting"
        assert how_far is not None, "_Session.predict_all says each stop it lets out in stopped_early first"
        rank_stop = (how_far, isinstance(exc, TerminatedError))
    except _StoppedWithTheRun:
        pass  # another rank's stop or failure: its rank says it, and rank 0 ends the run with it
    except Exception as exc:  # noqa: BLE001 - raised again after the gather, below
        failure = exc
        stopping_otherwise()  # as for a stop: a SIGTERM now must not cut the gather or the reports
        if stops is not None:
            stops.announce(failure)
    session.loop_seconds = time.perf_counter() - loop_start
    done = sum(1 for f in todo if f.rel.as_posix() in session.rows)
    part = _rank_part(
        session,
        rank_stop,
        None
        if failure is None
        else (_failure_said(failure, session.stopped_early, done, len(todo)), _sendable(failure)),
    )._replace(planned=planned)
    parts: list[_RankPart] = gather(part)
    if shard.rank != 0:
        # Rank 0 has written the reports (no rank ends the run before that) and says which ranks failed and
        # whether one was stopped (by SIGTERM: True; Ctrl-C: False; None).
        failures, run_stop, decided = _word_from_rank_0(broadcast)
        _raise_how_the_rank_ended(failure, stop, failures, shard.world_size, run_stop, decided)
        return RunResult(sorted(session.rows.values(), key=lambda r: r["path"]), {}, None, 0)
    failures, stopped = _endings(parts)
    try:  # from here on the other ranks wait in the broadcast below: whatever happens, release them
        redone = 0
        for rank, rank_part in enumerate(parts):
            redone += rank_part.redone
            session.marked = session.marked or rank_part.marked  # the folder's record: pending
            if not rank_part.planned:  # stopped or failed before its plan: its images finished earlier
                session.rows.update(session.finished_before(rank))
            if rank == 0:
                continue
            session.rows.update(rank_part.rows)
            session.grey_predicted += rank_part.grey_predicted
            session.map_items.extend(rank_part.map_items)
            session.megapixels += rank_part.megapixels
            session.loop_seconds = max(session.loop_seconds, rank_part.loop_seconds)
            if session.evaluation is not None and rank_part.evaluation is not None:
                session.evaluation.merge(rank_part.evaluation)
        # The status the run ends with below, on every rank (_raise_how_the_rank_ended): the first ending in
        # ENDING_ORDER, a failure on any rank before a stop, a bug's (1) before a user's error (2), and a
        # Ctrl-C (130) before a SIGTERM (143) where no rank failed (RankFailedError's status: exit_status of
        # its first error, a bug's first). Whichever rank was stopped and whichever failed, the record is the
        # same.
        ends: BaseException | None = None
        if failures:
            ends = RankFailedError("", _errors(failures))
        elif stopped:
            ends = TerminatedError() if _run_stop(stopped) else KeyboardInterrupt()
        session.stop_status = None if ends is None else exit_status(ends)
        # Each stopped rank said "was <how> after <n> of the <m> images it had to predict; <advice>".
        told = [text.partition("; ") for _, text, _ in stopped]
        stops_said = [f"rank {rank} {head}" for (rank, _, _), (head, _, _) in zip(stopped, told, strict=True)]
        # A failing rank stopped (Ctrl-C, SIGTERM) as its error went up: the error decided, the stop is said
        # after it, as one process says it ("Also, the run was interrupted (Ctrl-C) as it failed.").
        as_it_failed = [
            f"rank {rank} was {part.stopped_as_it_failed} as it failed"
            for rank, part in enumerate(parts)
            if part.failure is not None and part.stopped_as_it_failed is not None
        ]
        said = []
        if session.stop_status == 1:
            # A bug ended the run, on whichever rank: recorded as one process's bug is (failed, stopped_early
            # null, a last paragraph naming the image and the rank: RunReports.ended_by_a_bug). The other
            # ranks' endings (stopped, or failed too) follow in that paragraph: nothing is hidden.
            buggy = next(
                (rank for rank, _, error in failures if error is not None and exit_status(error) == 1), 0
            )
            session.predicting = parts[buggy].predicting
            session.failed_rank = f"rank {buggy} of its {shard.world_size} ranks"
            others = [f for f in failures if f[0] != buggy]
            besides = [_rank_failures_said(others, shard.world_size, run=False)] if others else []
            if besides or as_it_failed or stops_said:
                session.also_ended = f"Also, {'; '.join(besides + as_it_failed + stops_said)}."
        elif failures:
            said.append(f"stopped because {_rank_failures_said(failures, shard.world_size, run=False)}")
            if as_it_failed:
                session.also_ended = f"Also, {'; '.join(as_it_failed)}."
        if stopped and session.stop_status != 1:
            advice = "; ".join(dict.fromkeys(rest for _, _, rest in told if rest))
            said.append(
                f"was stopped on {len(stopped)} of its {shard.world_size} ranks ("
                + ", ".join(stops_said)
                + ")"
                + (f"; {advice}" if advice else "")
            )
        if said:
            session.stopped_early = "; and ".join(said)
        elif session.stop_status == 1:  # not this rank's "stopped with the run (another rank failed)"
            session.stopped_early = None
        if (stopped or failures) and overwriting and redone == 0 and _earlier_reports(session.output_dir):
            # As one process stopped before an image was finished: the reports there stay as they were, but
            # for summary.json, this run's.
            _say_nothing_replaced(session, time.perf_counter() - started)
        else:
            if overwriting and not stopped and not failures:  # every rank finished its shard
                session.finish_overwrite()
            try:
                result = session.write_reports(time.perf_counter() - started)
                _print_wrapped(result.summary["text"])
            except OSError as exc:
                if not (stopped or failures):
                    raise
                # The stop's or failure's line matters more than the reports' error.
                _warn_reports_not_written(session.output_dir, exc)
    except Exception as exc:  # noqa: BLE001 - raised again: the other ranks end with it, not as if all went well
        failures.append((0, f"as it wrote the reports ({_said(exc)})", _sendable(exc)))
        raise
    finally:
        failures, run_stop, decided = _last_word(failures, stopped)
        if broadcast is not None:
            broadcast((failures, run_stop, decided))
    _raise_how_the_rank_ended(failure, stop, failures, shard.world_size, run_stop, decided)
    return result


def _predict_one_process(session: _Session, todo: list[Any], started: float, loop_start: float) -> RunResult:
    """The run of one process (``predict.py`` without sharding): predict ``todo``, then write the reports
    and print their last paragraph, whether the run finished, was stopped or failed.

    As in a sharded run, where a failure on any rank decides how the run ends whichever ranks were stopped
    beside it, a failure decides over a stop that comes as it ends the run: a Ctrl-C or SIGTERM as the error
    goes up (:meth:`~marsunits.inference.runner._Session.predict_all`), as its reports are written or its
    paragraph printed. ``summary.json`` records the failure (a bug: status 1, ``failed``, the paragraph naming
    the image), the paragraph then says the stop (``also_ended``), and the error is raised, so that the
    command exits with the status the record says; a stop that comes after the reports, as the error goes on
    up, leaves it so too (:func:`~marsunits.errors.ending_recorded`). The stop was let out instead: status
    130 or 143, the bug unsaid (``stopped``), or said in a ``summary.json`` of status 1 that the exit status
    contradicted.
    """
    interrupted = failed = False
    failure: BaseException | None = None
    try:
        session.predict_all(todo)
        if session.opts.overwrite:
            session.finish_overwrite()
    except (KeyboardInterrupt, TerminatedError) as stopping:
        interrupted = True
        session.stop_status = exit_status(stopping)  # summary.json's exit_status: the stop's, not 0 or 1
        raise
    except BaseException as ending:
        failed, failure = True, ending
        session.stop_status = exit_status(ending)
        if session.stopped_as_it_failed is not None:
            session.also_ended = _also_stopped(session.stopped_as_it_failed, session.stop_status)
        raise
    finally:
        session.loop_seconds = time.perf_counter() - loop_start
        if failed:
            _report_a_failure(session, started)
            if isinstance(failure, Exception):  # from here up, a stop leaves the command ending as it
                ending_recorded(failure)
        else:
            result = _report_one_process(session, started, interrupted, failed=False)
    assert result is not None, "reports go unwritten only where a stop or an error goes on up"
    _print_wrapped(result.summary["text"])
    return result


def _report_a_stop_before_predicting(session: _Session, stop: BaseException, started: float) -> None:
    """Record the end of a one-process run set up and then stopped (Ctrl-C, SIGTERM) before its first image
    (as it looked at the folder's outputs, ``plan``): it wrote no report, where a sharded run whose rank was
    stopped there has rank 0 write them, so that a script read nothing, or the earlier run's status. In a
    folder with reports of an earlier run, its own ``summary.json`` beside them (those reports and the
    outputs they list are as they were:
    :meth:`~marsunits.inference.run_reports.RunReports.write_summary_of_nothing_replaced`); else the reports,
    every input not reached. The stop then goes on up."""
    advice = (
        "nothing was replaced, the folder is as it was"
        if session.opts.overwrite
        else "run the same command again to go on (finished images are skipped)"
    )
    session.stopped_early = f"was {stop_said(stop)[0]} before predicting; {advice}"
    session.stop_status = exit_status(stop)
    session.loop_seconds = 0.0
    if _earlier_reports(session.output_dir):
        _say_nothing_replaced(session, time.perf_counter() - started)
    else:
        _report_one_process(session, started, interrupted=True, failed=False)


def _also_stopped(how: str, status: int) -> str:
    """The sentence a run's last paragraph adds where a stop came (``how``: ``"interrupted (Ctrl-C)"``) as an
    error of exit ``status`` ended it."""
    return f"Also, the run was {how} as it {'failed' if status == 1 else 'stopped'}."


def _report_a_failure(session: _Session, started: float) -> None:
    """Write the reports of a one-process run that an error ended (:func:`_report_one_process`). A Ctrl-C or
    SIGTERM as they are written or their paragraph printed does not end the run in the error's place: the
    stop is said in the paragraph (``also_ended``) and the reports are written again; a second stop there
    leaves them as far as they got, with a warning. Returns; the error goes on up."""
    for attempt in range(2):
        try:
            _report_one_process(session, started, interrupted=False, failed=True)
            return
        except (KeyboardInterrupt, TerminatedError) as stop:
            if session.also_ended is None:
                assert session.stop_status is not None, "set by _predict_one_process before its reports"
                session.also_ended = _also_stopped(stop_said(stop)[0], session.stop_status)
            if attempt:
                log.warning(
                    "%s again as the run wrote its reports in %s: they may not say how it ended; the same "
                    "command writes them when it runs again",
                    stop_said(stop)[0],
                    session.output_dir,
                )


def _report_one_process(
    session: _Session, started: float, interrupted: bool, failed: bool
) -> RunResult | None:
    """Write the reports of a one-process run, and print their paragraph where the run was stopped or a
    bug ended it; return its result (None where no report was written: an ``overwrite=true`` run stopped
    before it replaced an output, or reports refused after a stop)."""
    if (
        session.opts.overwrite
        and session.redone == 0
        and (session.stopped_early is not None or failed)
        and _earlier_reports(session.output_dir)
    ):
        # Stopped before an image was finished: the reports of the outputs there stay as they were (an
        # unexpected error there replaced the manifest with an empty one and removed the maps), but
        # summary.json, which says how the run ended, is this run's.
        _say_nothing_replaced(session, time.perf_counter() - started)
        return None
    try:
        result = session.write_reports(time.perf_counter() - started)
        # Then the stop's line comes last, or a bug's traceback: this one says what next.
        if interrupted or session.ended_by_a_bug:
            _print_wrapped(result.summary["text"])
    except OSError as exc:
        if session.stopped_early is None:
            raise
        _warn_reports_not_written(session.output_dir, exc)
        return None
    return result


def _leave_the_ranks(
    exc: Exception | KeyboardInterrupt | TerminatedError,
    shard: Shard,
    gather: Any,
    broadcast: Any,
    stops: RankStops | None,
) -> NoReturn:
    """Raise ``exc``, the error of a rank of a sharded run that failed before predicting (its model on its
    device, its shard's outputs, its part of the batch-norm adaptation, rank 0's settings record), once the
    ranks have met: it says so through ``stops`` (the others stop at their next image, or as they adapt),
    joins the gather with no image, and waits for rank 0's word. Leaving at once, it left the others to
    predict their shards and wait in the gather for it until the collectives' timeout (30 minutes). Rank 0,
    which has no run to report then, writes no report; another rank failing so is counted in rank 0's
    reports as a rank that reached none of its images.

    ``exc`` a :class:`_StoppedWithTheRun`: this rank did not fail, but stopped before predicting because
    another one failed, was stopped or went away (as the ranks adapted the batch-norm statistics,
    ``adapt_bn``): it joins the gather with no image and no failure of its own, and raises
    :class:`RankFailedError` naming the failing ranks, or the stopped rank's stop, as a rank stopped with
    the run at its next image does. ``exc`` a stop (Ctrl-C, SIGTERM) of this rank before predicting: said
    as a stop, and where no rank failed the run ends on every rank as the run's stop (:data:`ENDING_ORDER`: a
    Ctrl-C before a SIGTERM, whichever ranks had them)."""
    with_the_run = isinstance(exc, _StoppedWithTheRun)
    stop = exc if isinstance(exc, (KeyboardInterrupt, TerminatedError)) else None
    failure = exc if isinstance(exc, Exception) and not with_the_run else None
    if stop is not None:
        if stops is not None:
            stops.announce()
        words, status = stop_said(stop)
        part = _rank_part(None, stop=(f"was {words} before predicting", status == 143))
    elif failure is not None:
        if stops is not None:
            stops.announce(failure)
        part = _rank_part(None, failure=(f"before predicting ({_said(failure)})", _sendable(failure)))
    else:
        part = _rank_part(None)
    parts: list[_RankPart] | None = gather(part)
    if shard.rank == 0:
        failures, run_stop, decided = _last_word(*_endings(parts or []))
        if broadcast is not None:
            broadcast((failures, run_stop, decided))
    else:
        failures, run_stop, decided = _word_from_rank_0(broadcast)
    if with_the_run or stop is not None:
        # Where no rank failed, a rank was stopped: the run ends as the run's stop (ENDING_ORDER), raised.
        _raise_how_the_rank_ended(None, stop, failures, shard.world_size, run_stop, decided)
        said = exc.args[0] if exc.args else "stopped"
        raise RankFailedError(
            f"rank {shard.rank} of the run's {shard.world_size} ranks stopped before predicting because "
            f"another rank {said}; that rank's own error is in its output or log. No image was predicted: "
            "run the same command again once that is dealt with"
        ) from exc
    raise exc


def _raise_how_the_rank_ended(
    failure: Exception | None,
    stop: BaseException | None,
    failures: Sequence[tuple[int, str, Exception | None]],
    world_size: int,
    run_stop: bool | None,
    decided: str | None,
) -> None:
    """Raise what ends this rank's part of the run, with the status the run's ``summary.json`` records
    (:data:`ENDING_ORDER`): where a rank failed (``failures``, as rank 0 said them), this rank's own failure
    if it has the run's status (a bug's, 1, where any rank had a bug; else a user's error's, 2), else the
    ranks' failures as one :class:`RankFailedError` (that status), raised from this rank's own stop or
    failure; where none failed, the run's stop (``run_stop``, :func:`_run_stop`: a SIGTERM, True, or a
    Ctrl-C, False), which is this rank's own where it was stopped that way, else raised from its own stop (a
    rank stopped with the run, or that had finished its shard, raises it too); return when nothing ended it.
    So every rank of a torchrun run exits with the status its record says: a rank stopped (Ctrl-C, SIGTERM)
    beside a failing rank, or one whose disk was full (``OutputWriteError``, 2) beside another's bug, raises
    the :class:`RankFailedError`, and one terminated (SIGTERM) beside another's Ctrl-C the
    ``KeyboardInterrupt``. Such a rank's one line says its own stop and why the run ends otherwise
    (:func:`~marsunits.errors.stop_told`; ``decided``, :func:`_stop_decided_by`: the ranks whose stop the
    run's is): it said ``interrupted (Ctrl-C)``, which was not what happened to it. A rank neither stopped
    nor failed (it stopped with the run, or had finished its shard) says which ranks' stop ended the run
    (:func:`tell_stop_with_the_run`): it said the run's generic line, as if it had been stopped itself.
    Where several ranks failed with a user's error each (status 2: a full disk on one, a dead loader worker
    on another), every failing rank raises the :class:`RankFailedError` naming them all
    (:func:`_several_user_errors`), as the launcher of spawned ranks ends: each said its own error alone,
    and rank 0's output, read first, did not say that another rank had failed too."""
    if failures:
        several = _several_user_errors(failures, world_size)
        named = several or RankFailedError(_rank_failures_said(failures, world_size), _errors(failures))
        if failure is not None and several is None and exit_status(failure) == exit_status(named):
            raise failure
        raise named from (failure or stop)
    if failure is not None:
        raise failure
    if run_stop is None:
        if stop is not None:
            raise stop
        return
    ends = TerminatedError() if run_stop else KeyboardInterrupt()
    if stop is not None and exit_status(stop) == exit_status(ends):
        raise stop
    if decided is not None:
        if stop is not None:
            tell_stop_of_another_kind(stop, ends, decided)
        else:
            tell_stop_with_the_run(ends, decided)
    raise ends from stop


def tell_stop_of_another_kind(own: BaseException, ends: BaseException, decided: str) -> None:
    """Record (:func:`~marsunits.errors.stop_told`) the one line of a process stopped by ``own`` (a SIGTERM)
    whose run ends as ``ends`` (a Ctrl-C) because of other ranks' stops (``decided``,
    :func:`_stop_decided_by`): ``predict.py: terminated (SIGTERM); the run ends as interrupted because rank
    0 was interrupted (Ctrl-C); finished outputs are kept``. ``predict.py`` then prints it and exits with the
    run's status: its generic line for ``ends`` said a stop that had not happened to it. A rank of
    ``torchrun`` and the launching process of spawned ranks say it."""
    how = "terminated" if exit_status(ends) == 143 else "interrupted"
    stop_told(
        f"predict.py: {stop_said(own)[0]}; the run ends as {how} because {decided}; finished outputs are "
        "kept",
        ends,
    )


def tell_stop_with_the_run(ends: BaseException, decided: str) -> None:
    """Record (:func:`~marsunits.errors.stop_told`) the one line of a rank neither stopped nor failed itself
    whose run ends as ``ends`` (a Ctrl-C or a SIGTERM) because of other ranks' stops (``decided``,
    :func:`_stop_decided_by`): ``predict.py: the run ends as interrupted because rank 1 was interrupted
    (Ctrl-C); finished outputs are kept``. ``predict.py`` then prints it and exits with the run's status:
    its generic line, ``interrupted (Ctrl-C)``, said a stop that had not happened to it."""
    how = "terminated" if exit_status(ends) == 143 else "interrupted"
    stop_told(f"predict.py: the run ends as {how} because {decided}; finished outputs are kept", ends)


def _stop_decided_by(stopped: Sequence[tuple[int, str, bool]]) -> str | None:
    """Of the stopped ranks' ``(rank, how it was stopped, by SIGTERM)``, the ranks whose stop is the run's
    (:func:`_run_stop`) and how, as a stopped rank of another kind says why the run ends otherwise: "rank 0
    was interrupted (Ctrl-C)", "ranks 0 and 2 were terminated (SIGTERM)"; None where no rank was stopped."""
    run_stop = _run_stop(stopped)
    if run_stop is None:
        return None
    ranks = [str(rank) for rank, _, by_sigterm in stopped if by_sigterm == run_stop]
    words = stop_words(143 if run_stop else 130)
    if len(ranks) == 1:
        return f"rank {ranks[0]} was {words}"
    return f"ranks {', '.join(ranks[:-1])} and {ranks[-1]} were {words}"


#: Rank 0's last word to the other ranks of a sharded run, once it has written the reports (or, where the
#: run ended before predicting, none): ``(failures, run_stop, decided)``, which ranks failed (``(rank, what it
#: failed with, its error if it could be sent)``), whether the run's stop is a SIGTERM (True) or a Ctrl-C
#: (False; None: no rank was stopped, :func:`_run_stop`), and the ranks whose stop that is
#: (:func:`_stop_decided_by`).
_LastWord = tuple[list[tuple[int, str, Exception | None]], bool | None, str | None]


def _endings(
    parts: Sequence[_RankPart],
) -> tuple[list[tuple[int, str, Exception | None]], list[tuple[int, str, bool]]]:
    """The ranks' endings as their parts of the gather say them: ``(failures, stopped)``, by rank, each
    failed rank as ``(rank, what it failed with, its error if it could be sent)``, each stopped one as
    ``(rank, how it was stopped, by SIGTERM)``."""
    failures = [(rank, *part.failure) for rank, part in enumerate(parts) if part.failure is not None]
    stopped = [(rank, *part.stop) for rank, part in enumerate(parts) if part.stop is not None]
    return failures, stopped


def _last_word(
    failures: list[tuple[int, str, Exception | None]], stopped: Sequence[tuple[int, str, bool]]
) -> _LastWord:
    """Rank 0's last word (:data:`_LastWord`) of the ranks' ``failures`` and ``stopped``
    (:func:`_endings`)."""
    return failures, _run_stop(stopped), _stop_decided_by(stopped)


def _word_from_rank_0(broadcast: Any) -> _LastWord:
    """On a rank other than 0, rank 0's last word (:data:`_LastWord`) through ``broadcast``; without it, a
    word of no failure and no stop."""
    word = broadcast(None) if broadcast is not None else None
    return (list(word[0]), word[1], word[2]) if word else ([], None, None)


def _said(exc: BaseException) -> str:
    """``<type>: <first line of the message>`` of a rank's error, for the other ranks' one-line message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0].rstrip('.')}" if lines else type(exc).__name__


def how_far(done: int, total: int) -> str:
    """How far a run stopped early got through the ``total`` images it had to predict, ``done`` of them
    predicted: "after 2 of the 4 images it had to predict", "before finishing the only image it had to
    predict" (not "after 0 of the 1 images")."""
    if total != 1:
        return f"after {done} of the {total} images it had to predict"
    return f"{'after' if done else 'before finishing'} the only image it had to predict"


def _failure_said(exc: Exception, stopped_early: str | None, done: int, todo: int) -> str:
    """What a rank failed with, as the others say it: its error and, unless the error's sentence says it
    (``stopped_early`` set: a full disk, a dead loader worker), how far the rank got."""
    if stopped_early is not None:
        return f"({_said(exc)})"
    return f"{how_far(done, todo)} ({_said(exc)})"


def _sendable(exc: Exception) -> Exception | None:
    """``exc`` if it survives pickling (to go to rank 0 and on to the launching process). Else, for a user's
    error (:data:`~marsunits.errors.USER_ERRORS`, a full disk), None: the :class:`RankFailedError` naming it
    stands for it there, one line and status 2, as the error itself would be; for any other (a bug's, whose
    one-process run ends in its traceback, status 1), a ``RuntimeError`` saying it, so that the launching
    process does not end as after a user's error (it did, with that ``RankFailedError``)."""
    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own bytes, this moment
    except Exception:  # noqa: BLE001 - an error that cannot travel is said by its text alone
        if isinstance(exc, USER_ERRORS) or storage_problem(exc) is not None:
            return None
        return RuntimeError(
            f"{_said(exc)} (that error could not be sent between processes; its traceback is in the log of "
            "the rank that failed)"
        )
    return exc


def _errors(failures: Sequence[tuple[int, str, Exception | None]]) -> list[Exception]:
    """The failing ranks' errors that reached rank 0 (:class:`RankFailedError`'s ``errors``): bugs' first,
    else in rank order, so that the run's status (the first's: :func:`~marsunits.errors.exit_status`) is a
    bug's wherever one happened, whichever rank it was on."""
    errors = [error for _, _, error in failures if error is not None]
    return sorted(errors, key=lambda error: _ending_order(exit_status(error)))


def errors_named(last_word: Any, world_size: int) -> RankFailedError | None:
    """From rank 0's last word to the ranks (``(failures, ...)``, :func:`predict_shard`), the error that names
    every failed rank where several failed and the run's status is a user's error's (2: a full disk on
    one, a dead loader worker on another), in the record's order (``stopped_early``: by rank); else None.
    The launching process of spawned ranks ends with it, as each failing rank of torchrun does
    (:func:`_raise_how_the_rank_ended`): it ended with the lower rank's error alone, the other unsaid. A
    bug's run (1) ends with the bug's own error (its traceback)."""
    if not isinstance(last_word, tuple) or not last_word or not isinstance(last_word[0], list):
        return None
    return _several_user_errors(last_word[0], world_size)


def _several_user_errors(
    failures: Sequence[tuple[int, str, Exception | None]], world_size: int
) -> RankFailedError | None:
    """The :class:`RankFailedError` naming every failed rank of ``failures`` (rank 0's last word) where
    several failed and the run's status is a user's error's (2); else None (:func:`errors_named`)."""
    if len(failures) < 2:
        return None
    named = RankFailedError(_rank_failures_said(failures, world_size), _errors(failures))
    return named if exit_status(named) == 2 else None


def _rank_failures_said(
    failures: Sequence[tuple[int, str, Exception | None]], world_size: int, run: bool = True
) -> str:
    """``rank <r> of its <n> ranks failed <what>`` for each failed rank; with ``run``, the sentence of
    :class:`RankFailedError` (the run stopped, the failing rank's own error is above or in its log)."""
    ranks = "; ".join(f"rank {rank} of its {world_size} ranks failed {what}" for rank, what, _ in failures)
    if not run:
        return ranks
    whose = "that rank's own error is" if len(failures) == 1 else "those ranks' own errors are"
    return f"the run stopped because {ranks}; {whose} above or in its log"


def _print_wrapped(text: str) -> None:
    """Print one of the lines a run ends with (its summary paragraph, or "The run was stopped ..." where no
    reports were written) as the console shows them: names that are not UTF-8 as ``\\xNN``
    (:func:`~marsunits.inference.writers.printable`), in lines of at most 110 characters
    (:func:`~marsunits.inference.run_summary_text.console_text`). The stop's line was printed unwrapped."""
    print(console_text(printable(text)), file=sys.stdout)


def _earlier_reports(output_dir: Path) -> bool:
    """Whether ``output_dir`` holds an earlier run's reports (its ``manifest.csv``), which an
    ``overwrite=true`` run stopped before it replaced any output keeps (:func:`_say_nothing_replaced`). A
    folder without them (new, or an earlier run killed before its reports) has none to keep: the run writes
    its own, as a run without ``overwrite`` does. Its summary.json said the folder's reports were the
    earlier run's, and no ``manifest.csv`` listed the images it did not reach."""
    return (output_dir / "manifest.csv").is_file()


def _say_nothing_replaced(session: Any, wall_seconds: float) -> None:
    """End an ``overwrite=true`` run stopped (or failed) before it replaced any output: write its own
    ``summary.json``
    (:meth:`~marsunits.inference.run_reports.RunReports.write_summary_of_nothing_replaced`) and print its
    line; where the file cannot be written, the stop's line alone, after a warning saying so."""
    try:
        _print_wrapped(session.write_summary_of_nothing_replaced(wall_seconds))
    except OSError as exc:
        _warn_reports_not_written(session.output_dir, exc)
        if session.stopped_early is not None:
            _print_wrapped(f"The run {session.stopped_early}.")


def _warn_reports_not_written(output_dir: Path, exc: OSError) -> None:
    """One line for reports refused after a stop or failure (the disk that stopped the run may refuse them
    too): the stop's message matters more (two chained tracebacks, 40 lines, stood before the stop's line).
    The re-run writes them, its rows recomputed from the finished outputs."""
    log.warning(
        "could not write the reports (manifest.csv, summary.json, index.html) in %s after the stop: %s; the "
        "same command writes them when it runs again",
        output_dir,
        f"{STORAGE_ERRNOS[exc.errno]} ({exc.strerror})" if exc.errno in STORAGE_ERRNOS else exc,
    )
    log.debug("the reports' error", exc_info=True)
