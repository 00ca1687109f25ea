"""A ``_target_`` that does not import (``data._target_=mypkg.MyDataModule`` before ``pip install -e`` of
one's package, a mistyped class or marsunits path, a module of one's own that imports something missing):
train.py refuses it in one line, exit 2, before Hydra makes the run folder, naming the option, what failed
and what to do. It printed Hydra's "Error getting object ... Are you sure that module 'mypkg' is
installed?" twice, then "Error executing job" and "Error locating target ... HYDRA_FULL_ERROR=1", exit 1,
and left a run folder with only Hydra's record and ``train.log``."""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import CONFIG_DIR
from marsunits.cli_overrides import sweep_refusal, value_refusal

REPO = CONFIG_DIR.parent

#: A run built from the configs' small model and nothing written to the checkout.
BASE = ["model=tiny", "logger=none"]

_numbers = itertools.count()


@pytest.fixture
def own_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A package of one's own on ``sys.path``, under a name of its own for each test (no module of an
    earlier test in ``sys.modules``): ``<name>.units.MyDataModule`` imports; ``<name>.broken`` imports a
    module that is not installed; ``<name>.raises`` raises a ValueError when imported."""
    name = f"own_units_{os.getpid()}_{next(_numbers)}"
    package = tmp_path / "site" / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "units.py").write_text(
        textwrap.dedent(
            """
            import lightning.pytorch as pl


            class MyDataModule(pl.LightningDataModule):
                def __init__(self, **settings):
                    super().__init__()
            """
        )
    )
    (package / "broken.py").write_text("import numpy\nimport not_installed_dependency_xyz\n")
    (package / "raises.py").write_text("raise ValueError('no config file beside me')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield name
    for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
        del sys.modules[module]


def _refused(*overrides: str) -> str | None:
    return value_refusal([*BASE, *overrides], CONFIG_DIR)


def test_a_target_that_cannot_be_imported_is_one_line_before_the_run_folder(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "SLURM_PROCID")}
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "data._target_=mypkg.MyDataModule", f"paths.log_dir={logs}"]
        + ["logger=none"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    said = [line for line in proc.stderr.splitlines() if line.strip() and "Warning" not in line]
    assert said == [
        "train.py: error: data._target_=mypkg.MyDataModule: no module named 'mypkg'; install the package "
        "that holds it (pip install -e <your package>), or fix the dotted path"
    ], proc.stderr[-3000:]
    assert "Error getting object" not in proc.stderr + proc.stdout
    assert not logs.exists(), sorted(logs.rglob("*"))


def test_a_missing_module_is_named_with_what_to_do(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        refused = _refused("data._target_=mypkg.MyDataModule")
    assert refused == (
        "data._target_=mypkg.MyDataModule: no module named 'mypkg'; install the package that holds it "
        "(pip install -e <your package>), or fix the dotted path"
    )
    # Imported quietly: Hydra's get_object logged "Error getting object ..." on the console first.
    assert not [r for r in caplog.records if "Error getting object" in r.getMessage()], caplog.text
    # A top-level name one letter off an installed one says which.
    refused = _refused("data._target_=marsunit.data.datamodule.MarsDataModule")
    assert refused is not None and "no module named 'marsunit' (did you mean 'marsunits'?)" in refused, (
        refused
    )


def test_a_missing_name_is_said_with_the_closest_one(own_package: str) -> None:
    refused = _refused(f"data._target_={own_package}.units.MyDatamodule")
    assert refused == (
        f"data._target_={own_package}.units.MyDatamodule: module '{own_package}.units' has no "
        f"'MyDatamodule' (did you mean 'MyDataModule'?); fix the dotted path, e.g. "
        f"data._target_={own_package}.units.MyDataModule"
    )
    refused = _refused(f"data._target_={own_package}.unit.MyDataModule")  # a module of the package
    assert refused is not None and f"module '{own_package}' has no 'unit' (did you mean 'units'?)" in refused
    assert refused.endswith(f"e.g. data._target_={own_package}.units.MyDataModule"), refused
    # marsunits' own paths: the closest existing name, as the path to give.
    refused = _refused("data._target_=marsunits.data.datamodule.MarsDataModul")
    assert refused == (
        "data._target_=marsunits.data.datamodule.MarsDataModul: module 'marsunits.data.datamodule' has no "
        "'MarsDataModul' (did you mean 'MarsDataModule'?); fix the dotted path, e.g. "
        "data._target_=marsunits.data.datamodule.MarsDataModule"
    )


def test_an_import_error_inside_ones_own_module_names_the_missing_module_and_its_importer(
    own_package: str, tmp_path: Path
) -> None:
    refused = _refused(f"data._target_={own_package}.broken.MyDataModule")
    assert refused is not None and "\n" not in refused
    assert refused.startswith(
        f"data._target_={own_package}.broken.MyDataModule: importing {own_package}.broken failed: "
    ), refused
    assert "no module named 'not_installed_dependency_xyz'" in refused, refused
    assert (
        f"line 2 of {tmp_path / 'site' / own_package}/broken.py imports 'not_installed_dependency_xyz'"
        in refused
    )
    assert f"no module named '{own_package}" not in refused  # their module is there
    # Any other error while it is imported: its type, message and place.
    refused = _refused(f"data._target_={own_package}.raises.MyDataModule")
    assert refused is not None and refused.startswith(
        f"data._target_={own_package}.raises.MyDataModule: importing {own_package}.raises raised "
        "ValueError: no config file beside me"
    ), refused
    assert f"(line 1 of {tmp_path / 'site' / own_package}/raises.py)" in refused, refused


def test_every_target_of_the_config_is_checked(own_package: str) -> None:
    refused = _refused(f"+callbacks.mine._target_={own_package}.units.NoSuchCallback")
    assert refused is not None and refused.startswith(
        f"callbacks.mine._target_={own_package}.units.NoSuchCallback: module '{own_package}.units' has no "
        "'NoSuchCallback'"
    ), refused
    refused = _refused("logger=csv", "logger.csv._target_=lightning.pytorch.loggers.CSVLoger")
    assert refused is not None and refused.startswith(
        "logger.csv._target_=lightning.pytorch.loggers.CSVLoger"
    )
    assert refused.endswith("e.g. logger.csv._target_=lightning.pytorch.loggers.CSVLogger"), refused
    refused = _refused("data._target_=marsunits.data")  # a module, not a class
    assert refused is not None and "marsunits.data is a module, not a class or function" in refused


def test_a_target_of_ones_own_that_imports_is_no_refusal(own_package: str) -> None:
    assert _refused(f"data._target_={own_package}.units.MyDataModule") is None
    assert _refused(f"+callbacks.mine._target_={own_package}.units.MyDataModule") is None
    assert _refused() is None


def test_a_target_every_trial_of_a_grid_shares_is_refused_once(tmp_path: Path) -> None:
    argv = ["-m", *BASE, "model.lr=1e-3,2e-3", "data._target_=mypkg.MyDataModule"]
    refused = sweep_refusal([*argv, f"paths.log_dir={tmp_path / 'logs'}"], CONFIG_DIR)
    assert refused == (
        "data._target_=mypkg.MyDataModule: no module named 'mypkg'; install the package that holds it "
        "(pip install -e <your package>), or fix the dotted path (in every trial of this sweep: none was "
        "started)"
    )
