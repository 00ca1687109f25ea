"""Shared test fixtures: no network, a composed training config pointed at tmp_path."""

from __future__ import annotations

import os
import socket
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from _pytest.mark.expression import Expression

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The user documentation: the README (set-up, a first run, results) and the reference pages under docs/.
USER_DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def user_docs_text() -> str:
    """README.md and every page of docs/, one text (what a user reads; tests of what they say read this)."""
    return "\n".join(path.read_text(encoding="utf-8") for path in USER_DOCS)


CONFIG_DIR = REPO_ROOT / "configs"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
#: Variables of a launcher (torchrun, SLURM) or a manual multi-node launch that a workstation's shell must
#: not hold for tests of how a run is launched.
LAUNCH_VARIABLES = (
    "TORCHELASTIC_RUN_ID",
    "WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "NODE_RANK",
    "GROUP_RANK",
    "LOCAL_RANK",
    "SLURM_NTASKS",
    "SLURM_JOB_ID",
    "SLURM_JOB_NAME",
    "SLURM_PROCID",
    "SLURM_STEP_ID",
    "SLURM_STEPID",
    "SLURM_STEP_NUM_TASKS",
)

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")

#: Most pytest-xdist workers worth starting (``-n auto``): each imports torch and holds up to ~1.4 GB, and
#: the suite's longest tests (~10-15 s) bound its time once several run at once.
MAX_WORKERS = 8


def _usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, which a container or ``taskset`` narrows), not the
    machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


#: The mark of the tests that need a CUDA device (pyproject.toml's markers).
GPU_MARK = "gpu"
#: Most other marks a ``-m`` expression may name for :func:`_can_select_gpu_tests` to try each combination of
#: (2^n evaluations); past it the expression is taken to select the gpu tests.
MOST_MARKS_TRIED = 12


def _can_select_gpu_tests(markexpr: str) -> bool:
    """Whether ``-m markexpr`` can select a test marked :data:`GPU_MARK`: one marked with it alone (``gpu``,
    ``not slow``), or one that its gpu mark selects where the test's other marks did not (``gpu and slow``).
    Judged with pytest's own parser and evaluation of ``-m``, over every combination of the other marks the
    expression names. An expression that selects a gpu test only for its other marks (``slow``: a test
    marked both) is not counted: the project's gpu tests carry no other mark that ``-m`` names. An empty
    expression (``-m ""``) selects every test; one pytest cannot parse is taken to select them too (pytest
    refuses it on its own)."""
    if not markexpr.strip():
        return True
    try:
        expression = Expression.compile(markexpr)
    except Exception:  # SyntaxError, or an older pytest's ParseError
        return True
    others: list[str] = []  # the other marks, in the order the evaluations first asked about them
    marks: set[str] = set()

    def present(name: str, /, **kwargs: str | int | bool | None) -> bool:
        if name != GPU_MARK and name not in others:
            others.append(name)  # absent until a later combination (a higher bit of ``tried``) has it
        return name in marks

    tried = 0  # bit i: others[i] present; a mark found later was absent in every combination before it
    while tried < 2 ** len(others):
        if len(others) > MOST_MARKS_TRIED:
            return True
        marks = {name for bit, name in enumerate(others) if tried >> bit & 1}
        without_gpu = expression.evaluate(present)
        marks.add(GPU_MARK)
        if expression.evaluate(present) and (tried == 0 or not without_gpu):
            return True
        tried += 1
    return False


def _gpu_visible() -> bool:
    """Whether this machine shows the tests a CUDA GPU, told without importing torch (seconds, in pytest's
    controller process): the NVIDIA driver lists its GPUs under ``/proc/driver/nvidia/gpus`` (``/dev/nvidia0``
    where that is not mounted), and ``CUDA_VISIBLE_DEVICES`` empty or ``-1`` hides them all."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return False
    listed = Path("/proc/driver/nvidia/gpus")
    return (listed.is_dir() and any(listed.iterdir())) or Path("/dev/nvidia0").exists()


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: without xdist (-p no:xdist) pytest refused it
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (the suite's default, pyproject.toml): one worker per usable CPU, at most
    :data:`MAX_WORKERS`. pytest-xdist's own count is the physical cores when psutil is installed, which is
    one on a 2-vCPU machine whose two CPUs are one core's hyper-threads. One worker where the ``-m``
    expression can select the gpu tests (``-m gpu``, ``-m "gpu or slow"``, ``-m "not slow"``; not
    ``-m "not gpu"``, see :func:`_can_select_gpu_tests`) on a machine that shows a GPU (:func:`_gpu_visible`):
    a worker per CPU ran them all at once on the one GPU. pytest-xdist's own setting,
    ``PYTEST_XDIST_AUTO_NUM_WORKERS`` (a number), is kept as its hook keeps it, for a gpu run too: this one
    runs in its place. ``-n 4`` does not ask this hook."""
    asked = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "").strip()
    if asked.isdigit():
        return int(asked)
    if _gpu_visible() and _can_select_gpu_tests(config.option.markexpr):
        return 1  # without a GPU the gpu tests skip at once: -m "not slow" keeps its worker per CPU
    return max(1, min(_usable_cpus(), MAX_WORKERS))


# Under pytest-xdist each worker gets its share of the CPUs as torch (OpenMP) threads, before torch is
# imported; torch's default, every CPU per process, ran 4 threads on 2 cores with two workers. A shell's
# own OMP_NUM_THREADS is kept. Subprocesses the tests start (train.py, predict.py) inherit it.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    _share = _usable_cpus() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _share)))


def another_checkouts_package() -> str | None:
    """A line saying that the tests import a ``marsunits`` other than this checkout's ``src/marsunits``, or
    None where they import that one (or the checkout has none). Told from where Python would import it,
    without importing it.

    A second clone run with the first one's virtual environment (an editable install of the first) tested
    the first clone's code, without a word; ``train.py`` and ``predict.py`` say so on stderr
    (:func:`marsunits.cli_launch.note_another_copy_of_the_package`)."""
    import importlib.util

    own = REPO_ROOT / "src" / "marsunits"
    spec = importlib.util.find_spec("marsunits")
    if spec is None or spec.origin is None or not (own / "__init__.py").is_file():
        return None
    running = Path(spec.origin).resolve().parent
    if running == own.resolve():
        return None
    return (
        f"the tests import the marsunits package at {running}, not this checkout's {own}: they test that "
        f"copy, and changes under {own} are not tested. PYTHONPATH={REPO_ROOT / 'src'} before the command, "
        f"or `pip install -e {REPO_ROOT}`, tests this checkout"
    )


def pytest_configure(config: pytest.Config) -> None:
    """Warn, once a run (not once a pytest-xdist worker), where :func:`another_checkouts_package` says the
    tests import another copy of the package: the run goes on, as the copy may be the one meant (an
    installed wheel)."""
    note = another_checkouts_package()
    if note is not None and not hasattr(config, "workerinput"):
        config.issue_config_time_warning(pytest.PytestConfigWarning(note), stacklevel=2)


class NetworkBlockedError(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests never touch the network: any outgoing connection to a non-loopback address fails loudly."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1")):
            return real_connect(self, address)  # type: ignore[arg-type]
        if self.family == socket.AF_UNIX:
            return real_connect(self, address)  # type: ignore[arg-type]
        raise NetworkBlockedError(f"test tried to reach the network: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield


def _utf8_safe(text: str) -> str:
    """``text`` with any lone surrogate (a file name's undecodable byte, as ``os.fsdecode`` keeps it) written
    as a backslash escape, so that it can be encoded in UTF-8."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _utf8_safe_report(report: pytest.TestReport | pytest.CollectReport) -> None:
    """``report`` with any surrogate escaped (:func:`_utf8_safe`), in place: its captured sections, its
    failure's text, its skip's or expected failure's reason. Parts without one are left as they are."""
    report.sections = [(title, _utf8_safe(content)) for title, content in report.sections]
    if isinstance(report.longrepr, tuple):  # a skip's (file, line, reason): its text form escapes them
        path, line, reason = report.longrepr
        report.longrepr = (_utf8_safe(path), line, _utf8_safe(reason))
    elif report.longrepr is not None:
        text = str(report.longrepr)
        if _utf8_safe(text) != text:
            report.longrepr = _utf8_safe(text)
    if isinstance(report, pytest.TestReport) and isinstance(getattr(report, "wasxfail", None), str):
        report.wasxfail = _utf8_safe(report.wasxfail)  # an expected failure's reason


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Reports stay UTF-8: tests of Latin-1 file names capture output holding surrogates, and pytest-xdist
    sends each report from its worker as UTF-8, so such a report stopped the whole run with an
    INTERNALERROR (``strings must be utf-8 encodable``). Only the captured sections, a failure's text and
    a skip's or an expected failure's reason are touched, and only where they hold a surrogate."""
    outcome = yield
    _utf8_safe_report(outcome.get_result())  # type: ignore[attr-defined]


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """A module's report of its collection stays UTF-8, for the reason of :func:`pytest_runtest_makereport`
    (pytest-xdist sends it from the worker too): a module skipped as a whole
    (``pytest.skip(..., allow_module_level=True)``) or failing to import with a Latin-1 file name in its
    reason or error stopped the run with an INTERNALERROR, the other modules' tests lost."""
    outcome = yield
    _utf8_safe_report(outcome.get_result())  # type: ignore[attr-defined]


@pytest.hookimpl(tryfirst=True)
def pytest_warning_recorded(warning_message: warnings.WarningMessage) -> None:
    """A warning whose text holds a surrogate (a Latin-1 run folder's name in Lightning's or the project's
    warning) is passed on with it escaped, for the reason of :func:`pytest_runtest_makereport`: pytest-xdist
    sends each recorded warning from its worker as UTF-8. Runs before the other implementations of the hook
    (a historic hook: it cannot wrap them)."""
    text = str(warning_message.message)
    if _utf8_safe(text) != text:
        category = type(warning_message.message)
        try:
            warning_message.message = category(_utf8_safe(text))
        except TypeError:  # a warning class whose constructor takes other arguments
            warning_message.message = UserWarning(_utf8_safe(text))


@pytest.fixture(autouse=True)
def _lightning_rank_restored() -> Iterator[None]:
    """Each test starts on Lightning's rank 0. Lightning keeps the process's rank in ``rank_zero_only.rank``,
    set when it is first imported (from ``RANK``, ``LOCAL_RANK``, ``SLURM_PROCID``) or by a DDP strategy's
    set-up, and never set back: a test that left it at 2 (a spawned rank's, on a second machine) left every
    later test of its process on rank 2, where the rank-0-only writes are skipped (a resumed run's
    ``best.ckpt`` was not copied). Which tests share a process depends on pytest-xdist's distribution, so a
    test failed in one run and passed in the next. After each test the rank is set back to what it was
    before, or to 0 where the test imported Lightning first."""
    module = sys.modules.get("lightning_utilities.core.rank_zero")
    before = getattr(module.rank_zero_only, "rank", None) if module is not None else None
    yield
    module = sys.modules.get("lightning_utilities.core.rank_zero")
    if module is not None:
        module.rank_zero_only.rank = before if before is not None else 0


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Run a module on one torch thread: tiny tensors gain nothing from intra-op threads, and on a shared
    2-core machine the extra threads only oversubscribe. Use with ``pytest.mark.usefixtures``."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def small_task():
    """A small random-weight ``SegmentationTask`` in eval mode, the same weights every call (seed 0): Unet on
    timm's ``mobilenetv3_small_050`` down to 1/8, decoder (32, 16, 8), 3 classes; fast on a CPU. Inputs
    must be multiples of 8."""
    import torch

    from marsunits.task import SegmentationTask

    torch.manual_seed(0)
    return SegmentationTask(
        encoder="mobilenetv3_small_050", encoder_weights=None, encoder_depth=3, decoder_channels=[32, 16, 8]
    ).eval()


def tiny_task(tile_size: int):
    """A ``SegmentationTask`` of the tiny network of ``configs/model/tiny.yaml`` (seed 0, random weights, no
    scheduler), 3 input channels, ``tile_size`` recorded as its training crop, dataset ``test``."""
    import torch
    from omegaconf import OmegaConf

    from marsunits.task import SegmentationTask

    tiny = OmegaConf.load(CONFIG_DIR / "model" / "tiny.yaml")
    torch.manual_seed(0)
    return SegmentationTask(
        arch="unet",
        encoder=tiny.encoder,
        encoder_weights=None,
        encoder_depth=tiny.encoder_depth,
        decoder_channels=list(tiny.decoder_channels),
        in_channels=3,
        tile_size=tile_size,
        dataset="test",
        scheduler="none",
    )


def one_step_trainer(**options):
    """A silent CPU Lightning ``Trainer`` for one optimiser step (no logger, checkpointing, progress bar or
    model summary): fit it, then ``save_checkpoint`` writes a real checkpoint. ``options``: more Trainer
    arguments, or others than these (``max_steps``)."""
    from lightning import Trainer

    return Trainer(
        **{
            "max_steps": 1,
            "logger": False,
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "accelerator": "cpu",
            **options,  # max_steps=-1 with max_epochs: a length set in epochs
        }
    )


def run_summary(**changes: object) -> dict[str, object]:
    """A predict run's summary (``summary.json``) as ``summary_paragraph`` reads it: 2 of 2 images mapped,
    all ``smooth_volcanic``, on the CPU (``m.ckpt``, tile 64, overlap 0.125), no contacts, into ``out``.
    ``changes``: keys to replace or add. A new dict each call, so a test may change it."""
    return {
        "counts": {"ok": 2, "total": 2, "skipped": 0, "error": 0},
        "unit_fractions": {"smooth_volcanic": 1.0},
        "megapixels_per_second": 0.1,
        "seconds": 1.0,
        "megapixels": 0.001,
        "checkpoint": "m.ckpt",
        "device": "cpu",
        "tile": 64,
        "overlap": 0.125,
        "n_contacts": 0,
        "contact_length_px": 0.0,
        "output_dir": "out",
        **changes,
    }


def compose_config(config_name: str, run_dir: Path, overrides: list[str] | None = None):
    """Compose a real Hydra config (``train`` or ``predict``) as ``@hydra.main`` would, rooted at ``run_dir``.

    ``paths.output_dir`` and ``paths.log_dir`` point into ``run_dir`` so nothing is written to the repository.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    run_dir.mkdir(parents=True, exist_ok=True)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            config_name=config_name,
            overrides=[*(overrides or []), f"hydra.run.dir={run_dir}"],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        if "paths" in cfg:
            cfg.paths.root_dir = str(REPO_ROOT)
            cfg.paths.output_dir = str(run_dir)
            cfg.paths.log_dir = str(run_dir / "logs")
            cfg.paths.data_root = str(SHARED_DATA)
        del cfg.hydra
    return cfg


def train_py_checks(
    cwd: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str]:
    """What ``train.py <args>`` does with its command line before Hydra starts (its ``__main__`` up to
    ``main()``), in this process: its exit status there (0: it goes on to Hydra) and what it said on stderr.

    A ``train.py`` start costs seconds of imports (torch, Lightning, every ``_target_`` the checks read); a
    test of a refusal keeps one start of train.py itself per behaviour (the entry point wires the check in)
    and checks its other cases here. The environment is that of ``test_train._train_py`` (no outer
    launcher's rank variables); the run folder claim taken is released. The steps are train.py's own, line
    for line (``test_train.py::test_train_py_checks_takes_train_py_s_own_steps``)."""
    from marsunits import cli_overrides
    from marsunits.run_folder_claim import release_held_claims
    from marsunits.run_resume import PINNED_RUN_NAME_ENV

    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID", PINNED_RUN_NAME_ENV):
        monkeypatch.delenv(name, raising=False)  # and whatever the checks set is undone after the test
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [str(REPO_ROOT / "train.py"), *args])
    capsys.readouterr()
    status = 0
    try:
        cli_overrides.note_another_copy_of_the_package(REPO_ROOT, prog="train.py")
        cli_overrides.warn_sweeps_taken_as_one_value(sys.argv[1:], prog="train.py")
        sys.argv[1:] = cli_overrides.quoted_path_overrides(
            cli_overrides.home_expanded_overrides(sys.argv[1:])
        )
        cli_overrides.exit_on_unknown_option(REPO_ROOT / "configs", "train", prog="train.py")
    except SystemExit as stopped:
        status = stopped.code if isinstance(stopped.code, int) else 1
    finally:
        release_held_claims()
    return status, capsys.readouterr().err
