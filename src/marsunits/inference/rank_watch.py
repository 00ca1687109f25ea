"""The signs of life of a sharded prediction run's ranks, and the meeting before the gather that does not
wait for a rank that is gone (:class:`_RankWatch`), for :mod:`marsunits.inference.distributed`.

A rank killed without a word (SIGKILL, the out-of-memory killer) says nothing through the run's stop keys;
this module is how the other ranks find out. Linux's ``/proc`` tells whether a rank of the same machine has
ended; elsewhere the sign of life alone decides.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

log = logging.getLogger("marsunits.inference.distributed")


def _process_space() -> str:
    """What names this process's process ids: the kernel's boot and the process-id namespace. Two ranks
    that share it see each other's process ids (a host name alone does not say so: containers on one
    machine may share one, each with process ids of its own)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:  # not Linux: no process id is checked, the sign of life alone decides
        return ""


def _process_ended(pid: int) -> bool:
    """True when process ``pid`` of this machine has ended (gone, or a zombie its parent has not reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def rank_0_gone() -> Exception:
    """The error of a rank whose wait on the process group's store ended because the store's process, rank
    0's, is gone: rank 0's own error or a kill (this rank cannot tell which)."""
    from marsunits.inference.sharded_run import RankFailedError

    return RankFailedError(
        "rank 0 of the run ended without a word while this rank waited for it: its own error, or it was "
        "killed (SIGKILL, out of memory); its output or log says which. The outputs of the images finished "
        "are kept: once that is dealt with, run the same command again, which skips them and writes the "
        "reports"
    )


#: gloo's words for a collective whose peer's process ended (its connection closed): a rank killed, or ended
#: by its own error, as the others wait for it in the collective.
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")


def rank_gone_at_the_first_meeting(exc: BaseException, rank: int, world_size: int) -> Exception | None:
    """The one-line error of a rank whose first collective with the others (the run's name, before any sign
    of life is counted: :class:`_RankWatch` is not watching yet) failed because another rank's process
    ended (gloo's :data:`_PEER_GONE`), or None for any other error of the collective. The rank is named
    when it is the only other one; gloo's message names an address, not a rank."""
    said = next((words for words in _PEER_GONE if words in str(exc)), None)
    if said is None:
        return None
    from marsunits.inference.sharded_run import RankFailedError

    other = f"rank {1 - rank}" if world_size == 2 else "another rank"
    return RankFailedError(
        f"{other} of the run's {world_size} ranks ended as the ranks first met, before any image (gloo: "
        f"{said}): it was killed (SIGKILL, the out-of-memory killer) or failed as it started, its output or "
        f"log may say which, and rank {rank} stopped instead of waiting for it. Nothing of this run was "
        "written: once that is dealt with, run the same command again, which skips the images an earlier "
        "run finished"
    )


class _RankWatch:
    """Every rank's sign of life in the run's keys of the process group's store (the keys of
    :class:`~marsunits.inference.distributed._StoreStops`), and the meeting before the gather that does not
    wait for a rank that is gone.

    A rank killed without a word (SIGKILL, the out-of-memory killer, its machine lost) said nothing through
    the stop keys: the others predicted their shards to the end and then waited for it in the gather, on
    NCCL until the collectives' timeout (30 minutes, or for ever), on gloo ending in its ``Connection
    closed by peer`` traceback that names an address, not a rank. Each rank now counts up its key
    ``alive/<rank>`` every ``timeout_s / 6`` seconds (at most 5) from a thread of its own, however long an
    image takes, and says its process id (``pid/<rank>``). A rank is gone (:meth:`gone`) when its process
    has ended, seen from a rank of the same machine and process-id namespace (within a second), or when its
    count has not moved for ``timeout_s`` by this rank's clock (another machine, or a process that is alive
    but silent). The first rank to find one gone decides it for the run (:meth:`_decide`, one key of the
    store), the others then stop at their next image, and :meth:`meet`, where every rank says it reached
    the gather, raises :class:`~marsunits.inference.sharded_run.RankFailedError` naming it on every rank
    instead of waiting, the rank named too if it was alive after all. A store that cannot be reached (the
    process holding it is gone: rank 0 of spawned ranks and of srun's) ends the meeting with that error
    too, naming rank 0.
    """

    def __init__(self, store: Any, rank: int, world_size: int, timeout_s: float) -> None:
        import threading

        self._store = store
        self._rank = rank
        self._world_size = world_size
        self.timeout_s = timeout_s
        self._interval_s = min(5.0, timeout_s / 6)
        self._space = _process_space()
        started = time.monotonic()
        #: rank -> (its last count seen, when it was seen to change, by this rank's clock)
        self._seen: dict[int, tuple[bytes | None, float]] = {
            other: (None, started) for other in range(world_size) if other != rank
        }
        self._pids: dict[int, int | None] = {}  # rank -> its process id where this rank can check it
        self._checked = 0.0
        #: The rank found gone, and how it was seen to go (the end of a sentence naming it).
        self.found: tuple[int, str] | None = None
        self._ended = threading.Event()
        try:
            self._store.set(f"pid/{rank}", f"{self._space}|{os.getpid()}")
        except RuntimeError:
            log.debug("could not say this rank's process id", exc_info=True)
        self._beat()
        self._thread = threading.Thread(target=self._beating, name="marsunits-rank-alive", daemon=True)
        self._thread.start()

    def _beat(self) -> bool:
        try:
            self._store.add(f"alive/{self._rank}", 1)
        except RuntimeError:  # the store is gone (its process ended), or did not answer in time
            log.debug("could not count up this rank's sign of life", exc_info=True)
            return False
        return True

    def _beating(self) -> None:
        """Count up every ``_interval_s`` until :meth:`close`, or until the store has failed for longer than
        ``timeout_s`` (it is gone: its process ended; each try would print torch's warning). Ended at the
        first error of the store (one that did not answer in time), a rank alive and predicting said nothing
        more, and the others took it for gone ``timeout_s`` later."""
        failing_since: float | None = None
        while not self._ended.wait(self._interval_s):
            if self._beat():
                failing_since = None
            elif failing_since is None:
                failing_since = time.monotonic()
            elif time.monotonic() - failing_since > self.timeout_s:
                return

    def close(self) -> None:
        """Stop counting (the run of this rank is over)."""
        self._ended.set()

    def _read(self, keys: list[str]) -> list[bytes | None]:
        """The values of ``keys``, None for a key not set: two round trips to the store while every key is
        set, however many. Read one by one, the looks of every rank (:meth:`gone`, once a second) were 2 x
        ranks^2 round trips a second on the run's one store (130,000 for 256 ranks; by estimate, at 0.2 ms a
        round trip over a network, a tenth of each rank's time)."""
        if self._store.check(keys):
            multi_get = getattr(self._store, "multi_get", None)  # not in every torch this runs on
            return list(multi_get(keys)) if multi_get else [self._store.get(key) for key in keys]
        return [self._store.get(key) if self._store.check([key]) else None for key in keys]

    def _read_pids(self, others: list[int]) -> None:
        """Note the process id of each of ``others`` not noted yet that has said it (:attr:`_pids`: None for
        a rank of another machine or process-id namespace, whose process id this rank cannot check)."""
        unread = [other for other in others if other not in self._pids]
        if not self._space or not unread:
            return
        for other, said in zip(unread, self._read([f"pid/{other}" for other in unread]), strict=True):
            if said is not None:
                space, _, pid = said.decode().rpartition("|")
                self._pids[other] = int(pid) if space == self._space else None

    def _decide(self, verdict: str) -> bool:
        """Put ``verdict`` to the run's one decision, key ``verdict``, which the first rank to put one makes
        for every rank: ``met`` (every rank reached the gather, which takes place) or ``<rank>|<how>`` (that
        rank is gone). True when the decision is ``met``; otherwise :attr:`found` is the rank it names.

        Each rank judging alone, a rank taken for gone but alive (silent for ``timeout_s``: its process
        stopped and continued, its counting thread held up) was waited for by some ranks and not by others:
        the rank that gave up left the meeting, and the one taken for gone, reaching the meeting later, found
        it there and waited for it in the gather (gloo: its traceback; NCCL: the collectives' timeout)."""
        decided = self._store.compare_set("verdict", "", verdict).decode()
        if decided == "met":
            return True
        gone, _, how = decided.partition("|")
        self.found = (int(gone), how)
        return False

    def gone(self, arrived: Collection[int] = ()) -> int | None:
        """The rank the run has decided is gone (:meth:`_decide`: a rank, not in ``arrived``, found gone here,
        see the class, or one that another rank found first); None while every rank lives. Read from the
        store at most every second."""
        now = time.monotonic()
        if self.found is not None or now - self._checked < 1.0:
            return None if self.found is None else self.found[0]
        self._checked = now
        try:
            if self._store.check(["verdict"]):  # another rank decided
                self._decide("")
                return None if self.found is None else self.found[0]
            seen = self._look([other for other in self._seen if other not in arrived], now)
            if seen is not None:
                self._decide(f"{seen[0]}|{seen[1]}")
                return None if self.found is None else self.found[0]
        except RuntimeError:
            return None  # the store is gone: the meeting says so
        return None

    def _look(self, others: list[int], now: float, silent_from: float = 0.0) -> tuple[int, str] | None:
        """The first of ``others`` seen gone, and how (the end of a sentence naming it): its process ended
        (this machine), or no sign of life from it for ``timeout_s`` (counted from ``silent_from`` at the
        earliest); None while they all live. Notes each one's count (:attr:`_seen`)."""
        if not others:
            return None
        self._read_pids(others)
        for other, current in zip(others, self._read([f"alive/{other}" for other in others]), strict=True):
            count, since = self._seen[other]
            pid = self._pids.get(other)
            if pid is not None and _process_ended(pid):
                return other, f"its process ({pid}) ended"
            if current != count:
                self._seen[other] = (current, now)
            elif now - max(since, silent_from) > self.timeout_s:
                return other, f"no sign of life from it for {self.timeout_s:g} s (rank_timeout_s)"
        return None

    def gone_while_waited_for(self, ranks: Collection[int], waited_since: float) -> tuple[int, str] | None:
        """The first of ``ranks`` seen gone, and how (the end of a sentence naming it), for rank 0 waiting
        since ``waited_since`` (``time.monotonic()``) for them to read its word; None while they live.
        Decides nothing, and looks once the ranks have met in the gather too, where :meth:`gone` no longer
        does (the run's decision is ``met``): a rank killed after the gather never reads rank 0's last word.

        A rank is seen gone when its process has ended (this machine), or when it has shown no sign of life
        for ``timeout_s`` since it was last seen to, and since ``waited_since``: a rank waiting for the word
        on the store cannot count up its sign of life (its wait holds the store's client, which its counting
        thread shares), and it reads the word at once once it is set."""
        others = [other for other in ranks if other in self._seen]
        try:
            return self._look(others, time.monotonic(), waited_since)
        except RuntimeError:
            return None  # the store is gone: nobody is left to wait for

    def _found_said(self) -> str:
        """The one line of :meth:`meet` naming the rank the run decided is gone (:attr:`found`)."""
        assert self.found is not None  # noqa: S101 - said only once decided
        gone, how = self.found
        if gone == self._rank:  # alive after all: the others took it for gone
            said = (
                f"rank {gone} of the run's {self._world_size} ranks (this one) was taken for gone by "
                f"another: {how}; its process was stopped a while (SIGSTOP, a suspended job) or could not "
                "reach the store, and every rank stopped"
            )
        else:
            said = (
                f"rank {gone} of the run's {self._world_size} ranks went away without a word: {how}; it was "
                "killed (SIGKILL, the out-of-memory killer) or its machine lost, its output or log may say "
                f"which, and rank {self._rank} stopped instead of waiting for it"
            )
        return (
            f"{said}. The outputs of the images finished are kept: run the same command again, which skips "
            "them and writes the reports"
        )

    def _wait_for_readers(self) -> None:
        """On rank 0, before it ends with the run's decision that a rank is gone: wait, at most ``timeout_s``,
        until every other rank has read it (``verdict/read/<rank>``), the rank named too unless its process
        is seen ended. Rank 0's process holds the store of spawned ranks and of srun's: ending at once, it
        took the decision with it, and a rank still predicting was told that rank 0 ended without a word."""
        assert self.found is not None  # noqa: S101 - waited for only once decided
        gone = self.found[0]
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            missing = [r for r in range(1, self._world_size) if not self._store.check([f"verdict/read/{r}"])]
            pid = self._pids.get(gone)
            if not missing or (missing == [gone] and pid is not None and _process_ended(pid)):
                return
            time.sleep(0.2)

    def meet(self) -> None:
        """Say that this rank reached the gather, and wait until every rank has, or the run has decided that
        a rank is gone (:meth:`_decide`: every rank then ends here, the one named too if it is alive).

        Raises:
            RankFailedError: A rank not there is gone (:meth:`gone`), or the store is gone (rank 0's process
                ended).
        """
        import torch.distributed as dist

        from marsunits.inference.sharded_run import RankFailedError

        try:
            self._store.set(f"arrived/{self._rank}", "1")
            everyone = [f"arrived/{r}" for r in range(self._world_size)]
            while True:
                # One round trip while all are there (many ranks wait).
                if self.found is None and self._store.check(everyone) and self._decide("met"):
                    return
                if self.found is None:
                    self.gone({r for r in range(self._world_size) if self._store.check([everyone[r]])})
                if self.found is not None:
                    self._store.set(f"verdict/read/{self._rank}", "1")
                    if self._rank == 0:
                        self._wait_for_readers()
                    raise RankFailedError(self._found_said())
                time.sleep(0.5)
        except dist.DistError as exc:  # the store's connection: its process (rank 0's) is gone
            raise rank_0_gone() from exc
