"""A ``train.py`` sweep (``-m``, ``hparams_search=optuna``) before Hydra starts it: the refusal every trial
meets (:func:`sweep_refusal`: its trials composed and checked, all of them or a sample), its claim on the
sweep folder (:func:`claim_sweep_folder`), and an Optuna study on packages older than marsunits asks for
(:func:`study_package_refusal`).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf, open_dict

from marsunits.cli_argv import CONFIG_FLAGS, hydra_quoted, override_arguments, with_override
from marsunits.cli_compose import overrides_parser
from marsunits.cli_values import primary_config, run_folder_guess
from marsunits.errors import some_of

__all__ = [
    "MAX_CHECKED_TRIALS",
    "STUDY_PACKAGE_FLOORS",
    "claim_sweep_folder",
    "study_package_refusal",
    "sweep_refusal",
]

#: The oldest releases an Optuna study runs on, pyproject.toml's floors (a test holds them equal), what an
#: older one does, and pyproject.toml's requirement to install; DEVELOPERS.md ("Dependency floors") gives
#: the tests behind each.
STUDY_PACKAGE_FLOORS = {
    "hydra-optuna-sweeper": (
        "1.3",
        "older ones lack max_failure_rate, which hparams_search=optuna sets",
        "hydra-optuna-sweeper>=1.3",
    ),
    "sqlalchemy": (
        "1.4.23",
        "with an older one the alembic pip pairs it with cannot be imported, and so neither can Optuna",
        "sqlalchemy>=1.4.23,<2",
    ),
}


def study_package_refusal(argv: Sequence[str] | None = None) -> str | None:
    """The refusal of an Optuna study (``hparams_search=optuna`` or ``hydra/sweeper=optuna`` in ``argv``;
    any study where ``argv`` is None, as the sweeper asks when it starts) in an environment whose
    hydra-optuna-sweeper or SQLAlchemy is older than :data:`STUDY_PACKAGE_FLOORS` (installed beside
    marsunits, not by its ``pip install``), or None. One line naming the installed version and the
    ``pip install`` that fixes it: Hydra refused the study with sweeper 1.2 in several lines ("Key
    'max_failure_rate' not in 'OptunaSweeperConf'"), and with SQLAlchemy 1.4.22 the first ``import optuna``
    ended in alembic's ``TypeError`` traceback. Read from the packages' metadata: nothing is imported."""
    from packaging.version import InvalidVersion, Version

    if argv is not None and not any(
        a.lstrip("+").startswith(("hparams_search=optuna", "hydra/sweeper=optuna")) for a in argv
    ):
        return None
    for package, (floor, why, requirement) in STUDY_PACKAGE_FLOORS.items():
        try:
            installed = importlib.metadata.version(package)
            old = Version(installed) < Version(floor)
        except (importlib.metadata.PackageNotFoundError, InvalidVersion):
            continue  # not installed: Hydra says the sweeper is missing; Optuna's import says SQLAlchemy is
        if old:
            pip = f"{sys.executable} -m pip install"
            return (
                f"an Optuna study needs {package} >= {floor} ({why}); the installed {package} is "
                f'{installed}: {pip} -e ".[dev]" in the marsunits folder, or {pip} "{requirement}"'
            )
    return None


#: The most trials of a sweep whose configs are all composed and checked before it starts (one composition
#: each, about 0.15 s, only while they are refused: the first trial that passes ends the check, so a sweep
#: that runs costs two, its first trial's and the sweep's own, which names its sweeper and
#: ``hydra.sweeper.params``; about 0.2 s more before a grid starts, 0.4 s before a study). A larger sweep
#: is checked on a sample (:func:`_checked_trials`), which can show a refusal that no swept value changes
#: but not that every trial is refused each its own way.
MAX_CHECKED_TRIALS = 32


def sweep_refusal(argv: Sequence[str], config_dir: Path) -> str | None:
    """The refusal that every trial of a sweep (``train.py -m``, Hydra's basic sweeper; or an Optuna study,
    ``hparams_search=optuna``) meets, in one line, or None (a sweep some trial of which passes, another
    sweeper, or one that does not compose here: Hydra reports that).

    The trials' configs (the command's overrides with one value of each swept one, as the sweeper lists
    them) are checked as a single run's is before its folder is made
    (:func:`~marsunits.run_checks.config_value_refusal`). A mistake the trials shared
    (``-m model.lr=1e-3,2e-3 data.crop_size=100``) made one trial folder per trial, each with Hydra's record
    and the same error, before the sweep ended (an Optuna study: three, :mod:`marsunits.sweep_trials`).

    Every trial of a grid of up to :data:`MAX_CHECKED_TRIALS` is composed, and the grid is refused when each
    is. An Optuna study's trials cannot be listed: each choice of its search space is checked and each
    interval at both ends; a larger grid, with each swept value of one option at a time. Those are refused
    only when the refusal is the same in every trial checked, whatever the swept values: a mistake in what
    the trials share. A refusal that changes with a swept value (``data.crop_size=choice(100,101)``) is
    left to the trials, as the values the study or grid explores.
    """
    from marsunits.run_checks import config_value_refusal

    primary = primary_config(argv, config_dir)
    if primary is None:
        return None
    folder, name, added = primary
    overrides = override_arguments(argv)
    refusals: list[str] = []
    try:
        with initialize_config_dir(config_dir=str(folder.resolve()), version_base="1.3"):
            listed = _sweep_dimensions(name, added, overrides)
            if listed is None:
                return None
            dims, complete = listed
            trials, every = _checked_trials(dims)
            every = every and complete
            for num, trial in enumerate(trials):
                cfg = compose(name, overrides=[*added, *trial], return_hydra_config=True)
                with _as_sweep_job(cfg, num):
                    refused = config_value_refusal(cfg, run_folder_guess(cfg))
                if refused is None:
                    return None  # this trial may run: the failing ones are said by the sweep
                refusals.append(refused)
                if not every and len(set(refusals)) > 1:
                    return None  # refused each its own way, in a sample: other trials may pass
    except Exception:  # noqa: BLE001 - Hydra reports an override it cannot read or sweep, a config it cannot compose
        return None
    if not refusals:
        return None  # no trial (a glob that matches no option): Hydra's sweeper runs none
    swept = [d[0].split("=", 1)[0] for d in dims if len(d) > 1]
    if len(set(refusals)) == 1:
        if every:
            return f"{refusals[0]} (in every trial of this sweep: none was started)"
        return (
            f"{refusals[0]} (the same in each trial checked, whatever the values of {', '.join(swept)}: a "
            "value every trial of this sweep shares; none was started)"
        )
    first = " ".join(a for a in trials[0] if a.split("=", 1)[0] in swept)
    return f"every trial of this sweep is refused (none was started); the first ({first}): {refusals[0]}"


def _sweep_dimensions(
    name: str, added: list[str], overrides: list[str]
) -> tuple[list[list[str]], bool] | None:
    """The overrides of a sweep's trials, one list per option: its values (``key=value``), one for an option
    every trial shares; a trial takes one value of each; and whether those are all the values (False for an
    Optuna study's interval, listed by its two ends). None for a sweeper other than Hydra's basic one and
    the Optuna plugin, or a study whose trials take values listed nowhere here (``custom_search_space``, the
    older ``search_space``).

    Listed as the sweepers list them (``BasicSweeper.split_arguments``; the plugin's
    ``create_params_from_overrides``), with ``hydra.sweeper.params`` first, within Hydra's initialised
    config folder: a glob over a config group's options (``experiment=glob(synth*)``) is listed by Hydra's
    config loader, from every folder of the search path (a ``--config-dir`` folder included).
    """
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    lister = _GroupOptions(GlobalHydra.instance().config_loader(), added)
    parser = OverridesParser.create(config_loader=lister)  # type: ignore[arg-type]
    parsed = parser.parse_overrides(overrides)
    fixed = [a for a, o in zip(overrides, parsed, strict=True) if not o.is_sweep_override()]
    master = compose(name, overrides=[*added, *fixed], return_hydra_config=True)  # as Hydra composes it
    sweeper = master.hydra.sweeper
    target = str(sweeper.get("_target_", ""))
    params = [f"{k!s}={v}" for k, v in (sweeper.get("params") or {}).items()]
    if target.endswith(".BasicSweeper"):
        lists: dict[str, list[str]] = {}
        for override in parser.parse_overrides([*params, *overrides]):
            key = override.get_key_element()
            if override.is_sweep_override():
                lists[key] = [f"{key}={v}" for v in override.sweep_string_iterator()]
            else:
                lists[key] = [f"{key}={override.get_value_element_as_str()}"]
        return list(lists.values()), True
    if target.endswith("OptunaSweeper"):  # the plugin's, or ours (hparams_search=optuna)
        from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
        from optuna.distributions import CategoricalDistribution

        if sweeper.get("custom_search_space") or sweeper.get("search_space"):
            return None
        space, shared = create_params_from_overrides([*params, *overrides])
        searched = [
            [f"{key}={v}" for v in _searched_values(distribution)]
            for key, distribution in space.items()
            if key not in shared
        ]
        complete = all(isinstance(space[key], CategoricalDistribution) for key in space if key not in shared)
        return [*searched, *([f"{key}={v}"] for key, v in shared.items())], complete
    return None


@contextlib.contextmanager
def _as_sweep_job(cfg: DictConfig, num: int) -> Iterator[None]:
    """Within it, ``cfg``'s Hydra node is the running job's (:class:`~hydra.core.hydra_config.HydraConfig`),
    as a sweep's job number ``num``: a value made of it (``hparams_search=optuna``'s W&B name,
    ``trial-${hydra:job.num}``) did not resolve before Hydra started, and the trial was left unchecked.
    The Hydra config that was set before is set again after."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra = HydraConfig.instance()
    before = hydra.cfg
    with open_dict(cfg):
        cfg.hydra.job.num = num
        cfg.hydra.mode = RunMode.MULTIRUN
    hydra.set_config(cfg)
    try:
        yield
    finally:
        hydra.cfg = before


class _GroupOptions:
    """Hydra's config loader listing a config group's options (what a glob sweep asks it) with the search
    path of the command's ``--config-dir`` folder (``added``: composed here as ``hydra.searchpath``)."""

    def __init__(self, loader: Any, added: list[str]) -> None:
        self._loader, self._added = loader, added

    def get_group_options(self, group_name: str, results_filter: Any = None) -> list[str]:
        return list(self._loader.get_group_options(group_name, results_filter, overrides=self._added))


def _searched_values(distribution: Any) -> list[Any]:
    """The values an Optuna study's trials are checked with: each choice of a categorical distribution, the
    two ends of an interval (its samples lie between them)."""
    from optuna.distributions import CategoricalDistribution

    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    return [distribution.low, distribution.high]


def _checked_trials(dims: list[list[str]]) -> tuple[list[list[str]], bool]:
    """The trials to check of a sweep whose options take the values ``dims``, and whether they are all of
    its trials: every combination, up to :data:`MAX_CHECKED_TRIALS`; else the first trial, the first with
    each value of one option (all of an option of up to 14 values, else 8 to 11 spread from end to end),
    and the last. (An Optuna study's intervals are listed by their ends only: never all.)"""
    import itertools
    import math

    if math.prod(len(d) for d in dims) <= MAX_CHECKED_TRIALS:
        return [list(t) for t in itertools.product(*dims)], True
    first = [d[0] for d in dims]
    trials = [first]
    for i, values in enumerate(dims):
        step = max(1, (len(values) - 1) // 7)
        for value in [*values[step:-1:step], values[-1]] if len(values) > 1 else []:
            trials.append([*first[:i], value, *first[i + 1 :]])
    trials.append([d[-1] for d in dims])
    return trials, False


def claim_sweep_folder(argv: Sequence[str], config_dir: Path) -> tuple[str | None, list[str]]:
    """Take a sweep's claim on its folder (``hydra.sweep.dir``) before Hydra starts; returns the refusal when
    another live sweep holds it or an earlier one left its trials there, else ``(None, argv)``, with the
    clock-made default folder pinned on the command line (``hydra.sweep.dir=...``) as composed here.

    The default folder is named by the second the sweep starts (``multirun-<time>``): two sweeps started in
    the same second (a job array of sweeps), or a sweep given an earlier sweep's ``hydra.sweep.dir``, ran
    their trials in the same ``<n>/`` folders. Hydra rewrote each trial's ``.hydra/`` record before the
    trial's run refused the folder, with advice (``run_name=``) that does not move a sweep's trials. Left
    to the sweep: a folder that does not compose here (a swept folder option, another primary config).
    """
    from marsunits.run_folder_claim import CLAIM_NAME, hold_sweep_folder_for_process, sweep_folder_holder

    argv = list(argv)
    keys = [a.split("=", 1)[0].lstrip("+") for a in argv]
    if any(k in CONFIG_FLAGS or k.startswith(CONFIG_FLAGS) for k in keys):
        return None, argv
    overrides = override_arguments(argv)
    try:
        parsed = overrides_parser(config_dir).parse_overrides(overrides)
    except Exception:  # noqa: BLE001 - Hydra reports an override it cannot read
        return None, argv
    if any(o.is_sweep_override() and o.get_key_element().lstrip("+") in _SWEEP_FOLDER_KEYS for o in parsed):
        return None, argv  # a swept folder option: the folder is not one
    fixed = [a for a, o in zip(overrides, parsed, strict=True) if not o.is_sweep_override()]
    # A swept config choice may set the task (debug=fdr,overfit: logs/debug/): compose each of its values.
    choices = [
        o for o in parsed if o.is_sweep_override() and (config_dir / o.get_key_element().lstrip("+")).is_dir()
    ]
    given = [i for i, a in enumerate(argv) if a.split("=", 1)[0].lstrip("+") == "hydra.sweep.dir"]
    if given and "${hydra" in argv[given[-1]]:
        return None, argv  # made of Hydra's runtime values, unknown here
    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
        try:
            values = [(c.get_key_element(), list(c.sweep_string_iterator())) for c in choices]
            first = [f"{key}={options[0]}" for key, options in values if options]
            cfg = compose("train", overrides=[*fixed, *first], return_hydra_config=True)
            folder = Path(str(cfg.hydra.sweep.dir))
            where = [OmegaConf.select(cfg, k) for k in _SWEEP_FOLDER_KEYS[1:]]  # not the clock: it ticks
            for key, options in values:
                for value in options[1:]:
                    other = compose("train", [*fixed, *first, f"{key}={value}"], return_hydra_config=True)
                    if [OmegaConf.select(other, k) for k in _SWEEP_FOLDER_KEYS[1:]] != where:
                        return None, argv  # the trials' folders differ: left to the sweep
        except Exception:  # noqa: BLE001 - anything unresolvable here is Hydra's to report when it runs
            return None, argv
    folder = folder if folder.is_absolute() else Path.cwd() / folder
    held = sweep_folder_holder(folder)
    if held is not None:
        return held, argv
    left = sorted(p.name for p in folder.iterdir() if p.name != CLAIM_NAME) if folder.is_dir() else []
    if left:
        again = (
            "give it another folder, hydra.sweep.dir=<new folder>"
            if given
            else "run the command again (its default folder is named by the second it starts), or give it "
            "its own folder, hydra.sweep.dir=<new folder>"
        )
        return (
            f"sweep folder {folder} already holds another sweep's {some_of(left, 3)}: this sweep's trials "
            f"would be written in the same folders. {again[0].upper()}{again[1:]}"
        ), argv
    try:
        refused = hold_sweep_folder_for_process(folder)
    except OSError:  # the folder cannot be made: Hydra says so
        return None, argv
    if refused is not None:
        return refused, argv
    # A given folder is pinned too, as composed: the clock may be in it (${now:...}, or ${run_name}, made of
    # it), and Hydra's would be a moment later.
    argv = [a for i, a in enumerate(argv) if i not in given]
    return None, with_override(argv, f"hydra.sweep.dir={hydra_quoted(str(folder))}")


#: Options whose value names the sweep folder (``hydra.sweep.dir`` is made of them).
_SWEEP_FOLDER_KEYS = ("hydra.sweep.dir", "paths.log_dir", "paths.root_dir", "task_name")
