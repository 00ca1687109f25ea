"""Catch a misspelt command-line option before Hydra does, and say which option was probably meant.

Hydra answers ``python predict.py inputdir=images/`` with "Could not override 'inputdir' ... To append to
your config use +inputdir=images/": a fix that silently adds an option nothing reads. This check runs first.
The top-level name of each ``key=value`` override (``inputdir``, ``max_epoch``) is checked against the
primary config's keys and the config groups (no composition: fast). A nested name (``trainer.max_epoch``)
is checked by composing the config with the command's overrides through Hydra's compose API, the way
``@hydra.main`` will (so an ``experiment=`` that changes the groups counts), and the suggestion is the
closest key of the node it names. An override that adds a key (``+model.foo=1``, ``++model.foo=1``) is
checked against the parameters of the class its node builds (``_target_``), since Hydra accepts the key and
the run then failed in the class's constructor. So are the overrides Hydra refuses in several lines: a plus
on an option or a config group the config already has (``+trainer.max_epochs=3``, ``+model=tiny``), two
pluses on a config group (``++callbacks=ema``), a plus on a group chosen by a list beside a choice of it
(``callbacks=[default] +callbacks=ema``, whose plus Hydra drops without a word), a deletion of such a group
(``~callbacks``, from which Hydra deletes nothing), a deletion of a key it lacks (``~trainer.max_epoch``)
and a setting of a key deleted before it (``~trainer.max_epochs trainer.max_epochs=3``). A multirun is
checked as its trials compose: each sweep with its first value (``-m trainer.max_epoch=1,2`` failed at each
trial, after the sweep folder was made), and each option of a swept config group that an override reaches
into (``-m data=synthetic,marsscapes data.train_length=10``). ``hydra.*`` keys, a sweep's values and Hydra's
own flags (``--cfg job``) are not checked; any other composition problem is left to Hydra, which reports it
in its own words.

The other checks the entry points run before Hydra, which :func:`exit_on_unknown_option` calls, live beside
this module, one job each: :mod:`~marsunits.cli_argv` (what a command line holds: its overrides, a multirun,
Hydra's flags), :mod:`~marsunits.cli_paths` (path options: ``~``, quoting, ``${``),
:mod:`~marsunits.cli_values` (values refused before a run folder is made), :mod:`~marsunits.cli_sweeps` (a
sweep's trials and folder), :mod:`~marsunits.cli_run_folder` (the log folder, and ``train.py``'s claim on its
run folder) and :mod:`~marsunits.cli_launch` (ranks started by torchrun or SLURM, another copy of the
package). Their public names are importable from here as well.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, ListConfig, OmegaConf

from marsunits.cli_argv import _SHELL_COMPLETION, _overrides
from marsunits.cli_launch import note_another_copy_of_the_package, unnamed_external_ranks
from marsunits.cli_paths import (
    home_expanded_overrides,
    sweeps_taken_as_one_value,
    unresolvable_path_interpolation,
    warn_sweeps_taken_as_one_value,
)
from marsunits.cli_paths import quoted_path_overrides as quoted_path_overrides
from marsunits.cli_run_folder import MIN_FREE_BYTES as MIN_FREE_BYTES
from marsunits.cli_run_folder import claim_run_folder, unwritable_log_dir
from marsunits.cli_sweeps import MAX_CHECKED_TRIALS as MAX_CHECKED_TRIALS
from marsunits.cli_sweeps import claim_sweep_folder as claim_sweep_folder
from marsunits.cli_sweeps import sweep_refusal as sweep_refusal
from marsunits.cli_values import predict_refusal
from marsunits.cli_values import primary_config as primary_config
from marsunits.cli_values import value_refusal as value_refusal
from marsunits.errors import readable, record_refusal_for_torchrun

__all__ = [
    "added_option_not_taken",
    "argument_the_run_gives",
    "exit_on_unknown_option",
    "home_expanded_overrides",
    "note_another_copy_of_the_package",
    "predict_refusal",
    "unresolvable_path_interpolation",
    "unknown_nested_option",
    "unknown_option",
    "unreadable_or_unknown_choice",
    "sweeps_taken_as_one_value",
    "warn_sweeps_taken_as_one_value",
]


def _defaults(primary: DictConfig) -> dict[str, str | None]:
    """The primary config's config groups and their default options (``_self_`` left out)."""
    groups: dict[str, str | None] = {}
    for entry in primary.get("defaults", []):
        if isinstance(entry, str):
            continue  # _self_
        for group, option in entry.items():
            groups[str(group).split("@", 1)[0].split(" ")[-1].lstrip("/")] = (
                option if isinstance(option, str) else None
            )
    return groups


def _names(config_dir: Path, config_name: str) -> tuple[set[str], list[str]]:
    """Top-level names (keys and groups, plus ``hydra``), and ``group.key`` of each group default's keys."""
    primary = OmegaConf.load(config_dir / f"{config_name}.yaml")
    if not isinstance(primary, DictConfig):
        return {"hydra"}, []
    groups = _defaults(primary)
    top = (set(primary) - {"defaults"}) | set(groups) | {"hydra"}
    nested = []
    for group, option in groups.items():
        path = config_dir / group / f"{option}.yaml"
        if option is None or group == "hydra" or not path.is_file():
            continue
        node = OmegaConf.load(path)
        if isinstance(node, DictConfig):
            nested += [f"{group}.{key!s}" for key in node if key not in ("defaults", "_target_")]
    return top, nested


def _closest(name: str, known: Sequence[str]) -> str | None:
    """A known name that starts the typed one (``tile`` in ``tile_size``), else one that ends in it after an
    underscore (``num_classes`` for ``classes``: the closest spelling was ``subclasses``, another option;
    of several, the most similar), else the most similar, or None."""
    prefixed = sorted((n for n in known if len(n) >= 3 and name.startswith(n)), key=len, reverse=True)
    suffixed = sorted(n for n in known if len(name) >= 3 and n.endswith(f"_{name}"))
    # Of several (model.channels: in_channels, decoder_channels), the closest spelling.
    suffixed = difflib.get_close_matches(name, suffixed, n=1, cutoff=0)
    guess = prefixed[:1] or suffixed or difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return guess[0] if guess else None


#: Hydra's message when an override names a key the composed config does not have.
_NOT_IN_CONFIG = re.compile(r"^Could not override '([^']+)'")


def _compose_error(config_dir: Path, config_name: str, overrides: list[str]) -> tuple[str, DictConfig | None]:
    """Compose; return ``("", config)`` on success, else ``(Hydra's message, None)``."""
    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
        try:
            return "", compose(config_name, overrides=overrides)
        except ConfigCompositionException as exc:
            return str(exc), None
        except Exception as exc:  # a parse or plugin problem: Hydra reports it when it runs
            return f"other: {exc}", None


def _sweep_trials(overrides: list[str], config_dir: Path) -> list[list[tuple[str, str]]] | None:
    """The trials of ``overrides`` to compose in the checks, each a list of ``(typed, composed)`` pairs: the
    override as given, and the one composed in its place. Without a sweep, one trial of the overrides as
    given. In a multirun, the first trial takes each sweep's first value (``trainer.max_epoch=1,2`` composed
    as ``trainer.max_epoch=1``: Hydra leaves a sweep out of the sweep's own config, and a swept key the
    config lacks was refused only at each trial, after the sweep folder was made); then each further option
    of a swept config group (``data=synthetic,marsscapes``) in turn, the other sweeps at their first value,
    as a key one option lacks (``~data.train_length``) failed only that option's trials. A group's later
    options are listed only where an override names a key under its node (``data.``): each is a composition
    (about 0.15 s) before a sweep of keys the group does not hold starts, and a group whose options set other
    nodes (``experiment=``, ``@package _global_``) is checked with its first option only. The checks compose
    the trials in order, only while each passes; a sweep whose values cannot be listed here (an Optuna
    interval) is left out. None where Hydra cannot read an override (said by
    :func:`unreadable_or_unknown_choice`).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from marsunits.cli_sweeps import _choice_values

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # noqa: BLE001 - an override Hydra cannot read
        return None
    first: list[tuple[str, str]] = []
    groups: list[tuple[int, list[str]]] = []  # a swept config group: its place in first, its later options
    for arg, override in zip(overrides, parsed, strict=True):
        if not override.is_sweep_override():
            first.append((arg, arg))
            continue
        name = arg.split("=", 1)[0]
        group = not name.startswith("~") and (config_dir / name.lstrip("+").split("@", 1)[0]).is_dir()
        try:
            values = _choice_values(override, config_dir) if group else list(override.sweep_string_iterator())
        except Exception:  # noqa: BLE001 - an interval: no values to list
            continue
        if not values:
            continue  # a glob that matches no option: Hydra runs no trial
        first.append((arg, f"{name}={values[0]}"))
        package = name.lstrip("+").split("@", 1)[-1]  # model@teacher: the teacher node
        if group and len(values) > 1 and any(a.lstrip("+~").startswith(f"{package}.") for a in overrides):
            groups.append((len(first) - 1, [f"{name}={v}" for v in values[1:]]))
    trials = [first]
    for at, later in groups:
        trials += [[*first[:at], (first[at][0], option), *first[at + 1 :]] for option in later]
    return trials


def _in_trial(trial: list[tuple[str, str]], first: list[tuple[str, str]]) -> str:
    """`` (in the trials with data=marsscapes)``: the option of a swept config group that ``trial`` takes in
    place of the first trial's, the only one whose trials meet the refusal; empty for the first trial."""
    changed = [
        composed for (_, composed), (_, before) in zip(trial, first, strict=True) if composed != before
    ]
    return f" (in the trials with {' '.join(changed)})" if changed else ""


#: Hydra's message for each trial composed during one :func:`unknown_option` (None outside one): its checks
#: compose the same trials, each once.
_trial_messages: dict[tuple[str, str, tuple[str, ...]], str] | None = None


class _RefusedTrial(NamedTuple):
    """A trial of a command's overrides that Hydra refuses, as :func:`_first_refused_trial` finds it."""

    #: The trial (:func:`_sweep_trials`): ``(typed, composed)`` of each override.
    trial: list[tuple[str, str]]
    #: The key Hydra's message names (the refusal's first group).
    key: str
    #: :func:`_in_trial` of the trial: empty for the first, else the swept group's option it takes.
    where: str
    #: Whether the command has more than one trial: a swept config group's options composed in turn, of
    #: which one may have a key another lacks.
    options_in_turn: bool


def _first_refused_trial(
    overrides: list[str], config_dir: Path, config_name: str, refusal: re.Pattern[str]
) -> _RefusedTrial | None:
    """The first trial of ``overrides`` (:func:`_sweep_trials`) that Hydra refuses, where its message matches
    ``refusal`` (whose first group is the key the message names), or None: where no trial is refused, the
    first refused is refused in other words (left to the check of those), or Hydra cannot read an override.
    The trials are composed in order, only while each passes, each once in one :func:`unknown_option`
    (:data:`_trial_messages`)."""
    trials = _sweep_trials(overrides, config_dir)
    if trials is None:
        return None
    for trial in trials:
        composed = tuple(c for _, c in trial)
        known = _trial_messages if _trial_messages is not None else {}
        memo = (str(config_dir), config_name, composed)
        if memo not in known:
            known[memo] = _compose_error(config_dir, config_name, list(composed))[0]
        if known[memo]:
            match = refusal.match(known[memo])
            if match is None:
                return None
            return _RefusedTrial(trial, match.group(1), _in_trial(trial, trials[0]), len(trials) > 1)
    return None


def _checked_overrides(argv: Sequence[str]) -> list[str]:
    """The overrides of ``argv`` that the composing checks compose (Hydra's own, ``hydra.*``, left out): the
    same in each, so that each trial is composed once (:data:`_trial_messages`)."""
    return [a for a in _overrides(argv) if not a.lstrip("+~").startswith(("hydra.", "hydra/"))]


#: A word after "add it with a plus" for a key the project does otherwise too: ``trainer.fast_dev_run=true``,
#: as Lightning's docs write it, is what ``debug=fdr`` does, with no logger started (Lightning logs nothing
#: in that mode) and the run's files under ``logs/debug/`` rather than among the real runs.
_ADDED_KEY_HINTS = {
    "trainer.fast_dev_run": (
        "; or give debug=fdr, the project's fast dev run (a batch of each stage, no logger started, its "
        "files under logs/debug/)"
    ),
}


def unknown_nested_option(argv: Sequence[str], config_dir: Path, config_name: str) -> str | None:
    """The message for a ``group.key=value`` override whose key the composed config lacks, or None.

    The config is composed with every checkable override of ``argv``; when Hydra refuses one because its key
    is missing, the config is composed again without it and the key's closest sibling is suggested
    (``trainer.max_epoch`` -> ``trainer.max_epochs``). In a multirun each sweep takes its first value, and
    each option of a swept config group is composed in turn (:func:`_sweep_trials`): Hydra composes the
    sweep's own config without its sweeps, so a misspelt key that is itself swept (``-m
    trainer.max_epoch=1,2``), or one that only a later option of the group lacks, failed at each trial, in
    Hydra's five lines after the sweep folder was made.
    """
    # Deletions left out, as before: a group choice after one (``~logger logger@x=csv``) is Hydra's to refuse,
    # and a setting after one is option_set_after_its_deletion's (they compose these trials with them).
    overrides = [a for a in _checked_overrides(argv) if "=" in a]
    if not any("." in a.split("=", 1)[0] and not a.startswith(("+", "~")) for a in overrides):
        return None
    refused = _first_refused_trial(overrides, config_dir, config_name, _NOT_IN_CONFIG)
    if refused is None:
        return None
    trial, key, where, options_in_turn = refused
    if "." not in key:
        # A config group choice that the defaults list lacks (logger@x=csv): Hydra's words give the fix
        # (+logger@x=csv); a top-level name was checked by unknown_option.
        return None
    # marsunits' own classes' parameters are known without importing them
    from marsunits.target_parameters import target_parameters

    arg = next((a for a, _ in trial if a.split("=", 1)[0] == key), f"{key}=...")
    rest = [composed for a, composed in trial if a != arg]
    _, cfg = _compose_error(config_dir, config_name, rest)
    hint = ""
    if cfg is not None:
        node: object = cfg
        parts = key.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, DictConfig):
                break
            if part not in node:
                target = node._get_node("_target_")._value() if "_target_" in node else None  # type: ignore[union-attr]
                taken = target_parameters(str(target)) if target and depth == len(parts) - 1 else None
                if taken is not None and part in taken:
                    # A keyword of the class the node builds that the config leaves to its default
                    # (trainer.max_steps): Hydra adds it with a plus; a similar name is another option.
                    # Where a swept group's options are composed in turn, one may have it (the first, or a
                    # later one: -m data=synthetic,marsscapes data.root=...), where a plus is refused.
                    plus = f"two pluses (adds or sets), ++{arg}" if options_in_turn else f"a plus, +{arg}"
                    return (
                        f"unknown option {key!r} in {arg!r}{where}: the config does not list it, but "
                        f"{'.'.join(parts[:depth])} builds {str(target).rsplit('.', 1)[-1]}, which takes "
                        f"{part!r}: add it with {plus}{_ADDED_KEY_HINTS.get(key, '')}"
                    )
                guess = _closest(part, [str(k) for k in node if not str(k).startswith("_")])
                if guess is not None:
                    hint = f"; did you mean {'.'.join([*parts[:depth], guess])}=...?"
                break
            node = node._get_node(part)  # no interpolation resolved
    return (
        f"unknown option {key!r} in {arg!r}{where}{hint} "
        f"(every option: python {config_name}.py --cfg job, with the same overrides)"
    )


def added_option_not_taken(argv: Sequence[str], config_dir: Path, config_name: str) -> str | None:
    """The message for a ``+node.key=value`` (or ``++``) override that adds a key the class built from
    ``node`` does not take (``+model.foo=1``: ``SegmentationTask`` has no ``foo``; ``+trainer.foo.bar=1``:
    the ``Trainer`` would be handed a dict ``foo``), or None.

    Hydra adds such a key without a word, and the run failed when the node was instantiated, after the run
    folder was made, with Hydra's multi-line ``unexpected keyword argument`` error and status 1. A node
    whose class takes any keyword (W&B's logger: ``+logger.wandb.notes=...``), a key the node already has,
    and a class that cannot be imported here are left alone.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    # marsunits' own classes' parameters are known without importing them
    from marsunits.target_parameters import target_parameters

    overrides = [a for a in argv if "=" in a and not a.lstrip("+").startswith(("-", "hydra.", "hydra/"))]
    added = [a for a in overrides if a.startswith("+") and "." in a.split("=", 1)[0]]
    if not added:
        return None
    try:  # a sweep's values do not compose as one job: its other settings are enough here
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # noqa: BLE001 - Hydra reports an override it cannot read
        return None
    single = [a for a, o in zip(overrides, parsed, strict=True) if not o.is_sweep_override()]
    for arg in added:
        key = arg.split("=", 1)[0].lstrip("+")
        _, cfg = _compose_error(config_dir, config_name, [a for a in single if a != arg])
        if cfg is None:
            return None
        # The first part of the key the config lacks, under the deepest node it has: in
        # ``+trainer.foo.bar=1`` that is ``foo`` under ``trainer`` (Hydra hands the Trainer a dict ``foo``).
        # Through a list too: ``+trainer.plugins.0.bogus=1`` is ``bogus`` of the checkpoint IO.
        parts = key.split(".")
        depth = 1
        while depth < len(parts) - 1 and isinstance(
            OmegaConf.select(cfg, ".".join(parts[: depth + 1]), throw_on_resolution_failure=False),
            DictConfig | ListConfig,
        ):
            depth += 1
        parent, leaf = ".".join(parts[:depth]), parts[depth]
        if leaf.startswith("_"):
            continue  # Hydra's own keys (_target_, _convert_, ...)
        node = OmegaConf.select(cfg, parent, default=None, throw_on_resolution_failure=False)
        if not isinstance(node, DictConfig) or "_target_" not in node or leaf in node:
            continue
        target = str(node._get_node("_target_")._value())  # type: ignore[union-attr]
        taken = target_parameters(target)
        if taken is None or leaf in taken:
            continue
        guess = _closest(leaf, sorted({*taken, *(str(k) for k in node if not str(k).startswith("_"))}))
        hint = f"; did you mean {parent}.{guess}=...?" if guess else ""
        return (
            f"unknown option {f'{parent}.{leaf}'!r} in {arg!r}: {parent} builds {target.rsplit('.', 1)[-1]}, "
            "which takes no "
            f"{leaf!r}{hint} (every option: python {config_name}.py --cfg job, with the same overrides)"
        )
    return None


#: What :func:`added_option_already_there` finds where the config has no such key.
_ABSENT = object()

#: Hydra's message when a ``+key=value`` override adds a key the composed config already has.
_ALREADY_THERE = re.compile(r"^Could not append to config\. An item is already at '([^']+)'")


def added_option_already_there(argv: Sequence[str], config_dir: Path, config_name: str) -> str | None:
    """The message for a ``+key=value`` override (one plus) whose key the config already has, or None.

    Hydra refused it in five lines ("Could not append to config. An item is already at ...") with status 1,
    where every other mistaken option is one line with status 2. ``++key=value`` (add or set) and a plus on a
    key the config lacks are left to Hydra. In a multirun the trials are composed (:func:`_sweep_trials`):
    a swept one (``-m +trainer.max_epochs=1,2``), left out of the sweep's own config, failed at each trial
    after the sweep folder was made; one that only a later option of a swept group has is given with ``++``.
    Deletions (``~key``) compose with them: Hydra applies the overrides in order, and ``~trainer.max_epochs
    +trainer.max_epochs=5`` adds the key the first deleted.
    """
    overrides = _checked_overrides(argv)
    if not any(a.startswith("+") and not a.startswith("++") for a in overrides):
        return None
    refused = _first_refused_trial(overrides, config_dir, config_name, _ALREADY_THERE)
    if refused is None:
        return None
    trial, key, where, options_in_turn = refused
    single = [c for _, c in trial]
    arg = next((a for a in overrides if a.startswith("+") and a.split("=", 1)[0].lstrip("+") == key), None)
    if arg is None:
        return None
    value = arg.split("=", 1)[1]
    added = [a for a in single if a.startswith("+") and a.split("=", 1)[0].lstrip("+") == key]
    if len(added) > 1:
        _, cfg = _compose_error(config_dir, config_name, [a for a in single if a not in added])
        if cfg is not None and OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT:
            # A key the config lacks, added twice: the second finds the first's (it was said to be the
            # config's own, and the fix given, key=value, is refused as a key the config does not have).
            return f"{arg!r}: {key} is added more than once, and the next finds the first's; give it once"
    # Where a swept group's options are composed in turn, one may lack it (the first, or a later one: -m
    # data=marsscapes,synthetic +data.root=...): only ++ takes both.
    fix = (
        f"++{key}={value}, which adds or sets"
        if options_in_turn
        else f"{key}={value} (or ++{key}={value}, which adds or sets)"
    )
    said = f"{key} is already an option of the config, and a plus only adds one it lacks"
    return f"{arg!r}{where}: {said}; give {fix}"


#: Hydra's message when a ``~key`` override deletes a key the composed config does not have.
_NOT_THERE_TO_DELETE = re.compile(r"^Could not delete from config\. '([^']+)' does not exist")


def deleted_option_not_there(argv: Sequence[str], config_dir: Path, config_name: str) -> str | None:
    """The message for a ``~key`` override whose key the config does not have (``~trainer.max_epoch``), with
    the closest key there, or None.

    Hydra refused it in three lines ("Could not delete from config. ... does not exist") with status 1,
    where a misspelt option to set is one line with status 2. In a multirun the trials are composed
    (:func:`_sweep_trials`; the sweeps had been composed as one run's, refused as ambiguous, and the deletion
    was left to Hydra's three lines), each option of a swept config group in turn: ``~data.train_length
    data=synthetic,marsscapes`` failed only at the trials of ``data=marsscapes``, which lacks the key.
    """
    overrides = _checked_overrides(argv)
    if not any(a.startswith("~") for a in overrides):
        return None
    refused = _first_refused_trial(overrides, config_dir, config_name, _NOT_THERE_TO_DELETE)
    if refused is None:
        return None
    trial, key, where, _ = refused
    single = [c for _, c in trial]
    arg = next((a for a in overrides if a.startswith("~") and a[1:].split("=", 1)[0] == key), f"~{key}")
    if sum(a.startswith("~") and a[1:].split("=", 1)[0] == key for a in overrides) > 1:
        # The first deleted it; told "did you mean ~<the same key>?", a fix that changed nothing.
        return (
            f"{arg!r} is given more than once: the first deletes {key}, and the next finds none; give it once"
        )
    _, cfg = _compose_error(config_dir, config_name, [a for a in single if a != arg])
    parent, _, leaf = key.rpartition(".")
    node = cfg if not parent or cfg is None else OmegaConf.select(cfg, parent, default=None)
    null = cfg is not None and isinstance(node, DictConfig) and leaf in node
    if null and cfg is not None and OmegaConf.select(cfg, key, default=0) is None:
        # Hydra deletes only a key with a value: a null one "does not exist" to it. "Did you mean" named the
        # very override given, a fix that changed nothing.
        return (
            f"{arg!r}: {key} is null in the config{where}, and Hydra deletes only an option with a value; "
            f"leave the deletion out (the run is given null), or set it, {key}=<value>"
        )
    guess = (
        _closest(leaf, [str(k) for k in node if not str(k).startswith("_")])
        if isinstance(node, DictConfig)
        else None
    )
    hint = f"; did you mean ~{parent + '.' if parent else ''}{guess}?" if guess else ""
    listed = f"every option: python {config_name}.py --cfg job"
    return f"{arg!r}: the config has no {key} to delete{where}{hint} ({listed})"


#: Hydra's messages when a ``+group=option`` override adds a config group the defaults list already has.
_GROUP_ALREADY_CHOSEN = re.compile(
    r"^(?:Multiple values for (?P<group>[^\s.]+)\."
    r"|(?P<again>\S+) appears more than once in the final defaults list)"
)


def added_group_already_chosen(argv: Sequence[str], config_dir: Path, config_name: str) -> str | None:
    """The message for a ``+group=option`` override (one plus) of a config group that the defaults list
    already has (``+experiment=marsscapes``, ``+model=tiny``; ``+debug=overfit``, listed as null), or of one
    added twice (``+logger=none +logger=csv``), or None.

    Hydra refused it with "Multiple values for experiment. To override a value use 'override experiment:
    marsscapes'" (a fix for a config file's defaults list, not a command line) or "... appears more than
    once in the final defaults list", and status 1; the fix is the choice without the plus, given once (the
    last, where it was given twice: it had been the first, on a defaults list the other plus made fail).
    Checked by composing, so what Hydra adds is left alone: a group that takes a list (``+callbacks=ema``
    adds it to the defaults' callbacks; twice, ``+callbacks=[ema,recovery]`` adds both), a group the command
    deleted first (``~model +model=tiny``), another package (``+model@teacher=tiny``). In a multirun its
    first value is composed (a sweep ``+model=tiny,unet_lite0`` failed at its first trial, after Hydra had
    made the sweep folder) and the other sweeps are left out. Hydra's own groups (``hydra/launcher``) are
    left to Hydra.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = _checked_overrides(argv)
    added = [
        a
        for a in overrides
        if a.startswith("+") and not a.startswith("++") and (config_dir / _group_of(a)).is_dir()
    ]
    if not added:
        return None
    try:
        parsed = dict(zip(overrides, OverridesParser.create().parse_overrides(overrides), strict=True))
    except Exception:  # noqa: BLE001 - an override Hydra cannot read is said by unreadable_or_unknown_choice
        return None
    for arg in added:
        group = arg[1:].split("=", 1)[0]
        first = arg
        if parsed[arg].is_sweep_override():
            try:
                first = f"+{group}={next(iter(parsed[arg].sweep_string_iterator()))}"
            except Exception:  # noqa: BLE001 - a glob: its options are listed by Hydra's config loader
                continue
        single = [
            first if a == arg else a for a in overrides if a == arg or not parsed[a].is_sweep_override()
        ]
        match = _GROUP_ALREADY_CHOSEN.match(_compose_error(config_dir, config_name, single)[0])
        if match is None or (match.group("group") or match.group("again")) != group:
            continue
        given = [a for a in added if a[1:].split("=", 1)[0] == group]
        others = [a for a in overrides if a not in given]
        kind = (_group_kinds(config_dir, config_name, others, {group}) or {}).get(group)
        several = len(given) > 1 and (kind is None or kind[0] != "chosen")
        refused = (
            "Hydra takes a plus of a group once" if several else "a plus adds only a config group it lacks"
        )
        return _plus_on_a_group(given, group, kind, config_name, refused)
    return None


def force_added_group(argv: Sequence[str], config_dir: Path, config_name: str) -> str | None:
    """The message for a ``++group=option`` override of a config group (``++callbacks=ema``,
    ``++model=tiny``), or None.

    Two pluses add or set an option; Hydra refuses them on a config group ("force-add of config groups is
    not supported") in several lines with status 1, and at each trial of a sweep (``-m ++model=a,b``), after
    the sweep folder was made. The line gives the override that works (:func:`_plus_on_a_group`), with every
    plus of the group's given once: one plus where the defaults list chooses the group by a list
    (``+callbacks=ema`` adds to the defaults' callbacks) or lacks it (``~model ++model=tiny``,
    ``++model@teacher=tiny``), none where it has one choice (``model=tiny`` replaces the defaults' own). A
    dictionary (``++model={lr: 0.1}``) sets the node's keys, which Hydra takes; Hydra's own groups are left
    to Hydra.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = _checked_overrides(argv)
    if not any(a.startswith("++") for a in overrides):
        return None
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # noqa: BLE001 - an override Hydra cannot read is said by unreadable_or_unknown_choice
        return None
    groups = [  # the config group each override chooses with a plus or two, or None
        _prefixed(a)[1]
        if a.startswith("+") and not isinstance(o.value(), dict) and (config_dir / _group_of(a)).is_dir()
        else None
        for a, o in zip(overrides, parsed, strict=True)
    ]
    forced = next((g for a, g in zip(overrides, groups, strict=True) if g and a.startswith("++")), None)
    if forced is None:
        return None
    given = [a for a, g in zip(overrides, groups, strict=True) if g == forced]
    others = [  # another ++ of a group would make the defaults list fail too
        a for a, g in zip(overrides, groups, strict=True) if g is None or (g != forced and a[:2] != "++")
    ]
    kind = (_group_kinds(config_dir, config_name, others, {forced}) or {}).get(forced)
    refused = "Hydra cannot force-add a config group (two pluses add or set an option, not a group's choice)"
    return _plus_on_a_group(given, forced, kind, config_name, refused)


def added_beside_a_chosen_list(argv: Sequence[str], config_dir: Path, config_name: str) -> str | None:
    """The message for a plus on a config group chosen by a list (``+callbacks=ema``) beside a choice of
    that group without one (``callbacks=[default]``, before or after it), or None.

    Hydra composes the two without a word and drops what the plus adds: ``callbacks=[default]
    +callbacks=ema`` trained without EMA (and ``+callbacks=[ema,recovery]``, which the refusal of a plus
    given twice gives, is dropped so too). The fix is the group given once, a list of the choice's options
    and the plus's (``'callbacks=[default,ema]'``); the choice is the last given, with those given in a row
    before it (the shell's split ``callbacks={default,wandb}``); a swept choice (``-m
    'callbacks=[default],[default,wandb]'``) gets the plus's options in each of its lists. A sweep of the
    plus is left alone, and so are another package (``+callbacks@x=ema``) and a group of one choice
    (:func:`added_group_already_chosen`).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = _checked_overrides(argv)

    def chooses(arg: str, group: str, plus: bool) -> bool:  # group=..., or +group=... with ``plus``
        key = arg.partition("=")[0]
        return "=" in arg and key == (f"+{group}" if plus else group)

    added = [
        a
        for a in overrides
        if a.startswith("+") and not a.startswith("++") and "@" not in a.partition("=")[0] and "=" in a
    ]
    for group in dict.fromkeys(_group_of(a) for a in added if (config_dir / _group_of(a)).is_dir()):
        chosen = [i for i, a in enumerate(overrides) if chooses(a, group, plus=False)]
        if not chosen:
            continue
        first = chosen[-1]
        while first - 1 in chosen:  # given in a row: an unquoted {...} the shell split
            first -= 1
        choice = overrides[first : chosen[-1] + 1]
        plus = [a for a in overrides if chooses(a, group, plus=True)]
        try:
            parsed = OverridesParser.create().parse_overrides([*choice, *plus])
        except Exception:  # noqa: BLE001 - an override Hydra cannot read is said by unreadable_or_unknown_choice
            return None
        if any(o.is_sweep_override() for o in parsed[len(choice) :]):
            continue  # a sweep of what the plus adds: each trial's is its own
        if any(o.is_sweep_override() for o in parsed[: len(choice)]):
            if len(choice) > 1:
                continue
            lists = [[str(v) for v in _listed(value)] for value in parsed[0].sweep_iterator()]
        else:  # one list of every choice given in a row (Hydra would take the last)
            lists = [[str(v) for o in parsed[: len(choice)] for v in _listed(o.value())]]
        others = [a for a in overrides if not (chooses(a, group, plus=False) or chooses(a, group, plus=True))]
        kind = (_group_kinds(config_dir, config_name, others, {group}) or {}).get(group)
        if kind is None or kind[0] != "list":
            continue
        added = list(dict.fromkeys(str(v) for o in parsed[len(choice) :] for v in _listed(o.value())))
        lost = [v for v in added if any(v not in options for options in lists)]
        if not lost:  # what the plus adds is chosen all the same
            continue
        fix = ",".join(f"[{','.join(dict.fromkeys([*options, *added]))}]" for options in lists)
        given = " and ".join(repr(a) for a in plus)
        run = "each trial" if len(lists) > 1 else "the run"
        return (
            f"{given} with {' '.join(choice)!r}: Hydra drops what a plus adds to {group} where the command "
            f"line also chooses {group} ({run} would be without {', '.join(lost)}); give {group} once, "
            f"'{group}={fix}'"
        )
    return None


def deleted_list_chosen_group(argv: Sequence[str], config_dir: Path, config_name: str) -> str | None:
    """The message for a deletion of a config group chosen by a list (``~callbacks``, ``~callbacks=wandb``),
    or None.

    Hydra deletes nothing from such a group: ``~callbacks`` alone, or ``~callbacks=wandb``, was refused in
    several lines with status 1 ("Could not delete 'callbacks'. No match in the defaults list"), and beside
    a choice or a plus of the group it composed without a word and without what was meant:
    ``~callbacks callbacks=ema`` trained with no callback at all, ``~callbacks +callbacks=ema`` with the
    defaults' callbacks and no EMA. The fix is the list meant, given once: the defaults' options less those
    deleted, with those a plus adds, or the options chosen. A sweep of the group is left alone.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = _checked_overrides(argv)
    deleted = [a for a in overrides if a.startswith("~") and (config_dir / a[1:].partition("=")[0]).is_dir()]
    for group in dict.fromkeys(a[1:].partition("=")[0] for a in deleted):
        given = [a for a in overrides if a.lstrip("~+").partition("=")[0] == group and not a.startswith("++")]
        try:
            parsed = dict(zip(given, OverridesParser.create().parse_overrides(given), strict=True))
        except Exception:  # noqa: BLE001 - an override Hydra cannot read is said by unreadable_or_unknown_choice
            return None
        if any(o.is_sweep_override() for o in parsed.values()):
            continue
        others = [a for a in overrides if a not in given]
        options = _list_options(config_dir, config_name, others, group)
        if options is None:  # not a group chosen by a list: Hydra deletes it as it is
            continue
        gone = {str(v) for a in given if a.startswith("~") for v in _listed(parsed[a].value())}
        whole = any(a.startswith("~") and parsed[a].value() is None for a in given)  # ~callbacks: all
        chosen = [a for a in given if not a.startswith(("~", "+"))]
        if chosen:  # the last choice, as Hydra takes it
            kept = [str(v) for v in _listed(parsed[chosen[-1]].value()) if str(v) not in gone]
        else:
            kept = [] if whole else [v for v in options if v not in gone]
        added = [str(v) for a in given if a.startswith("+") for v in _listed(parsed[a].value())]
        fix = f"'{group}=[{','.join(dict.fromkeys([*kept, *added]))}]'"
        where = f"configs/{config_name}.yaml: {', '.join(options)}"
        return (
            f"{' '.join(given)!r}: {group} is chosen by a list in the defaults list ({where}), from which "
            f"Hydra deletes nothing (it refuses the deletion, and beside a choice or a plus of {group} drops "
            f"them without a word): give the list meant, {fix}"
        )
    return None


def _list_options(
    config_dir: Path, config_name: str, overrides: Sequence[str], group: str
) -> list[str] | None:
    """The options the defaults list that ``overrides`` leave chooses for ``group`` by a list
    (``["default", "wandb"]`` for train.yaml's ``callbacks: [default, wandb]``), or None where it does not
    choose it by a list (:func:`_group_kinds`) or cannot be made."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    kind = (_group_kinds(config_dir, config_name, overrides, {group}) or {}).get(group)
    if kind is None or kind[0] != "list":
        return None
    trials = _sweep_trials(list(overrides), config_dir)
    if not trials:
        return None
    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
        try:
            listed = (
                GlobalHydra.instance()
                .config_loader()
                .compute_defaults_list(config_name, [c for _, c in trials[0]], RunMode.RUN)
            )
        except Exception:  # noqa: BLE001 - a composition problem: Hydra, or a later check, says why
            return None
    return [
        d.config_path.partition("/")[2]
        for d in listed.defaults
        if (d.config_path or "").startswith(f"{group}/") and not (d.parent or "").startswith(f"{group}/")
    ]


def _listed(value: object) -> list[object]:
    """An override's value as a list: ``[ema, recovery]`` as it is, ``ema`` as ``[ema]``, null as ``[]``."""
    return value if isinstance(value, list) else [] if value is None else [value]


def option_set_after_its_deletion(argv: Sequence[str], config_dir: Path, config_name: str) -> str | None:
    """The message for a ``key=value`` override (no plus) of a key that a ``~key`` before it deletes, or a key
    under it (``~trainer.max_epochs trainer.max_epochs=3``, ``~contact contact.min_length_px=5``), where
    Hydra refuses it, or None.

    Hydra applies the overrides in order: the deletion removes the key, and setting a key the config then
    lacks ended in its five lines with status 1 ("Could not override ... To append to your config use
    +..."), which say nothing of the deletion. The line names both overrides and the two commands that
    work: the setting alone, or the deletion with the setting as an addition (``+key=value``: a key given
    anew, a whole node in place of the one deleted). One Hydra accepts (``~trainer trainer.max_epochs=3``, a
    deleted config group) is left alone. In a multirun the trials are composed (:func:`_sweep_trials`): a
    swept setting (``~seed seed=1,2``) was left out of the sweep's own config and failed at each trial.
    """
    overrides = _checked_overrides(argv)

    def deletes(deletion: str, key: str) -> bool:  # ~trainer.max_epochs(=4), or ~trainer, deletes the key
        deleted = deletion[1:].split("=", 1)[0]
        return deletion[:1] == "~" and (key == deleted or key.startswith(f"{deleted}."))

    def deleted_before(arg: str, given: list[str]) -> str | None:  # the last deletion of arg's key before it
        key = arg.split("=", 1)[0]
        before = given[: given.index(arg)]
        return next((d for d in reversed(before) if deletes(d, key)), None) if arg[:1] not in "+~" else None

    if not any(deleted_before(a, overrides) for a in overrides):
        return None  # no composition: the common command deletes nothing it sets
    refused = _first_refused_trial(overrides, config_dir, config_name, _NOT_IN_CONFIG)
    if refused is None:
        return None
    trial, key, where, _ = refused
    typed = [a for a, _ in trial]
    arg = next((a for a in typed if a[:1] not in "+~" and a.split("=", 1)[0] == key), None)
    deletion = deleted_before(arg, typed) if arg is not None else None
    if arg is None or deletion is None:
        return None  # a key the config lacks anyway: unknown_nested_option names the one meant
    parent = deletion[1:].split("=", 1)[0]
    what = f"{key}," if parent == key else f"{key}, under {parent},"
    return (
        f"{arg!r}{where} sets {what} which {deletion!r} before it deletes: give {arg} "
        "alone to set it, or "
        f"{deletion} +{arg} to add it anew after the deletion (a plus adds a key the config lacks)"
    )


def unreadable_or_unknown_choice(argv: Sequence[str], config_dir: Path) -> str | None:
    """The message for the first override Hydra cannot parse, or that picks a config group option that does
    not exist (``experiment=marscapes``), or None.

    Hydra reports both in several lines with exit status 1 (a parse error only says "no viable alternative at
    input"); here they get one line naming the override, the closest option and the choices.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        try:
            (override,) = parser.parse_overrides([arg])
        except OverrideParseException as exc:
            reason = str(exc).splitlines()[0]
            return (
                f"cannot read the override {arg!r} ({reason}): close every bracket, brace and quote, and put "
                "an override with spaces in single quotes, e.g. 'labels_class_map={0: 0, 1: 1, 255: 255}'"
            )
        group = override.key_or_group.split("@", 1)[0]
        folder = config_dir / group
        if override.is_delete() or group.split("/", 1)[0] == "hydra" or not folder.is_dir():
            continue
        value = override.value()
        chosen = (
            value.list if isinstance(value, ChoiceSweep) else value if isinstance(value, list) else [value]
        )
        for option in chosen:
            if not isinstance(option, str) or (folder / f"{option}.yaml").is_file():
                continue
            choices = sorted(p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml"))
            guess = _closest(option, choices)
            meant = f"{group}={guess}" if len(chosen) == 1 else repr(guess)
            hint = f"; did you mean {meant}?" if guess else ""
            return f"no {group} config {option!r} in {arg!r}{hint} (the choices: {', '.join(choices)})"
    return None


def dashed_option(argv: Sequence[str], config_dir: Path, config_name: str) -> str | None:
    """The message for an option written as a command-line flag, argparse's way (``--ckpt_path=m.ckpt``,
    ``--ckpt_path m.ckpt``), or None: the config's top-level name after the dashes, and no flag of Hydra's
    own (``-m``, ``--cfg``, ``--info``: none is a config name).

    ``predict.py``'s check before Hydra reads overrides only, so it said ``missing required option(s)
    ckpt_path`` of the option given; Hydra printed its usage and ``unrecognized arguments``. Neither said
    that options are written without dashes.
    """
    top: set[str] | None = None
    for i, arg in enumerate(argv):
        if not arg.startswith("-") or arg.lstrip("-") == "":
            continue
        key, has_value, value = arg.lstrip("-").partition("=")
        top = top if top is not None else _names(config_dir, config_name)[0]
        if key.split("@", 1)[0].split(".", 1)[0].split("/", 1)[0] not in top:
            continue
        written = arg
        if not has_value and i + 1 < len(argv) and not argv[i + 1].startswith("-") and "=" not in argv[i + 1]:
            written, value = f"{arg} {argv[i + 1]}", argv[i + 1]
        meant = f"{key}={value}" if has_value or written != arg else f"{key}=..."
        return (
            f"{written!r} is written as a command-line flag: options are key=value, without dashes; give it "
            f"as {meant} (the options: configs/{config_name}.yaml)"
        )
    return None


def brace_expanded_option(
    argv: Sequence[str], config_dir: Path | None = None, config_name: str | None = None
) -> str | None:
    """The message for one option given two or more times in a row with other values, as the shell writes
    an unquoted ``key={a,b}`` (bash's brace expansion: ``key=a key=b``, ``++key=a ++key=b``), or None: where
    the values are each a map's entry (``native:project``, none in braces or brackets) of an option
    that can be a map (:func:`_may_be_a_map`), or, given the config
    (``config_dir``, ``config_name``), where the option is list-valued in the config composed with the other
    overrides, or is a config group chosen there by a list (``callbacks: [default, wandb]``), none of the
    values in brackets or braces.

    Other values are left alone: an option given again with another value (``logger=none logger=csv``, a
    script appending to a base list of options; ``tile=256 tile=512``) is Hydra's "the last counts", which a
    check for any repeated option refused. A list option or a list-chosen group given twice on purpose is
    refused all the same (it would keep the last value alone): the message says to give it once, quoted for
    all the values or with the one meant.

    ``labels_class_map={0:0,2:0,1:1,3:1,255:255}`` typed without quotes reached ``predict.py`` as five
    options, ``labels_class_map=0:0`` ... ``labels_class_map=255:255``, of which Hydra kept the last: it was
    refused for the map ``255:255``, a map nobody typed, and ``train.py data.class_map={...}`` ended in
    Hydra's ``AttributeError("'str' object has no attribute 'values'")`` with a run folder made. So
    ``predict.py patterns={jpg,png}`` read the PNGs only, without a word, ``train.py
    data.sources={marsscapes,ai4mars}`` trained on AI4Mars alone, and ``train.py callbacks={default,ema}``
    trained without ``best.ckpt`` and ``last.ckpt``. The fix is the quotes, with the values as they were
    typed and the prefix too (``++patterns=[jpg,png]``, ``+callbacks=[ema,recovery]``, which adds to the
    defaults' list), but a plus on an option the config has, which Hydra refuses (``+patterns=...``).
    """
    runs: list[list[str]] = []  # each option given again in a row, with more than one value
    run: list[str] = []
    for arg in [*argv, ""]:
        key, has_value, _ = arg.partition("=")
        given = has_value and not arg.startswith(("-", "~"))  # a brace keeps the prefix: ++key=a ++key=b
        if run and given and key == run[0].partition("=")[0]:
            run.append(arg)
            continue
        if len(run) > 1 and len({a.partition("=")[2] for a in run}) > 1:
            runs.append(run)
        run = [arg] if given else []
    listed = [
        run
        for run in runs
        if not any(a.partition("=")[2].startswith(("{", "[")) for a in run)
        and not run[0].lstrip("+").startswith(("hydra.", "hydra/"))
    ]
    keys = [  # the runs whose option's value in the config decides: not a config group's choice
        run for run in runs if config_dir is None or not (config_dir / _group_of(run[0])).is_dir()
    ]
    composed = _composed_values(argv, keys, config_dir, config_name)
    for run in runs:
        (prefix, name), typed = _prefixed(run[0]), [a.partition("=")[2] for a in run]
        if all(":" in v and not v.startswith(("{", "[")) for v in typed) and _may_be_a_map(
            name, typed, composed
        ):
            entries = ", ".join(": ".join(p.strip() for p in v.split(":", 1)) for v in typed)
            fix = f"'{prefix}{name}={{{entries}}}'"
            if prefix == "+" and name in composed:  # a plus on an option the config has: Hydra refuses it
                fix = f"without the plus (a plus adds an option the config lacks), '{name}={{{entries}}}'"
            return _shell_split(name, run, "entry", fix)
    if config_dir is None or config_name is None or not listed:
        return None
    groups = _list_chosen_groups(argv, listed, config_dir, config_name)
    for run in listed:
        prefix, name = _prefixed(run[0])
        values = ",".join(a.partition("=")[2] for a in run)
        if (config_dir / _group_of(run[0])).is_dir():  # a group's choice
            if name in groups and prefix != "++":  # ++ of a group: Hydra refuses it, split or not
                tail = (
                    "and Hydra takes a plus of a group once"
                    if prefix
                    else "and Hydra would take the last alone"
                )
                return _given_again(name, run, "choice", f"'{prefix}{name}=[{values}]'", tail)
        elif isinstance(composed.get(name), ListConfig):
            tail = "and Hydra would take the last alone"
            if prefix == "+":  # a plus on an option the config has: Hydra refuses it, quoted or not
                prefix, tail = "", f"and {name} needs no plus: a plus adds an option the config lacks"
            return _given_again(name, run, "value", f"'{prefix}{name}=[{values}]'", tail)
    return None


def _may_be_a_map(name: str, typed: Sequence[str], composed: dict[str, object]) -> bool:
    """Whether ``name`` given in a row as ``typed``, each value with a colon, can be a map the shell split
    into its entries: not Hydra's own key (``hydra.job.env_set.LD_LIBRARY_PATH=/opt/a:/opt/b`` given again
    by a script), no value an interpolation (``${now:%H-%M}``, which bash refuses unquoted), and a map or
    null in the config (``composed``, where it has the option): a string's colon is no entry's."""
    if name.startswith(("hydra.", "hydra/")) or any("${" in v for v in typed):
        return False
    return name not in composed or composed[name] is None or isinstance(composed[name], DictConfig)


def _group_of(arg: str) -> str:
    """The config group an override would choose, were its name a group's: ``callbacks`` of
    ``+callbacks@x=ema``."""
    return _prefixed(arg)[1].split("@", 1)[0]


def _prefixed(arg: str) -> tuple[str, str]:
    """The prefix of an override (``+``, ``++`` or none) and the option it names: ``("++", "patterns")``."""
    key = arg.partition("=")[0]
    name = key.lstrip("+")
    return key[: len(key) - len(name)], name


def _shell_split(name: str, run: Sequence[str], part: str, fix: str) -> str:
    """:func:`brace_expanded_option`'s message for a map: ``name`` given in a row as ``run``, ``fix`` the
    quoted option, ``part`` what the shell made each option of (a map's ``entry``)."""
    return (
        f"{name} is given {len(run)} times in a row ({' '.join(run)}): the shell split an unquoted {{...}} "
        f"into one option per {part}, and only the last would count; put the option in single quotes, {fix}"
    )


def _given_again(name: str, run: Sequence[str], part: str, fix: str, tail: str) -> str:
    """:func:`brace_expanded_option`'s message for a list option or a list-chosen group: ``name`` given in a
    row as ``run``, ``fix`` the quoted option, ``part`` what each is (a list's ``value``, a group's
    ``choice``), ``tail`` what Hydra does with it. Said for both readings: an unquoted ``{a,b}`` that the
    shell split, and a script that gives the option twice meaning the last."""
    every = "both" if len(run) == 2 else f"all {len(run)}"
    return (
        f"{name} is given {len(run)} times in a row ({' '.join(run)}): give it once, {fix} for {every} "
        f"{part}s, or only the one {part} meant (unquoted, the shell splits {{...}} into one option per "
        f"{part}, {tail})"
    )


def _composed_values(
    argv: Sequence[str], runs: Sequence[Sequence[str]], config_dir: Path | None, config_name: str | None
) -> dict[str, object]:
    """The value of each option of ``runs`` (each an option given again in a row, named without its prefix)
    that the config composed with the overrides of ``argv`` other than those of ``runs`` has, each sweep at
    its first value: the config's own type (a list), whatever ``experiment=`` or ``data=`` chose; ``"???"``
    for an option whose value is to be given (``input_dir``). One composition (about 0.15 s), made only when
    an option is given again in a row; empty without the config or where it does not compose (Hydra, or a
    later check, says why)."""
    if config_dir is None or config_name is None or not runs:
        return {}
    given = {a for run in runs for a in run}
    trials = _sweep_trials([a for a in _checked_overrides(argv) if a not in given], config_dir)
    if not trials:
        return {}
    _, cfg = _compose_error(config_dir, config_name, [composed for _, composed in trials[0]])
    if cfg is None:
        return {}
    values: dict[str, object] = {}
    for name in (_prefixed(run[0])[1] for run in runs):
        value = OmegaConf.select(cfg, name, default=_ABSENT, throw_on_resolution_failure=False)
        if value is not _ABSENT:
            values[name] = value
        elif _is_missing(cfg, name):  # ``???``: an option the config has, its value to give (input_dir)
            values[name] = "???"
    return values


def _is_missing(cfg: DictConfig, name: str) -> bool:
    """Whether ``cfg`` has the option ``name`` (dotted) with the value to give, ``???``."""
    parent, _, key = name.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None, throw_on_resolution_failure=False) if parent else cfg
    # ``key in node`` is False for a ``???`` value: the node's keys list it
    return isinstance(node, DictConfig) and key in list(node.keys()) and OmegaConf.is_missing(node, key)


def _list_chosen_groups(
    argv: Sequence[str], runs: Sequence[Sequence[str]], config_dir: Path, config_name: str
) -> set[str]:
    """The config groups of ``runs`` (each an option given again in a row) that the defaults list, as the
    overrides of ``argv`` other than those of ``runs`` leave it (each sweep at its first value), chooses by
    a list of options (train.yaml's ``callbacks: [default, wandb]``; :func:`_group_kinds`). Empty where no
    run is a group's, or where the defaults list cannot be made (Hydra, or a later check, says why)."""
    groups = {_prefixed(run[0])[1] for run in runs if (config_dir / _group_of(run[0])).is_dir()}
    if not groups:
        return set()
    given = {a for run in runs for a in run}
    others = [a for a in _checked_overrides(argv) if a not in given]
    kinds = _group_kinds(config_dir, config_name, others, groups) or {}
    return {group for group, (kind, _) in kinds.items() if kind == "list"}


def _group_kinds(
    config_dir: Path, config_name: str, overrides: Sequence[str], keys: set[str]
) -> dict[str, tuple[str, str | None]] | None:
    """How the defaults list that ``overrides`` leave (each sweep at its first value) chooses each config
    group of ``keys`` (``callbacks``, ``model@teacher``), by Hydra's own defaults list (no composition):
    ``("chosen", option)`` for a group of one choice, as Hydra records it (``hydra.runtime.choices``; None
    where it is chosen as null, ``debug: null``); ``("list", None)`` for a group chosen by a list
    (train.yaml's ``callbacks: [default, wandb]``: Hydra lists each of its options as a config of the group's
    and records no choice), to which a plus adds; ``("absent", None)`` for a group the defaults list lacks
    (deleted first, ``~model``; another package, ``model@teacher``), which a plus adds. None where the
    defaults list cannot be made (Hydra, or a later check, says why)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    trials = _sweep_trials(list(overrides), config_dir)
    if not trials:
        return None
    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
        try:
            listed = (
                GlobalHydra.instance()
                .config_loader()
                .compute_defaults_list(config_name, [c for _, c in trials[0]], RunMode.RUN)
            )
        except Exception:  # noqa: BLE001 - a composition problem: Hydra, or a later check, says why
            return None
    choices = listed.overrides.known_choices
    kinds: dict[str, tuple[str, str | None]] = {}
    for key in keys:
        group, _, package = key.partition("@")
        if key in choices:
            kinds[key] = ("chosen", choices[key])
        elif any(
            (d.config_path or "").startswith(f"{group}/") and (not package or d.package == package)
            for d in listed.defaults
        ):
            kinds[key] = ("list", None)
        else:
            kinds[key] = ("absent", None)
    return kinds


def _plus_on_a_group(
    given: Sequence[str], key: str, kind: tuple[str, str | None] | None, config_name: str, refused: str
) -> str:
    """The one line for ``given``, the overrides that choose the config group ``key`` with a plus or two
    (``+logger=csv``; ``++callbacks=ema``; ``+logger=none +logger=csv``), which Hydra refuses: where the
    defaults list has the group (``kind``, :func:`_group_kinds`; None where it cannot be made), ``refused``
    (Hydra's reason, in words), and the override that works, given once. A group of one choice: the choice
    without the plus (the last given, as Hydra takes a choice given again), which replaces the defaults' own;
    one chosen by a list: one plus, which adds to the list (several options in one list); one the defaults
    list lacks: one plus, which adds it."""
    head = " and ".join(repr(a) for a in given)
    values = [a.partition("=")[2] for a in given]
    last = values[-1]
    several = len(given) > 1
    plus = "pluses" if any(a.startswith("++") for a in given) else "plus"
    defaults = f"configs/{config_name}.yaml"

    def quoted(fix: str) -> str:  # brackets or braces, quoted for the shell
        return f"'{fix}'" if any(c in fix for c in "[]{}") else fix

    what, chosen = kind if kind is not None else ("unknown", None)
    if what == "chosen":
        where = f"{key} is already in the defaults list ({defaults}, as composed: {chosen or 'null'})"
        once = f"once (without the {plus}; the last given)" if several else f"(without the {plus})"
        does = "chooses it" if chosen is None else f"replaces {chosen}"
        fix = f"{quoted(f'{key}={last}')} {once}, which {does}"
    elif what == "list":
        where = f"{key} is chosen by a list in the defaults list ({defaults}), to which one plus adds"
        if several:
            every = ",".join(v.strip("[]") for v in values)
            them = "both" if len(given) == 2 else "them all"
            fix = f"{quoted(f'+{key}=[{every}]')} (one plus), which adds {them} to the {key} chosen there"
        else:
            added = last.strip("[]")
            fix = f"{quoted(f'+{key}={last}')} (one plus), which adds {added} to the {key} chosen there"
    elif what == "absent":
        where = f"{key} is not in the defaults list ({defaults}, as composed)"
        once = "once (one plus; the last given)" if several else "(one plus)"
        fix = f"{quoted(f'+{key}={last}')} {once}, which adds it"
    else:
        where = f"{key} is a config group"
        fix = (
            f"{quoted(f'{key}={last}')} (without the {plus}) to choose it, or {quoted(f'+{key}={last}')} "
            "(one plus) to add it to a group the defaults list chooses by a list"
        )
    return f"{head}: {where}, and {refused}: give {fix}"


def unknown_option(argv: Sequence[str], config_dir: Path, config_name: str) -> str | None:
    """The message for the first override whose name the config does not have, or None.

    Top-level names first (:func:`unknown_nested_option` then checks nested ones). The suggestion is the
    closest top-level name, else the closest key of a group's default option
    (``max_epoch`` -> ``trainer.max_epochs``).

    Args:
        argv: Command-line arguments after the program name.
        config_dir: The folder of the Hydra configs.
        config_name: The primary config (``train``, ``predict``) without ``.yaml``.
    """
    if any(
        a.startswith(("-cn", "-cp", "-cd", "--config-name", "--config-path", "--config-dir")) for a in argv
    ):
        return None  # another primary config or config folder: Hydra checks the names itself
    problem = (
        dashed_option(argv, config_dir, config_name)
        or deleted_list_chosen_group(argv, config_dir, config_name)
        or added_beside_a_chosen_list(argv, config_dir, config_name)
        or brace_expanded_option(argv, config_dir, config_name)
        or unreadable_or_unknown_choice(argv, config_dir)
    )
    if problem is not None:
        return problem
    names: tuple[set[str], list[str]] | None = None
    for arg in argv:
        if arg.startswith(("-", "+", "~")) or "=" not in arg:
            continue
        name = arg.split("=", 1)[0].split("@", 1)[0].split(".", 1)[0].split("/", 1)[0]  # hydra/launcher=...
        names = names or _names(config_dir, config_name)
        top, nested = names
        if name in top:
            continue
        # A known name that starts the typed one (tile in tile_size) beats a merely similar one (batch_size).
        guess = _closest(name, sorted(top))
        if guess is None:
            leaves = {n.split(".", 1)[1]: n for n in nested}
            close = difflib.get_close_matches(name, sorted(leaves), n=1, cutoff=0.75)
            guess = leaves[close[0]] if close else None
        hint = f"; did you mean {guess}=...?" if guess else ""
        return f"unknown option {name!r} in {arg!r}{hint} (the options: configs/{config_name}.yaml)"
    global _trial_messages
    _trial_messages = {}
    try:
        return (
            argument_the_run_gives(argv, config_name)
            or force_added_group(argv, config_dir, config_name)
            or added_group_already_chosen(argv, config_dir, config_name)
            or option_set_after_its_deletion(argv, config_dir, config_name)
            or unknown_nested_option(argv, config_dir, config_name)
            or added_option_not_taken(argv, config_dir, config_name)
            or added_option_already_there(argv, config_dir, config_name)
            or deleted_option_not_there(argv, config_dir, config_name)
        )
    finally:
        _trial_messages = None


#: ``train.py``'s Trainer arguments that the run gives itself (:func:`~marsunits.training.build_trainer`), and
#: the config group that sets them.
_GIVEN_BY_RUN = {
    "trainer.logger": "the loggers of the logger group (configs/logger/): choose them with logger=<name>, "
    "logger=none for none",
    "trainer.callbacks": "the callbacks of the callbacks group (configs/callbacks/): choose them with "
    "callbacks=[default,...], or set one's option with callbacks.<name>.<key>=...",
}


def argument_the_run_gives(argv: Sequence[str], config_name: str) -> str | None:
    """The message for a ``trainer.logger`` or ``trainer.callbacks`` override (``+`` or not), or None.

    ``train.py`` hands the Trainer its loggers and callbacks from their groups, over any such key: told to
    add ``+trainer.logger=false`` (a Trainer argument the config does not list), Hydra took it and the run
    logged as before, without a word. The message names the group option that does it.
    """
    if config_name != "train":
        return None
    for arg in argv:
        key = arg.split("=", 1)[0].lstrip("+")
        if "=" in arg and not arg.startswith("-") and key in _GIVEN_BY_RUN:
            return f"{key} in {arg!r} is not read: train.py gives the Trainer {_GIVEN_BY_RUN[key]}"
    return None


def exit_on_unknown_option(config_dir: Path, config_name: str, prog: str) -> None:
    """Check ``sys.argv``; on an unknown option, a log folder that cannot be made, a value ``predict.py``
    refuses (:func:`~marsunits.cli_values.predict_refusal`), or a process of a torchrun/SLURM launch without
    a shared ``run_name`` (:func:`~marsunits.cli_launch.unnamed_external_ranks`), print
    ``<prog>: error: ...`` and exit with status 2; under torchrun the refusal is also written to the agent's
    error file (:func:`~marsunits.errors.record_refusal_for_torchrun`), for torchrun's failure summary.

    Hydra's shell completion (``-sc install=bash``, ``-sc query=bash``) is left alone: its ``install=`` and
    ``query=`` are the flag's arguments, not options, and were refused as unknown ones."""
    if any(a in _SHELL_COMPLETION for a in sys.argv[1:]):
        return
    message = (
        unknown_option(sys.argv[1:], config_dir, config_name)
        or unresolvable_path_interpolation(sys.argv[1:], config_dir, config_name)
        or unwritable_log_dir(sys.argv[1:])
    )
    if message is None and config_name == "predict":
        message = predict_refusal(sys.argv[1:], config_dir)
    if message is None and config_name == "train":
        message = unnamed_external_ranks(sys.argv[1:], config_dir)
    if message is None and config_name == "train":
        message, sys.argv[1:] = claim_run_folder(sys.argv[1:], config_dir)
    if message is not None:  # a folder named in Latin-1 bytes as \xNN, as the run's own errors say it
        print(readable(f"{prog}: error: {message}"), file=sys.stderr)
        record_refusal_for_torchrun(readable(message))  # torchrun's summary names it (torch only there)
        raise SystemExit(2)
