"""Config group choices on the command line that Hydra refuses in several lines, or composes without what was
meant: a plus on a config group the defaults list already has (``+model=tiny``), two pluses on a config group
(``++callbacks=ema``), a plus on a group chosen by a list beside a choice of it (``callbacks=[default]
+callbacks=ema``, whose plus Hydra drops without a word), a deletion of such a group (``~callbacks``, from
which Hydra deletes nothing) and a group chosen as null (``debug=null``, which Hydra cannot take).

Each is one line giving the override that works, from how the defaults list chooses the group
(:func:`_group_kinds`: one choice, a list, or none). :func:`~marsunits.cli_overrides.unknown_option` runs
these checks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import initialize_config_dir

from marsunits.cli_compose import (
    checked_overrides,
    checked_trials,
    group_choices,
    group_of,
    in_trial,
    overrides_parser,
    prefix_and_option,
    trial_message,
)

#: What Hydra cannot do with ``group=null``, as each refusal of one starts.
_NULL_REFUSED = "Hydra cannot choose a config group as null"


def null_group_choice(argv: Sequence[str], config_dir: Path, config_name: str) -> str | None:
    """The message for a config group chosen as null (``debug=null``, ``+model=null``, ``++debug=NULL``, a
    sweep ``-m debug=null,fdr``, a list ``callbacks=[default,null]``), or None.

    Hydra refused each in a 25-line traceback ("Config group override must be a string or a list. Got
    NoneType") with status 1, a sweep at its first trial, after it had made the sweep folder. The line gives
    the form that works, from how the defaults list the other overrides leave chooses the group
    (:func:`_null_fix`): the option left out, ``~group``, or a choice. A key set to null (``ckpt_path=null``,
    ``data.class_map=null``) is no group's choice and is left alone, and so are deletions (``~debug``), a
    dictionary (``++model={lr: 0.1}``), Hydra's own groups and what Hydra cannot read (said by
    :func:`~marsunits.cli_overrides.unreadable_or_unknown_choice`).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep

    overrides = checked_overrides(argv)
    parser = OverridesParser.create()
    for arg in overrides:
        if arg.startswith("~") or "=" not in arg or not (config_dir / group_of(arg)).is_dir():
            continue
        try:
            (override,) = parser.parse_overrides([arg])
        except Exception:  # noqa: BLE001 - an override Hydra cannot read is said by unreadable_or_unknown_choice
            continue
        value = override.value()
        swept = isinstance(value, ChoiceSweep)
        listed: list[Any] = (
            value.list if isinstance(value, ChoiceSweep) else value if isinstance(value, list) else [value]
        )
        if not any(v is None for v in listed):
            continue
        key = prefix_and_option(arg)[1]
        kept = [str(v) for v in listed if v is not None]
        if isinstance(value, list) and kept:  # callbacks=[default,null]; [null] is read as null
            return (
                f"{arg!r}: {_NULL_REFUSED}, and null is no option of {key}: give the list without it, "
                f"'{key}=[{','.join(kept)}]'"
            )
        same = [a for a in overrides if prefix_and_option(a)[1] == key]
        others = [a for a in overrides if a not in same]
        after = overrides[overrides.index(arg) + 1 :]
        chosen = [  # the group's choice meant beside the null: model=null +model=tiny, model=null model=tiny
            a.partition("=")[2]
            for a in same
            if a != arg and a[:1] != "~" and a.partition("=")[2] and (a[:1] == "+" or a in after)
        ]
        why, fix = _null_fix(
            config_dir, config_name, others, key, None if swept or not chosen else chosen[-1]
        )
        if swept:
            if not kept:
                return f"{arg!r}: {_NULL_REFUSED}: {why}: {fix}"
            return (
                f"{arg!r}: {_NULL_REFUSED}, and a sweep of {key} runs each of its options: sweep the others "
                f"alone, {key}={','.join(kept)}; for the run without {key}, {why}: {fix}"
            )
        return f"{arg!r}: {_NULL_REFUSED}: {why}: {fix}"
    return None


def _null_fix(
    config_dir: Path, config_name: str, others: Sequence[str], key: str, chosen: str | None
) -> tuple[str, str]:
    """Why ``key`` (a config group, ``model@teacher`` too) chosen as null is refused, and what to give in its
    place, as the defaults list ``others`` leave (:func:`_group_kinds`) chooses it: ``chosen``, the command
    line's other choice of the group (``+model=tiny`` beside ``model=null``), given alone; nothing for a
    group null there already (``debug``, ``hparams_search``; ``predict.py``'s ``logger``); ``~group`` where
    each of its options sets the whole config (``# @package _global_``: ``experiment``); ``group=none`` where
    it has a ``none`` option (``logger``); a list where it is chosen by one (``callbacks``); else a choice,
    from the group's choices (``model``, ``data``, ``trainer``: every run needs one)."""
    group = key.split("@", 1)[0]
    defaults = f"configs/{config_name}.yaml"
    choices = group_choices(config_dir, group)
    kind = (_group_kinds(config_dir, config_name, others, {key}) or {}).get(key)
    what, was = kind if kind is not None else ("unknown", None)
    if chosen is not None:
        plus = "+" if what == "absent" else ""
        given = f"'{key}=[{chosen.strip('[]')}]'" if what == "list" else f"{plus}{key}={chosen}"
        return f"the command line chooses {key} as {chosen} too", f"give {given} alone"
    if what == "chosen" and was is None:
        return f"{key} is not chosen unless asked for ({defaults}: {key}: null)", "leave the option out"
    if what == "absent":
        return f"{key} is not in the defaults list ({defaults}, as composed)", "leave the option out"
    if what == "list":
        listed = ",".join(_list_options(config_dir, config_name, others, key) or [])
        return (
            f"{key} is chosen by a list in the defaults list ({defaults})",
            f"give the list meant, '{key}=[]' for none (the defaults list's: '{key}=[{listed}]'; the "
            f"choices: {', '.join(choices)})",
        )
    whole = all(
        p.read_text(encoding="utf-8").startswith("# @package _global_")
        for p in (config_dir / group).glob("*.yaml")
    )
    composed = f" ({defaults}, as composed: {was})" if was is not None else f" ({defaults})"
    if whole:
        return (
            f"{group}'s options set the whole config",
            f"to leave {key} out of the defaults list{composed}, give ~{key}",
        )
    if "none" in choices:
        return (
            f"{key} is a part of the config{composed}",
            f"give {key}=none for no {group} (the choices: {', '.join(choices)})",
        )
    return (
        f"every run needs a {group} config{composed}",
        f"choose one, {key}=<name> (the choices: {', '.join(choices)})",
    )


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
    Beside the command line's own choice of the group (``model=tiny +model=fpn_lite0``, before or after it)
    Hydra gives the plus that choice, and where the choice's config has a defaults list of its own (tiny's
    is unet_lite0's; gpu's, cpu's) composes the two as one without a word: refused alike, from the defaults
    list (a group of one choice), naming the choice beside the plus (given twice where it is the same).
    Checked by composing, so what Hydra adds is left alone: a group that takes a list (``+callbacks=ema``
    adds it to the defaults' callbacks; twice, ``+callbacks=[ema,recovery]`` adds both), a group the command
    deleted first (``~model +model=tiny``), another package (``+model@teacher=tiny``). In a multirun the
    trials are composed (:func:`~marsunits.cli_compose.checked_trials`: each value of a swept plus, and each
    option of another swept group, in turn): a sweep ``+model=tiny,unet_lite0`` failed at its first trial,
    after Hydra had made the sweep folder, and ``+model=unet_lite0_d4,tiny`` at its second alike (Hydra
    takes a plus on the option the defaults choose already: the default experiment's unet_lite0_d4); the
    line names the trials refused, and gives the sweep without the plus. Hydra's own groups
    (``hydra/launcher``) are left to Hydra.
    """
    overrides = checked_overrides(argv)
    added = [
        a
        for a in overrides
        if a.startswith("+") and not a.startswith("++") and (config_dir / group_of(a)).is_dir()
    ]
    if not added:
        return None
    trials = checked_trials(overrides, config_dir)
    if trials is None:  # an override Hydra cannot read is said by unreadable_or_unknown_choice
        return None

    def refused_in(trial: list[tuple[str, str]], group: str) -> bool:  # Hydra refuses the plus there
        match = _GROUP_ALREADY_CHOSEN.match(
            trial_message(config_dir, config_name, tuple(c for _, c in trial))
        )
        return match is not None and (match.group("group") or match.group("again")) == group

    for arg in added:
        group = arg[1:].split("=", 1)[0]
        given = [a for a in added if a[1:].split("=", 1)[0] == group]
        others = [a for a in overrides if a not in given]
        typed = [a for a in others if a.partition("=")[0] == group]  # logger=wandb +logger=wandb
        # Each trial in turn: a later value of a sweep may be refused where the first is not (-m
        # +model=unet_lite0_d4,tiny: a plus on the choice the defaults make already composes).
        refusing = next((t for t in trials if refused_in(t, group)), None)
        if refusing is None and not typed:
            continue
        trial = refusing or trials[0]
        kind = (
            _group_kinds(config_dir, config_name, [c for a, c in trial if a not in given], {group}) or {}
        ).get(group)
        # model=tiny +model=fpn_lite0: Hydra gave the plus tiny, and composed tiny once; refused where the
        # group has one choice (a list's plus beside its choice is added_beside_a_chosen_list's).
        if refusing is None and (kind is None or kind[0] != "chosen"):
            continue
        several = len(given) > 1 and (kind is None or kind[0] != "chosen")
        refused = (
            "Hydra takes a plus of a group once" if several else "a plus adds only a config group it lacks"
        )
        return _plus_on_a_group(
            given,
            group,
            kind,
            config_dir,
            config_name,
            refused,
            typed[-1] if typed else None,
            in_trial(trial, trials[0]),
        )
    return None


def force_added_group(argv: Sequence[str], config_dir: Path, config_name: str) -> str | None:
    """The message for a ``++group=option`` override of a config group (``++callbacks=ema``,
    ``++model=tiny``), or None.

    Two pluses add or set an option; Hydra refuses them on a config group ("force-add of config groups is
    not supported") in several lines with status 1, and at each trial of a sweep (``-m ++model=a,b``), after
    the sweep folder was made. The line gives the override that works (:func:`_plus_on_a_group`), with every
    plus of the group's given once: one plus where the defaults list chooses the group by a list
    (``+callbacks=ema`` adds to the defaults' callbacks) or lacks it (``~model ++model=tiny``,
    ``++model@teacher=tiny``), none where it has one choice (``model=tiny`` replaces the defaults' own).
    Beside a choice of a group chosen by a list (``++callbacks=ema callbacks=default``), where Hydra would
    drop a plus too, it is the group given once, one list of both (``'callbacks=[default,ema]'``, as
    :func:`added_beside_a_chosen_list` gives; it gave ``callbacks=ema``, which drops ``default``). A
    dictionary (``++model={lr: 0.1}``) sets the node's keys, which Hydra takes; Hydra's own groups are left
    to Hydra.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = checked_overrides(argv)
    if not any(a.startswith("++") for a in overrides):
        return None
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # noqa: BLE001 - an override Hydra cannot read is said by unreadable_or_unknown_choice
        return None
    groups = [  # the config group each override chooses with a plus or two, or None
        prefix_and_option(a)[1]
        if a.startswith("+") and not isinstance(o.value(), dict) and (config_dir / group_of(a)).is_dir()
        else None
        for a, o in zip(overrides, parsed, strict=True)
    ]
    forced = next((g for a, g in zip(overrides, groups, strict=True) if g and a.startswith("++")), None)
    if forced is None:
        return None
    given = [a for a, g in zip(overrides, groups, strict=True) if g == forced]
    refused = "Hydra cannot force-add a config group (two pluses add or set an option, not a group's choice)"
    try:
        beside = _chosen_beside_plus(overrides, forced, given, config_dir, config_name)
    except ValueError:
        beside = None
    if beside is not None:  # ++callbacks=ema callbacks=default: one list of both was meant
        choice, lists, adds = beside
        return (
            f"{' and '.join(repr(a) for a in given)} with {' '.join(choice)!r}: {refused}, and drops "
            f"what a plus adds to {forced} where the command line also chooses {forced}: give {forced} once, "
            f"'{forced}={_one_list(lists, adds)}'"
        )
    others = [  # another ++ of a group would make the defaults list fail too
        a for a, g in zip(overrides, groups, strict=True) if g is None or (g != forced and a[:2] != "++")
    ]
    kind = (_group_kinds(config_dir, config_name, others, {forced}) or {}).get(forced)
    typed = [a for a in others if a.partition("=")[0] == forced]  # logger=csv ++logger=csv
    return _plus_on_a_group(
        given, forced, kind, config_dir, config_name, refused, typed[-1] if typed else None
    )


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
    overrides = checked_overrides(argv)
    added = [
        a
        for a in overrides
        if a.startswith("+") and not a.startswith("++") and "@" not in a.partition("=")[0] and "=" in a
    ]
    for group in dict.fromkeys(group_of(a) for a in added if (config_dir / group_of(a)).is_dir()):
        plus = [a for a in overrides if a.partition("=")[0] == f"+{group}"]
        try:
            beside = _chosen_beside_plus(overrides, group, plus, config_dir, config_name)
        except ValueError:  # an override Hydra cannot read is said by unreadable_or_unknown_choice
            return None
        if beside is None:
            continue
        choice, lists, adds = beside
        lost = [v for v in adds if any(v not in options for options in lists)]
        if not lost:  # what the plus adds is chosen all the same
            continue
        given = " and ".join(repr(a) for a in plus)
        run = "each trial" if len(lists) > 1 else "the run"
        return (
            f"{given} with {' '.join(choice)!r}: Hydra drops what a plus adds to {group} where the command "
            f"line also chooses {group} ({run} would be without {', '.join(lost)}); give {group} once, "
            f"'{group}={_one_list(lists, adds)}'"
        )
    return None


def _chosen_beside_plus(
    overrides: Sequence[str], group: str, plus: Sequence[str], config_dir: Path, config_name: str
) -> tuple[list[str], list[list[str]], list[str]] | None:
    """How the command line ``overrides`` chooses ``group`` without a plus beside ``plus``, its overrides
    that add to the group (``+callbacks=ema``, or ``++callbacks=ema``, which Hydra refuses): the choice as
    typed (the last given, with those given in a row before it: the shell's split ``callbacks={default,
    wandb}``), the options of each list it chooses (one list, or one per value of a swept choice, ``-m
    'callbacks=[default],[default,wandb]'``) and the options ``plus`` adds, each once. None where the command
    line does not choose the group, where the pluses sweep (each trial's is its own), where a swept choice is
    given again in a row, or where the defaults list the other overrides leave does not choose the group by
    a list (a group of one choice: :func:`added_group_already_chosen`). ValueError where Hydra cannot read
    one of them."""
    chosen = [i for i, a in enumerate(overrides) if "=" in a and a.partition("=")[0] == group]
    if not chosen or not plus:
        return None
    first = chosen[-1]
    while first - 1 in chosen:  # given in a row: an unquoted {...} the shell split
        first -= 1
    choice = list(overrides[first : chosen[-1] + 1])
    try:
        parsed = overrides_parser(config_dir).parse_overrides([*choice, *plus])
    except Exception as exc:  # noqa: BLE001 - the caller says nothing: unreadable_or_unknown_choice will
        raise ValueError(str(exc)) from exc
    if any(o.is_sweep_override() for o in parsed[len(choice) :]):
        return None  # a sweep of what the plus adds: each trial's is its own
    if any(o.is_sweep_override() for o in parsed[: len(choice)]):
        if len(choice) > 1:
            return None
        lists = [[str(v) for v in _listed(value)] for value in parsed[0].sweep_iterator()]
    else:  # one list of every choice given in a row (Hydra would take the last)
        lists = [[str(v) for o in parsed[: len(choice)] for v in _listed(o.value())]]
    given = {overrides[i] for i in chosen} | set(plus)
    others = [a for a in overrides if a not in given]
    kind = (_group_kinds(config_dir, config_name, others, {group}) or {}).get(group)
    if kind is None or kind[0] != "list":
        return None
    adds = list(dict.fromkeys(str(v) for o in parsed[len(choice) :] for v in _listed(o.value())))
    return choice, lists, adds


def _one_list(lists: Sequence[Sequence[str]], adds: Sequence[str]) -> str:
    """The value of a group chosen by a list that holds each of ``lists`` (a swept choice's, or one) with
    ``adds``, each option once in the order given: ``[default,ema]``; ``[default,ema],[default,wandb,ema]``
    for a sweep."""
    return ",".join(f"[{','.join(dict.fromkeys([*options, *adds]))}]" for options in lists)


def deleted_list_chosen_group(argv: Sequence[str], config_dir: Path, config_name: str) -> str | None:
    """The message for a deletion of a config group chosen by a list (``~callbacks``, ``~callbacks=wandb``),
    or None.

    Hydra deletes nothing from such a group: ``~callbacks`` alone, or ``~callbacks=wandb``, was refused in
    several lines with status 1 ("Could not delete 'callbacks'. No match in the defaults list"), and beside
    a choice or a plus of the group it composed without a word and without what was meant:
    ``~callbacks callbacks=ema`` trained with no callback at all, ``~callbacks +callbacks=ema`` with the
    defaults' callbacks and no EMA. The fix is the list meant, given once: the defaults' options less those
    deleted, with those a plus adds, or the options chosen. Two pluses (``~callbacks ++callbacks=ema``, which
    Hydra cannot force-add) are read as one, so the fix is that list too. A sweep of the group is left alone.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = checked_overrides(argv)
    deleted = [a for a in overrides if a.startswith("~") and (config_dir / a[1:].partition("=")[0]).is_dir()]
    for group in dict.fromkeys(a[1:].partition("=")[0] for a in deleted):
        given = [a for a in overrides if a.lstrip("~+").partition("=")[0] == group]  # ++: read as one plus
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


def _defaults_list(config_dir: Path, config_name: str, overrides: Sequence[str]) -> Any | None:
    """Hydra's defaults list of ``config_name`` as ``overrides`` leave it, each sweep at its first value (no
    composition), or None where it cannot be made (Hydra, or a later check, says why)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    trials = checked_trials(list(overrides), config_dir)
    if not trials:
        return None
    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
        try:
            return (
                GlobalHydra.instance()
                .config_loader()
                .compute_defaults_list(config_name, [c for _, c in trials[0]], RunMode.RUN)
            )
        except Exception:  # noqa: BLE001 - a composition problem: Hydra, or a later check, says why
            return None


def _list_options(
    config_dir: Path, config_name: str, overrides: Sequence[str], group: str
) -> list[str] | None:
    """The options the defaults list that ``overrides`` leave chooses for ``group`` by a list
    (``["default", "wandb"]`` for train.yaml's ``callbacks: [default, wandb]``), or None where it does not
    choose it by a list (:func:`_group_kinds`) or cannot be made."""
    listed = _defaults_list(config_dir, config_name, overrides)
    if listed is None or _kinds_in(listed, {group})[group][0] != "list":
        return None
    return [
        d.config_path.partition("/")[2]
        for d in listed.defaults
        if (d.config_path or "").startswith(f"{group}/") and not (d.parent or "").startswith(f"{group}/")
    ]


def _listed(value: object) -> list[object]:
    """An override's value as a list: ``[ema, recovery]`` as it is, ``ema`` as ``[ema]``, null as ``[]``."""
    return value if isinstance(value, list) else [] if value is None else [value]


def list_chosen_groups(
    argv: Sequence[str], runs: Sequence[Sequence[str]], config_dir: Path, config_name: str
) -> set[str]:
    """The config groups of ``runs`` (each an option given again in a row) that the defaults list, as the
    overrides of ``argv`` other than those of ``runs`` leave it (each sweep at its first value), chooses by
    a list of options (train.yaml's ``callbacks: [default, wandb]``; :func:`_group_kinds`). Empty where no
    run is a group's, or where the defaults list cannot be made (Hydra, or a later check, says why)."""
    groups = {prefix_and_option(run[0])[1] for run in runs if (config_dir / group_of(run[0])).is_dir()}
    if not groups:
        return set()
    given = {a for run in runs for a in run}
    others = [a for a in checked_overrides(argv) if a not in given]
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
    listed = _defaults_list(config_dir, config_name, overrides)
    return None if listed is None else _kinds_in(listed, keys)


def _kinds_in(listed: Any, keys: set[str]) -> dict[str, tuple[str, str | None]]:
    """How the defaults list ``listed`` (:func:`_defaults_list`) chooses each config group of ``keys``, as
    :func:`_group_kinds` says it."""
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


def _swept(override: str, config_dir: Path) -> list[str] | None:
    """The options a sweep of a config group runs, in order (``tiny``, ``unet_lite0`` for
    ``model=tiny,unet_lite0``; those of ``configs/model/`` that ``model=glob(unet_*)`` matches, sorted, as
    Hydra's sweeper lists them), or None where ``override`` is no sweep or Hydra cannot read it."""
    try:
        (parsed,) = overrides_parser(config_dir).parse_overrides([override.lstrip("+")])
        return [str(v) for v in parsed.sweep_string_iterator()] if parsed.is_sweep_override() else None
    except Exception:  # noqa: BLE001 - unreadable: said as the choice it is, as before
        return None


def _plus_on_a_group(
    given: Sequence[str],
    key: str,
    kind: tuple[str, str | None] | None,
    config_dir: Path,
    config_name: str,
    refused: str,
    typed: str | None = None,
    where_in_sweep: str = "",
) -> str:
    """The one line for ``given``, the overrides that choose the config group ``key`` with a plus or two
    (``+logger=csv``; ``++callbacks=ema``; ``+logger=none +logger=csv``), which Hydra refuses: where the
    defaults list has the group (``kind``, :func:`_group_kinds`; None where it cannot be made), ``refused``
    (Hydra's reason, in words), and the override that works, given once. A group of one choice: the choice
    without the plus (the last given, as Hydra takes a choice given again), which replaces the defaults' own
    or is chosen there already; where ``typed``, the command line's own choice of the group without a plus
    (``logger=wandb +logger=wandb``), is that choice, the line says it is given twice and to give it once
    (not that it "replaces" itself); where it is another (``model=tiny +model=fpn_lite0``), the
    line names it beside the plus, and the choice without the plus replaces it; where it is a sweep
    (``-m model=tiny,unet_lite0 +model=fpn_lite0``: each trial gives the plus its own option, so fpn_lite0
    never runs), the line names the sweep and gives it once, without the plus, with the plus's options added
    (the choice of the first trial alone, which it gave, dropped the sweep's others); a glob sweep
    (``'model=glob(unet_*)'``) by the options it matches, or, where it matches none, the plus's choice
    without the plus. One chosen by a list:
    one plus, which adds to the list (several options in one list); one the defaults list lacks: one plus,
    which adds it. ``where_in_sweep`` (:func:`~marsunits.cli_compose.in_trial`) follows ``given`` where only
    later trials of a sweep are refused (``(in the trials with +model=tiny)``); a swept plus's fix is the
    sweep without the plus."""
    head = " and ".join(repr(a) for a in given) + where_in_sweep
    values = [a.partition("=")[2] for a in given]
    last = values[-1]
    several = len(given) > 1
    plus = "pluses" if any(a.startswith("++") for a in given) else "plus"
    defaults = f"configs/{config_name}.yaml"

    def quoted(fix: str) -> str:  # brackets, braces, a glob's parentheses and stars, quoted for the shell
        return f"'{fix}'" if any(c in fix for c in "[]{}()*?") else fix

    what, chosen = kind if kind is not None else ("unknown", None)
    swept = _swept(typed, config_dir) if typed is not None else None
    if what == "chosen" and swept is not None:  # -m model=tiny,unet_lite0 +model=fpn_lite0: each trial's
        adds = [v for v in dict.fromkeys(_swept(f"{key}={last}", config_dir) or [last]) if v not in swept]
        where = f"that sweep chooses {key}, one option a trial"
        if not swept:  # -m 'model=glob(unet_x*)' +model=fpn_lite0: a glob that matches no option
            where = f"that sweep's glob matches no option of {key} (Hydra runs no trial)"
            fix = f"{quoted(f'{key}={last}')} (without the {plus})"
        elif adds:
            every = quoted(f"{key}={','.join([*swept, *adds])}")
            fix = f"{every} (one sweep, without the {plus}), which adds {', '.join(adds)} to its trials"
        else:
            fix = f"{quoted(str(typed))} once (without the {plus}): it sweeps {last} already"
        return f"{head} with {typed!r}: {where}, and {refused}: give {fix}"
    if what == "chosen" and typed is not None and typed == f"{key}={last}" and chosen == last:
        again = " and ".join(repr(a) for a in [typed, *given] if a.partition("=")[2] == last)
        once = f"give it once, {quoted(typed)} (without the {plus})"
        return f"{typed} is given twice ({again}), and {refused}: {once}"
    if what == "chosen":
        if typed is not None:  # model=tiny +model=fpn_lite0: Hydra gives the plus tiny
            head = f"{head} with {typed!r}"
        where = f"{key} is already in the defaults list ({defaults}, as composed: {chosen or 'null'})"
        once = f"once (without the {plus}; the last given)" if several else f"(without the {plus})"
        does = (
            "chooses it"
            if chosen is None
            else "is chosen there already"
            if chosen == last
            else f"replaces {chosen}"
        )
        if _swept(f"{key}={last}", config_dir) is not None:  # +model=unet_lite0_d4,tiny: a sweep of the plus
            does = "chooses one a trial" if chosen is None else f"chooses one a trial, in place of {chosen}"
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
