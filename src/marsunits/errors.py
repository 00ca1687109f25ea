"""Errors a user can cause and fix: entry points print their message in one line, without a traceback.

Every message says what was expected, what was found (naming the file or value) and what to do.
Set ``MARSUNITS_TRACEBACK=1`` to see the full traceback anyway.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from omegaconf.errors import (  # loaded anyway: the package's __init__ registers a resolver with OmegaConf
    InterpolationResolutionError,
    InterpolationToMissingValueError,
    MissingMandatoryValue,
)


class MarsUnitsError(Exception):
    """Base class for errors caused by input or configuration (not by a bug).

    Every exception class of the package is one (keeping a standard base, ``ValueError`` or ``RuntimeError``,
    where code catches that), or is named with the reason in ``NOT_USER_ERRORS`` of ``tests/test_errors.py``,
    whose test walks them all: a script's ``except MarsUnitsError`` catches every error a user can fix."""


class OtherProcessError(MarsUnitsError):
    """This process's part of a run was ended by the error of another process of it (a rank of a sharded
    ``predict.py``), said in one line that names that process and its error.

    Attributes:
        errors: The other processes' own errors that reached this one. The command exits with the first
            one's status (:func:`exit_status`): 1 for a bug, as the failing process does (a rank of
            ``torchrun`` said a bug's 1 as 2, a user's error, with its run's ``summary.json`` saying 1), 2
            for a user's error, and 2 where none reached it.
    """

    def __init__(self, message: str, errors: Sequence[Exception] = ()) -> None:
        super().__init__(message)
        self.errors = list(errors)


class ConfigError(MarsUnitsError, ValueError):
    """A configuration value is missing or wrong."""


class MissingFileError(ConfigError, FileNotFoundError):
    """A file a configuration value names is not there: refused as a wrong value is (``train.py`` checks it
    before Hydra makes the run folder), and still a ``FileNotFoundError`` for code that catches that."""


class DataError(MarsUnitsError, ValueError):
    """A data file or folder is missing, unreadable or inconsistent."""


class DataLayoutError(DataError, FileNotFoundError):
    """A dataset's root folder is there but not laid out as its data config reads it (a subfolder or its sol
    table missing, the table without its sol column: :func:`marsunits.data.layout.check_layout`); still a
    ``FileNotFoundError``, as the missing root folder is, for code that catches that (``train.py`` refuses
    both before Hydra makes the run folder)."""


#: Words YAML 1.1 took for booleans; OmegaConf keeps them as text, which ``bool()`` reads as true.
YES_NO_WORDS = frozenset({"yes", "no", "on", "off", "y", "n"})


def switch_value_refusal(key: str, value: object, python: bool = False) -> str:
    """The refusal of an on/off option ``key`` given ``value``, which is not true or false, in the words of
    both ``train.py`` and ``predict.py``: ``key='no': give key=true or key=false`` (``key=True or key=False``
    where ``python``: a keyword argument of the Python API, where ``true`` is no name), then why for text
    (which ``bool()`` reads as true), ``(yes/no/on/off are read as text)`` for one of :data:`YES_NO_WORDS`
    (any letter case), ``(any text is read as true)`` for other text; nothing more for a number or a list."""
    yes, no = ("True", "False") if python else ("true", "false")
    said = f"{key}={value!r}: give {key}={yes} or {key}={no}"
    if not isinstance(value, str):
        return said
    if value.lower() in YES_NO_WORDS:
        return f"{said} (yes/no/on/off are read as text)"
    return f"{said} (any text is read as true)"


class DivergedError(MarsUnitsError):
    """Training produced a non-finite loss: the weights are lost (usually too high a learning rate)."""


class TerminatedError(BaseException):
    """The run was asked to stop by SIGTERM (a scheduler's pre-emption or time limit: SLURM, Kubernetes).

    Lightning ends training on SIGTERM with its ``SIGTERMException``, a ``SystemExit`` without a code, so
    the command used to exit with status 0, as if it had finished. Entry points report this as one line
    and exit with status 143 (128 + SIGTERM, the shell's convention).

    A ``BaseException``, like ``KeyboardInterrupt``: raised wherever the main thread is when the signal
    comes, it must pass through the ``except Exception`` blocks that read a broken file's error as "no
    orientation tag", "not 16-bit" or an image's error row; derived from ``Exception``, a SIGTERM inside one
    was lost (the run went on) or recorded as a failed image. Catch it with ``KeyboardInterrupt``.
    """


#: Exceptions an entry point reports as one line: project errors plus the standard ones raised for bad
#: paths and values by the libraries underneath (their messages name the file).
USER_ERRORS: tuple[type[BaseException], ...] = (
    MarsUnitsError,
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    PermissionError,
    IsADirectoryError,
)

T = TypeVar("T")


@contextlib.contextmanager
def sigterm_raises(defer_to_later_handlers: bool = False, once: bool = False) -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`TerminatedError` where the main thread is, so a command
    stops as after Ctrl-C: its ``finally`` blocks write what was finished, and the entry point reports it.

    Without it, Python's default action ends the process at once: ``predict.py`` under SLURM or Kubernetes,
    stopped at its time limit, left no manifest or summary and a temporary file of the image being written.
    Off the main thread (where signals cannot be handled) the block runs unchanged.

    On the main thread numpy is imported on entering the block, once the handler is up (a stop there is
    raised out of the ``with`` statement): a block is where a command first imports torch (the entry points'
    start-up, ``python -m marsunits.export``), and torch's C extension imports numpy itself and drops whatever
    that import raises. A SIGTERM or Ctrl-C arriving as numpy loaded there was lost: the command went on,
    numpy half-imported, to a traceback (``module 'numpy._core' has no attribute '_multiarray_umath'``, a
    RecursionError) or to its end. Imported here, in Python, the stop propagates as anywhere else, and torch
    finds numpy loaded. It costs some 0.15 s before a mistyped argument is refused (export's, train.py's).

    Args:
        defer_to_later_handlers: While a handler installed inside the block is the process's SIGTERM handler
            and calls this one as well (Lightning's, during ``fit``: it stops at the next step boundary with
            its ``SIGTERMException`` and ``InterruptCheckpoint`` saves ``last.ckpt``), do nothing and leave
            the stop to it; raising in the middle of a step would lose that checkpoint. ``train.py`` uses
            this for its set-up (rendering scenes, reading data), where Lightning's handler is not yet
            installed and SIGTERM ended the run without a word.
        once: The first SIGTERM raises; later ones, until the block ends, are ignored (SIGKILL still ends the
            process). A rank of a sharded ``predict.py`` uses this: stopped, it still gathers with the other
            ranks and rank 0 writes the reports, and a second SIGTERM (``devices=2``'s launcher passing on
            its own, which a scheduler's time limit sends every process of the job) raised in the middle of
            them and the run wrote no reports.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminated(signum: int, frame: object) -> None:
        if defer_to_later_handlers and signal.getsignal(signal.SIGTERM) is not terminated:
            return
        if once:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise TerminatedError

    if once:
        _ONCE_HANDLERS.add(terminated)
    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        import numpy  # noqa: F401 - loaded before torch can load it (the docstring says why)

        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _ONCE_HANDLERS.discard(terminated)


#: The SIGTERM handlers of the ``sigterm_raises(once=True)`` blocks now open.
_ONCE_HANDLERS: set[object] = set()


def stopping_otherwise() -> None:
    """In a ``sigterm_raises(once=True)`` block, ignore SIGTERM from now on, as after its first one.

    For a stop that came another way: a rank of a sharded ``predict.py`` stopped because another rank was
    (a scheduler's time limit signals every process, and the first rank stopped stops the others at their
    next image). Its own SIGTERM, arriving next, raised while rank 0 wrote the reports, and the run wrote
    none. Elsewhere (no such block, or off the main thread) this does nothing.
    """
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) in _ONCE_HANDLERS
    ):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


@contextlib.contextmanager
def quiet_interrupt_at_start(prog: str) -> Iterator[None]:
    """One line and status 130 for a Ctrl-C while a command starts (imports, Hydra composing the config);
    143 for a SIGTERM there: within the block SIGTERM raises :class:`TerminatedError`
    (:func:`sigterm_raises`; the handler before it is restored at the end).

    :func:`report_user_errors` handles Ctrl-C and SIGTERM once the run has begun; before it, a Ctrl-C (a user
    who sees a mistake in the command just typed) printed a 40-line traceback out of whatever module was
    loading, and a SIGTERM (a scheduler's time limit) found no handler: status 143 without a word. Nothing
    has been written at that point. The handlers a run installs inside the block take precedence while they
    are installed. A stop that comes as the command exits (a ``SystemExit`` on its way out: the run over,
    its words said) leaves that exit and its status as they were; it was told ``before the run started;
    nothing was written``, with 130 or 143 for the run's status.
    """
    try:
        # Entered inside the try: a stop as the block starts (sigterm_raises imports numpy) is said too.
        with sigterm_raises():
            yield
    except (KeyboardInterrupt, TerminatedError) as stop:
        ending = stop.__context__
        # The command was exiting, its run over: its status stands. Not Lightning's SIGTERMException, a
        # SystemExit without a code (status 0) that is itself a stop.
        if type(ending) is SystemExit:
            raise ending from None
        # The run's recorded ending on its way out (Hydra printing a bug's traceback): its status stands.
        recorded = _recorded_ending_under(stop)
        if recorded is not None:
            raise SystemExit(exit_status(recorded)) from None
        if os.environ.get("MARSUNITS_TRACEBACK"):
            raise
        how, status = stop_said(stop)
        print(f"{prog}: {how} before the run started; nothing was written", file=sys.stderr)
        raise SystemExit(status) from None


def some_of(names: Sequence[str], limit: int) -> str:
    """The first ``limit`` of ``names`` joined with ", ", and " ..." when there are more: how a message
    names the files or values it is about without listing thousands."""
    return ", ".join(names[:limit]) + (" ..." if len(names) > limit else "")


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun``, in the plural (``plural``, else ``noun`` + "s") unless ``n`` is 1: "1 image",
    "0 images", "2 inputs". For the counts of messages and log lines, which read "1 image(s) ... have" or
    "1 inputs failed"; here beside :func:`some_of`, so that training's modules count without importing
    :mod:`marsunits.inference`."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


#: errno values of a disk that takes no more: full, over quota, read-only.
STORAGE_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    getattr(errno, "EDQUOT", -1): "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
}


def storage_problem(
    exc: BaseException | None, fix: str | None = None, where: object = "a file"
) -> str | None:
    """One line for an ``OSError`` of a full, over-quota or read-only disk (any file: a CSV log, W&B's
    files, ``metrics.json``, an export), naming the file (``where`` when the error names none) and ``fix``
    (by default: free space, or the option of ``train.py`` and ``predict.py`` that writes elsewhere); None
    for any other error."""
    if not isinstance(exc, OSError) or exc.errno not in STORAGE_ERRNOS:
        return None
    if fix is None:
        fix = (
            "free space, or write to another disk (train.py: paths.log_dir=<folder>; predict.py: "
            "output_dir=<folder>)"
        )
    return f"cannot write {exc.filename or where}: {STORAGE_ERRNOS[exc.errno]} ({exc.strerror or exc}); {fix}"


#: How a command says it was stopped, by the exit status it returns: the shell's 128 + the signal's number.
#: The one place these words and numbers are spelt (:func:`stop_said`, :func:`stop_words`).
_STOP_WORDS = {143: "terminated (SIGTERM)", 130: "interrupted (Ctrl-C)"}


def stop_said(stop: BaseException) -> tuple[str, int]:
    """How a command says it was stopped by ``stop`` (SIGTERM: :class:`TerminatedError`, or Lightning's
    ``SIGTERMException`` that ends a training on it; else Ctrl-C), and the exit status it returns: 143 or
    130 (:data:`_STOP_WORDS`)."""
    status = 143 if _is_sigterm(stop) else 130
    return _STOP_WORDS[status], status


def stop_words(status: int) -> str:
    """:func:`stop_said`'s words for a stop known by its exit status alone (a sweep's trial that reported
    its stop and exited with it): 143 SIGTERM, any other Ctrl-C."""
    return _STOP_WORDS[143 if status == 143 else 130]


def _is_sigterm(stop: BaseException) -> bool:
    """Whether ``stop`` is a SIGTERM: :class:`TerminatedError`, or Lightning's ``SIGTERMException`` where a
    run has imported Lightning (looked up in ``sys.modules``, as :func:`_reported` does: importing it here
    would add seconds to every command's start, and an exception of it exists only once it is imported)."""
    if isinstance(stop, TerminatedError):
        return True
    lightning = sys.modules.get("lightning.pytorch.utilities.exceptions")
    return lightning is not None and isinstance(stop, lightning.SIGTERMException)


def exit_status(ending: BaseException) -> int:
    """The status :func:`report_user_errors` exits with when ``ending`` ends the command (the one rule it
    exits by): 143 for SIGTERM (:class:`TerminatedError`, Lightning's ``SIGTERMException``), 130 for
    Ctrl-C, 2 for a user's error (a full disk included; a dead loader worker's ``LoaderWorkerError`` is one),
    1 for any other (a traceback); for :class:`OtherProcessError`, that of the other process's error. Hydra's
    ``InstantiationException`` is classed by the error a constructor raised inside it (:func:`_told_error`),
    as it is told. ``predict.py`` records it as ``summary.json``'s ``exit_status`` of a stopped run, whose
    reports are written before the stop ends it. A stop the run said in its own line (:func:`stop_told`)
    keeps that line's status instead (:func:`report_user_errors`)."""
    if isinstance(ending, (TerminatedError, KeyboardInterrupt)) or _is_sigterm(ending):
        return stop_said(ending)[1]
    if isinstance(ending, OtherProcessError) and ending.errors:  # another rank's error ended the run
        return exit_status(ending.errors[0])
    told = _told_error(ending)
    if told is not None and (storage_problem(told) or isinstance(told, _reported())):
        return 2
    return 1


def _told_error(ending: BaseException) -> BaseException | None:
    """The error a user is told of when ``ending`` ends the command: ``ending`` itself, or for Hydra's
    ``InstantiationException`` the error the constructor raised that it wraps (an unknown encoder, a bad
    learning rate: its ``__cause__``; None when it wraps none)."""
    if not isinstance(ending, Exception):  # a stop, a SystemExit: no Hydra error in it, nothing to import
        return ending
    # Imported here, where an error is told: every module that raises a MarsUnitsError imports this one, and
    # Hydra took some 0.08 s of their import (a camera file's reader, an image's).
    from hydra.errors import InstantiationException

    return ending.__cause__ if isinstance(ending, InstantiationException) else ending


def recorded_for_torchrun(fn: Callable[[], T]) -> Callable[[], T]:
    """``fn``, which under ``torchrun`` (its agent sets ``TORCHELASTIC_ERROR_FILE`` for each worker) writes
    the error that ends it to that file first (torch's ``elastic.multiprocessing.errors.record``): torchrun's
    summary of a failed run then shows each failing rank's own error, a user's error too (which
    :func:`report_user_errors` turns into one line afterwards), where it said ``error_file: <N/A>`` and
    pointed to the docs. Elsewhere ``fn`` itself, with nothing imported (torch takes seconds)."""
    if not os.environ.get("TORCHELASTIC_ERROR_FILE"):
        return fn
    from torch.distributed.elastic.multiprocessing.errors import record

    return record(fn)  # type: ignore[return-value]  # None only for a SystemExit(0), which ends anyway


def record_refusal_for_torchrun(message: str) -> None:
    """Under ``torchrun`` (its agent sets ``TORCHELASTIC_ERROR_FILE`` for each worker), write ``message``, a
    refusal an entry point prints before Hydra starts (``<prog>: error: ...``, status 2), to that file as a
    :class:`ConfigError`, through torch's own error handler (its format, as :func:`recorded_for_torchrun`
    writes a run's error): torchrun's summary of the failed run then shows it, where it said
    ``error_file: <N/A>`` and pointed to the docs. The entry in the summary is the message alone, without
    the frames of this function. Elsewhere nothing, with nothing imported: ``python train.py model.lr=-1``
    is refused without torch's seconds of start-up. A file that cannot be written is left as torchrun
    finds it (the summary says ``<N/A>``); the refusal is printed all the same."""
    if not os.environ.get("TORCHELASTIC_ERROR_FILE"):
        return
    from torch.distributed.elastic.multiprocessing.errors import get_error_handler

    refused = ConfigError(message)
    try:
        raise refused
    except ConfigError:
        refused.__traceback__ = None  # the handler's "py_callstack" (what the summary shows): the message
        with contextlib.suppress(OSError):
            get_error_handler().record_exception(refused)


#: The stop the run inside :func:`report_user_errors` says in its own line (:func:`stop_told`): the line,
#: whether it was printed (:func:`say_told_stop`), and the exit status of the stop it says.
_stop_told: dict[str, str | int | bool | None] = {"line": None, "printed": False, "status": None}


def stop_told(line: str, stop: BaseException) -> None:
    """Record the running command's own line saying how it was stopped by ``stop`` (Ctrl-C; SIGTERM: a
    :class:`TerminatedError` or Lightning's ``SIGTERMException``) and how to go on: ``train.py``'s
    ``InterruptCheckpoint`` (the epoch, the step, the ``last.ckpt`` saved and ``ckpt_path=last``). The line is
    printed by :func:`say_told_stop` once the run's loggers have closed (:func:`marsunits.training.run`),
    else by :func:`report_user_errors`, and that exits with the stop's status without its own line: the
    README promises one line, and a second, ``interrupted (Ctrl-C); finished outputs are kept``, said less
    and came last, where a user reads first. Printed at once, the lines of the loggers closing came after
    it (W&B's, and the ``wandb sync`` command of an offline run): the user's last line was not how to go on.

    Only the first stop of a run is recorded: a later one (a SIGTERM while ``wandb.finish`` uploads after a
    Ctrl-C) changes neither the line nor the status (:func:`report_user_errors` says why)."""
    if _stop_told["line"] is None:
        _stop_told.update(line=line, printed=False, status=stop_said(stop)[1])


def forget_told_stop() -> None:
    """Forget the line :func:`stop_told` recorded: a new run (a trial of a sweep, a test's) says its own."""
    _stop_told.update(line=None, printed=False, status=None)


def say_told_stop() -> None:
    """Print the line recorded by :func:`stop_told` on stderr, once; nothing when there is none."""
    if _stop_told["line"] is not None and not _stop_told["printed"]:
        _stop_told["printed"] = True
        print(_stop_told["line"], file=sys.stderr, flush=True)


#: The error the running command's run recorded as how it ended, as that error went on up
#: (:func:`ending_recorded`); None while none was.
_ending_recorded: dict[str, Exception | None] = {"error": None}


def ending_recorded(error: Exception) -> None:
    """Record that the running command's run wrote ``error`` in its reports as how it ended (``predict.py``'s
    ``summary.json``: a bug's status 1, a full disk's 2) and lets it go on up. A Ctrl-C or SIGTERM that comes
    while it does (the run's folder released, its traceback printed) then ends the command as that error, with
    its status (:func:`report_user_errors`, :func:`quiet_interrupt_at_start`): it ended it with the stop's,
    130 or 143, under a record saying 1 or 2."""
    _ending_recorded["error"] = error


def _recorded_ending_under(stop: BaseException) -> Exception | None:
    """The error :func:`ending_recorded` recorded, when ``stop`` came while it went up
    (:func:`came_during`); else None (a stop inside a handler of some other error is a stop)."""
    recorded = _ending_recorded["error"]
    return recorded if recorded is not None and came_during(stop, recorded) else None


def came_during(stop: BaseException, error: BaseException) -> bool:
    """Whether ``stop`` was raised while ``error`` went up: ``error`` is in the stop's ``__context__``
    chain."""
    seen: set[int] = set()
    context = stop.__context__
    while context is not None and id(context) not in seen:
        if context is error:
            return True
        seen.add(id(context))
        context = context.__context__
    return False


def report_user_errors(fn: Callable[[], T], prog: str) -> T:
    """Run ``fn``; on a user error print ``<prog>: error: <message>`` and exit with status 2; on Ctrl-C
    print one line and exit with status 130 (the shell's convention for SIGINT), on :class:`TerminatedError`
    with 143 (SIGTERM); let any other error through (its traceback, status 1). The status, and whether an
    error is a user's, are :func:`exit_status`'s: the one rule, which ``predict.py`` records in
    ``summary.json`` before a stop ends it.

    A stop that ``fn`` said in its own line (:func:`stop_told`) exits without another, with the status of
    the stop that line says, even when another stop ended ``fn`` (a SIGTERM while W&B uploaded after a
    Ctrl-C, a Ctrl-C while the run closed after a scheduler's SIGTERM): the status agrees with the line, and
    what the run kept and how it goes on were settled by the first stop. A wrapper that resubmits a job
    ended with 143 (pre-empted: ``ckpt_path=last``) still resubmits a pre-empted run that someone pressed
    Ctrl-C in as it closed, and does not resubmit a run its user stopped with Ctrl-C (status 143 for it
    said the run was pre-empted, under a line saying it was interrupted).

    A stop that comes as the error the run recorded as its ending goes up (:func:`ending_recorded`) ends the
    command as that error: its one line and status 2, or its traceback and status 1."""
    forget_told_stop()  # told by this call's run, not an earlier one (a trial before, a test)
    _ending_recorded["error"] = None
    try:
        try:
            try:
                return fn()
            except SystemExit as ending:  # Lightning's SIGTERMException (a SystemExit without a code, 0)
                if not _is_sigterm(ending):  # the command's own exit, as it chose
                    raise
                raise TerminatedError(str(ending) or "SIGTERM") from ending
        except (TerminatedError, KeyboardInterrupt) as stop:
            recorded = _recorded_ending_under(stop)
            if recorded is None:
                raise
        raise recorded  # out of the handler: its own traceback, not one "during handling" of the stop
    except (TerminatedError, KeyboardInterrupt) as stop:
        if os.environ.get("MARSUNITS_TRACEBACK"):
            say_told_stop()
            raise
        if _stop_told["line"] is not None:  # its line said it, and how to go on; train.log has that line too
            say_told_stop()  # where the run did not print it (it is printed once)
            raise SystemExit(_stop_told["status"]) from None
        # What was finished is on disk (every file is written atomically); the command resumes.
        message = f"{stop_said(stop)[0]}; finished outputs are kept"
        log_to_files(message)
        print(f"{prog}: {message}", file=sys.stderr)
        raise SystemExit(exit_status(stop)) from None
    except Exception as exc:  # noqa: BLE001 - re-raised below unless it is a user error
        status = exit_status(exc)
        # Hydra's instantiate wraps what a constructor raises (an unknown encoder, a bad learning rate).
        cause = _told_error(exc)
        if os.environ.get("MARSUNITS_TRACEBACK") or status != 2 or cause is None:  # 1: a traceback
            raise
        message = readable(storage_problem(cause) or _one_line(cause, prog))  # caf\xe9.png, as logs write it
        log_to_files(f"error: {message}")
        print(f"{prog}: error: {message}", file=sys.stderr)
        if not _worded_refusal(cause):  # an error marsunits did not word may be a bug: where it came from
            print(f"{prog}: (set MARSUNITS_TRACEBACK=1 for the full traceback)", file=sys.stderr)
        raise SystemExit(status) from None


def _worded_refusal(error: BaseException) -> bool:
    """Whether ``error``, a user's error :func:`report_user_errors` tells in one line, is a refusal worded
    for its user: one of marsunits' error classes (:class:`MarsUnitsError`), a full disk's line
    (:func:`storage_problem`), a config value left at ``???`` or an interpolation that does not resolve (the
    lines :func:`_one_line` writes), or Lightning's refusal of a trainer setting. That line is all the user
    is told: a second one, ``(set MARSUNITS_TRACEBACK=1 for the full traceback)``, read as a crash to whoever
    had mistyped ``patterns``. Any other (a library's ``ValueError``, a bare ``FileNotFoundError``) may be a
    bug that marsunits did not foresee: the hint to its traceback, for a bug report, stays."""
    worded = (MarsUnitsError, MissingMandatoryValue, InterpolationResolutionError, *_lightning_refusals())
    return isinstance(error, worded) or storage_problem(error) is not None


def _reported() -> tuple[type[BaseException], ...]:
    """:data:`USER_ERRORS`, a ``???`` value, and Lightning's ``MisconfigurationException`` (a trainer setting
    it refuses, e.g. ``trainer.devices=3`` on one CPU) when Lightning has been imported: looked up in
    ``sys.modules`` (:func:`_lightning_refusals`)."""
    return (*USER_ERRORS, MissingMandatoryValue, *_lightning_refusals())


def _lightning_refusals() -> tuple[type[BaseException], ...]:
    """Lightning's ``MisconfigurationException`` where Lightning has been imported, else nothing: looked up in
    ``sys.modules``, since importing Lightning here would add seconds to every command's start."""
    lightning_errors = sys.modules.get("lightning.fabric.utilities.exceptions")
    return () if lightning_errors is None else (lightning_errors.MisconfigurationException,)


def _one_line(exc: BaseException, prog: str) -> str:
    """The message of ``exc``; a config value left at ``???`` names the key and the override to add; an
    interpolation that does not resolve once the run reads it (``${oc.env:VAR}`` of an unset variable, a
    ``${...}`` of an option ``cli_overrides`` does not check before Hydra starts) names the key and its
    value in one line, where OmegaConf's message had three (``full_key: ...``, ``object_type=...``)."""
    if isinstance(exc, MissingMandatoryValue):
        key = exc.full_key or str(exc).splitlines()[0]
        return f"{key} has no value; add {key}=<value> to the command (python {prog} ... {key}=...)"
    if isinstance(exc, InterpolationToMissingValueError):  # ``a: ${b}`` with ``b: ???``: b needs a value
        missing = str(exc).splitlines()[0].rsplit("Missing mandatory value:", 1)[-1].strip()
        return (
            f"{exc.full_key or 'a config value'} is taken from {missing or 'another option'}, which has no "
            f"value (??? in the config); add {missing or '<that option>'}=<value> to the command "
            f"(python {prog} ... {missing or '<option>'}=...)"
        )
    if isinstance(exc, InterpolationResolutionError):
        node = exc.child_node
        value = f"={node._value()!r}" if node is not None else ""
        return (
            f"{exc.full_key or 'a config value'}{value}: this interpolation does not resolve "
            f"({str(exc).splitlines()[0]}); correct it (python {prog} ... --cfg job shows the config), "
            "or for a literal ${ write \\${ (in YAML plain or single-quoted)"
        )
    return str(exc)


#: A byte of a file name that is not UTF-8, as Python holds it (``os.fsdecode``: surrogateescape).
_UNDECODABLE = re.compile("[\udc80-\udcff]")


def readable(text: str) -> str:
    """``text`` as valid UTF-8 for people: each byte of a file name that is not UTF-8 written ``\\xNN``
    (``caf\\xe9.png``), as ``manifest.csv`` writes it (``inference.writers.printable``), and any other lone
    surrogate as ``\\udNNN``. Python holds such a name (Linux bytes ``b'caf\\xe9.png'`` from an old
    archive) with a lone surrogate per byte, which a strict UTF-8 stream cannot write."""
    text = _UNDECODABLE.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", text)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class ReadableNames(logging.Filter):
    """A logging filter (:func:`readable_log_handlers` puts it on the handlers of the job's logging) that
    writes each record's message, traceback and stack through :func:`readable`.

    Why: a message naming a file that is not UTF-8 (an image ``caf<0xe9>.png``, a run folder under a Latin-1
    ``paths.log_dir``) made the strict UTF-8 log file (and a strict console) raise ``UnicodeEncodeError``:
    logging printed "--- Logging error ---" and the line was lost, the reason a run stopped included.
    Records without such a name are left untouched.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format: left to the handler, which reports it as usual
            return True
        if readable(message) != message:
            record.msg, record.args = readable(message), None
        if record.exc_info and not record.exc_text:  # formatted here only where it names such a file
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = readable(text) if readable(text) != text else None
        elif record.exc_text:
            record.exc_text = readable(record.exc_text)
        if record.stack_info:
            record.stack_info = readable(record.stack_info)
        return True


def readable_log_handlers() -> None:
    """Put :class:`ReadableNames` on every handler of the root logger that has none: ``train.py`` and
    ``predict.py`` call it first in their Hydra job, once Hydra has set up the job's logging
    (``hydra.job_logging``: the console and ``<task>.log``, or whatever handlers a ``hydra/job_logging`` of
    one's own makes).

    Why here and not in ``configs/hydra/default.yaml``: a filter named on the ``console`` and ``file``
    handlers there made those handlers part of every ``job_logging``, so one of one's own without a
    console (a file-only log) stopped every run in "Unable to configure handler 'console'", and replaced
    the filters that one's own handlers listed. Handlers added later (Lightning's, W&B's) are not touched.
    """
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, ReadableNames) for f in handler.filters):
            handler.addFilter(ReadableNames())


def log_to_files(message: str) -> None:
    """Write ``message`` to the root logger's log files only (Hydra's ``<task>.log`` in the run folder).

    The console already gets the one-line message; without this, the run folder of a run stopped by a bad
    value held an empty log that did not say why it stopped.
    """
    record = logging.LogRecord("marsunits", logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
