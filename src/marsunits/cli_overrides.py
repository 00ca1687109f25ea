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
on an option the config already has (``+trainer.max_epochs=3``), a deletion of a key it lacks
(``~trainer.max_epoch``) and a setting of a key deleted before it (``~trainer.max_epochs
trainer.max_epochs=3``). A multirun is checked as its trials compose (:mod:`~marsunits.cli_compose`).
``hydra.*`` keys, a sweep's values and Hydra's own flags (``--cfg job``) are not checked; any other
composition problem is left to Hydra, which reports it in its own words.

:func:`unknown_option` runs these checks, and those of the modules beside this one that read option names:
:mod:`~marsunits.cli_group_choices` (a plus, two pluses or a deletion on a config group's choice, or null) and
:mod:`~marsunits.cli_repeated_options` (an option given again in a row, as the shell splits an unquoted
``{...}``), in the order :func:`unknown_option` gives; :mod:`~marsunits.cli_compose` holds what the three
share (the overrides composed, each trial of a sweep). The other checks the entry points run before Hydra,
which :func:`exit_on_unknown_option` calls, live beside this module, one job each:
:mod:`~marsunits.cli_argv` (what a command line holds: its overrides, a multirun, Hydra's flags),
:mod:`~marsunits.cli_paths` (path options: ``~``, quoting, ``${``), :mod:`~marsunits.cli_values` (values
refused before a run folder is made), :mod:`~marsunits.cli_sweeps` (a sweep's trials and folder),
:mod:`~marsunits.cli_run_folder` (the log folder, and ``train.py``'s claim on its run folder) and
:mod:`~marsunits.cli_launch` (ranks started by torchrun or SLURM, another copy of the package). Their public
names are importable from here as well.
"""

from __future__ import annotations

import difflib
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from omegaconf import DictConfig, ListConfig, OmegaConf

from marsunits.cli_argv import SHELL_COMPLETION_FLAGS
from marsunits.cli_compose import (
    ABSENT,
    changed_in_trial,
    checked_overrides,
    checked_trials,
    compose_error,
    group_choices,
    in_trial,
    trial_message,
    trials_composed_once,
)
from marsunits.cli_group_choices import (
    added_beside_a_chosen_list,
    added_group_already_chosen,
    deleted_list_chosen_group,
    force_added_group,
    null_group_choice,
)
from marsunits.cli_launch import note_another_copy_of_the_package, unnamed_external_ranks
from marsunits.cli_paths import (
    home_expanded_overrides,
    sweeps_taken_as_one_value,
    unresolvable_path_interpolation,
    warn_sweeps_taken_as_one_value,
)
from marsunits.cli_paths import quoted_path_overrides as quoted_path_overrides
from marsunits.cli_repeated_options import brace_expanded_option
from marsunits.cli_run_folder import MIN_FREE_BYTES as MIN_FREE_BYTES
from marsunits.cli_run_folder import claim_run_folder, unwritable_log_dir
from marsunits.cli_sweeps import MAX_CHECKED_TRIALS as MAX_CHECKED_TRIALS
from marsunits.cli_sweeps import claim_sweep_folder as claim_sweep_folder
from marsunits.cli_sweeps import study_package_refusal
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


class _RefusedTrial(NamedTuple):
    """A trial of a command's overrides that Hydra refuses, as :func:`_first_refused_trial` finds it."""

    #: The trial (:func:`checked_trials`): ``(typed, composed)`` of each override.
    trial: list[tuple[str, str]]
    #: The key Hydra's message names (the refusal's first group).
    key: str
    #: :func:`~marsunits.cli_compose.in_trial` of the trial: empty for the first, else the value of a
    #: sweep it takes.
    where: str
    #: Whether the command has more than one trial (:func:`checked_trials`: a sweep's later values that may
    #: compose otherwise, such as a swept config group's options, composed in turn), of which one may have a
    #: key another lacks.
    options_in_turn: bool


def _first_refused_trial(
    overrides: list[str], config_dir: Path, config_name: str, refusal: re.Pattern[str]
) -> _RefusedTrial | None:
    """The first trial of ``overrides`` (:func:`checked_trials`) that Hydra refuses, where its message matches
    ``refusal`` (whose first group is the key the message names), or None: where no trial is refused, the
    first refused is refused in other words (left to the check of those), or Hydra cannot read an override.
    The trials are composed in order, only while each passes, each once in one :func:`unknown_option`
    (:func:`~marsunits.cli_compose.trial_message`)."""
    trials = checked_trials(overrides, config_dir)
    if trials is None:
        return None
    for trial in trials:
        message = trial_message(config_dir, config_name, tuple(c for _, c in trial))
        if message:
            match = refusal.match(message)
            if match is None:
                return None
            return _RefusedTrial(trial, match.group(1), in_trial(trial, trials[0]), len(trials) > 1)
    return None


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
    each option of a swept config group is composed in turn (:func:`checked_trials`): Hydra composes the
    sweep's own config without its sweeps, so a misspelt key that is itself swept (``-m
    trainer.max_epoch=1,2``), or one that only a later option of the group lacks, failed at each trial, in
    Hydra's five lines after the sweep folder was made.
    """
    # Deletions left out, as before: a group choice after one (``~logger logger@x=csv``) is Hydra's to refuse,
    # and a setting after one is option_set_after_its_deletion's (they compose these trials with them).
    overrides = [a for a in checked_overrides(argv) if "=" in a]
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
    _, cfg = compose_error(config_dir, config_name, rest)
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
        else:
            composed = next(c for a, c in trial if a == arg)
            added = _keys_added_to_a_map(key, arg, composed, node, where)
            if added is not None:
                return added
    return (
        f"unknown option {key!r} in {arg!r}{where}{hint} "
        f"(every option: python {config_name}.py --cfg job, with the same overrides)"
    )


def _keys_added_to_a_map(key: str, arg: str, composed: str, node: object, where: str) -> str | None:
    """The message for a map given to an option that is a map of ids (``data.subclass_map={99: 1}`` on
    ``experiment=marsscapes_subclasses``) naming keys that map lacks, or None. Hydra merges a map given so
    into the config's, and refuses a key the config's map lacks as it refuses a misspelt option ("Could not
    override 'data.subclass_map'", whose ``+data.subclass_map=...`` it then advises is refused too: the
    option is there): it was told as an unknown option, of an option the config has. Two pluses merge it with
    its new keys (``'++data.subclass_map={99: 1}'``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    # Only a map of ids (a class map): a node of named options (data.scene) given a new name is a misspelling.
    if not isinstance(node, DictConfig) or not node or not all(isinstance(k, int) for k in node):
        return None
    try:
        (override,) = OverridesParser.create().parse_overrides([composed])
        value = override.value()
    except Exception:  # noqa: BLE001 - an override Hydra cannot read is said elsewhere
        return None
    if not isinstance(value, dict):
        return None
    has = [str(k) for k in node]
    new = [str(k) for k in value if str(k) not in has]
    if not new:
        return None
    given = arg.lstrip("+").split("=", 1)[1]
    listed = ", ".join(has) if len(has) <= 12 else f"{', '.join(has[:12])}, ..."
    return (
        f"{arg!r}{where}: {key} has no key {' or '.join(new)} (its keys: {listed}), and a map given to it "
        f"without pluses is merged into the config's, adding no key; to add keys, give it with two pluses, "
        f"quoted for the shell: '++{key}={given}'"
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
        _, cfg = compose_error(config_dir, config_name, [a for a in single if a != arg])
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


#: Hydra's message when a ``+key=value`` override adds a key the composed config already has.
_ALREADY_THERE = re.compile(r"^Could not append to config\. An item is already at '([^']+)'")


def added_option_already_there(argv: Sequence[str], config_dir: Path, config_name: str) -> str | None:
    """The message for a ``+key=value`` override (one plus) whose key the config already has, or None.

    Hydra refused it in five lines ("Could not append to config. An item is already at ...") with status 1,
    where every other mistaken option is one line with status 2. ``++key=value`` (add or set) and a plus on a
    key the config lacks are left to Hydra. In a multirun the trials are composed (:func:`checked_trials`):
    a swept one (``-m +trainer.max_epochs=1,2``), left out of the sweep's own config, failed at each trial
    after the sweep folder was made; one that only a later option of a swept group has is given with ``++``.
    Deletions (``~key``) compose with them: Hydra applies the overrides in order, and ``~trainer.max_epochs
    +trainer.max_epochs=5`` adds the key the first deleted.
    """
    overrides = checked_overrides(argv)
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
        _, cfg = compose_error(config_dir, config_name, [a for a in single if a not in added])
        if cfg is not None and OmegaConf.select(cfg, key, default=ABSENT) is ABSENT:
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
    (:func:`checked_trials`; the sweeps had been composed as one run's, refused as ambiguous, and the deletion
    was left to Hydra's three lines), each option of a swept config group in turn: ``~data.train_length
    data=synthetic,marsscapes`` failed only at the trials of ``data=marsscapes``, which lacks the key.
    """
    overrides = checked_overrides(argv)
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
    _, cfg = compose_error(config_dir, config_name, [a for a in single if a != arg])
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


def option_set_after_its_deletion(argv: Sequence[str], config_dir: Path, config_name: str) -> str | None:
    """The message for a ``key=value`` override (no plus) of a key that a ``~key`` before it deletes, or a key
    under it (``~trainer.max_epochs trainer.max_epochs=3``, ``~contact contact.min_length_px=5``), where
    Hydra refuses it, or None.

    Hydra applies the overrides in order: the deletion removes the key, and setting a key the config then
    lacks ended in its five lines with status 1 ("Could not override ... To append to your config use
    +..."), which say nothing of the deletion. The line names both overrides and the two commands that
    work: the setting alone, or the deletion with the setting as an addition (``+key=value``: a key given
    anew, a whole node in place of the one deleted). One Hydra accepts (``~trainer trainer.max_epochs=3``, a
    deleted config group) is left alone. In a multirun the trials are composed (:func:`checked_trials`): a
    swept setting (``~seed seed=1,2``) was left out of the sweep's own config and failed at each trial.
    """
    overrides = checked_overrides(argv)

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
            listed = _list_in_braces(arg, config_dir)
            if listed is not None:
                return (
                    f"cannot read the override {arg!r}: braces hold a map's key: value entries, and a list "
                    f"is written in brackets: give {listed}"
                )
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
            choices = group_choices(config_dir, group)
            guess = _closest(option, choices)
            meant = f"{group}={guess}" if len(chosen) == 1 else repr(guess)
            hint = f"; did you mean {meant}?" if guess else ""
            return f"no {group} config {option!r} in {arg!r}{hint} (the choices: {', '.join(choices)})"
    return None


def _list_in_braces(arg: str, config_dir: Path) -> str | None:
    """The override ``arg`` with its value in braces and without a map's ``key: value`` entries
    (``callbacks={ema,default}``, quoted, or ``callbacks={ema}``, which bash leaves alone) written as the
    list it reads as, quoted for the shell: ``'callbacks=[ema,default]'``; a config group's choices each
    once (Hydra takes a choice once), in the order typed. None for any other value."""
    key, _, value = arg.partition("=")
    if not (value.startswith("{") and value.endswith("}")) or ":" in value or "{" in value[1:]:
        return None
    items = [v.strip() for v in value[1:-1].split(",") if v.strip()]
    if (config_dir / key.lstrip("+").split("@", 1)[0]).is_dir():
        items = list(dict.fromkeys(items))
    return f"'{key}=[{','.join(items)}]'"


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
        or null_group_choice(argv, config_dir, config_name)
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
    with trials_composed_once():
        return (
            argument_the_run_gives(argv, config_name)
            or force_added_group(argv, config_dir, config_name)
            or added_group_already_chosen(argv, config_dir, config_name)
            or option_set_after_its_deletion(argv, config_dir, config_name)
            or unknown_nested_option(argv, config_dir, config_name)
            or added_option_not_taken(argv, config_dir, config_name)
            or added_option_already_there(argv, config_dir, config_name)
            or deleted_option_not_there(argv, config_dir, config_name)
            or sweep_trial_not_composed(argv, config_dir, config_name)
        )


def sweep_trial_not_composed(argv: Sequence[str], config_dir: Path, config_name: str) -> str | None:
    """The message for a sweep some trial of which Hydra cannot compose, for a reason no check before this
    one names (``-m ~trainer.max_epochs=4,5``: Hydra deletes a key given a value only where it has that
    value; ``-m data.scene=null,[1]``: a list cannot replace a map), or None.

    Hydra composes a sweep's own config without its sweeps, makes the sweep folder, then composes each trial
    of a batch (all of them, unless ``hydra.sweeper.max_batch_size`` is set) before it runs them: it refused
    the sweep there in its lines, status 1, leaving the folder (after the batches before, with a batch
    size). The trials are those of :func:`~marsunits.cli_compose.checked_trials` (the first, and each later
    value that may compose otherwise, one at a time), each composed once in one :func:`unknown_option`
    (:func:`~marsunits.cli_compose.trial_message`). The line names the values of the trial, Hydra's reason
    (its first line) and the command that shows Hydra's whole message. A command without a sweep, or
    whose overrides other than its sweeps do not compose (the sweep's own config), is Hydra's to refuse,
    before it makes any folder.
    """
    overrides = checked_overrides(argv)
    trials = checked_trials(overrides, config_dir)
    if trials is None or (len(trials) == 1 and all(a == c for a, c in trials[0])):
        return None
    for trial in trials:
        composed = tuple(c for _, c in trial)
        message = trial_message(config_dir, config_name, composed)
        if not message:
            continue
        if message.startswith("other: "):
            return None  # not a composition's: Hydra reports it as it runs
        if compose_error(config_dir, config_name, [a for a, c in trial if a == c])[0]:
            return None  # the sweep's own config fails too: Hydra says why before it makes any folder
        swept = " ".join(changed_in_trial(trial, trials[0]) or [c for a, c in trial if a != c])
        reason = message.strip().splitlines()[0].strip()
        shown = " ".join(shlex.quote(c) for c in composed)
        return (
            f"the trials with {swept} do not compose (Hydra: {reason}), and Hydra would refuse the sweep "
            "after making its folder: give the sweep without that value, or fix it (Hydra's whole message: "
            f"python {config_name}.py {shown} --cfg job)"
        )
    return None


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
    if any(a in SHELL_COMPLETION_FLAGS for a in sys.argv[1:]):
        return
    message = (
        (study_package_refusal(sys.argv[1:]) if config_name == "train" else None)
        or unknown_option(sys.argv[1:], config_dir, config_name)
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
