"""The overrides of a command line as the checks before Hydra compose them: each trial of a sweep, and
Hydra's message (:func:`compose_error`).

The checks compose the overrides given (:func:`checked_overrides`: ``hydra.*`` keys are not checked), the
way ``@hydra.main`` will. A multirun is checked as its trials compose (:func:`checked_trials`): each sweep
with its first value (``-m trainer.max_epoch=1,2`` failed at each trial, after the sweep folder was made),
and each option of a swept config group that an override reaches into (``-m data=synthetic,marsscapes
data.train_length=10``). Also what the checks of :mod:`~marsunits.cli_overrides`,
:mod:`~marsunits.cli_group_choices` and :mod:`~marsunits.cli_repeated_options` share in reading an override:
its prefix and option (:func:`prefix_and_option`), the config group it would choose (:func:`group_of`), and
that group's choices (:func:`group_choices`); the marker of a key the config lacks (:data:`ABSENT`); and
Hydra's override parser whose glob sweeps list their options, as Hydra's sweeper runs them
(:func:`overrides_parser`); and Hydra's message for a trial, composed once for all the checks of a command
(:func:`trial_message`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig

from marsunits.cli_argv import override_arguments


def compose_error(config_dir: Path, config_name: str, overrides: list[str]) -> tuple[str, DictConfig | None]:
    """Compose ``config_name`` of ``config_dir`` with ``overrides``; return ``("", config)`` on success, else
    ``(Hydra's message, None)`` (``"other: <message>"`` for a failure other than a composition's, such as an
    override Hydra cannot parse)."""
    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
        try:
            return "", compose(config_name, overrides=overrides)
        except ConfigCompositionException as exc:
            return str(exc), None
        except Exception as exc:  # a parse or plugin problem: Hydra reports it when it runs
            return f"other: {exc}", None


#: Hydra's message for each trial composed in one :func:`trials_composed_once` block (None outside one): the
#: checks of one command compose the same trials, each once.
_trial_messages: dict[tuple[str, str, tuple[str, ...]], str] | None = None


@contextmanager
def trials_composed_once() -> Iterator[None]:
    """A block in which :func:`trial_message` composes each trial once (the checks of
    :func:`~marsunits.cli_overrides.unknown_option`)."""
    global _trial_messages
    _trial_messages = {}
    try:
        yield
    finally:
        _trial_messages = None


def trial_message(config_dir: Path, config_name: str, composed: tuple[str, ...]) -> str:
    """Hydra's message for composing the overrides ``composed`` (a trial of :func:`checked_trials`), empty
    where they compose (:func:`compose_error`): composed once in a :func:`trials_composed_once` block, and
    each time outside one."""
    known = _trial_messages if _trial_messages is not None else {}
    memo = (str(config_dir), config_name, composed)
    if memo not in known:
        known[memo] = compose_error(config_dir, config_name, list(composed))[0]
    return known[memo]


def overrides_parser(config_dir: Path) -> OverridesParser:
    """Hydra's override parser, whose sweeps list their values as Hydra's sweeper runs them: a glob over a
    config group's options (``model=glob(unet_*)``, ``glob(*,exclude=tiny)``) too, which Hydra's parser
    alone cannot list ("ConfigLoader is not set") and which its sweeper lists from the group's folder."""
    return OverridesParser.create(config_loader=_GroupFolders(config_dir))  # type: ignore[arg-type]


class _GroupFolders:
    """What a glob sweep asks of Hydra's config loader, answered from ``config_dir``: a config group's
    options, the ``.yaml`` files of its folder (not those of a folder below it), sorted, as Hydra's config
    repository lists them (``model@teacher=glob(*)`` asks for ``model``'s)."""

    def __init__(self, config_dir: Path) -> None:
        self._config_dir = config_dir

    def get_group_options(self, group_name: str, results_filter: object = None) -> list[str]:
        folder = self._config_dir / group_name
        return sorted(p.stem for p in folder.glob("*.yaml") if p.is_file()) if folder.is_dir() else []


def checked_trials(overrides: list[str], config_dir: Path) -> list[list[tuple[str, str]]] | None:
    """The trials of ``overrides`` to compose in the checks, each a list of ``(typed, composed)`` pairs: the
    override as given, and the one composed in its place. Without a sweep, one trial of the overrides as
    given. In a multirun, the first trial takes each sweep's first value (``trainer.max_epoch=1,2`` composed
    as ``trainer.max_epoch=1``: Hydra leaves a sweep out of the sweep's own config, and a swept key the
    config lacks was refused only at each trial, after the sweep folder was made); then each later value
    whose trials may compose otherwise (:func:`_composed_apart`), one at a time, the other sweeps at their
    first value: the options of a swept config group (``data=synthetic,marsscapes``, ``+model=a,b``, a
    glob) that another override may meet, each value of a swept deletion (``~trainer.max_epochs=4,5``), each
    list or map of a swept option. A later value that failed to compose (``+model=unet_lite0_d4,tiny``: the
    first is the choice the defaults make, which a plus takes, the second is refused) was refused by Hydra
    after it had made the sweep folder (it composes a batch's trials before running them). Each is a
    composition (about 0.1 s) while they pass: ``'+model=glob(*)'``, 9 options, is 8 more,
    ``'model=glob(*)'`` alone none. Two swept values that fail only together are not composed together. The
    checks compose the trials in order, only while each passes; a sweep whose values cannot be listed here
    (an Optuna interval) is left out. None where Hydra cannot read an override (said by
    :func:`~marsunits.cli_overrides.unreadable_or_unknown_choice`).
    """
    try:
        parsed = overrides_parser(config_dir).parse_overrides(overrides)
    except Exception:  # noqa: BLE001 - an override Hydra cannot read
        return None
    first: list[tuple[str, str]] = []
    later: list[tuple[int, list[str]]] = []  # a sweep: its place in first, its later values composed apart
    for arg, override in zip(overrides, parsed, strict=True):
        if not override.is_sweep_override():
            first.append((arg, arg))
            continue
        name = arg.split("=", 1)[0]
        try:
            values = list(override.sweep_string_iterator())
            kinds = list(override.sweep_iterator())
        except Exception:  # noqa: BLE001 - an interval: no values to list
            continue
        if not values:
            continue  # a glob that matches no option: Hydra runs no trial
        first.append((arg, f"{name}={values[0]}"))
        others = [a for a in overrides if a != arg]
        apart = _composed_apart(name, kinds, others, config_dir)
        if apart:
            later.append((len(first) - 1, [f"{name}={values[i]}" for i in apart]))
    trials = [first]
    seen = {tuple(c for _, c in first)}
    for at, options in later:
        for option in options:
            trial = [*first[:at], (first[at][0], option), *first[at + 1 :]]
            composed = tuple(c for _, c in trial)
            if composed not in seen:  # a value given twice in a sweep gives its trial once
                seen.add(composed)
                trials.append(trial)
    return trials


def _composed_apart(name: str, values: Sequence[object], others: list[str], config_dir: Path) -> list[int]:
    """The places of the values after the first of the sweep ``name=values`` whose trials may compose
    otherwise than the first's, beside the other overrides ``others``.

    A config group's options: each, where the sweep has a prefix (a plus, which Hydra takes on the option
    the defaults choose already and refuses on another; a deletion, which deletes only the option chosen),
    where another override reaches into the node they set (``model.`` for ``model``), or where they set the
    whole config (``# @package _global_``: ``experiment``, ``debug``) and another override is given;
    otherwise every option composes alike (the configs' own tests compose each). A deletion's values: each
    (Hydra deletes a key given a value only where it has that value). Another option's: each list or map (a
    list cannot replace a map, a map sets keys the node may lack), and the first other value where the first
    is a list or a map: any other value composes as any other does (the config's nodes take any value).
    """
    key = name.lstrip("+")
    group = key.split("@", 1)[0]
    every = list(range(1, len(values)))
    if key.startswith("~"):
        return every
    if (config_dir / group).is_dir():
        package = key.split("@", 1)[-1]  # model@teacher: the teacher node
        whole = any(
            p.read_text(encoding="utf-8").startswith("# @package _global_")
            for p in (config_dir / group).glob("*.yaml")
        )
        if name != key or (whole and others) or any(a.lstrip("+~").startswith(f"{package}.") for a in others):
            return every
        return []

    def scalar(value: object) -> bool:
        return not isinstance(value, list | dict)

    apart = [i for i in every if not scalar(values[i])]
    if not scalar(values[0]):
        apart += [i for i in every if scalar(values[i])][:1]
    return sorted(apart)


def in_trial(trial: list[tuple[str, str]], first: list[tuple[str, str]]) -> str:
    """`` (in the trials with data=marsscapes)``: the value of a sweep that ``trial`` takes in place of the
    first trial's (:func:`checked_trials`), the only one whose trials meet the refusal; empty for the first
    trial."""
    changed = changed_in_trial(trial, first)
    return f" (in the trials with {' '.join(changed)})" if changed else ""


def changed_in_trial(trial: list[tuple[str, str]], first: list[tuple[str, str]]) -> list[str]:
    """The composed overrides of ``trial`` that differ from the first trial's (:func:`checked_trials`), in
    order: ``["data=marsscapes"]``; empty for the first trial."""
    return [composed for (_, composed), (_, before) in zip(trial, first, strict=True) if composed != before]


def checked_overrides(argv: Sequence[str]) -> list[str]:
    """The overrides of ``argv`` that the composing checks compose (Hydra's own, ``hydra.*``, left out): the
    same in each, so that each trial is composed once (:func:`trial_message`)."""
    return [a for a in override_arguments(argv) if not a.lstrip("+~").startswith(("hydra.", "hydra/"))]


#: What :func:`~marsunits.cli_overrides.added_option_already_there` and
#: :func:`~marsunits.cli_repeated_options._composed_values` find where the config has no such key: the
#: ``default`` given to ``OmegaConf.select``, told from any value the config holds by identity (``is``).
ABSENT = object()


def group_of(arg: str) -> str:
    """The config group an override would choose, were its name a group's: ``callbacks`` of
    ``+callbacks@x=ema``."""
    return prefix_and_option(arg)[1].split("@", 1)[0]


def group_choices(config_dir: Path, group: str) -> list[str]:
    """The options of the config group ``group`` (a folder of ``config_dir``), as its choices are typed:
    ``["fdr", "overfit"]`` for ``debug``; sorted."""
    folder = config_dir / group
    return sorted(p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml"))


def prefix_and_option(arg: str) -> tuple[str, str]:
    """The prefix of an override (``+``, ``++`` or none) and the option it names: ``("++", "patterns")``."""
    key = arg.partition("=")[0]
    name = key.lstrip("+")
    return key[: len(key) - len(name)], name
