"""An option given two or more times in a row with other values, as the shell writes an unquoted
``key={a,b}`` (bash's brace expansion: ``key=a key=b``), of which Hydra would keep the last alone
(:func:`brace_expanded_option`).

Said where the values are a map's entries (``labels_class_map={0:0,255:255}``), or where the option is
list-valued in the config, or is a config group chosen there by a list (``callbacks={default,ema}``): the fix
is the option quoted, with the values as they were typed; or where the option holds one value
(``predict.py input_dir=data/{a,b}``): the fix is the one value meant.
:func:`~marsunits.cli_overrides.unknown_option` runs this check.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from marsunits.cli_argv import is_multirun
from marsunits.cli_compose import (
    ABSENT,
    checked_overrides,
    checked_trials,
    compose_error,
    group_of,
    prefix_and_option,
)
from marsunits.cli_group_choices import list_chosen_groups


def brace_expanded_option(
    argv: Sequence[str], config_dir: Path | None = None, config_name: str | None = None
) -> str | None:
    """The message for one option given two or more times in a row with other values, as the shell writes
    an unquoted ``key={a,b}`` (bash's brace expansion: ``key=a key=b``, ``++key=a ++key=b``), or None: where
    the values are each a map's entry (``native:project``, none in braces or brackets) of an option
    that can be a map (:func:`_may_be_a_map`), or, given the config
    (``config_dir``, ``config_name``), where the option is list-valued in the config composed with the other
    overrides, or is a config group chosen there by a list (``callbacks: [default, wandb]``), or holds one
    value there (``input_dir``, ``tile``, ``trainer.max_epochs``; :func:`_one_value_meant`), none of the
    values in brackets or braces.

    A config group of one choice given again with another (``logger=none logger=csv``, a script appending to
    a base list of options) is left alone: Hydra's "the last counts", which a check for any repeated option
    refused. So are Hydra's own keys, an option given again not in a row, and one given again with the same
    value. A list option or a list-chosen group given twice on purpose is refused all the same (it would keep
    the last value alone): the message says to give it once, quoted for all the values or with the one
    meant. An option of one value given again in a row with another (``predict.py input_dir=data/{a,b}``,
    which bash gives as ``input_dir=data/a input_dir=data/b``, and of which Hydra would read ``data/b`` alone,
    without a word) is refused, naming the values, to give the one meant (in a multirun, the values swept as
    one option with commas).

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
        run for run in runs if config_dir is None or not (config_dir / group_of(run[0])).is_dir()
    ]
    composed = _composed_values(argv, keys, config_dir, config_name)
    for run in runs:
        (prefix, name), typed = prefix_and_option(run[0]), [a.partition("=")[2] for a in run]
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
    groups = list_chosen_groups(argv, listed, config_dir, config_name)
    for run in listed:
        prefix, name = prefix_and_option(run[0])
        values = ",".join(a.partition("=")[2] for a in run)
        if (config_dir / group_of(run[0])).is_dir():  # a group's choice
            if name in groups and prefix != "++":  # ++ of a group: Hydra refuses it, split or not
                tail = (
                    "and Hydra takes a plus of a group once"
                    if prefix
                    else "and Hydra would take the last alone"
                )
                # Each choice once, in the order typed: {ema,default,ema} is [ema,default].
                choices = list(dict.fromkeys(a.partition("=")[2] for a in run))
                fix = f"'{prefix}{name}=[{','.join(choices)}]'"
                return _given_again(name, run, "choice", fix, tail, len(choices))
        elif isinstance(composed.get(name), ListConfig):
            tail = "and Hydra would take the last alone"
            if prefix == "+":  # a plus on an option the config has: Hydra refuses it, quoted or not
                prefix, tail = "", f"and {name} needs no plus: a plus adds an option the config lacks"
            return _given_again(name, run, "value", f"'{prefix}{name}=[{values}]'", tail)
        elif name in composed and not isinstance(composed[name], DictConfig):  # one value: input_dir, tile
            return _one_value_meant(run, config_name, is_multirun(argv))
    return None


def _one_value_meant(run: Sequence[str], config_name: str, sweeping: bool) -> str:
    """:func:`brace_expanded_option`'s message for an option of one value (``input_dir``, ``tile``,
    ``trainer.max_epochs``) given in a row as ``run``, with other values: Hydra would take the last alone
    (``predict.py input_dir=data/{a,b}``, which bash splits, would read ``data/b`` alone). It names the values
    and says to give the one meant; where they share a start or an end, as bash's expansion of an unquoted
    ``{...}`` gives them, it names that ``{...}``; a folder option of ``predict.py`` takes one folder; in a
    multirun (``sweeping``), the values swept are one option with commas."""
    prefix, name = prefix_and_option(run[0])
    values = list(dict.fromkeys(a.partition("=")[2] for a in run))
    notes = []
    if sweeping:
        notes.append(f"to sweep them, '{'' if prefix == '+' else prefix}{name}={','.join(values)}'")
    if config_name == "predict" and name in ("input_dir", "output_dir", "labels_dir"):
        notes.append(f"predict.py takes one {name}: run it once per folder")
    braces = _brace_form(values)
    if braces is not None:
        notes.append(f"unquoted, the shell splits {braces} into one option per value")
    return (
        f"{name} is given {len(run)} times in a row ({' '.join(run)}), and Hydra would take the last alone: "
        f"give it once, with the one value meant" + (f" ({'; '.join(notes)})" if notes else "")
    )


def _brace_form(values: Sequence[str]) -> str | None:
    """``values`` as bash's brace expansion would have made them (``data/{a,b}`` of ``data/a``, ``data/b``),
    or None where they share no start or end of two characters or more (``256``, ``512``): no sign of
    braces."""
    start = os.path.commonprefix(list(values))
    rest = [v[len(start) :] for v in values]
    end = os.path.commonprefix([r[::-1] for r in rest])[::-1]
    if len(start) + len(end) < 2:
        return None
    middles = [r[: len(r) - len(end)] for r in rest]
    return f"{start}{{{','.join(middles)}}}{end}"


def _may_be_a_map(name: str, typed: Sequence[str], composed: dict[str, object]) -> bool:
    """Whether ``name`` given in a row as ``typed``, each value with a colon, can be a map the shell split
    into its entries: not Hydra's own key (``hydra.job.env_set.LD_LIBRARY_PATH=/opt/a:/opt/b`` given again
    by a script), no value an interpolation (``${now:%H-%M}``, which bash refuses unquoted), and a map or
    null in the config (``composed``, where it has the option): a string's colon is no entry's."""
    if name.startswith(("hydra.", "hydra/")) or any("${" in v for v in typed):
        return False
    return name not in composed or composed[name] is None or isinstance(composed[name], DictConfig)


def _shell_split(name: str, run: Sequence[str], part: str, fix: str) -> str:
    """:func:`brace_expanded_option`'s message for a map: ``name`` given in a row as ``run``, ``fix`` the
    quoted option, ``part`` what the shell made each option of (a map's ``entry``)."""
    return (
        f"{name} is given {len(run)} times in a row ({' '.join(run)}): the shell split an unquoted {{...}} "
        f"into one option per {part}, and only the last would count; put the option in single quotes, {fix}"
    )


def _given_again(
    name: str, run: Sequence[str], part: str, fix: str, tail: str, count: int | None = None
) -> str:
    """:func:`brace_expanded_option`'s message for a list option or a list-chosen group: ``name`` given in a
    row as ``run``, ``fix`` the quoted option, ``part`` what each is (a list's ``value``, a group's
    ``choice``), ``tail`` what Hydra does with it, ``count`` how many ``fix`` holds (a group's choices each
    once; ``len(run)`` where None). Said for both readings: an unquoted ``{a,b}`` that the shell split, and
    a script that gives the option twice meaning the last."""
    count = len(run) if count is None else count
    every = "both" if count == 2 else f"all {count}"
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
    trials = checked_trials([a for a in checked_overrides(argv) if a not in given], config_dir)
    if not trials:
        return {}
    _, cfg = compose_error(config_dir, config_name, [composed for _, composed in trials[0]])
    if cfg is None:
        return {}
    values: dict[str, object] = {}
    for name in (prefix_and_option(run[0])[1] for run in runs):
        value = OmegaConf.select(cfg, name, default=ABSENT, throw_on_resolution_failure=False)
        if value is not ABSENT:
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
