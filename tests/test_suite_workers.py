"""The suite runs on pytest-xdist workers (``-n auto`` in pyproject.toml): what conftest.py does for that."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import conftest

HERE = Path(__file__).resolve().parent


def _beside_the_conftest(folder: Path) -> None:
    """A copy of the project's conftest.py in ``folder``, for a pytest run of test modules written there."""
    (folder / "conftest.py").write_text((HERE / "conftest.py").read_text(encoding="utf-8"), encoding="utf-8")


#: What a pytest run started by a test must not inherit from the worker it runs in: the worker's share of
#: the CPUs and its worker count (the nested run is none of the suite's workers), and a shell's ``-n auto``.
_WORKER_VARIABLES = ("OMP_NUM_THREADS", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_AUTO_NUM_WORKERS")


def _pytest_beside_the_conftest(
    folder: Path, modules: dict[str, str], flags: list[str], **env: str
) -> subprocess.CompletedProcess[str]:
    """Run pytest with ``flags`` on ``modules`` (file name: text), written in ``folder`` beside its copy of
    the project's conftest (:func:`_beside_the_conftest`, made first), with no ini file of the project's, the
    environment without :data:`_WORKER_VARIABLES`, UTF-8 output, and ``env`` added."""
    for name, text in modules.items():
        (folder / name).write_text(text, encoding="utf-8")
    environment = {k: v for k, v in os.environ.items() if k not in _WORKER_VARIABLES}
    environment.update(PYTHONIOENCODING="utf-8", **env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *flags]
        + ["--rootdir", str(folder), "-c", os.devnull, *(str(folder / name) for name in modules)],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
        cwd=folder,
    )


#: A test module that logs a Latin-1 file name as Python holds it (a lone surrogate) and warns with it,
#: as the tests of run folders named in Latin-1 bytes do.
SURROGATE_TESTS = """
import logging
import os
import warnings


def test_logs_and_warns_a_latin1_name():
    name = os.fsdecode(b"caf\\xe9")
    logging.getLogger("marsunits").warning("run folder %s", name)
    warnings.warn(f"cannot write {name}", UserWarning)


def test_threads():
    worker = os.environ["PYTEST_XDIST_WORKER"]
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    with open(os.path.join(os.environ["THREADS_DIR"], "threads-" + worker + ".txt"), "w") as file:
        file.write(threads)
"""


def test_a_latin1_name_in_output_or_a_warning_does_not_stop_the_workers(tmp_path: Path) -> None:
    """pytest-xdist sends each report and warning from its worker as UTF-8: a surrogate in captured output
    or a warning stopped the whole run with an INTERNALERROR and lost the tests after it. With the
    project's conftest both tests pass, and a worker got its share of the CPUs as OpenMP threads."""
    _beside_the_conftest(tmp_path)
    ran = _pytest_beside_the_conftest(
        tmp_path,
        {"test_names.py": SURROGATE_TESTS},
        ["-n", "2", "-rA", "-W", "always"],
        THREADS_DIR=str(tmp_path),
    )
    assert ran.returncode == 0 and "INTERNALERROR" not in ran.stdout, ran.stdout + ran.stderr
    assert "2 passed" in ran.stdout and r"run folder caf\xe9" in ran.stdout, ran.stdout  # the captured output
    assert r"cannot write caf\xe9" in ran.stdout, ran.stdout  # the warnings summary
    (threads,) = tmp_path.glob("threads-gw*.txt")
    assert threads.read_text() == str(max(1, conftest._usable_cpus() // 2))


def _auto_workers(markexpr: str = "not slow and not gpu") -> int:
    """What ``-n auto`` starts under ``-m markexpr`` (pyproject.toml's by default): conftest's hook, given the
    only part of pytest's config it reads."""
    config = SimpleNamespace(option=SimpleNamespace(markexpr=markexpr))
    return conftest.pytest_xdist_auto_num_workers(config)  # type: ignore[arg-type]


def test_auto_starts_one_worker_per_usable_cpu_up_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)  # a shell's own count: the next test
    assert _auto_workers() == max(1, min(len(os.sched_getaffinity(0)), conftest.MAX_WORKERS))


@pytest.mark.parametrize(
    ("markexpr", "selects_gpu_tests"),
    [
        ("gpu", True),
        ("gpu or slow", True),
        ("slow or gpu", True),
        ("gpu and not slow", True),
        ("gpu and slow", True),  # only tests marked both, but their gpu mark is what selects them
        ("not slow", True),  # a test marked gpu alone is not slow
        ("gpu(devices=2)", True),  # a gpu mark with arguments
        ("", True),  # -m "": no selection by mark, every test
        ("not gpu", False),
        ("not slow and not gpu", False),  # pyproject.toml's
        ("slow", False),
        ("not (gpu or slow)", False),
        ("slow or not gpu", False),
        ("gpu and not gpu", False),
    ],
)
def test_auto_starts_one_worker_where_the_mark_expression_can_select_gpu_tests(
    monkeypatch: pytest.MonkeyPatch, markexpr: str, selects_gpu_tests: bool
) -> None:
    """``pytest -m gpu`` ran the GPU tests on one worker per CPU (up to 8), all on the one GPU, each
    training with it at once: where the ``-m`` expression can select a test marked ``gpu`` (alone, or by
    that mark), ``-n auto`` starts one worker; elsewhere one per CPU."""
    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    monkeypatch.setattr(conftest, "_usable_cpus", lambda: 6)
    monkeypatch.setattr(conftest, "_gpu_visible", lambda: True)  # what a GPU machine shows
    assert _auto_workers(markexpr) == (1 if selects_gpu_tests else 6)


def test_without_a_gpu_the_mark_expression_keeps_a_worker_per_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a machine without a GPU the gpu tests skip at once: ``-m "not slow"`` (which selects them) and
    ``-m gpu`` keep one worker per CPU instead of running the fast suite on one."""
    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    monkeypatch.setattr(conftest, "_usable_cpus", lambda: 6)
    monkeypatch.setattr(conftest, "_gpu_visible", lambda: False)
    assert _auto_workers("not slow") == 6
    assert _auto_workers("gpu") == 6


def test_cuda_visible_devices_left_empty_hides_the_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert conftest._gpu_visible() is False


def test_auto_starts_one_worker_for_a_mark_expression_pytest_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    """A malformed ``-m`` is refused by pytest itself (on the workers, at collection): the hook neither fails
    before it nor starts a worker per CPU to say it."""
    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    monkeypatch.setattr(conftest, "_usable_cpus", lambda: 6)
    monkeypatch.setattr(conftest, "_gpu_visible", lambda: True)  # what a GPU machine shows
    assert _auto_workers("gpu and") == 1
    assert _auto_workers("(slow") == 1


def test_a_gpu_run_keeps_an_asked_worker_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """``PYTEST_XDIST_AUTO_NUM_WORKERS`` is still what ``-n auto`` starts under ``-m gpu``: a machine with
    several GPUs may ask for more. (``-n 4`` never asks the hook.)"""
    monkeypatch.setattr(conftest, "_usable_cpus", lambda: 6)
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "3")
    assert _auto_workers("gpu") == 3


#: Two tests marked ``gpu`` that write down how many workers their run has.
GPU_TESTS = """
import os

import pytest


@pytest.mark.gpu
@pytest.mark.parametrize("n", [1, 2])
def test_on_the_gpu(n):
    with open(os.path.join(os.environ["COUNT_DIR"], "count-" + str(n) + ".txt"), "w") as file:
        file.write(os.environ["PYTEST_XDIST_WORKER_COUNT"])
"""


def test_pytest_m_gpu_runs_on_one_worker(tmp_path: Path) -> None:
    """``pytest -n auto -m gpu`` (pyproject.toml's ``-n auto``) starts one pytest-xdist worker: the hook reads
    the ``-m`` pytest parsed from the command line, on a machine that shows a GPU (the copied conftest is told
    it does). (On a machine of one usable CPU this holds anyway.)"""
    _beside_the_conftest(tmp_path)
    with (tmp_path / "conftest.py").open("a", encoding="utf-8") as copied:  # as on a GPU machine
        copied.write("\n\ndef _gpu_visible() -> bool:\n    return True\n")
    ran = _pytest_beside_the_conftest(
        tmp_path,
        {"test_gpu_marked.py": GPU_TESTS},
        ["-n", "auto", "-m", "gpu", "-o", "markers=gpu"],
        COUNT_DIR=str(tmp_path),
    )
    assert ran.returncode == 0 and "2 passed" in ran.stdout, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert {path.read_text() for path in tmp_path.glob("count-*.txt")} == {"1"}


def test_auto_keeps_pytest_xdist_s_own_setting_of_the_worker_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """``PYTEST_XDIST_AUTO_NUM_WORKERS`` is pytest-xdist's documented setting of what ``-n auto`` starts (a CI
    job or a shell that wants fewer workers, one for a machine that is busy): the project's count replaced
    xdist's own hook, which reads it, so it was ignored and one worker per CPU started all the same."""
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "1")
    assert _auto_workers() == 1
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "12")  # asked for: more than the cap, as xdist gives
    assert _auto_workers() == 12


def test_the_conftest_loads_without_pytest_xdist(tmp_path: Path) -> None:
    """Without pytest-xdist (``-p no:xdist``, or a virtual environment made before it joined the dev
    dependencies, with ``-o addopts=`` for its ``-n``) pytest refused the project's conftest: its
    ``pytest_xdist_auto_num_workers`` is xdist's hook, unknown to pytest alone, and every test was lost to
    an INTERNALERROR ("unknown hook"). The hook is optional: the tests run in one process."""
    _beside_the_conftest(tmp_path)
    ran = _pytest_beside_the_conftest(
        tmp_path, {"test_one.py": "def test_one():\n    pass\n"}, ["-p", "no:xdist"]
    )
    assert ran.returncode == 0 and "1 passed" in ran.stdout, ran.stdout[-3000:] + ran.stderr[-3000:]


def test_tests_of_a_checkout_run_with_another_checkouts_package_say_so(tmp_path: Path) -> None:
    """The tests import ``marsunits`` from wherever Python finds it: run in a second clone with the first
    one's virtual environment (an editable install of the first), they tested the first clone's code and
    passed, without a word, where ``train.py`` says so on stderr. The run goes on (the copy may be the one
    meant, an installed wheel), with a warning naming both copies and the fix; a checkout whose tests import
    its own ``src/marsunits`` is told nothing."""
    checkout = tmp_path / "clone"
    (checkout / "src" / "marsunits").mkdir(parents=True)
    (checkout / "src" / "marsunits" / "__init__.py").write_text("", encoding="utf-8")
    (checkout / "tests").mkdir()
    _beside_the_conftest(checkout / "tests")
    ran = _pytest_beside_the_conftest(
        checkout / "tests", {"test_one.py": "def test_one():\n    pass\n"}, ["-n", "0"]
    )
    out = ran.stdout + ran.stderr
    assert ran.returncode == 0 and "1 passed" in ran.stdout, out[-3000:]
    import marsunits

    running = Path(marsunits.__file__).resolve().parent
    assert f"the tests import the marsunits package at {running}, not this checkout's" in out, out[-3000:]
    assert f"PYTHONPATH={checkout / 'src'}" in out, out[-3000:]
    assert conftest.another_checkouts_package() is None  # this run tests this checkout's own package


#: A test module whose skip and expected failure give a reason naming a Latin-1 file name.
SURROGATE_REASONS = """
import os

import pytest


def test_skipped():
    pytest.skip("no camera file for " + os.fsdecode(b"caf\\xe9.png"))


def test_expected_to_fail():
    pytest.xfail("no camera file for " + os.fsdecode(b"caf\\xe9.png"))


def test_passes():
    pass
"""


def test_a_latin1_name_in_a_skip_or_xfail_reason_does_not_stop_the_workers(tmp_path: Path) -> None:
    """A skip's or an expected failure's reason is sent apart from the captured output and the failure's
    text (the skip's as a (file, line, reason) tuple, whose text form escapes the surrogate, so the check
    of the text passed it by): a Latin-1 file name in it crashed the worker ("no tests ran", an
    INTERNALERROR). Both reasons are escaped as the output is."""
    _beside_the_conftest(tmp_path)
    ran = _pytest_beside_the_conftest(tmp_path, {"test_reasons.py": SURROGATE_REASONS}, ["-n", "2", "-rsx"])
    assert ran.returncode == 0 and "INTERNALERROR" not in ran.stdout, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert "1 passed, 1 skipped, 1 xfailed" in ran.stdout, ran.stdout[-3000:]
    assert ran.stdout.count(r"no camera file for caf\xe9.png") == 2, ran.stdout[-3000:]  # the short summary


#: Test modules that name a Latin-1 file name as they are collected: one skipped as a whole, one that fails
#: to import; and one that passes.
SURROGATE_MODULES = {
    "test_skipped_module.py": """
import os

import pytest

pytest.skip("no camera file for " + os.fsdecode(b"caf\\xe9.png"), allow_module_level=True)


def test_never_collected():
    pass
""",
    "test_unimportable.py": """
import os

raise ImportError("no camera module for " + os.fsdecode(b"caf\\xe9"))
""",
    "test_passing.py": "def test_passes():\n    pass\n",
}


def test_a_latin1_name_in_a_module_skip_or_an_import_error_does_not_stop_the_workers(tmp_path: Path) -> None:
    """A test module's report of its collection is sent from its worker as the tests' reports are: a
    module skipped as a whole (``pytest.skip(..., allow_module_level=True)``) or failing to import with a
    Latin-1 file name in the reason or the error stopped the run with an INTERNALERROR ("strings must be
    utf-8 encodable", "no tests ran"), the other modules' tests lost. Both are escaped as a test's are."""
    _beside_the_conftest(tmp_path)
    ran = _pytest_beside_the_conftest(
        tmp_path, SURROGATE_MODULES, ["-n", "2", "-rsE", "--continue-on-collection-errors"]
    )
    assert "INTERNALERROR" not in ran.stdout, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert ran.returncode == 1, ran.stdout[-3000:] + ran.stderr[-3000:]  # the collection error: a failure
    assert "1 passed, 1 skipped, 1 error" in ran.stdout, ran.stdout[-3000:]
    assert r"no camera file for caf\xe9.png" in ran.stdout, ran.stdout[-3000:]  # the skip's reason
    assert r"no camera module for caf\xe9" in ran.stdout, ran.stdout[-3000:]  # the import error


#: Two tests that share a process: the first leaves Lightning's rank at 1, as an in-process DDP set-up or a
#: first import of Lightning under ``SLURM_PROCID=1`` does.
RANK_TESTS = """
from lightning_utilities.core.rank_zero import rank_zero_only


def test_a_leaves_lightning_on_rank_1():
    rank_zero_only.rank = 1


def test_b_starts_on_rank_0():
    assert rank_zero_only.rank == 0
"""


def test_a_test_that_leaves_lightning_on_another_rank_does_not_move_the_next(tmp_path: Path) -> None:
    """``rank_zero_only.rank`` is process-wide and Lightning never sets it back: under pytest-xdist a
    test that left it at 1 made a later test of the same worker skip its rank-0-only writes (a CI run failed
    ``test_a_resume_into_a_new_folder_keeps_the_best_model_so_far`` this way). conftest sets it back."""
    _beside_the_conftest(tmp_path)
    ran = _pytest_beside_the_conftest(tmp_path, {"test_rank.py": RANK_TESTS}, ["-n", "0"])
    assert ran.returncode == 0 and "2 passed" in ran.stdout, ran.stdout + ran.stderr
