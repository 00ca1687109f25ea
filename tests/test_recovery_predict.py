"""A prediction killed at a random moment (SIGKILL: no cleanup handler runs) and run again ends with the
same outputs, byte for byte, as an uninterrupted run, and no temporary file left behind."""

from __future__ import annotations

import csv
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from marsunits import atomic
from marsunits.atomic import atomic_write_bytes, host_digest, remove_stale_temporaries

try:  # tests/ as a package (rootdir import) or as a plain folder on sys.path (pytest's prepend mode)
    from .conftest import REPO_ROOT
    from .test_predict import (
        ckpt,  # noqa: F401  (a fixture)
        make_cfg,
        save_rgb,
    )
except ImportError:
    from conftest import REPO_ROOT  # type: ignore[no-redef]
    from test_predict import (  # type: ignore[no-redef]
        ckpt,  # type: ignore[no-redef]  # noqa: F401
        make_cfg,
        save_rgb,
    )

N_IMAGES = 8


def _images(inp: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        inp.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (480 + 8 * i, 720, 3), dtype=np.uint8)).save(inp / f"im{i}.png")


def _command(ckpt: Path, inp: Path, out: Path, hydra_dir: Path) -> list[str]:
    return [
        sys.executable,
        str(REPO_ROOT / "predict.py"),
        f"ckpt_path={ckpt}",
        f"input_dir={inp}",
        f"output_dir={out}",
        "num_workers=0",
        "device=cpu",
        "threads=1",
        "precision=32",
        f"hydra.run.dir={hydra_dir}",
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}


def _manifest(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "manifest.csv", newline="") as fh:
        rows = {r["path"]: r for r in csv.DictReader(fh)}
    for r in rows.values():
        r.pop("seconds")
        # A finished image is "ok" when predicted in this run, "skipped" when a previous run did it.
        assert r["status"] in ("ok", "skipped"), r
        r.pop("status")
        r.pop("message")
    return rows


def _outputs(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and p.name.endswith((".mask.png", ".overlay.png", ".thumb.jpg", ".contact.geojson"))
    }


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = int(proc.stdout)
    here = host_digest()
    stale = tmp_path / "a" / f".x.mask.png.{dead}@{here}.k3j4.tmp"
    stale_older_name = tmp_path / "a" / f".z.mask.png.{dead}.k3j4.tmp"  # written before the host digest
    live = tmp_path / f".y.mask.png.{os.getpid()}@{here}.k3j4.tmp"
    # Another machine writing to this shared folder (a multi-node run): its pids mean nothing here.
    elsewhere = tmp_path / f".w.mask.png.{dead}@{'0' * 8 if here != '0' * 8 else '1' * 8}.k3j4.tmp"
    unrelated = tmp_path / "notes.tmp"
    for p in (stale, stale_older_name, live, elsewhere, unrelated):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half")
    atomic_write_bytes(tmp_path / "done.bin", b"complete")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([stale, stale_older_name])
    assert live.exists() and unrelated.exists() and elsewhere.exists()
    assert (tmp_path / "done.bin").read_bytes() == b"complete"


def test_a_long_output_name_gets_a_temporary_name_the_filesystem_accepts(tmp_path: Path) -> None:
    """A 236-byte output name is valid, but its temporary name (about 20 bytes longer) was not: every
    input with a stem over about 215 characters became an error row ("File name too long")."""
    # 236 and 229 bytes, and a name that is not UTF-8 (os.fsdecode: surrogate escapes)
    names = ["a" * 220 + ".contact.geojson", "é" * 110 + ".mask.png", os.fsdecode(b"img_\xff\xfe.mask.png")]
    for name in names:
        assert len(os.fsencode(name)) <= 255
        atomic_write_bytes(tmp_path / name, b"complete")
        assert (tmp_path / name).read_bytes() == b"complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)  # no temporary left
    # A killed writer's temporary of such a name is still recognised as one, and removed.
    fd, tmp = tempfile.mkstemp(
        prefix=atomic._temporary_prefix(tmp_path / names[0]), suffix=".tmp", dir=tmp_path
    )
    os.close(fd)
    assert len(Path(tmp).name.encode()) <= 255
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    renamed = Path(tmp).with_name(Path(tmp).name.replace(f".{os.getpid()}@", f".{int(dead.stdout)}@"))
    os.rename(tmp, renamed)
    assert remove_stale_temporaries(tmp_path) == [renamed]


@pytest.mark.slow
def test_killed_prediction_resumes_to_identical_outputs(tmp_path: Path, ckpt: Path) -> None:
    inp = tmp_path / "in"
    _images(inp)
    ref, out = tmp_path / "ref", tmp_path / "out"
    subprocess.run(_command(ckpt, inp, ref, tmp_path / "h0"), env=_env(), check=True, capture_output=True)

    rng = random.Random(1234)
    proc = subprocess.Popen(
        _command(ckpt, inp, out, tmp_path / "h1"),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(out.rglob("*.mask.png")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        assert proc.poll() is None, "the run finished before it could be killed: use more or larger images"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    done = len(list(out.rglob("*.mask.png")))
    assert 1 <= done < N_IMAGES
    # What a kill in the middle of a write leaves (atomic_write's temporary name, the dead writer's pid).
    (out / f".im0.overlay.png.{proc.pid}.a1b2c3.tmp").write_bytes(b"half an image")

    subprocess.run(_command(ckpt, inp, out, tmp_path / "h2"), env=_env(), check=True, capture_output=True)
    assert _outputs(out) == _outputs(ref)
    assert len(_outputs(out)) == 4 * N_IMAGES
    assert _manifest(out) == _manifest(ref)
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp") or ".tmp-" in p.name]
    assert leftovers == []


def _sleep_through_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)


def test_a_sigterm_to_the_launching_process_stops_its_spawned_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    """``predict.py devices=2`` stopped by a SIGTERM to the launching process alone (kill, timeout) said
    "terminated" while its ranks predicted on to the end of their shards, the launcher waiting for them."""
    import multiprocessing
    from types import SimpleNamespace

    import lightning.fabric

    from marsunits.errors import TerminatedError
    from marsunits.inference import distributed

    fork = multiprocessing.get_context("fork")
    ranks: list = []

    def launch(self, function, *args):  # the ranks are running when the launcher is stopped
        ranks.extend(fork.Process(target=time.sleep, args=(60,)) for _ in range(2))
        for rank in ranks:
            rank.start()
        raise TerminatedError

    monkeypatch.setattr(lightning.fabric.Fabric, "launch", launch)
    started = time.monotonic()
    with pytest.raises(TerminatedError):
        distributed.launch(SimpleNamespace(device="cpu", devices=2, num_nodes=1))  # type: ignore[arg-type]
    assert time.monotonic() - started < 10
    assert [rank.exitcode for rank in ranks] == [-signal.SIGTERM, -signal.SIGTERM]
    # A rank that does not end on SIGTERM within the grace time is killed.
    stubborn = fork.Process(target=_sleep_through_sigterm)
    stubborn.start()
    time.sleep(0.5)  # its handler is set
    distributed.stop_spawned_ranks(grace_s=0.5)
    assert stubborn.exitcode == -signal.SIGKILL


def _rank_0_writing_reports(word: str, seconds: float) -> None:
    """Rank 0 of spawned ranks as it writes the run's reports: it says so beside its ``word`` (as
    ``distributed._rank_main`` does once the ranks met in the gather), takes ``seconds``, then leaves its
    word (a run stopped by SIGTERM) and ends. A SIGTERM meanwhile ends it there, reports and word lost."""
    import pickle

    from marsunits.inference import distributed

    Path(word).with_name("rank-0-writing-reports").touch()
    time.sleep(seconds)
    Path(word).write_bytes(pickle.dumps(distributed.SpawnedRunStopped(True, None)))


def test_a_launcher_stopped_while_rank_0_writes_the_reports_waits_for_them_within_a_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``predict.py devices=2`` whose launcher was stopped (SIGTERM) gave rank 0 10 s before SIGKILL, and
    the reports of a big folder or with ``map=true`` take longer (minutes for the contact map of 200 small
    images): rank 0 was stopped in the middle of them and the run kept no ``summary.json`` or
    ``index.html``. While rank 0 writes them the launcher now waits, up to ``REPORTS_WAIT_S``, and the run
    ends as rank 0 recorded it; a rank 0 still writing after that limit is killed."""
    import multiprocessing
    from types import SimpleNamespace

    import lightning.fabric

    from marsunits.errors import TerminatedError
    from marsunits.inference import distributed

    fork = multiprocessing.get_context("fork")
    ranks: list = []
    took = 1.5  # longer than the grace below

    def launch(self, function, *args):  # type: ignore[no-untyped-def]
        word = args[-1]
        ranks.append(fork.Process(target=_rank_0_writing_reports, args=(word, took)))
        ranks[0].start()
        mark = Path(word).with_name("rank-0-writing-reports")
        deadline = time.monotonic() + 30
        while not mark.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        raise TerminatedError

    monkeypatch.setattr(lightning.fabric.Fabric, "launch", launch)
    monkeypatch.setattr(distributed, "STOP_GRACE_S", 0.3, raising=False)
    opts = SimpleNamespace(device="cpu", devices=2, num_nodes=1)
    with pytest.raises(TerminatedError):
        distributed.launch(opts)  # type: ignore[arg-type]
    assert ranks[0].exitcode == 0  # neither stopped nor killed: its reports and word are written
    # Bounded: a rank 0 still writing after REPORTS_WAIT_S is stopped and killed.
    ranks.clear()
    took = 60
    monkeypatch.setattr(distributed, "REPORTS_WAIT_S", 0.5, raising=False)
    started = time.monotonic()
    with pytest.raises(TerminatedError):
        distributed.launch(opts)  # type: ignore[arg-type]
    assert time.monotonic() - started < 10
    assert ranks[0].exitcode in (-signal.SIGTERM, -signal.SIGKILL)


def test_a_spawned_run_whose_rank_failed_ends_with_that_rank_s_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """``predict.py devices=2``: rank 0's :class:`SpawnedRunFailed` (a rank failed, the reports are written)
    is raised in the launching process as the failing rank's own error, so that a full disk is one line and
    status 2 there, as in one process."""
    from types import SimpleNamespace

    import lightning.fabric

    from marsunits.inference import distributed
    from marsunits.inference.runner import OutputWriteError

    full = OutputWriteError("stopped: cannot write outputs to /out because the disk is full")
    monkeypatch.setattr(
        lightning.fabric.Fabric, "launch", lambda self, function, *args: distributed.SpawnedRunFailed(full)
    )
    with pytest.raises(OutputWriteError) as raised:
        distributed.launch(SimpleNamespace(device="cpu", devices=2, num_nodes=1))  # type: ignore[arg-type]
    assert raised.value is full


@pytest.mark.parametrize("sigterm", [False, True], ids=["ctrl-c", "sigterm"])
def test_a_spawned_run_whose_rank_alone_was_stopped_says_which_rank_and_how(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sigterm: bool
) -> None:
    """``predict.py devices=2`` not stopped itself, whose rank 1 alone was stopped (``kill`` of that
    process, a SIGINT sent to it): its launcher ended with the run's status and the generic line,
    ``predict.py: terminated (SIGTERM); finished outputs are kept``, as if it had been stopped. It now says
    which rank was stopped and how (rank 0's word), with the run's status, as a torchrun rank stopped with
    the run does."""
    from types import SimpleNamespace

    import lightning.fabric

    from marsunits.errors import report_user_errors
    from marsunits.inference import distributed

    words = "terminated (SIGTERM)" if sigterm else "interrupted (Ctrl-C)"
    stopped = distributed.SpawnedRunStopped(sigterm, f"rank 1 was {words}")
    monkeypatch.setattr(lightning.fabric.Fabric, "launch", lambda self, function, *args: stopped)
    opts = SimpleNamespace(device="cpu", devices=2, num_nodes=1)
    with pytest.raises(SystemExit) as ended:
        report_user_errors(lambda: distributed.launch(opts), "predict.py")  # type: ignore[arg-type]
    assert ended.value.code == (143 if sigterm else 130)
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"predict.py: the run ends as {words.partition(' ')[0]} because rank 1 was {words}; finished outputs "
        "are kept"
    )


def test_a_spawned_run_whose_rank_was_killed_ends_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``predict.py devices=2`` whose rank 1 was killed (SIGKILL, the out-of-memory killer): torch's spawn
    stops the other ranks and raises ``ProcessExitedException``, which ended the run in a traceback
    (``process 1 terminated with signal SIGKILL``) that said neither that the finished outputs are kept nor
    that the same command goes on. It is now one line naming the rank and the way on (status 2)."""
    from types import SimpleNamespace

    import lightning.fabric
    import torch.multiprocessing

    from marsunits.errors import MarsUnitsError
    from marsunits.inference import distributed

    def launch(self, function, *args):  # type: ignore[no-untyped-def]
        raise torch.multiprocessing.ProcessExitedException(
            "process 1 terminated with signal SIGKILL", 1, 4242, -signal.SIGKILL, "SIGKILL"
        )

    monkeypatch.setattr(lightning.fabric.Fabric, "launch", launch)
    monkeypatch.delenv("NODE_RANK", raising=False)
    with pytest.raises(MarsUnitsError) as raised:
        distributed.launch(SimpleNamespace(device="cpu", devices=2, num_nodes=1))  # type: ignore[arg-type]
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("rank 1 of the run (process 4242) was killed by SIGKILL"), message
    assert "out-of-memory killer" in message and "run the same command again" in message, message


def _spawned_rank_with_a_bug(index: int, store: str, opts: object, word: str, buggy: int) -> None:
    """Rank ``index`` of two, as torch's spawn runs ``distributed._rank_main`` for ``predict.py devices=2``
    (``fn(index, *args)``); rank ``buggy`` fails with a bug in its set-up, before the ranks meet."""
    from types import SimpleNamespace

    import torch
    import torch.distributed as dist

    from marsunits.inference import distributed

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=index, world_size=2)
    if index == buggy:

        def bug(self: object) -> None:
            raise ZeroDivisionError("a bug in the rank's set-up")

        distributed._StoreStops.__init__ = bug  # type: ignore[method-assign]  # noqa: SLF001
    fabric = SimpleNamespace(global_rank=index, world_size=2, device=torch.device("cpu"))
    distributed._rank_main(fabric, opts, None, True, word)  # type: ignore[arg-type]  # noqa: SLF001


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_a_launcher_stopped_after_a_spawned_rank_failed_before_the_ranks_met_ends_as_that_failure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stop: str
) -> None:
    """``predict.py devices=2`` whose rank 1 failed with a bug (exit status 1) before the ranks met, rank 0
    leaving no word of it, and whose launcher was then stopped (Ctrl-C, SIGTERM) before torch's spawn raised
    the rank's error: the launcher ended with its own 130 or 143, where the failure decides
    (``ENDING_ORDER``). It now ends as the bug, status 1, its line naming rank 1 and its error."""
    from types import SimpleNamespace

    import lightning.fabric
    import torch.multiprocessing

    from marsunits.errors import TerminatedError, exit_status
    from marsunits.inference import distributed

    # What the ranks read of the options before they meet; rank 0 ends at that meeting, rank 1 being gone.
    rank_opts = SimpleNamespace(devices=2, rank_timeout_s=30)
    rank_opts.with_values = lambda **values: rank_opts  # type: ignore[attr-defined]

    def launch(self, function, *args):  # type: ignore[no-untyped-def]
        word = args[-1]
        ranks = torch.multiprocessing.start_processes(
            _spawned_rank_with_a_bug,
            (str(tmp_path / "store"), rank_opts, word, 1),
            nprocs=2,
            join=False,
            start_method="fork",
        )
        ranks.processes[1].join(60)  # rank 1's bug ended it; the launcher is stopped before spawn says so
        assert ranks.processes[1].exitcode == 1
        raise TerminatedError if stop == "sigterm" else KeyboardInterrupt

    monkeypatch.setattr(lightning.fabric.Fabric, "launch", launch)
    monkeypatch.delenv("NODE_RANK", raising=False)
    opts = SimpleNamespace(device="cpu", devices=2, num_nodes=1)
    with pytest.raises(BaseException) as raised:  # noqa: PT011 - what it is, is the test
        distributed.launch(opts)  # type: ignore[arg-type]
    assert exit_status(raised.value) == 1, raised.value
    message = str(raised.value)
    assert message.startswith("rank 1 of the run (process "), message
    bug = "ZeroDivisionError: a bug in the rank's set-up"
    assert f"failed with exit status 1 before the ranks met: {bug}" in message, message
    said = "terminated (SIGTERM)" if stop == "sigterm" else "interrupted (Ctrl-C)"
    assert f"predict.py was {said} as it ended" in message, message
    assert "ZeroDivisionError" in str(raised.value.__cause__)


def test_under_torchrun_a_rank_s_error_reaches_its_agent_s_error_file(tmp_path: Path, ckpt: Path) -> None:
    """torchrun's summary of a failed run showed ``error_file: <N/A>`` for each rank (no ``@record`` on the
    entry point): the rank's own error, even a user's one-line error, was only in its output. Each
    ``predict.py`` under torchrun (``TORCHELASTIC_ERROR_FILE`` set by its agent) now writes it there, and
    still ends with the one line and status 2."""
    import json

    inp, out = tmp_path / "empty", tmp_path / "out"  # found empty once the run starts, after Hydra
    inp.mkdir()
    error_file = tmp_path / "error.json"
    env = {**_env(), "TORCHELASTIC_ERROR_FILE": str(error_file)}
    done = subprocess.run(
        _command(ckpt, inp, out, tmp_path / "hydra"), env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "predict.py: error: " in done.stderr, done.stderr
    recorded = json.loads(error_file.read_text())["message"]["message"]
    assert recorded.startswith("DataError: no images matching") and str(inp) in recorded, recorded


def test_a_long_temporary_name_is_cut_between_characters(tmp_path: Path) -> None:
    """The destination's name is cut to fit 255 bytes at a character boundary: a cut inside a two-byte
    character left a name that is not UTF-8, which filesystems that require UTF-8 names refuse."""
    dest = tmp_path / ("é" * 110 + ".mask.png")  # 229 bytes: cut at an odd byte count, inside an "é"
    prefix = atomic._temporary_prefix(dest)
    assert prefix.encode("utf-8").startswith(b"." + "é".encode() * 103)  # strict: no surrogate escapes
    assert len(prefix.encode()) + len(".abcdefgh.tmp") <= 255


def test_an_interrupted_write_leaves_neither_a_temporary_nor_a_changed_file(tmp_path: Path) -> None:
    """atomic_write: Ctrl-C (KeyboardInterrupt, not an Exception) in the middle of a write removes the
    temporary file, and the destination keeps its previous content."""
    dest = atomic_write_bytes(tmp_path / "m.png", b"before")

    def interrupted(fh):  # type: ignore[no-untyped-def]
        fh.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic.atomic_write(dest, interrupted)
    assert [p.name for p in tmp_path.iterdir()] == ["m.png"] and dest.read_bytes() == b"before"


def test_stale_temporaries_behind_a_link_to_another_folder_are_not_touched(tmp_path: Path) -> None:
    """remove_stale_temporaries does not follow symbolic links to folders: nothing outside root is removed."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = int(proc.stdout)
    outside = tmp_path / "outside"
    outside.mkdir()
    stale = outside / f".x.mask.png.{dead}@{host_digest()}.k3j4.tmp"
    stale.write_bytes(b"half")
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    assert remove_stale_temporaries(root) == [] and stale.exists()
    assert remove_stale_temporaries(outside) == [stale]


def _run_as_rank(
    rank: int,
    store: str,
    opts: object,
    conn: object,
    timeout_s: float | None = None,
    message: bool = False,
    spawned: bool = False,
    status: bool = False,
    world_size: int = 2,
    told: bool = False,
) -> None:
    """Run ``distributed._rank_main`` as rank ``rank`` of a two-process (``world_size``) gloo group met
    through the file ``store`` (or a ``tcp://`` address, whose store rank 0 holds, as spawned ranks' and
    srun's), and send
    what it raised (its type's name, or None; with ``message``: ``(name, message)``, or ``("returned", repr
    of what it returned)``) back through ``conn``. ``timeout_s``: the group's collectives' timeout (default:
    torch's, 30 minutes), short where a rank left waiting must fail the test at once. ``spawned``: as a rank
    that ``predict.py devices=2`` spawned. ``status`` (with ``message``): the status the rank's command exits
    with too (:func:`~marsunits.errors.exit_status`, 0 where it returned), third in what is sent. ``told``:
    run it as ``predict.py`` does (:func:`~marsunits.errors.report_user_errors`) and send instead ``(exit
    status, what it printed on stderr)``."""
    from datetime import timedelta
    from types import SimpleNamespace

    import torch
    import torch.distributed as dist

    from marsunits.inference import distributed

    timeout = {} if timeout_s is None else {"timeout": timedelta(seconds=timeout_s)}
    init_method = store if store.startswith("tcp://") else f"file://{store}"
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size, **timeout)
    fabric = SimpleNamespace(global_rank=rank, world_size=world_size, device=torch.device("cpu"))
    try:
        if told:
            import contextlib
            import io

            from marsunits.errors import report_user_errors

            printed = io.StringIO()
            try:
                with contextlib.redirect_stderr(printed):
                    report_user_errors(
                        lambda: distributed._rank_main(fabric, opts, None, spawned), "predict.py"
                    )  # type: ignore[arg-type]  # noqa: SLF001
                code: object = 0
            except SystemExit as exc:
                code = exc.code
            conn.send((code, printed.getvalue().strip()))  # type: ignore[attr-defined]
            return
        returned = distributed._rank_main(  # noqa: SLF001
            fabric,  # type: ignore[arg-type]
            opts,  # type: ignore[arg-type]
            None,
            spawned,
        )
        said: object = ("returned", repr(returned)) if message else None
        conn.send((*said, 0) if status else said)  # type: ignore[attr-defined, misc]
    except BaseException as exc:  # noqa: BLE001 - said to the test
        from marsunits.errors import exit_status

        said = (type(exc).__name__, str(exc)) if message else type(exc).__name__
        conn.send((*said, exit_status(exc)) if status else said)  # type: ignore[attr-defined, misc]
    finally:
        dist.destroy_process_group()


def _two_ranks(
    tmp_path: Path,
    ckpt: Path,
    target: Callable[..., None],
    *args: object,
    after: tuple[object, ...] = (),
    options: tuple[str, ...] = (),
    ranks: int = 2,
    wait_s: float = 180.0,
) -> tuple[Any, Path, list[object]]:
    """Predict 8 images of 40x48 px (:func:`_eight_images`) on two forked ranks (``ranks``) running
    ``target(rank, store, opts, *args, conn, *after)``, with predict.py's ``options`` too; return the
    options, the output folder and what each rank said (``"no answer"`` after ``wait_s``, 3 minutes, for
    each rank in turn)."""
    import multiprocessing

    from marsunits.inference.options import PredictOptions

    inp, out = _eight_images(tmp_path)
    opts = PredictOptions.from_config(
        make_cfg(tmp_path, ckpt, inp, out, "threads=1", "num_workers=0", *options)
    )
    fork = multiprocessing.get_context("fork")
    pipes = [fork.Pipe(duplex=False) for _ in range(ranks)]
    processes = [
        fork.Process(target=target, args=(r, str(tmp_path / "store"), opts, *args, pipes[r][1], *after))
        for r in range(ranks)
    ]
    for process in processes:
        process.start()
    said = [pipe[0].recv() if pipe[0].poll(wait_s) else "no answer" for pipe in pipes]
    for process in processes:
        process.join(30)
        if process.is_alive():
            process.kill()
    return opts, out, said


def _eight_images(tmp_path: Path) -> tuple[Path, Path]:
    """8 images of 40x48 px in ``tmp_path/in`` (the same on every call); returns it and ``tmp_path/out``."""
    inp, out = tmp_path / "in", tmp_path / "out"
    for i in range(8):
        save_rgb(inp / f"im{i}.png", 40, 48, seed=i)
    return inp, out


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a two-rank run's store to listen on."""
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return int(free.getsockname()[1])


def _two_ranks_timed(
    tmp_path: Path, ckpt: Path, target: Callable[..., None], *args: object, killed: int | None = None
) -> tuple[Any, Path, list[object], float]:
    """:func:`_two_ranks` whose ranks meet at a TCP address on a free port of 127.0.0.1 (rank 0 holds the
    store, as spawned ranks' and srun's do), given to ``target`` before ``args``; return also the seconds
    the run took, from before the ranks start to after they said what they raised. ``killed``: the rank
    that kills itself, which must have said "killed" before it did."""
    started = time.monotonic()
    opts, out, said = _two_ranks(tmp_path, ckpt, target, f"tcp://127.0.0.1:{_free_port()}", *args)
    took = time.monotonic() - started
    if killed is not None:
        assert said[killed] == "killed", said
    return opts, out, said, took


def _stopped_rank(
    rank: int, store: str, opts: object, stop_after: int, conn: object, rank1_stopped: object = None
) -> None:
    """One rank of a two-process gloo run (forked, so the test's patches hold), as ``distributed._rank_main``
    runs it; rank 1 is stopped (SIGTERM, as a scheduler's) before its ``stop_after + 1``-th image. Sends what
    the rank raised back through ``conn``. ``rank1_stopped``: two events: rank 0 sets the first in its second
    image and then waits for the second (and a second more), which rank 1 sets, once the first is set, as
    it is stopped."""

    from marsunits.errors import TerminatedError
    from marsunits.inference import runner

    real_process = runner._Session.process
    done = [0]

    def process(self, f, item):  # type: ignore[no-untyped-def]
        if rank == 1 and done[0] == stop_after:
            if rank1_stopped is not None:
                rank0_busy, stopped = rank1_stopped  # type: ignore[misc]
                assert rank0_busy.wait(120)
                stopped.set()
            raise TerminatedError
        if rank == 0 and done[0] == 1 and rank1_stopped is not None:
            rank0_busy, stopped = rank1_stopped  # type: ignore[misc]
            rank0_busy.set()
            assert stopped.wait(120)
            time.sleep(1.0)  # for the stop to be said
        done[0] += 1
        return real_process(self, f, item)

    runner._Session.process = process  # type: ignore[method-assign]
    _run_as_rank(rank, store, opts, conn)


def test_a_sharded_run_with_one_rank_stopped_reports_every_image_it_did_not_reach(
    tmp_path: Path, ckpt: Path
) -> None:
    """Two gloo ranks (``predict.py devices=2``), rank 1 stopped by SIGTERM after 1 of its 4 images: the
    stopped rank left the run without its rows, so no report was written at all, and the summary counted
    the images not reached over rank 0's shard only (``not_reached`` 0, "Predicted 5 of 5"). It now joins
    rank 0 with the images it finished: rank 0 writes the reports, counting the 3 images rank 1 did not
    reach (and those rank 0 did not, which stops too), and every rank ends with the stop (exit 143); the same
    command then finishes the folder."""
    import json

    opts, out, said = _two_ranks(tmp_path, ckpt, _stopped_rank, 1)
    assert said == ["TerminatedError", "TerminatedError"], said
    summary = json.loads((out / "summary.json").read_text())
    # Rank 0 stops at its next image once rank 1 is stopped (how far it got is a matter of timing).
    ok = summary["counts"]["ok"]
    assert 1 <= ok <= 5
    assert summary["counts"] == {"ok": ok, "error": 0, "skipped": 0, "total": ok, "not_reached": 8 - ok}
    assert f"Predicted {ok} of 8 images" in summary["text"] and f"{8 - ok} not reached" in summary["text"]
    assert "rank 1 was terminated (SIGTERM) after 1 of the 4 images" in summary["stopped_early"]
    assert "rank 0" not in summary["stopped_early"]
    assert summary["exit_status"] == 143 and summary["exit_reasons"] == ["stopped"]  # every rank's stop
    with open(out / "manifest.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == ok
    from marsunits.inference import predict_folder

    result = predict_folder(opts)
    assert result.summary["counts"] == {"ok": 8 - ok, "error": 0, "skipped": ok, "total": 8, "not_reached": 0}


def _rank_stopped_in_its_first_image(rank: int, store: str, opts: object, conn: object) -> None:
    """One rank of a two-process gloo run whose ranks are both stopped (SIGTERM, a job's time limit) in their
    first image, before either replaced an output. Sends what the rank raised back through ``conn``."""
    from marsunits.errors import TerminatedError
    from marsunits.inference import runner

    def process(self, f, item):  # type: ignore[no-untyped-def]
        raise TerminatedError

    runner._Session.process = process  # type: ignore[method-assign]
    _run_as_rank(rank, store, opts, conn)


def test_a_sharded_overwrite_stopped_before_replacing_anything_says_its_own_end_in_summary_json(
    tmp_path: Path, ckpt: Path
) -> None:
    """Two ranks of an ``overwrite=true`` run both stopped in their first image: as one process stopped so,
    the reports that list the outputs stay as they were, and summary.json is this run's (status 143, its 8
    images not reached), where the earlier run's said 0."""
    import json

    from marsunits.inference import predict_folder
    from marsunits.inference.options import PredictOptions

    inp, out = _eight_images(tmp_path)
    opts = PredictOptions.from_config(make_cfg(tmp_path, ckpt, inp, out, "threads=1", "num_workers=0"))
    assert predict_folder(opts).exit_code == 0
    manifest = (out / "manifest.csv").read_bytes()
    _, _, said = _two_ranks(tmp_path, ckpt, _rank_stopped_in_its_first_image, options=("overwrite=true",))
    assert said == ["TerminatedError", "TerminatedError"], said
    assert (out / "manifest.csv").read_bytes() == manifest
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_status"] == 143 and summary["exit_reasons"] == ["stopped"]
    assert summary["counts"] == {"ok": 0, "error": 0, "skipped": 0, "total": 0, "not_reached": 8}
    # Each rank is stopped in its first image, or before it by the other's stop (a matter of timing).
    stop = summary["stopped_early"]
    assert re.search(r"rank [01] was terminated \(SIGTERM\) after 0 of the 4 images", stop), stop


def _rank_0_stopped_beside_rank_1(
    rank: int, store: str, opts: object, rank_1_finished: bool, conn: object, events: object
) -> None:
    """One rank of a two-process gloo run whose rank 0 alone is stopped (SIGTERM) in its first image; rank 1
    is not stopped itself. ``rank_1_finished``: rank 1 predicts its whole shard before rank 0 is stopped;
    else rank 1 begins its shard only once rank 0's stop is said, and stops with the run before its first
    image. ``events``: (rank 0 stopped, rank 1 finished). Sends what the rank raised back through ``conn``."""
    from marsunits.errors import TerminatedError
    from marsunits.inference import runner

    stopped, finished = events  # type: ignore[misc]
    real_predict_all, real_process = runner._Session.predict_all, runner._Session.process

    def predict_all(self, todo):  # type: ignore[no-untyped-def]
        if rank == 1 and not rank_1_finished:
            assert stopped.wait(120)
            time.sleep(2.0)  # for rank 0's stop to be said to the ranks
        try:
            return real_predict_all(self, todo)
        finally:
            if rank == 1:
                finished.set()

    def process(self, f, item):  # type: ignore[no-untyped-def]
        if rank == 0:
            if rank_1_finished:
                assert finished.wait(120)
            stopped.set()
            raise TerminatedError
        return real_process(self, f, item)

    runner._Session.predict_all = predict_all  # type: ignore[method-assign]
    runner._Session.process = process  # type: ignore[method-assign]
    _run_as_rank(rank, store, opts, conn)


@pytest.mark.parametrize("rank_1_finished", [False, True], ids=["stopped_with_the_run", "finished_its_shard"])
def test_every_rank_of_a_run_stopped_on_rank_0_ends_with_the_stop(
    tmp_path: Path, ckpt: Path, rank_1_finished: bool
) -> None:
    """Rank 0 alone is stopped (SIGTERM): rank 1, which then stopped with the run before its first image or
    had already predicted its whole shard, ends with the run's stop as rank 0 does where rank 1 is the one
    stopped; it returned as if all went well (a torchrun rank exiting 0 in a run recorded 143)."""
    import json
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    events = (fork.Event(), fork.Event())
    _, out, said = _two_ranks(tmp_path, ckpt, _rank_0_stopped_beside_rank_1, rank_1_finished, after=(events,))
    assert said == ["TerminatedError", "TerminatedError"], said
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_status"] == 143 and summary["exit_reasons"] == ["stopped"]
    assert summary["counts"]["ok"] == (4 if rank_1_finished else 0)
    assert "rank 0 was terminated (SIGTERM) after 0 of the 4 images" in summary["stopped_early"]


def test_a_rank_stopped_stops_the_other_ranks_at_their_next_image(tmp_path: Path, ckpt: Path) -> None:
    """Rank 1 of two is stopped (SIGTERM) after 1 image while rank 0 is in its 2nd: rank 0 stops before its
    3rd, as one process stopped would, and writes the reports counting both shards' unreached images. It
    predicted the rest of its shard first while the stopped rank waited in the gather: beyond the collectives'
    timeout (30 minutes) both ended in a traceback and no report was written (a stopped rank 0 alike)."""
    import json
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    events = (fork.Event(), fork.Event())
    _, out, said = _two_ranks(tmp_path, ckpt, _stopped_rank, 1, after=(events,))
    assert said == ["TerminatedError", "TerminatedError"], said
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"ok": 3, "error": 0, "skipped": 0, "total": 3, "not_reached": 5}
    assert "rank 1 was terminated (SIGTERM) after 1 of the 4 images" in summary["stopped_early"]


def _rank_of_a_job_stopped(rank: int, store: str, opts: object, conn: object) -> None:
    """One rank of a two-process gloo run whose every process gets a real SIGTERM before its second image
    (a scheduler's time limit: SLURM signals every process of the job), rank 0 a second one as it writes the
    reports (``predict.py devices=2``'s launcher passing its own SIGTERM on to its ranks). Sends what the
    rank raised back through ``conn``."""

    from marsunits.inference import runner

    real_process, real_reports = runner._Session.process, runner._Session.write_reports
    done = [0]

    def process(self, f, item):  # type: ignore[no-untyped-def]
        if done[0] == 1:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1.0)  # the handler raises here
        done[0] += 1
        return real_process(self, f, item)

    def write_reports(self, wall_seconds):  # type: ignore[no-untyped-def]
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)
        return real_reports(self, wall_seconds)

    runner._Session.process = process  # type: ignore[method-assign]
    runner._Session.write_reports = write_reports  # type: ignore[method-assign]
    _run_as_rank(rank, store, opts, conn)


def test_a_second_sigterm_while_a_stopped_sharded_run_writes_its_reports_does_not_lose_them(
    tmp_path: Path, ckpt: Path
) -> None:
    """Every rank stopped by SIGTERM (a job's time limit), rank 0 given a second one as it writes the reports
    (the launcher of spawned ranks sends its own SIGTERM on to them): the second raised in the middle of the
    reports, and the run wrote none. A stopping rank now ignores later SIGTERMs (SIGKILL still ends it: the
    launcher's after its grace, the scheduler's after its own)."""
    import json

    _, out, said = _two_ranks(tmp_path, ckpt, _rank_of_a_job_stopped)
    # Rank 1 is stopped by its SIGTERM or, first, by rank 0's stop (then it ends without raising).
    assert said[0] == "TerminatedError" and said[1] in ("TerminatedError", None), said
    assert (out / "summary.json").is_file() and (out / "manifest.csv").is_file()
    summary = json.loads((out / "summary.json").read_text())
    counts = summary["counts"]
    assert counts["ok"] + counts["not_reached"] == 8 and counts["ok"] >= 1, counts  # rank 0: one
    # Rank 0 is stopped by its own SIGTERM or, first, by rank 1's stop (then its own SIGTERM, arriving as it
    # writes the reports, is ignored as a second one would be).
    assert re.search(
        r"rank [01] was terminated \(SIGTERM\) after 1 of the 4 images", summary["stopped_early"]
    )


def _failing_rank(rank: int, store: str, opts: object, failure: str, spawned: bool, conn: object) -> None:
    """One rank of a two-process gloo run (collectives' timeout 20 s) whose rank 1 fails at its second image:
    ``failure`` "full": its output disk is full (``write_prediction`` raises ``ENOSPC``, which the run turns
    into :class:`~marsunits.inference.runner.OutputWriteError`); "worker": a DataLoader worker dies (torch's
    ``RuntimeError``, which the run turns into ``LoaderWorkerError``). Sends ``(type name, message)`` or
    ``("returned", repr)``; ``spawned``: as ranks ``predict.py devices=2`` spawned."""
    import errno

    from marsunits.inference import runner

    real_write = runner.write_prediction
    done = [0]

    def write_prediction(paths, *args, **kwargs):  # type: ignore[no-untyped-def]
        if rank == 1 and done[0] == 1:
            if failure == "full":
                raise OSError(errno.ENOSPC, "No space left on device", str(paths.mask))
            raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed. ")
        done[0] += 1
        return real_write(paths, *args, **kwargs)

    runner.write_prediction = write_prediction  # type: ignore[assignment]
    _run_as_rank(rank, store, opts, conn, timeout_s=20, message=True, spawned=spawned)


@pytest.mark.parametrize(("failure", "spawned"), [("full", False), ("worker", False), ("full", True)])
def test_a_rank_that_fails_ends_every_rank_at_once_with_the_reports_written(
    tmp_path: Path, ckpt: Path, failure: str, spawned: bool
) -> None:
    """Rank 1 of two fails at its second image with an error that ends its part of the run (its disk full,
    a loader worker dead): it left without joining the gather, and rank 0, having predicted its shard,
    waited there until the collectives' timeout (30 minutes) and ended in a traceback, no report written.
    Now the failing rank tells the others through the store, joins the gather with the image it finished and
    raises its own error; rank 0 stops at its next image, writes the reports (every image of both shards
    counted) and ends with one line naming rank 1 and its error. Ranks spawned by ``predict.py devices=2``
    return instead, rank 0 the failing rank's error for the launching process to raise (each raising its
    own was a spawn traceback of whichever rank ended first)."""
    import json

    started = time.monotonic()
    _, out, said = _two_ranks(tmp_path, ckpt, _failing_rank, failure, spawned)
    assert time.monotonic() - started < 60, "a rank waited for a rank that had failed"
    expected = "OutputWriteError" if failure == "full" else "LoaderWorkerError"
    if spawned:
        assert said[1] == ("returned", "None"), said
        assert said[0][0] == "returned" and said[0][1].startswith(f"SpawnedRunFailed(error={expected}("), said
    else:
        assert said[1][0] == expected, said  # type: ignore[index]
        name, message = said[0]  # type: ignore[misc]
        assert name == "RankFailedError", said
        assert "rank 1 of its 2 ranks failed" in message and expected in message, message
        assert "no space left" in message.lower() or "loader worker" in message, message
        assert "\n" not in message
    summary = json.loads((out / "summary.json").read_text())
    counts = summary["counts"]
    assert counts["error"] == 0 and counts["ok"] + counts["not_reached"] == 8, counts
    assert "rank 1 of its 2 ranks failed" in summary["stopped_early"], summary["stopped_early"]
    assert summary["exit_status"] == 2 and summary["exit_reasons"] == ["stopped"]  # a one-line error
    with open(out / "manifest.csv", newline="") as fh:
        rows = [row["path"] for row in csv.DictReader(fh)]
    assert "im1.png" in rows and len(rows) == counts["ok"], rows  # rank 1's shard: im1, im3, im5, im7


class _Unsendable(Exception):  # noqa: N818 - a bug's error, as many a library's: it cannot be pickled
    def __init__(self, what: str, where: str) -> None:
        super().__init__(f"{what} at {where}")


def _rank_failing_with_a_bug(rank: int, store: str, opts: object, conn: object) -> None:
    """One rank of a two-process gloo run spawned by ``predict.py devices=2`` (collectives' timeout 20 s)
    whose rank 1 fails at its second image with a bug's error that cannot be pickled (its ``__init__`` takes
    two arguments, its pickle gives one)."""
    from marsunits.inference import runner

    real_write = runner.write_prediction
    done = [0]

    def write_prediction(paths, *args, **kwargs):  # type: ignore[no-untyped-def]
        if rank == 1 and done[0] == 1:
            raise _Unsendable("a bug", "write_prediction")
        done[0] += 1
        return real_write(paths, *args, **kwargs)

    runner.write_prediction = write_prediction  # type: ignore[assignment]
    _run_as_rank(rank, store, opts, conn, timeout_s=20, message=True, spawned=True)


def test_a_spawned_run_whose_rank_failed_with_an_unsendable_bug_does_not_end_as_a_user_error(
    tmp_path: Path, ckpt: Path
) -> None:
    """A spawned rank's error that cannot be pickled reached ``predict.py devices=2`` as the
    :class:`RankFailedError` naming it: a user error, one line and status 2, for a bug, whose one-process
    run ends in its traceback, status 1. It now reaches it as an error of the same kind (not a user's),
    naming the failing rank's error."""
    import builtins
    import json

    from marsunits.errors import USER_ERRORS
    from marsunits.inference import runner

    _, out, said = _two_ranks(tmp_path, ckpt, _rank_failing_with_a_bug)
    assert said[1] == ("returned", "None"), said
    name, returned = said[0]  # type: ignore[misc]
    assert name == "returned" and returned.startswith("SpawnedRunFailed(error="), said
    kind = returned.removeprefix("SpawnedRunFailed(error=").partition("(")[0]
    error_type = getattr(builtins, kind, None) or getattr(runner, kind)
    assert not issubclass(error_type, USER_ERRORS), returned
    assert "_Unsendable: a bug at write_prediction" in returned, returned
    # The reports say the run failed on that rank's bug and how to go on, as a one-process run's do.
    summary = json.loads((out / "summary.json").read_text())
    not_reached = summary["counts"]["not_reached"]
    assert not_reached >= 1, summary["counts"]
    assert summary["exit_status"] == 1 and summary["exit_reasons"] == ["failed"], summary
    assert summary["text"].endswith(
        "The run failed on an error in im3.png on rank 1 of its 2 ranks (the traceback follows; status 1): "
        f"the {not_reached} images not reached are predicted by running the same command again (finished "
        "images are skipped)."
    ), summary["text"]


def _rank_with_a_bug(rank: int, store: str, opts: object, buggy: int, conn: object) -> None:
    """One rank of a two-process gloo run spawned by ``predict.py devices=2`` (collectives' timeout 20 s)
    whose rank ``buggy`` hits a bug at its second image: a ``TypeError`` out of the writer, which no image's
    row takes (as :func:`_one_process_ended_by_a_bug`)."""
    from marsunits.inference import runner

    real_write = runner.write_prediction
    done = [0]

    def write_prediction(paths, *args, **kwargs):  # type: ignore[no-untyped-def]
        if rank == buggy and done[0] == 1:
            raise TypeError("a bug")
        done[0] += 1
        return real_write(paths, *args, **kwargs)

    runner.write_prediction = write_prediction  # type: ignore[assignment]
    _run_as_rank(rank, store, opts, conn, timeout_s=20, message=True, spawned=True)


def _unrelated_labels(tmp_path: Path) -> Path:
    """A ``labels_dir`` whose one mask matches none of :func:`_eight_images`' inputs."""
    labels = tmp_path / "labels"
    labels.mkdir()
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(labels / "unrelated.png")
    return labels


def _one_process_ended_by_a_bug(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """``summary.json`` of one process predicting :func:`_eight_images` with :func:`_unrelated_labels`, ended
    by a bug at its second image (a ``TypeError`` out of the writer)."""
    import json

    from marsunits.inference import runner

    one = tmp_path / "one"
    inp, _ = _eight_images(one)
    labels = _unrelated_labels(one)
    real_write = runner.write_prediction
    done = [0]

    def write_prediction(paths, *args, **kwargs):  # type: ignore[no-untyped-def]
        if done[0] == 1:
            raise TypeError("a bug")
        done[0] += 1
        return real_write(paths, *args, **kwargs)

    monkeypatch.setattr(runner, "write_prediction", write_prediction)
    cfg = make_cfg(one, ckpt, inp, one / "out", "threads=1", "num_workers=0", f"labels_dir={labels}")
    with pytest.raises(TypeError, match="a bug"):
        runner.run(cfg)
    return dict(json.loads((one / "out" / "summary.json").read_text()))


@pytest.mark.parametrize("buggy", [0, 1])
def test_a_sharded_run_ended_by_a_rank_s_bug_records_failed_as_one_process_does(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch, buggy: int
) -> None:
    """A bug (an error that is no user's and no stop) on one rank of ``predict.py devices=2``, whose
    launcher then ends with that rank's error, status 1: ``summary.json`` said ``exit_status`` 2 and
    ``exit_reasons`` ``["stopped"]`` for a bug of rank 1 (rank 0 ended on the RankFailedError naming it),
    and ``failed`` with ``stopped_early`` set for a bug of rank 0. It now records what a one-process run a bug
    ended records, key by key: status 1, ``failed``, ``stopped_early`` null, no ``nothing_scored`` (the run
    never reached the images a label may match), and a last paragraph that says on which image (and rank)
    it failed and that the same command predicts the images not reached."""
    import json

    labels = _unrelated_labels(tmp_path)
    _, out, said = _two_ranks(tmp_path, ckpt, _rank_with_a_bug, buggy, options=(f"labels_dir={labels}",))
    one = _one_process_ended_by_a_bug(tmp_path, ckpt, monkeypatch)  # after the fork: its patch stays here
    assert said[1] == ("returned", "None"), said
    assert said[0] == ("returned", "SpawnedRunFailed(error=TypeError('a bug'))"), said  # the launcher: 1
    sharded = json.loads((out / "summary.json").read_text())
    assert sharded.keys() == one.keys()
    ending = ("exit_status", "exit_reasons", "stopped_early", "no_contact_map_reason")
    assert {k: sharded[k] for k in ending} == {k: one[k] for k in ending}
    assert one["exit_status"] == 1 and one["exit_reasons"] == ["failed"] and one["stopped_early"] is None
    again = "predicted by running the same command again (finished images are skipped)."
    assert one["text"].endswith(
        f"The run failed on an error in im1.png (the traceback follows; status 1): the 7 images not reached "
        f"are {again}"
    ), one["text"]
    counts = sharded["counts"]
    assert counts["ok"] + counts["not_reached"] == 8 and counts["error"] == 0, counts
    image = "im2.png" if buggy == 0 else "im3.png"  # each rank's second image: im0, im2, ... / im1, im3, ...
    assert sharded["text"].endswith(
        f"The run failed on an error in {image} on rank {buggy} of its 2 ranks (the traceback follows; "
        f"status 1): the {counts['not_reached']} images not reached are {again}"
    ), sharded["text"]


def _rank_stopped_beside_a_failing_rank(
    rank: int,
    store: str,
    opts: object,
    stopped: int,
    failure: str,
    spawned: bool,
    conn: object,
    events: object,
    at: int = 1,
) -> None:
    """One rank of a two-process gloo run (collectives' timeout 20 s) whose two ranks end together, in their
    image ``at`` (from 0: the second by default): rank ``stopped`` is stopped (SIGTERM), the other fails,
    ``failure`` "bug": a ``TypeError`` out of the writer; "full": its output disk is full (``ENOSPC``).
    ``events``: one per rank, set as it reaches that image, where it waits for the other's (both are then
    past the check for the other's word, so that each ends its own way). Sends ``(type name, message, exit
    status)``."""
    import errno

    from marsunits.errors import TerminatedError
    from marsunits.inference import runner

    real_process = runner._Session.process
    done = [0]

    def write_prediction(paths, *args, **kwargs):  # type: ignore[no-untyped-def]
        if failure == "full":
            raise OSError(errno.ENOSPC, "No space left on device", str(paths.mask))
        raise TypeError("a bug")

    def process(self, f, item):  # type: ignore[no-untyped-def]
        if done[0] == at:
            events[rank].set()  # type: ignore[index]
            assert events[1 - rank].wait(120)  # type: ignore[index]
            if rank == stopped:
                raise TerminatedError
            runner.write_prediction = write_prediction  # type: ignore[assignment]
        done[0] += 1
        return real_process(self, f, item)

    runner._Session.process = process  # type: ignore[method-assign]
    _run_as_rank(rank, store, opts, conn, timeout_s=20, message=True, spawned=spawned, status=True)


@pytest.mark.parametrize(
    ("stopped", "failure", "spawned"),
    [(0, "bug", False), (1, "bug", False), (0, "full", False), (1, "full", False), (0, "bug", True)],
)
def test_a_rank_stopped_as_another_fails_ends_the_run_as_the_failure_whichever_rank_had_which(
    tmp_path: Path, ckpt: Path, stopped: int, failure: str, spawned: bool
) -> None:
    """One rank stopped (SIGTERM) while the other fails in the same image: the run was recorded as rank 0's
    ending, the stop (status 143, ``stopped``) where rank 0 was the stopped one, the failure where it was
    the failing one (a bug's record, the stop left unsaid), so the same two events gave two records. A
    failure on any rank now decides, whichever rank it is on: a bug's record (status 1, ``failed``,
    ``stopped_early`` null, the closing paragraph naming the image and the rank, then the stopped rank and
    how), a full disk's (status 2, ``stopped``, ``stopped_early`` naming both ranks), and every rank exits
    with that status (the stopped one on the ``RankFailedError`` naming the failing rank; with ranks
    spawned by ``predict.py devices=2``, the launcher on the failing rank's error)."""
    import json
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    events = (fork.Event(), fork.Event())
    failing = 1 - stopped
    _, out, said = _two_ranks(
        tmp_path, ckpt, _rank_stopped_beside_a_failing_rank, stopped, failure, spawned, after=(events,)
    )
    summary = json.loads((out / "summary.json").read_text())
    # Each rank finished its first image and ended in its second: rank 0's shard is im0, im2, ..., rank 1's
    # im1, im3, ...
    assert summary["counts"] == {"ok": 2, "error": 0, "skipped": 0, "total": 2, "not_reached": 6}
    stop = f"rank {stopped} was terminated (SIGTERM) after 1 of the 4 images it had to predict"
    status = 1 if failure == "bug" else 2
    assert summary["exit_status"] == status, summary
    if failure == "bug":
        assert summary["exit_reasons"] == ["failed"] and summary["stopped_early"] is None, summary
        image = "im2.png" if failing == 0 else "im3.png"
        assert summary["text"].endswith(
            f"The run failed on an error in {image} on rank {failing} of its 2 ranks (the traceback follows; "
            "status 1): the 6 images not reached are predicted by running the same command again (finished "
            f"images are skipped). Also, {stop}."
        ), summary["text"]
    else:
        assert summary["exit_reasons"] == ["stopped"], summary
        assert re.fullmatch(
            rf"stopped because rank {failing} of its 2 ranks failed \(OutputWriteError: .*no space left.*\); "
            rf"and was stopped on 1 of its 2 ranks \({re.escape(stop)}\); run the same command again to go "
            r"on \(finished images are skipped\)",
            summary["stopped_early"],
            flags=re.IGNORECASE,
        ), summary["stopped_early"]
        assert summary["text"].endswith(f"The run {summary['stopped_early']}."), summary["text"]
    if spawned:  # the launching process ends with rank 0's word: the failing rank's error
        assert said[failing] == ("returned", "None", 0), said
        assert said[stopped] == ("returned", "SpawnedRunFailed(error=TypeError('a bug'))", 0), said
        return
    name, message, exited = said[failing]  # type: ignore[misc]
    assert (name, exited) == ("TypeError" if failure == "bug" else "OutputWriteError", status), said
    name, message, exited = said[stopped]  # type: ignore[misc]
    assert (name, exited) == ("RankFailedError", status), said
    assert f"rank {failing} of its 2 ranks failed" in message, message


def _rank_ended_its_own_way(
    rank: int,
    store: str,
    opts: object,
    endings: tuple[str, str],
    spawned: bool,
    conn: object,
    events: object,
    told: bool = False,
) -> None:
    """One rank of a two-process gloo run (collectives' timeout 20 s) whose two ranks end together in their
    second image, each as ``endings[rank]`` says: "ctrl-c" (``KeyboardInterrupt``), "sigterm"
    (:class:`~marsunits.errors.TerminatedError`), "full" (its output disk full, ``ENOSPC``), "worker" (a
    loader worker dead: torch's ``RuntimeError``) or "none" (it goes on, and stops with the run). ``events``:
    one per rank, set as it reaches that image, where it waits for the other's (both are then past the
    check for the other's word, so that each ends its own way). Sends ``(type name, message, exit
    status)``; with ``told``, ``(exit status, what it printed)`` as ``predict.py`` (:func:`_run_as_rank`)."""
    import errno

    from marsunits.errors import TerminatedError
    from marsunits.inference import runner

    real_process = runner._Session.process
    done = [0]

    def write_prediction(paths, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device", str(paths.mask))

    def worker_dead(paths, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed. ")

    def process(self, f, item):  # type: ignore[no-untyped-def]
        if done[0] == 1:
            events[rank].set()  # type: ignore[index]
            assert events[1 - rank].wait(120)  # type: ignore[index]
            if endings[rank] == "ctrl-c":
                raise KeyboardInterrupt
            if endings[rank] == "sigterm":
                raise TerminatedError
            if endings[rank] == "none":
                done[0] += 1
                return real_process(self, f, item)
            runner.write_prediction = write_prediction if endings[rank] == "full" else worker_dead  # type: ignore[assignment]
        done[0] += 1
        return real_process(self, f, item)

    runner._Session.process = process  # type: ignore[method-assign]
    _run_as_rank(rank, store, opts, conn, timeout_s=20, message=True, spawned=spawned, status=True, told=told)


@pytest.mark.parametrize(
    ("endings", "spawned"),
    [
        (("ctrl-c", "sigterm"), False),
        (("sigterm", "ctrl-c"), False),
        (("sigterm", "ctrl-c"), True),
        (("full", "ctrl-c"), False),
        (("ctrl-c", "full"), False),
    ],
)
def test_two_stops_of_different_kinds_end_the_run_the_same_whichever_rank_had_which(
    tmp_path: Path, ckpt: Path, endings: tuple[str, str], spawned: bool
) -> None:
    """Two ranks stopped in the same image in two ways: the run ended as the lowest rank's stop, so rank 0's
    Ctrl-C beside rank 1's SIGTERM recorded 130 and the same two stops the other way round 143, and each
    stopped rank exited with its own stop's status whatever the record said. The endings now decide in an
    order of their own, whichever rank had which: a stop the run decided itself (a full disk, 2) before a
    signal, a Ctrl-C (130) before a SIGTERM (143). ``summary.json`` and the closing paragraph name both
    stops, and every rank exits with the run's status (``predict.py devices=2``'s launcher too)."""
    import json
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    events = (fork.Event(), fork.Event())
    _, out, said = _two_ranks(tmp_path, ckpt, _rank_ended_its_own_way, endings, spawned, after=(events,))
    summary = json.loads((out / "summary.json").read_text())
    # Each rank finished its first image and ended in its second.
    assert summary["counts"] == {"ok": 2, "error": 0, "skipped": 0, "total": 2, "not_reached": 6}
    words = {"ctrl-c": "interrupted (Ctrl-C)", "sigterm": "terminated (SIGTERM)"}
    stops = [
        f"rank {rank} was {words[ending]} after 1 of the 4 images it had to predict"
        for rank, ending in enumerate(endings)
        if ending in words
    ]
    again = "run the same command again to go on (finished images are skipped)"
    if "full" in endings:
        status, full = 2, endings.index("full")
        assert re.fullmatch(
            rf"stopped because rank {full} of its 2 ranks failed \(OutputWriteError: .*no space left.*\); "
            rf"and was stopped on 1 of its 2 ranks \({re.escape(stops[0])}\); {re.escape(again)}",
            summary["stopped_early"],
            flags=re.IGNORECASE,
        ), summary["stopped_early"]
    else:
        status = 130
        assert summary["stopped_early"] == (
            f"was stopped on 2 of its 2 ranks ({stops[0]}, {stops[1]}); {again}"
        ), summary["stopped_early"]
    assert summary["exit_status"] == status and summary["exit_reasons"] == ["stopped"], summary
    assert summary["text"].endswith(f"The run {summary['stopped_early']}."), summary["text"]
    if spawned:  # the launching process ends with rank 0's word: the run's stop
        assert said == [
            ("returned", "SpawnedRunStopped(sigterm=False, decided='rank 1 was interrupted (Ctrl-C)')", 0),
            ("returned", "None", 0),
        ], said
        return
    exited = [ending[2] for ending in said]  # type: ignore[index]
    assert exited == [status, status], said
    if "full" in endings:
        assert said[full][0] == "OutputWriteError", said  # type: ignore[index]
        assert said[1 - full][0] == "RankFailedError", said  # type: ignore[index]
    else:
        assert [ending[0] for ending in said] == ["KeyboardInterrupt", "KeyboardInterrupt"], said  # type: ignore[index]


@pytest.mark.parametrize("endings", [("ctrl-c", "sigterm"), ("sigterm", "ctrl-c")])
def test_a_rank_terminated_beside_an_interrupted_rank_says_its_own_stop_and_why_the_run_ends_as_interrupted(
    tmp_path: Path, ckpt: Path, endings: tuple[str, str]
) -> None:
    """A torchrun rank terminated (SIGTERM) while another rank was interrupted (Ctrl-C) exits 130, as the
    run's record says, but printed ``predict.py: interrupted (Ctrl-C); finished outputs are kept``, which
    was not what happened to it. Its one line now says its own stop and why the run ends otherwise; the
    interrupted rank's line is unchanged."""
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    events = (fork.Event(), fork.Event())
    _, _, said = _two_ranks(tmp_path, ckpt, _rank_ended_its_own_way, endings, False, after=(events, True))
    interrupted = endings.index("ctrl-c")
    assert said[interrupted] == (130, "predict.py: interrupted (Ctrl-C); finished outputs are kept"), said
    assert said[1 - interrupted] == (
        130,
        f"predict.py: terminated (SIGTERM); the run ends as interrupted because rank {interrupted} was "
        "interrupted (Ctrl-C); finished outputs are kept",
    ), said


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_a_torchrun_rank_that_stopped_with_the_run_says_which_rank_was_stopped_and_how(
    tmp_path: Path, ckpt: Path, stop: str
) -> None:
    """A torchrun rank that neither was stopped nor failed itself, whose run ended because rank 1 was
    interrupted (Ctrl-C) or terminated (SIGTERM), printed the run's generic line,
    ``predict.py: interrupted (Ctrl-C); finished outputs are kept``, as if it had been stopped. Its line now
    says why its run ends, as rank 0's last word tells it (with the run's status); the stopped rank's line
    is unchanged."""
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    events = (fork.Event(), fork.Event())
    endings = ("none", stop)
    _, _, said = _two_ranks(tmp_path, ckpt, _rank_ended_its_own_way, endings, False, after=(events, True))
    words, status = {"ctrl-c": ("interrupted (Ctrl-C)", 130), "sigterm": ("terminated (SIGTERM)", 143)}[stop]
    how = words.partition(" ")[0]
    assert said[1] == (status, f"predict.py: {words}; finished outputs are kept"), said
    assert said[0] == (
        status,
        f"predict.py: the run ends as {how} because rank 1 was {words}; finished outputs are kept",
    ), said


@pytest.mark.parametrize("endings", [("full", "worker"), ("worker", "full")])
def test_two_torchrun_ranks_failing_with_two_user_errors_each_name_both(
    tmp_path: Path, ckpt: Path, endings: tuple[str, str]
) -> None:
    """Two torchrun ranks failing together with two errors of status 2 (a full disk on one, a dead loader
    worker on the other): ``summary.json`` and the launcher of spawned ranks named both, but each torchrun
    rank printed its own error alone, so rank 0's output, which a user reads first, did not say that rank 1
    failed too. Every rank's one line now names both, in the record's order (by rank), status 2."""
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    events = (fork.Event(), fork.Event())
    _, _, said = _two_ranks(tmp_path, ckpt, _rank_ended_its_own_way, endings, False, after=(events, True))
    names = {"full": "OutputWriteError", "worker": "LoaderWorkerError"}
    for code, printed in said:  # type: ignore[misc]
        assert code == 2, said
        line = printed.splitlines()[0]
        first = "predict.py: error: the run stopped because rank 0 of its 2 ranks failed"
        assert line.startswith(first), said
        for rank, ending in enumerate(endings):
            assert f"rank {rank} of its 2 ranks failed ({names[ending]}: " in line, said


def _rank_failing_as_a_ctrl_c_comes(rank: int, store: str, opts: object, failure: str, conn: object) -> None:
    """One rank of a two-process gloo run (collectives' timeout 20 s) whose rank 1 fails at its second image
    (``failure`` "bug": a ``TypeError`` out of the writer; "full": its output disk full, ``ENOSPC``) and is
    interrupted (Ctrl-C) as that error goes up, as the progress bar closes. Sends ``(type name, message, exit
    status)``."""
    import errno

    from marsunits.inference import runner

    real_write, real_stop = runner.write_prediction, runner.Progress.stop
    raised: list[str] = []
    done = [0]

    def write_prediction(paths, *args, **kwargs):  # type: ignore[no-untyped-def]
        if rank == 1 and done[0] == 1:
            raised.append("failed")
            if failure == "full":
                raise OSError(errno.ENOSPC, "No space left on device", str(paths.mask))
            raise TypeError("a bug")
        done[0] += 1
        return real_write(paths, *args, **kwargs)

    def stop(self):  # type: ignore[no-untyped-def]
        if raised == ["failed"]:
            raised.append("ctrl-c")
            raise KeyboardInterrupt
        return real_stop(self)

    runner.write_prediction = write_prediction  # type: ignore[assignment]
    runner.Progress.stop = stop  # type: ignore[method-assign]
    _run_as_rank(rank, store, opts, conn, timeout_s=20, message=True, status=True)


@pytest.mark.parametrize("failure", ["bug", "full"])
def test_a_ctrl_c_as_a_rank_s_error_goes_up_is_said_in_the_sharded_run_s_last_paragraph(
    tmp_path: Path, ckpt: Path, failure: str
) -> None:
    """A Ctrl-C on rank 1 of two while its bug (or full disk) went up: the error decided how the run ended,
    as it does for one process, but the stop never reached rank 0, and the closing paragraph left it out
    where one process says ``Also, the run was interrupted (Ctrl-C) as it failed.`` The sharded paragraph
    now says it of that rank; every rank still ends with the error's status."""
    import json

    _, out, said = _two_ranks(tmp_path, ckpt, _rank_failing_as_a_ctrl_c_comes, failure)
    summary = json.loads((out / "summary.json").read_text())
    status = 1 if failure == "bug" else 2
    assert summary["exit_status"] == status, summary
    also = " Also, rank 1 was interrupted (Ctrl-C) as it failed."
    assert summary["text"].endswith(also), summary["text"]
    if failure == "bug":
        assert "The run failed on an error in im3.png on rank 1 of its 2 ranks" in summary["text"], summary
    else:
        assert summary["text"].endswith(f"The run {summary['stopped_early']}.{also}"), summary["text"]
    assert [(ending[0], ending[2]) for ending in said] == [  # type: ignore[index]
        ("RankFailedError", status),
        ("TypeError" if failure == "bug" else "OutputWriteError", status),
    ], said


@pytest.mark.parametrize("endings", [("full", "worker"), ("worker", "full")])
def test_two_ranks_failing_with_two_user_errors_end_a_spawned_run_naming_both(
    tmp_path: Path, ckpt: Path, endings: tuple[str, str]
) -> None:
    """Two ranks of ``predict.py devices=2`` failing together with two errors of status 2 (a full disk on
    one, a dead loader worker on the other): ``summary.json`` named both, but the launching process ended
    with the lower rank's error alone. Rank 0's word for it now names both, in the record's order (by rank),
    still one line and status 2."""
    import json
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    events = (fork.Event(), fork.Event())
    _, out, said = _two_ranks(tmp_path, ckpt, _rank_ended_its_own_way, endings, True, after=(events,))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_status"] == 2, summary
    names = {"full": "OutputWriteError", "worker": "LoaderWorkerError"}
    assert said[1] == ("returned", "None", 0), said
    returned, word, _ = said[0]  # type: ignore[misc]
    assert returned == "returned" and word.startswith("SpawnedRunFailed(error=RankFailedError("), said
    for rank, ending in enumerate(endings):
        assert f"rank {rank} of its 2 ranks failed ({names[ending]}: " in word, word
        assert f"rank {rank} of its 2 ranks failed ({names[ending]}: " in summary["stopped_early"], summary
    assert word.index("rank 0 of its 2 ranks failed") < word.index("rank 1 of its 2 ranks failed"), word


def _spawned_rank_beside_the_launcher_s_stop(
    rank: int, store: str, function: Callable[..., Any], args: tuple[object, ...], events: object
) -> None:
    """One of two ranks that ``predict.py devices=2``'s launcher (this test's process, through a
    ``Fabric.launch`` standing in for ``ddp_spawn``'s) started, running ``function(fabric, *args)`` in a gloo
    group (collectives' timeout 20 s): rank 0 waits in its second image (``events[0]`` set) for a SIGTERM;
    rank 1 is interrupted (Ctrl-C) in its own second image once rank 0 waits, and sets ``events[1]`` as it
    reaches the gather (where it waits for rank 0)."""
    from datetime import timedelta
    from types import SimpleNamespace

    import torch
    import torch.distributed as dist

    from marsunits.inference import runner

    real_process = runner._Session.process
    from marsunits.inference.rank_watch import _RankWatch

    real_meet = _RankWatch.meet
    done = [0]

    def process(self, f, item):  # type: ignore[no-untyped-def]
        if done[0] == 1 and rank == 0:
            events[0].set()  # type: ignore[index]
            time.sleep(60)  # until the launcher's SIGTERM
        if done[0] == 1 and rank == 1:
            assert events[0].wait(120)  # type: ignore[index]
            raise KeyboardInterrupt
        done[0] += 1
        return real_process(self, f, item)

    def meet(self):  # type: ignore[no-untyped-def]
        if rank == 1:
            events[1].set()  # type: ignore[index]
        return real_meet(self)

    runner._Session.process = process  # type: ignore[method-assign]
    _RankWatch.meet = meet  # type: ignore[method-assign]
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=2, timeout=timedelta(seconds=20)
    )
    try:
        function(SimpleNamespace(global_rank=rank, world_size=2, device=torch.device("cpu")), *args)
    finally:
        dist.destroy_process_group()


def test_a_launcher_stopped_beside_a_rank_s_stop_ends_with_the_run_s_recorded_status(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``predict.py devices=2`` whose launcher got a SIGTERM while its rank 1 was interrupted (Ctrl-C): the
    launcher stopped the ranks, rank 0 (terminated by it) recorded the run as interrupted (130: a Ctrl-C
    goes before a SIGTERM), and the launcher still ended with its own SIGTERM's 143. It now ends as the
    run's record says, with rank 0's word."""
    import json
    import multiprocessing

    import lightning.fabric

    from marsunits.errors import TerminatedError, report_user_errors
    from marsunits.inference import distributed
    from marsunits.inference.options import PredictOptions

    inp, out = _eight_images(tmp_path)
    opts = PredictOptions.from_config(
        make_cfg(tmp_path, ckpt, inp, out, "threads=1", "num_workers=0", "devices=2")
    )
    fork = multiprocessing.get_context("fork")
    events = (fork.Event(), fork.Event())
    ranks: list[Any] = []

    def launch(self, function, *args):  # type: ignore[no-untyped-def]
        store = str(tmp_path / "store")
        ranks.extend(
            fork.Process(
                target=_spawned_rank_beside_the_launcher_s_stop, args=(r, store, function, args, events)
            )
            for r in range(2)
        )
        for rank in ranks:
            rank.start()
        assert events[1].wait(60), "rank 1 did not reach the gather"
        raise TerminatedError  # the launcher's own SIGTERM: it stops the ranks

    monkeypatch.setattr(lightning.fabric.Fabric, "launch", launch)
    with pytest.raises(SystemExit) as ended:
        report_user_errors(lambda: distributed.launch(opts), "predict.py")
    assert ended.value.code == 130
    # Its line says its own stop, and why the run ends otherwise (as a torchrun rank's does).
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "predict.py: terminated (SIGTERM); the run ends as interrupted because rank 1 was interrupted "
        "(Ctrl-C); finished outputs are kept"
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_status"] == 130, summary
    assert "rank 1 was interrupted (Ctrl-C)" in summary["stopped_early"], summary
    assert "rank 0 was terminated (SIGTERM)" in summary["stopped_early"], summary
    assert [rank.exitcode for rank in ranks] == [0, 0]


def _rank_of_three_ended_by_a_bug_beside_a_stop(
    rank: int, store: str, opts: object, conn: object, events: object
) -> None:
    """One rank of a three-process gloo run (collectives' timeout 20 s) whose rank 1 hits a bug (a
    ``TypeError`` out of the writer) in its second image while rank 2 is stopped (SIGTERM) in its own second
    image: ``events`` (one per rank) are set as the ranks reach their second image, where ranks 1 and 2 wait
    for the others' (all are then past the check for another rank's word). Rank 0, neither stopped nor
    failing, waits in its second image for the bug's word, and stops with the run before its third. Sends
    ``(type name, message, exit status)``."""
    from marsunits.errors import TerminatedError
    from marsunits.inference import runner

    real_process = runner._Session.process
    done = [0]

    def write_prediction(paths, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise TypeError("a bug")

    def process(self, f, item):  # type: ignore[no-untyped-def]
        if done[0] == 1:
            events[rank].set()  # type: ignore[index]
        if done[0] == 1 and rank in (1, 2):
            assert all(event.wait(120) for event in events)  # type: ignore[attr-defined]
            if rank == 2:
                raise TerminatedError
            runner.write_prediction = write_prediction  # type: ignore[assignment]
        if done[0] == 1 and rank == 0:
            deadline = time.monotonic() + 120
            while self.stops.announced() != "failed" and time.monotonic() < deadline:
                time.sleep(0.02)
        done[0] += 1
        return real_process(self, f, item)

    runner._Session.process = process  # type: ignore[method-assign]
    _run_as_rank(rank, store, opts, conn, timeout_s=20, message=True, status=True, world_size=3)


def test_a_bug_on_one_of_three_ranks_beside_another_s_stop_is_recorded_as_the_bug_on_every_rank(
    tmp_path: Path, ckpt: Path
) -> None:
    """Three ranks: rank 1 hits a bug while rank 2 is stopped (SIGTERM), rank 0 neither. The run is recorded
    as a bug's (status 1, ``failed``, ``stopped_early`` null) whose closing paragraph names the image and the
    rank of the bug, then the stop; every rank exits 1: the buggy one on its own error, the stopped one and
    rank 0 on the ``RankFailedError`` naming rank 1."""
    import json
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    events = (fork.Event(), fork.Event(), fork.Event())
    _, out, said = _two_ranks(
        tmp_path, ckpt, _rank_of_three_ended_by_a_bug_beside_a_stop, after=(events,), ranks=3
    )
    summary = json.loads((out / "summary.json").read_text())
    # Shards: rank 0 im0, im3, im6; rank 1 im1, im4, im7; rank 2 im2, im5. Rank 0 finished two images, ranks
    # 1 and 2 one each.
    assert summary["counts"] == {"ok": 4, "error": 0, "skipped": 0, "total": 4, "not_reached": 4}, summary
    assert summary["exit_status"] == 1 and summary["exit_reasons"] == ["failed"], summary
    assert summary["stopped_early"] is None, summary
    assert summary["text"].endswith(
        "The run failed on an error in im4.png on rank 1 of its 3 ranks (the traceback follows; status 1): "
        "the 4 images not reached are predicted by running the same command again (finished images are "
        "skipped). Also, rank 2 was terminated (SIGTERM) after 1 of the 2 images it had to predict."
    ), summary["text"]
    assert said[1] == ("TypeError", "a bug", 1), said
    for rank in (0, 2):
        name, message, exited = said[rank]  # type: ignore[misc]
        assert (name, exited) == ("RankFailedError", 1), said
        assert "rank 1 of its 3 ranks failed" in message and "TypeError: a bug" in message, message


def test_a_sharded_overwrite_a_bug_ended_beside_a_stopped_rank_before_replacing_anything_says_both(
    tmp_path: Path, ckpt: Path
) -> None:
    """An ``overwrite=true`` run whose rank 0 was stopped (SIGTERM) and rank 1 hit a bug, both in their first
    image: the reports that list the outputs stay as they were, and summary.json is this run's, recorded as
    the bug's (it said the stop's status, 143), saying that the image may be half replaced and then how
    rank 0 was stopped."""
    import json
    import multiprocessing

    from marsunits.inference import predict_folder
    from marsunits.inference.options import PredictOptions

    inp, out = _eight_images(tmp_path)
    opts = PredictOptions.from_config(make_cfg(tmp_path, ckpt, inp, out, "threads=1", "num_workers=0"))
    assert predict_folder(opts).exit_code == 0
    manifest = (out / "manifest.csv").read_bytes()
    fork = multiprocessing.get_context("fork")
    events = (fork.Event(), fork.Event())
    _, _, said = _two_ranks(
        tmp_path,
        ckpt,
        _rank_stopped_beside_a_failing_rank,
        0,
        "bug",
        False,
        after=(events, 0),
        options=("overwrite=true",),
    )
    assert said == [("RankFailedError", said[0][1], 1), ("TypeError", "a bug", 1)], said  # type: ignore[index]
    assert (out / "manifest.csv").read_bytes() == manifest
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_status"] == 1 and summary["exit_reasons"] == ["failed"], summary
    assert summary["stopped_early"] is None
    assert summary["text"] == (
        "The run failed in its first image (the error below), which may be half replaced: fix what the error "
        "names, then run the same command again, which goes on with this run and predicts that image again. "
        "Also, rank 0 was terminated (SIGTERM) "
        "after 0 of the 4 images it had to predict. manifest.csv, index.html and the folder's other reports "
        "are the earlier run's, as are its outputs."
    ), summary["text"]


def _rank_1_buggy_in_its_first_image(rank: int, store: str, opts: object, conn: object) -> None:
    """One rank of a two-process gloo run (collectives' timeout 20 s): rank 1 hits a bug (a ``TypeError``
    out of the writer) in its first image, once it has marked the folder's settings record pending
    (``overwrite=true``); rank 0 waits for rank 1's word that it failed before it starts its own first image,
    so that it replaces nothing and never marks the record itself."""
    from marsunits.inference import runner

    real_loop = runner._Session._predict_loop

    def predict_loop(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 60
        while self.stops.announced() != "failed" and time.monotonic() < deadline:
            time.sleep(0.05)
        return real_loop(self, *args, **kwargs)

    def write_prediction(paths, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise TypeError("a bug")

    if rank == 0:
        runner._Session._predict_loop = predict_loop  # type: ignore[method-assign]
    else:
        runner.write_prediction = write_prediction  # type: ignore[assignment]
    _run_as_rank(rank, store, opts, conn, timeout_s=20, message=True, spawned=True)


def test_a_sharded_overwrite_a_rank_s_bug_ended_in_its_first_image_says_it_may_be_half_replaced(
    tmp_path: Path, ckpt: Path
) -> None:
    """An ``overwrite=true`` run whose rank 1 hit a bug in its first image, rank 0 not having begun one:
    rank 1 marked the folder's settings record pending, so the folder is no longer as it was (the same command
    goes on with it). Rank 0's own record was not marked, and its summary, recorded as a bug's, said the
    run failed before it replaced any output and the folder was as it was: it says, as one process's does,
    that the image may be half replaced and that the same command goes on with the run."""
    import json

    from marsunits.inference import predict_folder
    from marsunits.inference.options import PredictOptions

    inp, out = _eight_images(tmp_path)
    opts = PredictOptions.from_config(make_cfg(tmp_path, ckpt, inp, out, "threads=1", "num_workers=0"))
    assert predict_folder(opts).exit_code == 0
    manifest = (out / "manifest.csv").read_bytes()
    _, _, said = _two_ranks(tmp_path, ckpt, _rank_1_buggy_in_its_first_image, options=("overwrite=true",))
    assert said == [("returned", "SpawnedRunFailed(error=TypeError('a bug'))"), ("returned", "None")], said
    assert (out / "manifest.csv").read_bytes() == manifest
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_status"] == 1 and summary["exit_reasons"] == ["failed"], summary
    assert summary["stopped_early"] is None
    assert summary["text"].startswith(
        "The run failed in its first image (the error below), which may be half replaced: fix what the error "
        "names, then run the same command again, which goes on with this run and predicts that image again."
    ), summary["text"]


def test_a_rank_ended_by_another_rank_s_error_exits_with_that_error_s_status() -> None:
    """Under torchrun each rank ends as its own ``predict.py``: a rank whose run another rank's error ended
    raises :class:`RankFailedError` naming it, which exited 2 (one line, a user's error) for a bug too,
    whose run records status 1 and whose failing rank exits 1. Its status is now the failing rank's error's:
    1 and a traceback for a bug, 2 and one line for a user's error (a full disk), 2 where no error reached
    it (a user's error that could not be sent, a rank killed without a word)."""
    from marsunits.errors import exit_status, report_user_errors
    from marsunits.inference.runner import OutputWriteError
    from marsunits.inference.sharded_run import RankFailedError

    said = "the run stopped because rank 1 of its 2 ranks failed (TypeError: a bug)"
    bug = RankFailedError(said, [TypeError("a bug")])
    full = RankFailedError(said, [OutputWriteError("cannot write outputs: the disk is full")])
    assert exit_status(bug) == 1
    assert exit_status(full) == 2 and exit_status(RankFailedError(said)) == 2

    def ended_by(error: Exception) -> None:
        raise error

    with pytest.raises(RankFailedError):  # a traceback, status 1
        report_user_errors(lambda: ended_by(bug), "predict.py")
    with pytest.raises(SystemExit) as exited:
        report_user_errors(lambda: ended_by(full), "predict.py")
    assert exited.value.code == 2


def _rank_failing_at_start(rank: int, store: str, opts: object, failing: int, conn: object) -> None:
    """One rank of a two-process gloo run (collectives' timeout 20 s) whose rank ``failing`` fails before
    predicting: looking at its shard's outputs (``_Session.plan``) raises an I/O error."""
    import errno

    from marsunits.inference import runner

    def plan(self):  # type: ignore[no-untyped-def]
        raise OSError(errno.EIO, "Input/output error", str(self.output_dir))

    if rank == failing:
        runner._Session.plan = plan  # type: ignore[method-assign]
    _run_as_rank(rank, store, opts, conn, timeout_s=20, message=True)


@pytest.mark.parametrize("failing", [0, 1])
def test_a_rank_that_fails_before_predicting_does_not_leave_the_others_waiting(
    tmp_path: Path, ckpt: Path, failing: int
) -> None:
    """A rank failing before its first image (its shard's outputs unreadable, rank 0's settings record
    refused) left the run at once: the others predicted their shards and waited in the gather for it until
    the collectives' timeout (30 minutes). It now joins them; the others stop at their next image and end
    naming it, and rank 0, when it is not the failing one, writes the reports (the failing rank's shard not
    reached)."""
    import json

    started = time.monotonic()
    _, out, said = _two_ranks(tmp_path, ckpt, _rank_failing_at_start, failing)
    assert time.monotonic() - started < 60, "a rank waited for a rank that had failed"
    assert said[failing][0] == "OSError", said  # type: ignore[index]
    name, message = said[1 - failing]  # type: ignore[misc]
    assert name == "RankFailedError", said
    assert f"rank {failing} of its 2 ranks failed before predicting (OSError: " in message, message
    if failing == 0:
        assert not (out / "summary.json").exists()
        return
    counts = json.loads((out / "summary.json").read_text())["counts"]
    assert counts["ok"] + counts["not_reached"] == 8 and counts["not_reached"] >= 4, counts


def _rank_stopped_at_start(rank: int, store: str, opts: object, conn: object, stopped: int = 1) -> None:
    """One rank of a two-process gloo run (collectives' timeout 20 s) whose rank ``stopped`` is stopped
    (SIGTERM) before its first image, as it looks at its shard's outputs (``_Session.plan``)."""
    from marsunits.errors import TerminatedError
    from marsunits.inference import runner

    def plan(self):  # type: ignore[no-untyped-def]
        raise TerminatedError

    if rank == stopped:
        runner._Session.plan = plan  # type: ignore[method-assign]
    _run_as_rank(rank, store, opts, conn, timeout_s=20, message=True, status=True)


def test_a_rank_stopped_before_its_first_image_ends_every_rank_with_the_stop(
    tmp_path: Path, ckpt: Path
) -> None:
    """A rank stopped (SIGTERM) before its first image left the run at once: the other rank took it for a
    rank gone without a word (status 2) and wrote no report. It now says its stop and joins the others:
    rank 0 stops at its next image, writes the reports naming the stopped rank, and every rank ends with
    the stop (143)."""
    import json

    _, out, said = _two_ranks(tmp_path, ckpt, _rank_stopped_at_start)
    assert [(name, status) for name, _, status in said] == [("TerminatedError", 143)] * 2, said  # type: ignore[misc]
    summary = json.loads((out / "summary.json").read_text())
    assert "rank 1 was terminated (SIGTERM) before predicting" in summary["stopped_early"], summary
    assert summary["exit_status"] == 143 and summary["counts"]["not_reached"] >= 4, summary


def test_a_rank_stopped_before_its_first_image_leaves_its_finished_images_in_the_manifest(
    tmp_path: Path, ckpt: Path
) -> None:
    """A folder predicted once, then predicted again on two ranks whose rank 1 is stopped (SIGTERM) before its
    first image: rank 0's manifest.csv listed rank 0's images alone, rank 1's (finished in the earlier run,
    never planned by the stopped rank) were left out and counted as not reached. Rank 0 now lists them
    from their outputs, as one process stopped there keeps them: the manifest names every image, skipped."""
    import json

    from marsunits.inference.options import PredictOptions
    from marsunits.inference.runner import predict_folder

    inp, out = _eight_images(tmp_path)
    predict_folder(
        PredictOptions.from_config(make_cfg(tmp_path, ckpt, inp, out, "threads=1", "num_workers=0"))
    )
    _, out, said = _two_ranks(tmp_path, ckpt, _rank_stopped_at_start)
    assert [(name, status) for name, _, status in said] == [("TerminatedError", 143)] * 2, said  # type: ignore[misc]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"ok": 0, "error": 0, "skipped": 8, "total": 8, "not_reached": 0}, summary
    assert "rank 1 was terminated (SIGTERM) before predicting" in summary["stopped_early"], summary
    with open(out / "manifest.csv", newline="") as fh:
        rows = {r["path"]: r["status"] for r in csv.DictReader(fh)}
    assert rows == {f"im{i}.png": "skipped" for i in range(8)}, rows


@pytest.mark.parametrize("folder", ["new", "predicted_before"])
def test_a_sharded_run_whose_rank_0_is_stopped_before_its_first_image_writes_the_reports(
    tmp_path: Path, ckpt: Path, folder: str
) -> None:
    """Rank 0 stopped (SIGTERM) before its first image (``_Session.plan``) wrote no report, where one process
    stopped there records its end: a script read nothing, or the earlier run's summary.json (status 0). Rank
    0, which knows it was stopped, now writes them as for any stopped rank: the images finished earlier
    listed (skipped), the others not reached, and every rank ends with the stop; the same command then
    finishes the folder."""
    import json

    from marsunits.inference.options import PredictOptions
    from marsunits.inference.runner import predict_folder

    inp, out = _eight_images(tmp_path)
    if folder == "predicted_before":
        opts = PredictOptions.from_config(make_cfg(tmp_path, ckpt, inp, out, "threads=1", "num_workers=0"))
        predict_folder(opts)
    opts, out, said = _two_ranks(tmp_path, ckpt, _rank_stopped_at_start, after=(0,))
    assert [(name, status) for name, _, status in said] == [("TerminatedError", 143)] * 2, said  # type: ignore[misc]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_status"] == 143, summary
    assert "rank 0 was terminated (SIGTERM) before predicting" in summary["stopped_early"], summary
    counts = summary["counts"]
    with open(out / "manifest.csv", newline="") as fh:
        rows = {r["path"]: r["status"] for r in csv.DictReader(fh)}
    if folder == "predicted_before":
        assert counts == {"ok": 0, "error": 0, "skipped": 8, "total": 8, "not_reached": 0}, counts
        assert rows == {f"im{i}.png": "skipped" for i in range(8)}, rows
    else:  # rank 1 stops at its next image once rank 0's stop is said (how far it got is timing)
        assert counts["skipped"] == 0 and counts["not_reached"] >= 4, counts
        assert counts["ok"] + counts["not_reached"] == 8 and len(rows) == counts["ok"], counts
    again = predict_folder(opts).summary["counts"]  # the same command finishes the folder
    assert again["total"] == 8 and again["not_reached"] == again["error"] == 0, again


@pytest.mark.parametrize("folder", ["new", "predicted_before"])
def test_one_process_stopped_before_its_first_image_says_its_own_end_in_summary_json(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ckpt: Path, folder: str
) -> None:
    """A one-process run stopped (SIGTERM) as it looked at the folder's outputs (``_Session.plan``, before
    its first image) wrote no report, where a sharded run whose rank was stopped there does: a script
    reading ``summary.json`` read nothing (a new folder) or the earlier run's status, 0. It now records its
    own end as a sharded run does: in a new folder the reports (every image not reached), in a folder
    predicted before its own ``summary.json`` beside the earlier run's manifest, which is kept."""
    import json

    from marsunits.errors import TerminatedError
    from marsunits.inference import runner
    from marsunits.inference.options import PredictOptions
    from marsunits.inference.runner import predict_folder

    inp, out = _eight_images(tmp_path)
    opts = PredictOptions.from_config(make_cfg(tmp_path, ckpt, inp, out, "threads=1", "num_workers=0"))
    if folder == "predicted_before":
        predict_folder(opts)
    manifest = (out / "manifest.csv").read_bytes() if folder == "predicted_before" else None
    real_plan = runner._Session.plan

    def plan(self):  # type: ignore[no-untyped-def]
        real_plan(self)
        raise TerminatedError

    monkeypatch.setattr(runner._Session, "plan", plan)
    with pytest.raises(TerminatedError):
        predict_folder(opts)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_status"] == 143, summary
    assert "was terminated (SIGTERM) before predicting" in summary["stopped_early"], summary
    if manifest is None:
        assert summary["counts"]["not_reached"] == 8, summary["counts"]
        assert (out / "manifest.csv").exists() and (out / "index.html").exists()
    else:
        assert (out / "manifest.csv").read_bytes() == manifest
        assert "are the earlier run's" in summary["text"], summary["text"]


def _ranks_stopped_at_start(
    rank: int, store: str, opts: object, conn: object, endings: tuple[str, str]
) -> None:
    """One rank of a two-process gloo run (collectives' timeout 20 s) stopped before its first image, as it
    looks at its shard's outputs (``_Session.plan``), by its ``endings[rank]``: ``"ctrl-c"`` or
    ``"sigterm"``."""
    from marsunits.errors import TerminatedError
    from marsunits.inference import runner

    stop = KeyboardInterrupt if endings[rank] == "ctrl-c" else TerminatedError

    def plan(self):  # type: ignore[no-untyped-def]
        raise stop

    runner._Session.plan = plan  # type: ignore[method-assign]
    _run_as_rank(rank, store, opts, conn, timeout_s=20, message=True, status=True)


@pytest.mark.parametrize("endings", [("ctrl-c", "sigterm"), ("sigterm", "ctrl-c")])
def test_two_stops_of_different_kinds_before_the_first_image_end_every_rank_as_the_ctrl_c(
    tmp_path: Path, ckpt: Path, endings: tuple[str, str]
) -> None:
    """A Ctrl-C on one rank and a SIGTERM on the other, both before their first image (loading the model,
    adapting the batch norm): the run ended as the lowest rank's stop on the others, each stopped rank with
    its own. It now ends as any run's two stops do (``ENDING_ORDER``: a Ctrl-C before a SIGTERM), 130 on
    every rank whichever rank had which."""
    _, out, said = _two_ranks(tmp_path, ckpt, _ranks_stopped_at_start, after=(endings,))
    assert [(name, status) for name, _, status in said] == [("KeyboardInterrupt", 130)] * 2, said  # type: ignore[misc]
    assert not list(out.glob("*.mask.png"))


def _rank_0_killed(rank: int, store: str, opts: object, address: str, conn: object) -> None:
    """One rank of a two-process gloo run met at the TCP ``address`` (rank 0 holds the store; collectives'
    timeout 20 s) whose rank 0 is killed (SIGKILL, after saying "killed") as it writes the reports."""
    from marsunits.inference import runner

    def write_reports(self, wall_seconds):  # type: ignore[no-untyped-def]
        conn.send("killed")  # type: ignore[attr-defined]
        os.kill(os.getpid(), signal.SIGKILL)

    if rank == 0:
        runner._Session.write_reports = write_reports  # type: ignore[method-assign]
    _run_as_rank(rank, address, opts, conn, timeout_s=20, message=True)


def test_a_rank_waiting_for_a_killed_rank_0_ends_at_once_saying_so(tmp_path: Path, ckpt: Path) -> None:
    """Rank 0 killed (SIGKILL, the out-of-memory killer) while it writes the reports: the other ranks waited
    for it in a collective (on NCCL until the collectives' timeout, 30 minutes; on gloo they ended in its
    traceback, "Connection closed by peer"). They now wait on the store that rank 0's process holds (spawned
    ranks, srun), which fails once it is gone: one line naming rank 0 and the way on."""

    _, out, said, took = _two_ranks_timed(tmp_path, ckpt, _rank_0_killed, killed=0)
    assert took < 60, "rank 1 waited for a rank 0 that was gone"
    name, message = said[1]  # type: ignore[misc]
    assert name == "RankFailedError", said
    assert "rank 0 of the run ended" in message and "run the same command again" in message, message
    assert not (out / "summary.json").exists()


def _run_as_rank_of_machines(
    machines: int, rank: int, address: str, opts: object, conn: object, timeout_s: float | None = None
) -> None:
    """:func:`_run_as_rank` with ``rank_timeout_s`` 3 s and its error's message sent, each rank posing as a
    machine of its own where ``machines`` is 2 (the rank watch then cannot see the other's process)."""
    import dataclasses

    from marsunits.inference import rank_watch

    if machines == 2:
        rank_watch._process_space = lambda: f"machine {rank}"  # noqa: SLF001
    opts = dataclasses.replace(opts, rank_timeout_s=3)  # type: ignore[type-var]
    if timeout_s is None:
        _run_as_rank(rank, address, opts, conn, message=True)
    else:
        _run_as_rank(rank, address, opts, conn, timeout_s=timeout_s, message=True)


def _rank_1_killed(rank: int, store: str, opts: object, address: str, machines: int, conn: object) -> None:
    """One rank of a two-process gloo run met at the TCP ``address`` (rank 0 holds the store, as spawned
    ranks and srun's do; ``rank_timeout_s`` 3 s) whose rank 1 is killed (SIGKILL, after saying "killed")
    before its second image: no handler of its own runs, nothing is said through the store. ``machines``
    2: each rank takes the other for a process of another machine, whose process id it cannot check."""

    from marsunits.inference import runner

    real_process = runner._Session.process
    done = [0]

    def process(self, f, item):  # type: ignore[no-untyped-def]
        if rank == 1 and done[0] == 1:
            conn.send("killed")  # type: ignore[attr-defined]
            os.kill(os.getpid(), signal.SIGKILL)
        done[0] += 1
        return real_process(self, f, item)

    runner._Session.process = process  # type: ignore[method-assign]
    _run_as_rank_of_machines(machines, rank, address, opts, conn)


# machines=2 (the watch cannot see rank 1's process: ``rank_timeout_s`` of silence, some 5 s more) is slow:
# the silence found mid-folder by the same ``_RankWatch.gone`` stays in the default suite end to end in
# test_a_rank_taken_for_gone_that_comes_back_ends_with_the_others, the kill mid-folder and the resume after
# it in machines=1 here.
@pytest.mark.parametrize("machines", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_a_rank_killed_mid_folder_stops_rank_0_in_bounded_time_naming_it(
    tmp_path: Path, ckpt: Path, machines: int
) -> None:
    """Rank 1 of two killed (SIGKILL, the out-of-memory killer) after 1 of its 4 images says nothing: rank 0
    predicted the rest of its shard and then, in the gather, waited for it (on NCCL until the collectives'
    timeout, 30 minutes; on gloo, measured, it ended in its ``Connection closed by peer`` traceback naming
    an address). It now stops once it sees rank 1's process ended (same machine) or ``rank_timeout_s`` after
    rank 1's last sign of life (another machine), with one line naming rank 1 and the way on, keeps every
    finished output, and the same command then predicts only the rest."""

    from marsunits.inference import predict_folder

    opts, out, said, took = _two_ranks_timed(tmp_path, ckpt, _rank_1_killed, machines, killed=1)
    assert took < 90, "rank 0 waited for a rank that was gone"
    name, message = said[0]  # type: ignore[misc]
    assert name == "RankFailedError", said
    assert "rank 1 of the run's 2 ranks went away without a word" in message, message
    how = "its process (" if machines == 1 else "no sign of life from it for 3 s (rank_timeout_s)"
    assert how in message and "run the same command again" in message, message
    finished = sorted(p.name.removesuffix(".mask.png") for p in out.glob("*.mask.png"))
    # Rank 1's first image; rank 0 stops at its next image once rank 1 is gone (how far it got is timing).
    assert "im1" in finished, finished
    assert not list(out.glob(".*.tmp")), list(out.iterdir())
    result = predict_folder(opts)
    counts = result.summary["counts"]
    assert counts["skipped"] == len(finished) and counts["ok"] == 8 - len(finished), counts
    assert counts["total"] == 8 and counts.get("not_reached", 0) == 0, counts


def _rank_1_killed_at_its_start(
    rank: int, store: str, opts: object, address: str, machines: int, conn: object
) -> None:
    """One rank of a two-process gloo run met at the TCP ``address`` (rank 0 holds the store;
    ``rank_timeout_s`` 3 s, collectives' timeout 20 s) whose rank 1 is killed (SIGKILL, after saying
    "killed") as its part of the run starts, after the ranks' first collective and before it reads rank 0's
    word that the run may start. ``machines`` 2: as :func:`_rank_1_killed`."""

    from marsunits.inference import sharded_run

    def predict_shard(*args, **kwargs):  # type: ignore[no-untyped-def]
        conn.send("killed")  # type: ignore[attr-defined]
        os.kill(os.getpid(), signal.SIGKILL)

    if rank == 1:
        sharded_run.predict_shard = predict_shard  # type: ignore[assignment]
    _run_as_rank_of_machines(machines, rank, address, opts, conn, timeout_s=20)


# machines=2 (rank 1's silence, not its process's end) is slow: rank 0's wait for its word to be read finds
# a silent rank by the same ``_StoreBroadcast._unread_rank_gone`` for the first word as for the last, which
# test_a_rank_killed_after_the_gather_does_not_keep_rank_0_waiting_for_it_to_read_the_last_word[2] keeps in
# the default suite end to end; the kill before the first word stays there in machines=1.
@pytest.mark.parametrize("machines", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_a_rank_killed_before_reading_rank_0_s_first_word_stops_rank_0_within_rank_timeout_s(
    tmp_path: Path, ckpt: Path, machines: int
) -> None:
    """Rank 1 of two killed (SIGKILL, the out-of-memory killer) as its part of the run starts, before it
    read rank 0's word that the run may start (rank 0's claim on the output folder): rank 0 waited for it to
    read the word the whole ``read_wait_s``, 60 s measured, whatever ``rank_timeout_s`` (3 s here) and
    though it saw rank 1's process ended, and only then found it gone. It now stops waiting once rank 1 is
    found gone (its process ended, or ``rank_timeout_s`` without a sign of life), with the one line naming
    rank 1 and the way on, and the same command then predicts every image."""

    from marsunits.inference import predict_folder

    opts, out, said, took = _two_ranks_timed(tmp_path, ckpt, _rank_1_killed_at_its_start, machines, killed=1)
    name, message = said[0]  # type: ignore[misc]
    assert name == "RankFailedError", said
    assert "rank 1 of the run's 2 ranks went away without a word" in message, message
    how = "its process (" if machines == 1 else "no sign of life from it for 3 s (rank_timeout_s)"
    assert how in message and "run the same command again" in message, message
    assert took < 40, f"rank 0 waited {took:.0f} s for a rank that was gone (rank_timeout_s 3 s)"
    assert not (out / "summary.json").exists()
    counts = predict_folder(opts).summary["counts"]
    assert counts["total"] == 8 and counts["ok"] + counts["skipped"] == 8, counts


def _rank_1_killed_after_the_gather(
    rank: int, store: str, opts: object, address: str, machines: int, conn: object
) -> None:
    """One rank of a two-process gloo run met at the TCP ``address`` (rank 0 holds the store;
    ``rank_timeout_s`` 3 s, collectives' timeout 20 s) whose rank 1 is killed (SIGKILL, after saying
    "killed") once the gather has taken its part, before it reads rank 0's final word (which ranks failed).
    ``machines`` 2: as :func:`_rank_1_killed`."""

    import torch.distributed as dist

    real_gather = dist.gather_object

    def gather_object(*args, **kwargs):  # type: ignore[no-untyped-def]
        real_gather(*args, **kwargs)
        conn.send("killed")  # type: ignore[attr-defined]
        os.kill(os.getpid(), signal.SIGKILL)

    if rank == 1:
        dist.gather_object = gather_object
    _run_as_rank_of_machines(machines, rank, address, opts, conn, timeout_s=20)


@pytest.mark.parametrize("machines", [1, 2])
def test_a_rank_killed_after_the_gather_does_not_keep_rank_0_waiting_for_it_to_read_the_last_word(
    tmp_path: Path, ckpt: Path, machines: int
) -> None:
    """Rank 1 of two killed (SIGKILL, the out-of-memory killer) after the gather took its part, before it
    read rank 0's last word (which ranks failed, said once the reports are written): rank 0 waited the whole
    ``read_wait_s`` for it to read the word, 60 s measured (61 s from the start here), whatever
    ``rank_timeout_s`` (3 s) and though the watch had seen its process end, as the ranks had met. It now
    stops waiting once rank 1 is found gone (its process ended, or ``rank_timeout_s`` without a sign of
    life) and ends as it would have, the reports of every image written."""
    import json

    _, out, said, took = _two_ranks_timed(tmp_path, ckpt, _rank_1_killed_after_the_gather, machines, killed=1)
    assert said[0][0] == "returned", said  # type: ignore[index]
    counts = json.loads((out / "summary.json").read_text())["counts"]
    assert counts == {"ok": 8, "error": 0, "skipped": 0, "total": 8, "not_reached": 0}, counts
    assert len(list(out.glob("*.mask.png"))) == 8
    assert took < 30, f"rank 0 waited {took:.0f} s for a rank that was gone (rank_timeout_s 3 s)"


def test_a_rank_waiting_for_rank_0_s_word_is_not_taken_for_gone_for_its_silence_before_the_wait() -> None:
    """Rank 0 waiting for the others to read its word looks for the ranks that have not read it gone: a
    rank waiting for the word on the store cannot count up its sign of life (its wait holds the store's
    client), so its silence counts from the start of rank 0's wait, not from its last count noted (before
    the gather, or rank 0's writing the reports, which may take longer than ``rank_timeout_s``): taken for
    gone, rank 0 ended at once, taking the store, and the word not yet read, with it."""
    import torch.distributed as dist

    from marsunits.inference.rank_watch import _RankWatch

    store = dist.HashStore()
    store.set("pid/1", "another machine|1")
    store.add("alive/1", 1)
    watch = _RankWatch(store, 0, 2, timeout_s=3)
    try:
        watch._read_pids([1])  # noqa: SLF001
        count = store.get("alive/1")
        watch._seen[1] = (count, time.monotonic() - 100)  # noqa: SLF001 - last moved long before the wait
        assert watch.gone_while_waited_for([1], waited_since=time.monotonic()) is None
        said = watch.gone_while_waited_for([1], waited_since=time.monotonic() - 4)
        assert said == (1, "no sign of life from it for 3 s (rank_timeout_s)"), said
        assert watch.gone_while_waited_for([], waited_since=0.0) is None  # every rank read it
    finally:
        watch.close()


def _rank_with_a_refused_camera_file(rank: int, store: str, opts: object, conn: object) -> None:
    """One rank of a two-process gloo run (collectives' timeout 20 s) of a folder whose ``im3.png``, on rank
    1's shard, has a camera file that is not JSON (written by rank 0 before the ranks meet)."""
    if rank == 0:
        (Path(opts.input_dir) / "im3.camera.json").write_text("{not json")  # type: ignore[attr-defined]
    _run_as_rank(rank, store, opts, conn, timeout_s=20, message=True)


def test_a_sharded_run_counts_an_image_whose_camera_file_was_refused_as_predicted(
    tmp_path: Path, ckpt: Path
) -> None:
    """An image whose camera file was refused, predicted by rank 1, is counted by rank 0's reports as one
    process counts it: predicted (``ok``), its refusal in ``camera_files_refused`` and the last line, not
    among the failed."""
    import json

    _, out, said = _two_ranks(tmp_path, ckpt, _rank_with_a_refused_camera_file)
    assert [s[0] for s in said] == ["returned", "returned"], said  # type: ignore[index]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"ok": 8, "error": 0, "skipped": 0, "total": 8, "not_reached": 0}
    assert list(summary["camera_files_refused"]) == ["im3.png"], summary["camera_files_refused"]
    assert "im3.camera.json" in summary["camera_files_refused"]["im3.png"]
    text = " ".join(summary["text"].split())
    assert "Predicted 8 of 8 images (0 skipped as already done, 0 failed)" in text, text
    assert "1 image has contacts in pixels only, no metres" in text and "im3.camera.json" in text, text


def _rank_seeing_another_settings_record(rank: int, store: str, opts: object, conn: object) -> None:
    """One rank of a two-process gloo run in a folder an earlier run began, whose rank 1 would read another
    ``prediction_settings.json`` than rank 0 (the file changed between the reads, a shared filesystem's lag):
    a ``tile`` other than the folder's."""
    from marsunits.inference import output_settings

    real_read_record = output_settings.read_record

    def read_record(path: Path) -> tuple[dict[str, Any] | None, str]:
        record, fault = real_read_record(path)
        if path.name == output_settings.SETTINGS_NAME and record is not None:
            record = {**record, "tile": int(record["tile"]) * 2}
        return record, fault

    if rank == 1:
        output_settings.read_record = read_record  # type: ignore[assignment]
        from marsunits.inference import runner

        runner.read_record = read_record  # type: ignore[attr-defined]
    _run_as_rank(rank, store, opts, conn, message=True)


def test_the_ranks_of_a_sharded_run_all_check_the_folder_s_settings_record_as_rank_0_read_it(
    tmp_path: Path, ckpt: Path
) -> None:
    """``prediction_settings.json`` was read by each rank of a sharded run itself: a rank that read another
    record than rank 0 (the file changed between the reads, a shared filesystem's lag) refused the folder
    (or resumed it with other settings) while the others went on. Rank 0 alone reads it now, as it reads the
    kept batch-norm statistics, and every rank checks the record it read."""
    import json

    from marsunits.inference.options import PredictOptions
    from marsunits.inference.runner import predict_folder

    inp, out = _eight_images(tmp_path)
    predict_folder(
        PredictOptions.from_config(make_cfg(tmp_path, ckpt, inp, out, "threads=1", "num_workers=0"))
    )
    _, out, said = _two_ranks(tmp_path, ckpt, _rank_seeing_another_settings_record)
    assert [s[0] for s in said] == ["returned", "returned"], said  # type: ignore[index]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["skipped"] == 8, summary["counts"]


def _rank_reading_other_settings_bytes(rank: int, store: str, opts: object, conn: object) -> None:
    """One rank of a two-process gloo run whose rank 1 reads other bytes than rank 0 from the folder's
    ``prediction_settings.json`` wherever it reads them itself (rank 0 rewriting the file meanwhile)."""
    import pathlib

    from marsunits.inference.output_settings import SETTINGS_NAME

    real_read_bytes = pathlib.Path.read_bytes

    def read_bytes(self: pathlib.Path) -> bytes:
        data = real_read_bytes(self)
        return data + b" " if self.name == SETTINGS_NAME else data

    if rank == 1:
        pathlib.Path.read_bytes = read_bytes  # type: ignore[method-assign]
    _run_as_rank(rank, store, opts, conn, message=True)


def test_the_ranks_of_a_sharded_overwrite_run_all_mark_their_images_with_the_same_run_identity(
    tmp_path: Path, ckpt: Path
) -> None:
    """Each rank of a sharded ``overwrite=true`` run derived the run's identity (kept in the contact file of
    each image it finishes, so that a run going on with it skips them) from the folder's record as it read
    the file itself: a rank reading it while rank 0 rewrote it held another identity, and its finished images
    would be predicted again. The identity now comes from rank 0's reading alone."""
    from marsunits.boundary.contact_io import read_contact_collection
    from marsunits.inference.options import PredictOptions
    from marsunits.inference.runner import predict_folder
    from marsunits.inference.writers import OVERWRITE_RUN_KEY

    inp, out = _eight_images(tmp_path)
    predict_folder(
        PredictOptions.from_config(make_cfg(tmp_path, ckpt, inp, out, "threads=1", "num_workers=0"))
    )
    _, out, said = _two_ranks(
        tmp_path, ckpt, _rank_reading_other_settings_bytes, options=("overwrite=true", "min_unit_area_px=0")
    )
    assert [s[0] for s in said] == ["returned", "returned"], said  # type: ignore[index]
    runs = {
        read_contact_collection(path)[1].get(OVERWRITE_RUN_KEY)
        for path in sorted(out.glob("*.contact.geojson"))
    }
    assert len(runs) == 1 and None not in runs, runs


def _rank_killed_before_the_first_collective(
    rank: int, store: str, opts: object, address: str, victim: int, joined: object, conn: object
) -> None:
    """One rank of a two-process gloo run met at the TCP ``address`` (rank 0 holds the store;
    ``rank_timeout_s`` 3 s, collectives' timeout 20 s) whose rank ``victim`` is killed (SIGKILL, after
    saying "killed") as it reaches the ranks' first collective (the run's name, :class:`_StoreStops`):
    nothing of the run said through the store yet, its sign of life not counted. ``joined``: an event the
    other rank sets once torch's ``init_process_group`` has returned, which the victim waits for (under
    load the victim reached the collective, and was killed, while the other was still in torch's set-up,
    which then ended in torch's own traceback, not the run's)."""
    import dataclasses

    import torch.distributed as dist

    def broadcast_object_list(*args, **kwargs):  # type: ignore[no-untyped-def]
        assert joined.wait(120)  # type: ignore[attr-defined]
        conn.send("killed")  # type: ignore[attr-defined]
        os.kill(os.getpid(), signal.SIGKILL)

    real_init = dist.init_process_group

    def init_process_group(*args, **kwargs):  # type: ignore[no-untyped-def]
        real_init(*args, **kwargs)
        joined.set()  # type: ignore[attr-defined]

    if rank == victim:
        dist.broadcast_object_list = broadcast_object_list
    else:
        dist.init_process_group = init_process_group
    opts = dataclasses.replace(opts, rank_timeout_s=3)  # type: ignore[type-var]
    _run_as_rank(rank, address, opts, conn, timeout_s=20, message=True)


@pytest.mark.parametrize("victim", [0, 1])
def test_a_rank_killed_before_the_ranks_first_collective_ends_the_other_in_one_line_naming_it(
    tmp_path: Path, ckpt: Path, victim: int
) -> None:
    """A rank killed (SIGKILL, the out-of-memory killer) as the ranks first meet, in the collective that
    draws the run's name: the other ended in gloo's traceback (``Connection reset by peer``, or ``closed
    by peer``, naming an address, not a rank; measured within a second). It now ends in one line naming
    the rank that ended and the way on, and nothing is written."""

    import multiprocessing

    joined = multiprocessing.get_context("fork").Event()
    _, out, said, took = _two_ranks_timed(
        tmp_path, ckpt, _rank_killed_before_the_first_collective, victim, joined, killed=victim
    )
    name, message = said[1 - victim]  # type: ignore[misc]
    assert name == "RankFailedError", said
    assert f"rank {victim} of the run's 2 ranks" in message, message
    assert "run the same command again" in message and "GLHF" not in message, message
    assert took < 40, f"rank {1 - victim} waited {took:.0f} s for a rank that was gone (rank_timeout_s 3 s)"
    assert not out.exists() or not list(out.iterdir()), list(out.iterdir())


def test_only_a_peer_gone_in_the_first_collective_is_said_as_a_rank_gone() -> None:
    """The first collective's error is said as a rank gone only when gloo says its peer's connection ended;
    any other error (NCCL's, a timeout) is raised as it is. With more than two ranks the one gone is not
    named: gloo names an address."""
    from marsunits.inference.rank_watch import rank_gone_at_the_first_meeting

    gloo = "[pair.cc:561] Connection closed by peer [127.0.0.1]:5538. This is typically ... GLHF!"
    assert rank_gone_at_the_first_meeting(RuntimeError("NCCL error: unhandled system error"), 0, 2) is None
    assert rank_gone_at_the_first_meeting(RuntimeError("Timed out waiting 1800000ms"), 1, 2) is None
    said = str(rank_gone_at_the_first_meeting(RuntimeError(gloo), 3, 8))
    assert said.startswith("another rank of the run's 8 ranks ended as the ranks first met"), said
    assert "rank 3 stopped instead of waiting" in said and "GLHF" not in said, said


def _rank_0_failing_at_its_claim(rank: int, store: str, opts: object, address: str, conn: object) -> None:
    """One rank of a two-process gloo run met at the TCP ``address`` (rank 0 holds the store, as srun's
    ranks do; collectives' timeout 20 s) whose rank 0 cannot write its claim on the output folder (a full
    disk): it ends with that error before it tells the others whether the run may start."""
    import errno

    from marsunits.inference import sharded_run

    def claimed_output_dir(folder, take):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / ".predict.claim"))

    if rank == 0:
        sharded_run.claimed_output_dir = claimed_output_dir  # type: ignore[assignment]
    _run_as_rank(rank, address, opts, conn, timeout_s=20, message=True)


def test_a_rank_whose_rank_0_failed_at_the_start_is_not_told_it_was_killed(
    tmp_path: Path, ckpt: Path
) -> None:
    """Rank 0 ending with its own error before its first word to the others (its claim on a full disk),
    srun's ranks were told that rank 0 "ended without a word (killed? out of memory? ...)", and that the
    same command again would write the reports: neither is so. They now say that rank 0's own error, or
    its being killed, ended it, that its output or log says which, and to run again once that is dealt
    with."""

    _, _, said, _ = _two_ranks_timed(tmp_path, ckpt, _rank_0_failing_at_its_claim)
    assert said[0][0] == "OSError", said  # type: ignore[index]
    name, message = said[1]  # type: ignore[misc]
    assert name == "RankFailedError", said
    assert "its own error" in message and "once that is dealt with" in message, message


def test_a_rank_stopped_as_rank_0_s_word_reaches_it_does_not_keep_rank_0_waiting() -> None:
    """A SIGTERM that reaches a rank while it waits on the store for rank 0's word (rank 0 writing the
    reports) is raised as the store's ``get`` returns, the word read: the rank then never said it had read
    it, and rank 0, its reports written, waited the whole ``read_wait_s`` (60 s) for it before it ended."""
    import threading
    from types import SimpleNamespace

    import torch.distributed as dist

    from marsunits.errors import TerminatedError
    from marsunits.inference.distributed import _StoreBroadcast

    store = dist.HashStore()

    class SigtermAsTheWordArrives:  # the rank's SIGTERM handler raising once the blocking get has returned
        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        def get(self, key: str) -> bytes:
            store.get(key)
            raise TerminatedError

    waited: list[float] = []

    def rank_0() -> None:
        started = time.monotonic()
        _StoreBroadcast(SimpleNamespace(store=store, watch=None), 0, 2, read_wait_s=20)([])  # type: ignore[arg-type]
        waited.append(time.monotonic() - started)

    thread = threading.Thread(target=rank_0)
    thread.start()
    stopped = _StoreBroadcast(SimpleNamespace(store=SigtermAsTheWordArrives(), watch=None), 1, 2)  # type: ignore[arg-type]
    with pytest.raises(TerminatedError):
        stopped(None)
    thread.join(30)
    assert waited and waited[0] < 5, f"rank 0 waited {waited} s for a rank that had read its word"


def _rank_of_an_attempt(rank: int, store: str, opts: object, port: int, fail: bool, conn: object) -> None:
    """One rank of an attempt of a two-process gloo run whose process group's store is a TCP store that the
    test's process holds at ``port`` and keeps across attempts, as torchrun's agent does with its default
    static rendezvous (``TORCHELASTIC_USE_AGENT_STORE``); with ``fail``, rank 1's disk is full at its second
    image (:func:`_failing_rank`). Gloo itself meets through a file store of the attempt's own: the stale
    addresses of the last attempt's processes, which it reads from a shared store too, are torch's business,
    not this test's."""
    import torch.distributed as dist
    import torch.distributed.distributed_c10d as c10d

    agents = dist.TCPStore("127.0.0.1", port, None, False, multi_tenant=True)
    c10d._get_default_store = lambda: dist.PrefixStore("default_pg", agents)  # noqa: SLF001
    store = f"{store}.{'failing' if fail else 'restarted'}"
    if fail:
        _failing_rank(rank, store, opts, "full", False, conn)
    else:
        _run_as_rank(rank, store, opts, conn, timeout_s=20, message=True)


def test_a_run_torchrun_restarts_reads_nothing_its_failed_attempt_left_in_the_store(
    tmp_path: Path, ckpt: Path
) -> None:
    """torchrun's agent (its default static rendezvous) keeps one store for every attempt: the keys of an
    attempt whose rank failed outlive its processes. The restarted attempt's ranks, numbering their runs
    from 1 again, read its "failed" flag before their first image and stopped there, every one, and
    rank 1 took its final word from that attempt's broadcast: nothing was predicted again, rank 0 reported
    the run stopped and rank 1 ended with the old failure. Each run now draws its own keys."""
    import json

    import torch.distributed as dist

    port = _free_port()
    agent = dist.TCPStore("127.0.0.1", port, None, True, wait_for_workers=False, multi_tenant=True)
    _, out, said = _two_ranks(tmp_path, ckpt, _rank_of_an_attempt, port, True)
    assert said[1][0] == "OutputWriteError", said  # type: ignore[index]
    _, out, said = _two_ranks(tmp_path, ckpt, _rank_of_an_attempt, port, False)
    assert [s[0] for s in said] == ["returned", "returned"], said  # type: ignore[index]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_early"] is None, summary["stopped_early"]
    counts = summary["counts"]
    assert counts.get("not_reached", 0) == 0 and counts["ok"] + counts["skipped"] == 8, counts
    del agent


@pytest.mark.parametrize("where", ["tiff_orientation", "tiff_pixels"])
def test_a_sigterm_inside_an_image_read_s_fallback_stops_the_run(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A SIGTERM arriving while an image is read, inside a block that catches ``Exception`` (a broken
    orientation tag reads as none; a TIFF decoder's error becomes the image's error row), stops the run as
    anywhere else: TerminatedError derived from Exception, so the orientation read swallowed it (the stop was
    lost and every image predicted) and the pixel read made it the image's error row ("not a readable TIFF
    (TerminatedError: )") and went on."""
    import json

    import tifffile

    from marsunits.errors import TerminatedError
    from marsunits.inference import predict_folder
    from marsunits.inference.options import PredictOptions

    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        arr = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
        tifffile.imwrite(inp / f"im{i}.tif", arr)
    calls = [0]

    def stopping(real):  # type: ignore[no-untyped-def]
        def read(*args, **kwargs):  # type: ignore[no-untyped-def]
            if where == "tiff_orientation" and args[1:2] != (274,):
                return real(*args, **kwargs)
            calls[0] += 1
            if calls[0] == 2:  # the second image: SIGTERM's handler runs inside the read
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1.0)
            return real(*args, **kwargs)

        return read

    if where == "tiff_pixels":
        monkeypatch.setattr(tifffile.TiffPage, "asarray", stopping(tifffile.TiffPage.asarray))
    else:
        monkeypatch.setattr(tifffile.TiffTags, "get", stopping(tifffile.TiffTags.get))
    opts = PredictOptions.from_config(
        make_cfg(tmp_path, ckpt, inp, out, "threads=1", "num_workers=0", "allow_errors=true")
    )
    with pytest.raises(TerminatedError):
        predict_folder(opts)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["error"] == 0, _manifest(out)
    assert summary["counts"]["not_reached"] >= 1
    assert "terminated (SIGTERM)" in summary["stopped_early"]


def _two_images(tmp_path: Path, ckpt: Path) -> tuple[Path, Callable[..., Any]]:
    """Two small images in ``tmp_path/in``; the output folder ``tmp_path/out`` and the options of a
    one-thread run of them into it with more options given (``options("overwrite=true")``)."""
    from marsunits.inference.options import PredictOptions

    inp, out = tmp_path / "in", tmp_path / "out"
    for i in range(2):
        save_rgb(inp / f"im{i}.png", 40, 48, seed=i)

    def options(*extra: str) -> PredictOptions:
        return PredictOptions.from_config(
            make_cfg(tmp_path, ckpt, inp, out, "threads=1", "num_workers=0", *extra)
        )

    return out, options


@pytest.mark.parametrize("disk", ["writable", "full"])
def test_an_overwrite_run_stopped_before_replacing_anything_says_its_own_end_in_summary_json(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, disk: str
) -> None:
    """An ``overwrite=true`` run stopped by SIGTERM in its first image, before it replaced any output, left
    the earlier run's summary.json, ``exit_status`` 0 and all: a script read that the run had finished. It
    is now this run's (status 143, its images not reached, how it stopped); the reports that list the
    outputs (manifest.csv, index.html), and the outputs, stay as they were. Where it cannot be written (a
    full disk), the earlier one is removed with a warning rather than left saying another run's status."""
    import errno
    import json

    from marsunits.errors import TerminatedError
    from marsunits.inference import predict_folder, run_reports, runner

    out, options = _two_images(tmp_path, ckpt)

    assert predict_folder(options()).exit_code == 0
    assert json.loads((out / "summary.json").read_text())["exit_status"] == 0
    kept = {
        p.name: p.read_bytes()
        for p in out.iterdir()
        if p.is_file() and p.name not in ("summary.json", "prediction_settings.json")
    }
    assert {"manifest.csv", "index.html", "im0.mask.png", "im1.contact.geojson"} <= set(kept)

    def stopped(self, f, item):  # type: ignore[no-untyped-def]
        os.kill(os.getpid(), signal.SIGTERM)  # the handler raises TerminatedError here
        time.sleep(1.0)
        raise AssertionError("SIGTERM did not stop the run")

    monkeypatch.setattr(runner._Session, "process", stopped)
    if disk == "full":

        def full(path, data):  # type: ignore[no-untyped-def]
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

        monkeypatch.setattr(run_reports, "write_json_atomic", full)
    with caplog.at_level("WARNING"), pytest.raises(TerminatedError):
        predict_folder(options("overwrite=true"))
    assert {
        p.name: p.read_bytes()
        for p in out.iterdir()
        if p.is_file() and p.name not in ("summary.json", "prediction_settings.json")
    } == kept
    if disk == "full":
        assert not (out / "summary.json").exists()
        said = " ".join(r.getMessage() for r in caplog.records)
        assert "removed" in said and "summary.json of the earlier run" in said, said
        return
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_status"] == 143 and summary["exit_reasons"] == ["stopped"]
    assert summary["counts"] == {"ok": 0, "error": 0, "skipped": 0, "total": 0, "not_reached": 2}
    stop = summary["stopped_early"]
    assert "terminated (SIGTERM) after 0 of the 2 images" in stop, stop
    assert summary["text"].startswith(f"The run {summary['stopped_early']}.")
    assert "manifest.csv, index.html and the folder's other reports are the earlier run's" in summary["text"]


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_a_loader_worker_stopped_alone_stops_the_run_without_blaming_an_image(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """``num_workers=1``, the decoding worker alone given SIGTERM (or killed by another signal) while it reads
    the second image: torch's SIGCHLD handler raised ``RuntimeError: DataLoader worker ... is killed by
    signal`` inside the first image's prediction, which recorded it as that image's error row, and the next
    read ended the run with a traceback. A SIGTERM now stops the run as a stop (reports written, the images
    not reached counted, no error row); another death is one error saying a loader worker died, with
    num_workers=0. The worker, which inherits predict_folder's SIGTERM handler, no longer raises
    TerminatedError itself (ended with a traceback of its own): it ends at once on the signal."""
    import json

    from marsunits.errors import TerminatedError
    from marsunits.inference import predict_folder
    from marsunits.inference.options import PredictOptions
    from marsunits.inference.predictor import ImageFileDataset, LoaderWorkerError

    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(inp / f"im{i}.png")
    real = ImageFileDataset.__getitem__
    parent = os.getpid()

    def getitem(self, index):  # type: ignore[no-untyped-def]
        if index == 1 and os.getpid() != parent:  # in the worker only
            os.kill(os.getpid(), signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
            time.sleep(5.0)
        return real(self, index)

    monkeypatch.setattr(ImageFileDataset, "__getitem__", getitem)
    opts = PredictOptions.from_config(
        make_cfg(tmp_path, ckpt, inp, out, "threads=1", "num_workers=1", "allow_errors=true")
    )
    expected = TerminatedError if how == "sigterm" else LoaderWorkerError
    with pytest.raises(expected) as info:
        predict_folder(opts)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["error"] == 0, (out / "manifest.csv").read_text()
    assert summary["counts"]["not_reached"] >= 3, summary["counts"]
    if how == "sigterm":
        assert "terminated (SIGTERM)" in summary["stopped_early"], summary["stopped_early"]
    else:
        said = str(info.value)
        assert "loader worker" in said and "num_workers=0" in said and "killed by signal" in said, said
        assert "loader worker" in summary["stopped_early"], summary["stopped_early"]


class _SigtermAction:
    """A dataset of one item: the SIGTERM action of the process that reads it (a loader worker)."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> bool:
        return signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_a_loader_worker_ends_at_once_on_sigterm_instead_of_raising_the_runs_stop() -> None:
    """A decoding worker inherited predict_folder's SIGTERM handler (``sigterm_raises``), so a SIGTERM to it
    raised TerminatedError inside the worker, which is not where the run's reports are written. Workers now
    take the signal's default action; the main process sees the death and stops the run as a stop."""
    from marsunits.errors import sigterm_raises
    from marsunits.inference.predictor import make_loader

    with sigterm_raises():
        (default,) = list(make_loader(_SigtermAction(), 1))  # type: ignore[arg-type]
        assert signal.getsignal(signal.SIGTERM) != signal.SIG_DFL  # the main process keeps its handler
    assert default is True


def _rank_1_silent_for_a_while(rank: int, store: str, opts: object, address: str, conn: object) -> None:
    """One rank of a two-process gloo run met at the TCP ``address`` (``rank_timeout_s`` 3 s, collectives'
    timeout 20 s; each takes the other for a process of another machine) whose rank 1 stays alive but shows
    no sign of life for 4.5 s from its first image (its counting thread held up: its process stopped and
    continued, a store that did not answer), then counts again and predicts its shard to the end (1.5 s an
    image; rank 0's take 0.5 s)."""
    import dataclasses

    from marsunits.inference import rank_watch, runner

    real_process = runner._Session.process
    real_beat = rank_watch._RankWatch._beat
    silent_from: list[float] = []

    def process(self, f, item):  # type: ignore[no-untyped-def]
        silent_from[:] = silent_from or [time.monotonic()]
        time.sleep(1.5 if rank == 1 else 0.5)
        return real_process(self, f, item)

    def beat(self):  # type: ignore[no-untyped-def]
        return True if silent_from and time.monotonic() - silent_from[0] < 4.5 else real_beat(self)

    runner._Session.process = process  # type: ignore[method-assign]
    if rank == 1:
        rank_watch._RankWatch._beat = beat  # type: ignore[method-assign]
    rank_watch._process_space = lambda: f"machine {rank}"  # noqa: SLF001
    opts = dataclasses.replace(opts, rank_timeout_s=3)  # type: ignore[type-var]
    _run_as_rank(rank, address, opts, conn, timeout_s=20, message=True)


def test_a_rank_taken_for_gone_that_comes_back_ends_with_the_others(tmp_path: Path, ckpt: Path) -> None:
    """Rank 1 silent for longer than ``rank_timeout_s`` but alive: rank 0 took it for gone and left the
    meeting before the gather with ``RankFailedError``, while rank 1, still predicting, reached the meeting
    later, found rank 0 there and waited for it in the gather (gloo: its traceback; NCCL: the collectives'
    timeout, 30 minutes). The ranks now agree, through the store, on whether the gather takes place or which
    rank is gone: every rank ends with the same one line naming rank 1, and the same command resumes."""

    _, _, said, took = _two_ranks_timed(tmp_path, ckpt, _rank_1_silent_for_a_while)
    assert took < 60, said
    for rank in (0, 1):
        name, message = said[rank]  # type: ignore[misc]
        assert name == "RankFailedError", said
        assert "rank 1 of the run's 2 ranks" in message, said
        assert "no sign of life from it for 3 s" in message and "run the same command again" in message, said


def test_a_rank_s_look_at_the_others_signs_of_life_takes_as_many_store_round_trips_however_many_ranks() -> (
    None
):
    """Each rank looks at the others' signs of life (``_RankWatch.gone``) once a second while it predicts.
    Asking for each rank's key on its own, a rank made two round trips per other rank, and the run's one
    store (rank 0's process, or torchrun's agent) answered 2 x ranks^2 a second: 130,000 for 256 ranks, and
    each rank spent a tenth of its time waiting for the answers over a network. A look is now the same few
    round trips for 2 ranks as for 256."""
    import torch.distributed as dist

    from marsunits.inference import rank_watch

    def round_trips(world_size: int) -> int:
        store = dist.HashStore()
        for rank in range(world_size):
            store.set(f"pid/{rank}", f"elsewhere|{1000 + rank}")
            store.add(f"alive/{rank}", 1)
        calls = [0]

        class Counting:
            def __getattr__(self, name: str) -> Any:
                method = getattr(store, name)

                def counted(*args: Any) -> Any:
                    calls[0] += 1
                    return method(*args)

                return counted

        watch = rank_watch._RankWatch(Counting(), 0, world_size, 60.0)  # noqa: SLF001
        watch.close()
        watch._thread.join()  # noqa: SLF001
        looks = []
        for _ in range(2):  # the first look reads the process ids too
            calls[0] = 0
            watch._checked = 0.0  # noqa: SLF001 - as a second later
            assert watch.gone() is None
            looks.append(calls[0])
        return looks

    assert round_trips(256) == round_trips(2), (round_trips(256), round_trips(2))
    assert max(round_trips(2)) <= 5


def test_a_rank_s_signs_of_life_go_on_after_the_store_failed_to_take_one() -> None:
    """A rank's counting thread ended at the first error of the store (one that did not answer in time, a
    file store on a network file system): the rank, alive and predicting, then said nothing more, and the
    others took it for gone ``rank_timeout_s`` later and stopped the run. It now counts on."""
    import torch.distributed as dist

    from marsunits.inference import rank_watch

    store = dist.HashStore()
    calls = [0]

    class Failing:
        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        def add(self, key: str, value: int) -> int:
            calls[0] += 1
            if calls[0] == 2:  # the thread's first
                raise dist.DistStoreError("timed out")
            return store.add(key, value)

    watch = rank_watch._RankWatch(Failing(), 1, 2, 1.0)  # noqa: SLF001 - counts every 1/6 s
    try:
        time.sleep(1.5)
        assert int(store.get("alive/1")) >= 3
    finally:
        watch.close()


def test_a_spawned_rank_killed_on_the_second_machine_is_named_by_its_rank_in_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``predict.py devices=2 num_nodes=2`` launched by hand with ``GROUP_RANK=1`` (Lightning takes the
    machine's number from ``NODE_RANK``, else ``GROUP_RANK``): its process 1, killed, is rank 3 of the run,
    which its other ranks' lines and logs name; it was called rank 1, a rank of the first machine."""
    from types import SimpleNamespace

    import lightning.fabric
    import torch.multiprocessing

    from marsunits.errors import MarsUnitsError
    from marsunits.inference import distributed

    def launch(self, function, *args):  # type: ignore[no-untyped-def]
        raise torch.multiprocessing.ProcessExitedException(
            "process 1 terminated with signal SIGKILL", 1, 4242, -signal.SIGKILL, "SIGKILL"
        )

    monkeypatch.setattr(lightning.fabric.Fabric, "launch", launch)
    monkeypatch.delenv("NODE_RANK", raising=False)
    monkeypatch.setenv("GROUP_RANK", "1")
    with pytest.raises(MarsUnitsError) as raised:
        distributed.launch(SimpleNamespace(device="cpu", devices=2, num_nodes=1))  # type: ignore[arg-type]
    assert str(raised.value).startswith("rank 3 of the run (process 4242)"), raised.value


def test_rank_0_waiting_for_the_others_to_read_its_word_still_shows_signs_of_life() -> None:
    """Rank 0 waits (at most ``read_wait_s``) for the other ranks to read its word (``_StoreBroadcast``).
    Its one wait on the TCP store held the store's client, which its counting thread shares: rank 0 showed
    no sign of life all that while, and a rank that had read the word and was predicting took rank 0 for
    gone (another rank slower to read it, or killed before it did). It now waits in short turns."""
    from datetime import timedelta
    from types import SimpleNamespace

    import torch.distributed as dist

    from marsunits.inference import distributed, rank_watch

    server = dist.TCPStore("127.0.0.1", 0, 2, True, timedelta(seconds=30), wait_for_workers=False)
    client = dist.TCPStore("127.0.0.1", server.port, 2, False, timedelta(seconds=30))
    watch = rank_watch._RankWatch(client, 0, 2, 1.2)  # noqa: SLF001 - counts every 0.2 s
    try:
        stops = SimpleNamespace(store=client, watch=None)  # the watch asked nothing of rank 1: it counts on
        broadcast = distributed._StoreBroadcast(stops, 0, 2, read_wait_s=3.0)  # type: ignore[arg-type]  # noqa: SLF001
        before = int(server.get("alive/0"))
        started = time.monotonic()
        assert broadcast("word") == "word"  # rank 1 never reads it
        assert time.monotonic() - started >= 2.9
        assert int(server.get("alive/0")) - before >= 8
    finally:
        watch.close()


def test_an_overwrite_run_into_a_new_folder_stopped_in_its_first_image_writes_its_reports(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``overwrite=true`` into a folder no run wrote before, stopped by SIGTERM in its first image: its
    summary.json said "manifest.csv, index.html and the folder's other reports are the earlier run's, as are
    its outputs" of a folder with none, and no manifest.csv listed the images not reached. With no earlier
    reports to keep, the run writes its own, as a run without overwrite does."""
    import json

    from marsunits.errors import TerminatedError
    from marsunits.inference import predict_folder, runner
    from marsunits.inference.options import PredictOptions

    inp, out = tmp_path / "in", tmp_path / "out"
    for i in range(2):
        save_rgb(inp / f"im{i}.png", 40, 48, seed=i)

    def stopped(self, f, item):  # type: ignore[no-untyped-def]
        raise TerminatedError

    monkeypatch.setattr(runner._Session, "process", stopped)
    opts = PredictOptions.from_config(
        make_cfg(tmp_path, ckpt, inp, out, "threads=1", "num_workers=0", "overwrite=true")
    )
    with pytest.raises(TerminatedError):
        predict_folder(opts)
    summary = json.loads((out / "summary.json").read_text())
    assert "earlier run" not in summary["text"], summary["text"]
    assert "earlier run" not in str(summary["no_contact_map_reason"])
    assert summary["exit_status"] == 143 and summary["exit_reasons"] == ["stopped"]
    assert summary["counts"]["not_reached"] == 2, summary["counts"]
    assert (out / "manifest.csv").is_file() and (out / "index.html").is_file()


def test_an_overwrite_run_failed_in_its_first_image_does_not_say_the_folder_is_as_it_was(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug that ends an ``overwrite=true`` run in its first image (here a TypeError out of the
    prediction): the run had marked the folder's settings record as an unfinished overwrite, and the image
    may be half replaced, yet its summary.json said "the folder is as it was". It says that the same
    command goes on with the run, predicting that image again."""
    import json

    from marsunits.inference import predict_folder, runner
    from marsunits.inference.output_settings import PENDING_KEY

    out, options = _two_images(tmp_path, ckpt)

    assert predict_folder(options()).exit_code == 0

    def buggy(self, f, item):  # type: ignore[no-untyped-def]
        raise TypeError("a bug")

    monkeypatch.setattr(runner._Session, "process", buggy)
    with pytest.raises(TypeError, match="a bug"):
        predict_folder(options("overwrite=true"))
    assert json.loads((out / "prediction_settings.json").read_text()).get(PENDING_KEY)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_status"] == 1 and summary["exit_reasons"] == ["failed"]
    assert "as it was" not in summary["text"], summary["text"]
    assert "run the same command again, which goes on with this run" in summary["text"], summary["text"]


@pytest.mark.slow
def test_a_sharded_run_goes_on_with_an_overwrite_stopped_part_way_skipping_what_it_finished(
    tmp_path: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ``overwrite=true`` run stopped after 2 of its 8 images, then the same command with ``devices=2``
    (two spawned gloo ranks): each rank skips the images of its shard that the stopped run finished (their
    contact files name it) and predicts the rest, and the record is finished, as one process does."""
    import json

    from marsunits.inference import predict_folder, runner
    from marsunits.inference.options import PredictOptions
    from marsunits.inference.output_settings import PENDING_KEY

    inp, out = _eight_images(tmp_path)

    def options(*extra: str) -> PredictOptions:
        return PredictOptions.from_config(make_cfg(tmp_path, ckpt, inp, out, "num_workers=0", *extra))

    assert predict_folder(options()).exit_code == 0
    real = runner._Session.process
    done: list[str] = []

    def stopped_after_two(self, f, item):  # type: ignore[no-untyped-def]
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(f.rel.as_posix())
        return real(self, f, item)

    with monkeypatch.context() as mp:
        mp.setattr(runner._Session, "process", stopped_after_two)
        with pytest.raises(KeyboardInterrupt):
            predict_folder(options("overwrite=true", "min_unit_area_px=0"))
    assert json.loads((out / "prediction_settings.json").read_text()).get(PENDING_KEY)
    assert predict_folder(options("overwrite=true", "min_unit_area_px=0", "devices=2")).exit_code == 0
    with open(out / "manifest.csv", newline="", encoding="utf-8") as fh:
        statuses = {row["path"]: row["status"] for row in csv.DictReader(fh)}
    assert statuses == {f"im{i}.png": "skipped" if f"im{i}.png" in done else "ok" for i in range(8)}
    assert PENDING_KEY not in json.loads((out / "prediction_settings.json").read_text())
