"""The misspelt-option check of train.py and predict.py: typos are caught with a suggestion, and no
override the README or the configs use is refused."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import CONFIG_DIR
from marsunits.cli_compose import compose_error
from marsunits.cli_overrides import quoted_path_overrides, unknown_option
from marsunits.data.fake import NATIVE_CLASSES

REPO = CONFIG_DIR.parent


def _predict_py(arguments: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``predict.py`` run as a user runs it, with ``arguments``, in ``cwd``: its output captured as text."""
    return subprocess.run(
        [sys.executable, str(REPO / "predict.py"), *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


@pytest.mark.parametrize(
    ("config", "arg", "suggestion"),
    [
        ("predict", "inputdir=images/", "input_dir"),
        ("predict", "ckptpath=m.ckpt", "ckpt_path"),
        ("predict", "label_dir=masks/", "labels_dir"),
        ("predict", "tile_size=256", "tile"),  # a name that starts it wins over a similar one (batch_size)
        ("train", "max_epoch=3", "trainer.max_epochs"),
        ("train", "lr=3e-4", "model.lr"),
        ("train", "experiments=marsscapes", "experiment"),
    ],
)
def test_a_misspelt_option_is_named_with_the_one_meant(config: str, arg: str, suggestion: str) -> None:
    message = unknown_option(["logger=csv", arg], CONFIG_DIR, config)
    name = arg.split("=")[0]
    assert message is not None and message.startswith(f"unknown option {name!r} in {arg!r}")
    assert f"did you mean {suggestion}=...?" in message and f"configs/{config}.yaml" in message


@pytest.mark.parametrize(
    ("config", "args", "key", "suggestion"),
    [
        ("train", ["trainer.max_epoch=3"], "trainer.max_epoch", "trainer.max_epochs"),
        ("train", ["model.lrr=1e-3"], "model.lrr", "model.lr"),
        # The option that ends in the name typed, not the closest spelling (model.subclasses: another thing).
        ("train", ["model.classes=4"], "model.classes", "model.num_classes"),
        ("train", ["data.workers=4"], "data.workers", "data.num_workers"),
        # Of two options ending in it, the closer (decoder_channels came first, by the alphabet).
        ("train", ["model.channels=1"], "model.channels", "model.in_channels"),
        # The experiment's data group (marsscapes) is the one checked, not train.yaml's default.
        ("train", ["experiment=marsscapes", "data.crop=256"], "data.crop", "data.crop_size"),
        ("predict", ["contact.min_lenght_px=20"], "contact.min_lenght_px", "contact.min_length_px"),
        ("predict", ["input_dir=x", "contact.zzz=1"], "contact.zzz", None),
        # In a multirun, as Hydra composes the sweep's own config (it refused it in five lines, status 1).
        (
            "train",
            ["-m", "model.lr=1e-3,1e-4", "trainer.max_epoch=3"],
            "trainer.max_epoch",
            "trainer.max_epochs",
        ),
    ],
)
def test_a_misspelt_nested_option_is_named_with_the_one_meant(
    config: str, args: list[str], key: str, suggestion: str | None
) -> None:
    message = unknown_option(args, CONFIG_DIR, config)
    assert message is not None and message.startswith(f"unknown option {key!r} in {args[-1]!r}")
    assert message.endswith(f"(every option: python {config}.py --cfg job, with the same overrides)")
    assert (f"did you mean {suggestion}=...?" in message) if suggestion else "did you mean" not in message


def test_an_option_the_built_class_takes_but_the_config_lacks_is_said_to_need_a_plus() -> None:
    """``trainer.max_steps=6`` is a Trainer argument the config does not list: it was refused with "did you
    mean trainer.max_epochs=...?", another option, where ``+trainer.max_steps=6`` was the one that works."""
    message = unknown_option(["trainer.max_steps=6"], CONFIG_DIR, "train")
    assert message is not None and message.startswith(
        "unknown option 'trainer.max_steps' in 'trainer.max_steps=6'"
    )
    assert "+trainer.max_steps=6" in message and "max_epochs" not in message, message
    assert unknown_option(["+trainer.max_steps=6"], CONFIG_DIR, "train") is None  # as advised: taken
    # A misspelling the class does not take is still matched to the option meant.
    assert "did you mean trainer.max_epochs=...?" in str(
        unknown_option(["trainer.max_epoch=3"], CONFIG_DIR, "train")
    )


@pytest.mark.parametrize(
    ("args", "key", "new"),
    [
        (["experiment=marsscapes_subclasses", "data.subclass_map={a: 1}"], "data.subclass_map", "a"),
        (["experiment=marsscapes_subclasses", "data.subclass_map={99: 1, 2: 3}"], "data.subclass_map", "99"),
        (["data=marsscapes", "data.class_map={99: 2}"], "data.class_map", "99"),
        (["data=marsscapes_ai4mars", "data.class_map.ai4mars={7: 2}"], "data.class_map.ai4mars", "7"),
    ],
)
def test_a_map_given_keys_the_config_s_map_lacks_is_told_to_add_them_with_two_pluses(
    args: list[str], key: str, new: str
) -> None:
    """Hydra merges a map given to a map option into the config's, and refuses a key that map lacks as it
    refuses a misspelt option ("Could not override"): ``data.subclass_map={a: 1}`` on the sub-classes recipe
    was "unknown option 'data.subclass_map'", of an option the config has. It names the key the map lacks,
    the keys it has, and the override that adds it, which composes."""
    message = unknown_option(args, CONFIG_DIR, "train")
    given = args[-1].split("=", 1)[1]
    assert message is not None and message.startswith(f"{args[-1]!r}: {key} has no key {new} (its keys: "), (
        message
    )
    assert message.endswith(f"to add keys, give it with two pluses, quoted for the shell: '++{key}={given}'")
    assert "unknown option" not in message
    error, cfg = compose_error(CONFIG_DIR, "train", [*args[:-1], f"++{key}={given}"])
    assert not error and cfg is not None
    node: Any = cfg
    for part in key.split("."):
        node = node[part]
    assert new in [str(k) for k in node]
    # A map of the keys it has is merged as before; a new name in a node of named options is unknown.
    assert unknown_option(["data=marsscapes", "data.class_map={2: 1}"], CONFIG_DIR, "train") is None
    named = unknown_option(["data=synthetic", "data.scene={foo: 1}"], CONFIG_DIR, "train")
    assert named is not None and named.startswith("unknown option 'data.scene'"), named


def test_trainer_fast_dev_run_without_a_plus_is_told_of_debug_fdr_too() -> None:
    """``trainer.fast_dev_run=true`` (Lightning's word, as its docs write it) was told only to add it with a
    plus; the project's way to a fast dev run, ``debug=fdr`` (no logger started, its files under
    ``logs/debug/``), went unsaid. The refusal now names both; other keys the Trainer takes get no such
    word."""
    message = unknown_option(["trainer.fast_dev_run=true"], CONFIG_DIR, "train")
    assert message is not None and message.startswith(
        "unknown option 'trainer.fast_dev_run' in 'trainer.fast_dev_run=true'"
    ), message
    assert "add it with a plus, +trainer.fast_dev_run=true" in message, message
    assert "or give debug=fdr" in message, message
    assert "debug=fdr" not in str(unknown_option(["trainer.max_steps=6"], CONFIG_DIR, "train"))


def test_trainer_arguments_the_run_gives_itself_point_to_their_group_not_to_a_plus() -> None:
    """``trainer.logger=false`` was told to add ``+trainer.logger=false``, which Hydra took and train.py then
    overrode without a word (it hands the Trainer its loggers and callbacks from the ``logger`` and
    ``callbacks`` groups): the run logged as before. Such a key, with or without the plus, names the group
    option that does it."""
    for arg, group in (
        ("trainer.logger=false", "logger=none"),
        ("+trainer.logger=false", "logger=none"),
        ("++trainer.logger=false", "logger=none"),
        ("trainer.callbacks=[]", "callbacks="),
        ("+trainer.callbacks=[]", "callbacks="),
    ):
        message = unknown_option([arg], CONFIG_DIR, "train")
        assert message is not None and group in message, (arg, message)
        assert "with a plus" not in message, message
    assert "+trainer.max_steps=6" in str(unknown_option(["trainer.max_steps=6"], CONFIG_DIR, "train"))


def test_nested_options_that_exist_or_are_not_names_pass() -> None:
    """Values Hydra or the run rejects later (a bad type, a sweep) are not this check's business."""
    for args in (
        ["trainer.max_epochs=2", "model.lr=3e-4", "data.batch_size=4"],
        ["model.lr=abc"],  # the task's own check names it (test_task)
        ["-m", "model.lr=1e-3,3e-4", "trainer.max_epochs=1"],  # a sweep: its values are Hydra's to check
        ["model.lr=1e-3,3e-4"],  # Hydra's "Ambiguous value" message is the right one
    ):
        assert unknown_option(args, CONFIG_DIR, "train") is None, args
    assert unknown_option(["contact.min_length_px=20", "tile=256"], CONFIG_DIR, "predict") is None


REAL_DATA = ["ai4mars", "folder", "marsscapes", "marsscapes_ai4mars", "marsscapes_pseudo"]


@pytest.mark.parametrize("data", REAL_DATA)
def test_the_readmes_real_data_options_exist_for_every_real_data_config(data: str) -> None:
    """docs/training.md, names these as `data.<key>=...` options of real data (ClassMix, over-sampling,
    validation context, sol folds and guards); each real-data config must take them. `experiment=ai4mars
    data.class_mix_prob=0.5` and `data=folder data.val_context_px=64` were refused as unknown options."""
    options = ["data.class_mix_prob=0.5", "data.focus_class=1", "data.focus_fraction=0.33",
               "data.val_context_px=64", "data.n_folds=5", "data.fold=1", "data.sol_margin=2",
               "data.allow_seen_val_sols=true", "data.exclude_sols=[[100,550]]", "data.root=/x"]  # fmt: skip
    assert unknown_option([f"data={data}", *options], CONFIG_DIR, "train") is None


def test_overrides_in_use_pass() -> None:
    """Every ``key=value`` of a train.py / predict.py command in the user docs (README.md, docs/) and in
    RESULTS.md (the experiment log's commands reproduce its figures: users run them too), plus Hydra's own
    forms."""
    from conftest import USER_DOCS

    checked = {}
    for path in [*USER_DOCS, REPO / "RESULTS.md"]:
        doc = path.name if path.parent == REPO else f"docs/{path.name}"
        text = path.read_text(encoding="utf-8")
        checked[doc] = 0
        for prog, tail in re.findall(r"(train|predict)\.py((?:[ \t]+(?:\\\n\s*)?[^\s`]+)+)", text):
            tail = tail.split(" #")[0]  # a shell comment after the command
            tokens = [a.strip("'\"(),;:") for a in tail.replace("\\\n", " ").split()]
            # Prose around commands skipped, and the <placeholders> (the user types a path there).
            args = [a for a in tokens if re.match(r"^[A-Za-z_][\w.@/-]*=", a) and "<" not in a]
            assert unknown_option(args, CONFIG_DIR, prog) is None, (doc, prog, args)
            checked[doc] += len(args)
    # each has many such commands: the pattern found them
    assert checked["docs/training.md"] > 30 and checked["RESULTS.md"] > 10, checked
    assert checked["README.md"] > 5 and checked["docs/prediction.md"] > 5, checked
    hydra_forms = ["--cfg", "job", "-m", "++contact.min_length_px=20", "+contact.extra=1", "~logger",
                   "hydra.run.dir=/tmp/x", "logger@x=csv", "callbacks=[default,wandb,ema]",
                   "model.lr=1e-3,3e-4", "hydra/launcher=basic", "hydra/job_logging=disabled"]  # fmt: skip
    assert unknown_option(hydra_forms, CONFIG_DIR, "train") is None
    # Nothing close to suggest: no dangling "; (" left where the suggestion would be.
    assert unknown_option(["zzzzqq=1"], CONFIG_DIR, "train") == (
        "unknown option 'zzzzqq' in 'zzzzqq=1' (the options: configs/train.yaml)"
    )
    # Another primary config or config folder: its names are not train.yaml's, so Hydra checks them.
    assert unknown_option(["--config-name=mine", "anything=1"], CONFIG_DIR, "train") is None
    assert unknown_option(["-cd", "/my/configs", "anything=1"], CONFIG_DIR, "train") is None


def test_a_batch_script_that_exports_node_rank_is_not_taken_for_a_launch_by_hand(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An sbatch script of 2 nodes that exports ``NODE_RANK=$SLURM_NODEID`` (a common line in multi-node
    scripts) and runs ``python train.py trainer=ddp trainer.num_nodes=2`` without ``srun``: Lightning takes
    its ranks from SLURM, not from ``NODE_RANK``, so this is the batch script's own process, refused at train
    time naming the missing srun. It was told it was "machine NODE_RANK=0 ... started by hand" and to add a
    run_name, the wrong fix first, as before the batch-script check existed."""
    from marsunits.cli_overrides import unnamed_external_ranks

    for name in ("WORLD_SIZE", "TORCHELASTIC_RUN_ID", "SLURM_JOB_NAME", "SLURM_STEP_ID", "SLURM_STEPID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in (("SLURM_JOB_ID", "4242"), ("SLURM_PROCID", "0"), ("SLURM_NTASKS", "8")):
        monkeypatch.setenv(name, value)
    for name, value in (("SLURM_NTASKS_PER_NODE", "4"), ("SLURM_NNODES", "2"), ("NODE_RANK", "0")):
        monkeypatch.setenv(name, value)
    args = ["trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"]
    assert unnamed_external_ranks(args, CONFIG_DIR) is None
    # Each task that srun starts is one of 8, and needs the shared name, NODE_RANK or not.
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    assert "one of 8 training processes" in str(unnamed_external_ranks(args, CONFIG_DIR))


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["experiment=marscapes"],
            "no experiment config 'marscapes' in 'experiment=marscapes'; did you mean experiment=marsscapes? "
            "(the choices: ai4mars, marsscapes, ",
        ),
        (["logger=wandbb"], "no logger config 'wandbb' in 'logger=wandbb'; did you mean logger=wandb?"),
        (["callbacks=[default,recovry]"], "no callbacks config 'recovry' in 'callbacks=[default,recovry]'; "),
        (
            ["-m", "experiment=synthetic,marscapes"],
            "no experiment config 'marscapes' in ",
        ),  # a sweep's choices
        (
            ["labels_class_map={0: 0, 2: 0, 1: 1, 3: 1"],
            "cannot read the override 'labels_class_map={0: 0, 2: 0, 1: 1, 3: 1' (no viable alternative at "
            "input '{0: 0, 2: 0, 1: 1, 3: 1'): close every bracket",
        ),
    ],
)
def test_a_missing_config_choice_or_an_unreadable_override_is_one_line(args: list[str], said: str) -> None:
    """Hydra reported these in several lines with status 1 (a parse error as "no viable alternative")."""
    message = unknown_option(args, CONFIG_DIR, "train")
    assert message is not None and message.startswith(said) and "\n" not in message
    assert (
        unknown_option(["experiment=marsscapes", "callbacks=[default,recovery]"], CONFIG_DIR, "train") is None
    )


@pytest.mark.parametrize(
    ("script", "args", "said"),
    [
        (
            "predict.py",
            ["inputdir=x", "ckpt_path=y"],
            "predict.py: error: unknown option 'inputdir' in 'inputdir=x'; did you mean input_dir=...? "
            "(the options: configs/predict.yaml)",
        ),
        (
            "train.py",
            ["model=unet_lite0_d5"],
            "train.py: error: no model config 'unet_lite0_d5' in 'model=unet_lite0_d5'; did you mean "
            "model=unet_lite0? (the choices: deeplabv3plus_lite0, fpn_lite0, tiny, unet_lite0, "
            "unet_lite0_d4, unet_lite0_slim, unet_lite1, unet_lite2, unet_scratch)",
        ),
    ],
)
def test_entry_points_stop_before_running_with_status_2(script: str, args: list[str], said: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / script), *args], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == said


def _as_an_entry_point(
    prog: str, args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int | str | None, str]:
    """What ``python <prog> <args>`` does before Hydra starts (train.py's and predict.py's ``__main__``), in
    this process: the exit status and stderr of its refusal. Without the seconds of a new process's torch
    and Lightning; the end-to-end cases above and below prove the entry points call these checks."""
    from marsunits.cli_overrides import exit_on_unknown_option, home_expanded_overrides

    monkeypatch.setattr(sys, "argv", [prog, *quoted_path_overrides(home_expanded_overrides(args))])
    capsys.readouterr()
    with pytest.raises(SystemExit) as ended:
        exit_on_unknown_option(CONFIG_DIR, prog.removesuffix(".py"), prog=prog)
    return ended.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("prog", "args", "said"),
    [
        ("train.py", ["model.lr=-1"], "model.lr must be a number > 0, got -1 (e.g. model.lr=0.001"),
        ("predict.py", ["output_dirr=out"], "unknown option 'output_dirr' in 'output_dirr=out'; did you"),
    ],
)
def test_under_torchrun_a_refusal_before_hydra_reaches_its_agent_s_error_file(
    prog: str,
    args: list[str],
    said: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Under torchrun a refusal of the command line (one line, status 2, before Hydra starts) is also
    written to the agent's error file (``TORCHELASTIC_ERROR_FILE``, set for each worker), so torchrun's
    failure summary names it; it said ``error_file: <N/A>`` and pointed to torch's docs. The line printed
    is the same. (Without that variable nothing is imported: the no-torch test below.)"""
    error_file = tmp_path / "error.json"
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(error_file))
    status, err = _as_an_entry_point(prog, args, monkeypatch, capsys)
    assert status == 2 and err.startswith(f"{prog}: error: {said}"), err
    recorded = json.loads(error_file.read_text())["message"]
    assert recorded["message"] == f"ConfigError: {err.strip().removeprefix(f'{prog}: error: ')}", recorded
    assert said in recorded["extraInfo"]["py_callstack"], recorded  # what torchrun's summary shows


def test_a_misspelt_trainer_option_stops_train_py_with_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A nested option of a class the config builds (the Trainer's): its check imports Lightning, which made
    this an end-to-end case of many seconds; it is the same check of the same entry point, run here."""
    status, err = _as_an_entry_point("train.py", ["trainer.max_epoch=3"], monkeypatch, capsys)
    assert status == 2
    assert err.strip() == (
        "train.py: error: unknown option 'trainer.max_epoch' in 'trainer.max_epoch=3'; did you mean "
        "trainer.max_epochs=...? (every option: python train.py --cfg job, with the same overrides)"
    )


@pytest.mark.parametrize(
    ("prog", "args", "flag", "meant"),
    [
        (
            "predict.py",
            ["--ckpt_path=m.ckpt", "input_dir=x", "output_dir=y"],
            "--ckpt_path=m.ckpt",
            "ckpt_path=m.ckpt",
        ),
        (
            "predict.py",
            ["input_dir=x", "output_dir=y", "--ckpt_path", "m.ckpt"],
            "--ckpt_path m.ckpt",
            "ckpt_path=m.ckpt",
        ),
        ("train.py", ["--trainer.max_epochs=1"], "--trainer.max_epochs=1", "trainer.max_epochs=1"),
        ("train.py", ["-experiment", "marsscapes"], "-experiment marsscapes", "experiment=marsscapes"),
    ],
)
def test_an_option_written_as_a_dashed_flag_is_told_to_drop_the_dashes(
    prog: str,
    args: list[str],
    flag: str,
    meant: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """argparse's habit, ``--ckpt_path=m.ckpt``: predict.py's check before Hydra reads overrides only, so it
    said ``missing required option(s) ckpt_path`` of an option the user had given, and Hydra printed its usage
    and ``unrecognized arguments``; neither said that Hydra's options are written without dashes."""
    status, err = _as_an_entry_point(prog, args, monkeypatch, capsys)
    assert status == 2
    assert err.strip().startswith(f"{prog}: error: {flag!r} is written as a command-line flag")
    assert f"give it as {meant}" in err and "missing required" not in err


@pytest.mark.parametrize(
    ("prog", "args", "fix"),
    [
        (
            "predict.py",
            [
                "input_dir=x",
                "labels_class_map=0:0",
                "labels_class_map=2:0",
                "labels_class_map=1:1",
                "labels_class_map=3:1",
                "labels_class_map=255:255",
            ],
            "'labels_class_map={0: 0, 2: 0, 1: 1, 3: 1, 255: 255}'",
        ),
        (
            "train.py",
            ["data=folder", "data.class_map=0:0", "data.class_map=2:0", "data.class_map=255:255"],
            "'data.class_map={0: 0, 2: 0, 255: 255}'",
        ),
        # ++ (add or set) was not caught: refused for the map 1:1. The fix keeps the ++.
        (
            "predict.py",
            ["input_dir=x", "++labels_class_map=0:0", "++labels_class_map=1:1"],
            "'++labels_class_map={0: 0, 1: 1}'",
        ),
        # + on an option the config has, which Hydra refuses quoted or not: it was told to give
        # labels_class_map=0:0, the first entry alone. The fix drops the plus, saying why.
        (
            "predict.py",
            ["input_dir=x", "+labels_class_map=0:0", "+labels_class_map=1:1"],
            "'labels_class_map={0: 0, 1: 1}'",
        ),
    ],
)
def test_an_unquoted_map_split_by_the_shell_is_told_to_quote_it(
    prog: str,
    args: list[str],
    fix: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """bash expands an unquoted ``labels_class_map={0:0,2:0,...}`` into one option per entry, of which Hydra
    keeps the last: predict.py refused the map ``255:255``, one nobody typed, and train.py's
    ``data.class_map`` so split ended in Hydra's ``AttributeError`` after making a run folder. The refusal
    is one line naming the options as given and the quoted map."""
    status, err = _as_an_entry_point(prog, args, monkeypatch, capsys)
    name = args[1].split("=")[0].lstrip("+")
    assert status == 2
    given = f"{name} is given {len(args) - 1} times in a row ({' '.join(args[1:])}): "
    assert err.strip().startswith(f"{prog}: error: {given}"), err
    assert "the shell split an unquoted {...}" in err and err.strip().endswith(fix)
    assert ("without the plus" in err) == args[1].startswith("+labels")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("prog", "args", "fix", "key", "meant"),
    [
        # A list-valued option (the composed config's type) split so: predict.py read the PNGs alone.
        (
            "predict.py",
            ["input_dir=x", "patterns=jpg", "patterns=png"],
            "patterns=[jpg,png]",
            "patterns",
            None,
        ),
        # ++ (add or set) split the same way was not caught: the PNGs alone again. The fix keeps the ++.
        (
            "predict.py",
            ["input_dir=x", "++patterns=jpg", "++patterns=png"],
            "++patterns=[jpg,png]",
            "patterns",
            None,
        ),
        # + on an option the config has: Hydra refuses a plus there, quoted or not, so the fix drops it
        # (it was told to give patterns=jpg, the first value alone).
        (
            "predict.py",
            ["input_dir=x", "+patterns=jpg", "+patterns=png"],
            "patterns=[jpg,png]",
            "patterns",
            None,
        ),
        (
            "train.py",
            ["data=marsscapes_ai4mars", "data.sources=marsscapes", "data.sources=ai4mars"],
            "data.sources=[marsscapes,ai4mars]",
            "data.sources",
            None,
        ),
        (
            "train.py",
            ["data=marsscapes_ai4mars", "++data.sources=marsscapes", "++data.sources=ai4mars"],
            "++data.sources=[marsscapes,ai4mars]",
            "data.sources",
            None,
        ),
        (
            "train.py",
            ["model=tiny", *(f"model.decoder_channels={n}" for n in (32, 16, 8))],
            "model.decoder_channels=[32,16,8]",
            "model.decoder_channels",
            None,
        ),
        # callbacks is a multi-select group (train.yaml: callbacks: [default, wandb]): chosen twice in a row,
        # Hydra kept the last alone, and the run trained without best.ckpt and last.ckpt.
        (
            "train.py",
            ["model=tiny", "callbacks=default", "callbacks=ema"],
            "callbacks=[default,ema]",
            "callbacks",
            ["model_checkpoint", "ema"],
        ),
        (
            "train.py",
            ["experiment=marsscapes", "callbacks=default", "callbacks=wandb", "callbacks=ema"],
            "callbacks=[default,wandb,ema]",
            "callbacks",
            ["model_checkpoint", "wandb_val_images", "ema"],
        ),
        # +callbacks=ema adds to the defaults' list; twice, Hydra refused ("Multiple values for callbacks").
        (
            "train.py",
            ["model=tiny", "+callbacks=ema", "+callbacks=recovery"],
            "+callbacks=[ema,recovery]",
            "callbacks",
            ["model_checkpoint", "wandb_val_images", "ema", "recovery_checkpoint"],
        ),
    ],
)
def test_an_unquoted_list_or_choices_split_by_the_shell_is_told_to_give_it_once(
    prog: str,
    args: list[str],
    fix: str,
    key: str,
    meant: list[str] | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """bash expands an unquoted ``patterns={jpg,png}`` into ``patterns=jpg patterns=png``, of which Hydra
    keeps the last: predict.py read the PNGs only, without a word; ``callbacks={default,ema}`` trained with
    EMA alone. The refusal is one line naming the options as given; since a script may also give an option
    twice on purpose, it says to give it once, quoted for all the values or with the one meant. The quoted
    option it gives composes to all of them."""
    status, err = _as_an_entry_point(prog, args, monkeypatch, capsys)
    run = [a for a in args[1:] if a.lstrip("+").startswith(f"{key}=")]
    assert status == 2
    given = f"{key} is given {len(run)} times in a row ({' '.join(run)}): give it once, "
    assert err.strip().startswith(f"{prog}: error: {given}"), err
    assert f"'{fix}' for " in err and "or only the one " in err and "the shell splits {...}" in err
    assert (f"{key} needs no plus" in err) == (run[0].startswith("+") and not fix.startswith("+"))
    assert len(err.strip().splitlines()) == 1
    from conftest import compose_config

    others = [a for a in args if a not in run]
    cfg = compose_config(prog.removesuffix(".py"), tmp_path, [*others, fix])
    if meant is None:  # a list option: every value, in the order given
        from omegaconf import OmegaConf

        assert [str(v) for v in OmegaConf.select(cfg, key)] == [a.partition("=")[2] for a in run]
    else:  # the callbacks of every choice
        assert set(meant) <= set(cfg[key]), sorted(cfg[key])


@pytest.mark.parametrize(
    ("args", "fix", "meant"),
    [
        (["callbacks=[default]", "+callbacks=ema"], "callbacks=[default,ema]", ["model_checkpoint", "ema"]),
        (["+callbacks=ema", "model=tiny", "callbacks=default"], "callbacks=[default,ema]", ["ema"]),
        (
            ["callbacks=[default,wandb]", "+callbacks=[ema,recovery]"],
            "callbacks=[default,wandb,ema,recovery]",
            ["wandb_val_images", "ema"],
        ),
        (
            ["callbacks=[default]", "+callbacks=ema", "+callbacks=recovery"],
            "callbacks=[default,ema,recovery]",
            [],
        ),
    ],
)
def test_a_plus_on_callbacks_beside_a_callbacks_choice_is_one_line_giving_one_list(
    args: list[str],
    fix: str,
    meant: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """``+callbacks=ema`` adds to the defaults' list, but beside ``callbacks=[default]`` (either order) Hydra
    composed the command without a word and without what the plus added: the run trained without EMA. The
    refusal gives the group once, a list of both, which composes to every callback meant."""
    status, err = _as_an_entry_point("train.py", args, monkeypatch, capsys)
    assert status == 2, err
    assert err.startswith("train.py: error: ") and err.strip().endswith(f"give callbacks once, '{fix}'"), err
    assert len(err.strip().splitlines()) == 1
    from conftest import compose_config

    kept = [a for a in args if not a.lstrip("+").startswith("callbacks=")]
    cfg = compose_config("train", tmp_path, [*kept, fix])
    assert {"model_checkpoint", *meant} <= set(cfg.callbacks), sorted(cfg.callbacks)
    # Alone, each is taken: the plus adds to the defaults' list, the choice replaces it.
    for alone in (
        ["+callbacks=ema"],
        ["callbacks=[default,ema]"],
        ["+callbacks=ema", "callbacks.ema.decay=0.9"],
        ["callbacks=[default,ema]", "+callbacks=ema"],
    ):
        assert unknown_option(alone, CONFIG_DIR, "train") is None, alone


def test_a_plus_on_callbacks_beside_a_swept_choice_of_callbacks_is_refused_giving_the_sweep(
    tmp_path: Path,
) -> None:
    """``-m 'callbacks=[default],[default,wandb]' +callbacks=ema``: Hydra drops the plus at each trial, so
    every trial trained without EMA. The refusal gives the sweep with EMA in each list."""
    from conftest import compose_config

    args = ["-m", "model=tiny", "callbacks=[default],[default,wandb]", "+callbacks=ema"]
    said = unknown_option(args, CONFIG_DIR, "train")
    fix = "callbacks=[default,ema],[default,wandb,ema]"
    assert said is not None and said.endswith(f"give callbacks once, '{fix}'"), said
    for trial in ("callbacks=[default,ema]", "callbacks=[default,wandb,ema]"):
        assert "ema" in compose_config("train", tmp_path, ["model=tiny", trial]).callbacks
    # A glob sweep of callbacks (one option a trial, as Hydra's sweeper lists it) ended in Hydra's
    # "ConfigLoader is not set" traceback.
    said = unknown_option(["-m", "callbacks=glob(*a*)", "+callbacks=recovery"], CONFIG_DIR, "train")
    fix = "callbacks=[default,recovery],[ema,recovery],[wandb,recovery]"
    assert said is not None and said.endswith(f"give callbacks once, '{fix}'"), said
    # A sweep of the plus is left alone, and so is a swept choice that has the plus's option in each list.
    for alone in (
        ["-m", "+callbacks=ema,recovery"],
        ["-m", "callbacks=[default,ema],[ema]", "+callbacks=ema"],
    ):
        assert unknown_option(alone, CONFIG_DIR, "train") is None, alone


@pytest.mark.parametrize(
    ("args", "fix", "meant", "left_out"),
    [
        (["~callbacks"], "callbacks=[]", [], []),  # Hydra: "Could not delete 'callbacks'", status 1
        (["~callbacks=wandb"], "callbacks=[default]", ["model_checkpoint"], ["wandb_val_images"]),
        # Composed without a word: no callback at all (no best.ckpt), or the defaults' without EMA.
        (["~callbacks", "callbacks=ema"], "callbacks=[ema]", ["ema"], ["model_checkpoint"]),
        (["~callbacks", "+callbacks=ema"], "callbacks=[ema]", ["ema"], ["model_checkpoint"]),
        (["~callbacks=wandb", "+callbacks=ema"], "callbacks=[default,ema]", ["ema"], ["wandb_val_images"]),
        # Two pluses: it said "callbacks is a config group", giving callbacks=ema or +callbacks=ema.
        (["~callbacks", "++callbacks=ema"], "callbacks=[ema]", ["ema"], ["model_checkpoint"]),
        (["~callbacks=wandb", "++callbacks=ema"], "callbacks=[default,ema]", ["ema"], ["wandb_val_images"]),
    ],
)
def test_a_deletion_of_callbacks_is_one_line_giving_the_list_meant(
    args: list[str],
    fix: str,
    meant: list[str],
    left_out: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Hydra deletes nothing from a group chosen by a list (train.yaml's ``callbacks: [default, wandb]``): it
    refused ``~callbacks`` in several lines with status 1, and beside a choice or a plus of callbacks composed
    without a word and without what was meant. The refusal is one line, status 2, giving the list meant, which
    composes to it."""
    status, err = _as_an_entry_point("train.py", ["model=tiny", *args], monkeypatch, capsys)
    assert status == 2, err
    assert err.startswith(f"train.py: error: {' '.join(args)!r}: callbacks is chosen by a list"), err
    assert err.strip().endswith(f"give the list meant, '{fix}'") and len(err.strip().splitlines()) == 1, err
    from conftest import compose_config

    callbacks = set(compose_config("train", tmp_path, ["model=tiny", fix]).get("callbacks") or {})
    assert set(meant) <= callbacks and not set(left_out) & callbacks, sorted(callbacks)
    # A group of one choice deleted and added again is Hydra's to take.
    assert unknown_option(["~model", "+model=tiny"], CONFIG_DIR, "train") is None


def test_an_option_given_again_with_its_value_in_braces_or_the_same_value_is_not_a_shell_split() -> None:
    from marsunits.cli_repeated_options import brace_expanded_option

    assert brace_expanded_option(["tile=256", "overlap=0.1", "tile=512"]) is None  # not in a row
    assert brace_expanded_option(["tile=256", "tile=256"]) is None
    assert brace_expanded_option(["labels_class_map={0: 0}", "labels_class_map={1: 1}"]) is None
    assert brace_expanded_option(["-m", "model.lr=1e-3,2e-3"]) is None
    # An option given again with another value is Hydra's "the last counts" (a script appending to a base
    # list of options): refused as a shell split until test_train.py's sweep tests, giving
    # "model=tiny ... logger=none logger=csv", found it.
    assert brace_expanded_option(["model=tiny", "logger=none", "logger=csv"]) is None
    # Without the config, a list-valued option's repeats cannot be told from a scalar's: left alone.
    assert brace_expanded_option(["patterns=jpg", "patterns=png"]) is None
    # With it, a single-select group chosen again is still Hydra's "the last counts" (logger, and callbacks
    # once a choice before the run made it one option), and so is a list or choices given whole each time,
    # runs with different prefixes (no brace gives those), and an option not given in a row.
    for config_name, args in (
        ("train", ["model=tiny", "logger=none", "logger=csv"]),
        ("train", ["model=tiny", "++logger=none", "++logger=csv"]),
        ("train", ["callbacks=[default]", "callbacks=[ema]"]),
        ("train", ["callbacks=ema", "callbacks=ema"]),
        ("train", ["data=marsscapes_ai4mars", "data.sources=marsscapes", "++data.sources=ai4mars"]),
        ("train", ["trainer.max_epochs=1", "trainer.max_epochs=1"]),
        ("predict", ["patterns=[jpg]", "patterns=[png]"]),
        ("predict", ["patterns=jpg", "tile=256", "patterns=png"]),  # not in a row
        ("predict", ["tile=256", "overlap=0.1", "tile=512"]),
    ):
        assert brace_expanded_option(args, CONFIG_DIR, config_name) is None, args
    # An option of one value given again in a row with another was "the last counts" too, so that
    # predict.py input_dir=data/{a,b} (bash: input_dir=data/a input_dir=data/b) read data/b alone: it is
    # refused (test_a_plain_option_given_again_in_a_row_with_another_value_is_refused_naming_both).
    for config_name, args in (
        ("train", ["trainer.max_epochs=1", "trainer.max_epochs=2"]),
        ("train", ["++trainer.max_epochs=1", "++trainer.max_epochs=2"]),
        ("predict", ["tile=256", "tile=512"]),
        ("predict", ["++tile=256", "++tile=512"]),
    ):
        said = brace_expanded_option(args, CONFIG_DIR, config_name)
        assert said is not None and "give it once, with the one value meant" in said, (args, said)


def test_an_option_given_again_with_colons_that_is_no_map_is_not_a_shell_split_map() -> None:
    """A value with a colon given again in a row is a map's entry split by the shell only where it can be one:
    Hydra's own keys (``hydra.job.env_set.LD_LIBRARY_PATH=/opt/a:/opt/b``, a script's base options and the
    user's), an interpolation (``${now:%H-%M}``, which bash refuses unquoted) and an option the config holds
    as a string were refused as ``{...}`` split into entries, the fix a map nobody meant."""
    from marsunits.cli_repeated_options import brace_expanded_option

    # Told without the config too: Hydra's own keys, interpolations.
    for config_name, args, without_config in (
        ("train", ["hydra.run.dir=logs/12:00", "hydra.run.dir=logs/13:00"], True),
        ("train", ["+hydra.job.env_set.LD_PATH=/opt/a:/b", "+hydra.job.env_set.LD_PATH=/c:/d"], True),
        ("train", ["run_name=${now:%H-%M}", "run_name=${now:%M-%S}"], True),
        ("train", ["run_name=sol:1", "run_name=sol:2"], False),  # a string in the config
        ("predict", ["input_dir=x", "run_name=sol:1", "run_name=sol:2"], False),
        ("predict", ["input_dir=/mnt/a:b", "input_dir=/mnt/c:d"], False),  # ??? in the config: a path
    ):
        if without_config:
            assert brace_expanded_option(args) is None, args
        # Not a map; with the config, an option of one value given again with another (the last would
        # count alone), unless it is Hydra's own.
        said = brace_expanded_option(args, CONFIG_DIR, config_name)
        assert said is None or ("entry" not in said and "the one value meant" in said), (args, said)
        assert (said is None) == args[0].lstrip("+").startswith("hydra."), (args, said)
    # A map or a null option split so is still refused, with the config and without it.
    for config_name, args in (
        ("predict", ["input_dir=x", "labels_class_map=0:0", "labels_class_map=2:0"]),
        ("train", ["data=marsscapes", "data.class_map=0:0", "data.class_map=1:1"]),
        ("train", ["data.class_map=0:0", "data.class_map=1:1"]),
    ):
        assert brace_expanded_option(args) is not None, args
        assert brace_expanded_option(args, CONFIG_DIR, config_name) is not None, args


def test_a_single_select_group_chosen_twice_takes_the_last_as_hydra_does(tmp_path: Path) -> None:
    """``logger=none logger=csv`` (a script appending to its base options) is left to Hydra, which takes the
    last: the checks before Hydra pass it, and the composed config has the CSV logger alone."""
    from conftest import compose_config

    args = ["model=tiny", "logger=none", "logger=csv"]
    assert unknown_option(args, CONFIG_DIR, "train") is None
    cfg = compose_config("train", tmp_path, args)
    assert list(cfg.logger) == ["csv"]


def test_hydras_own_flags_are_not_taken_for_dashed_options() -> None:
    for args in (
        ["-m", "model.lr=1e-3,1e-4"],
        ["--cfg", "job"],
        ["--info"],
        ["-c", "job"],
        ["--resolve", "--cfg", "job"],
    ):
        assert unknown_option(args, CONFIG_DIR, "train") is None


def test_a_log_folder_that_cannot_be_made_is_one_line_before_hydra_starts(tmp_path) -> None:
    """Run from a read-only folder (a data disk), train.py and predict.py ended in Hydra's traceback: it makes
    logs/ under the folder the command runs from before any of their own code runs."""
    from pathlib import Path

    from marsunits.cli_overrides import unwritable_log_dir

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    said = unwritable_log_dir([f"paths.log_dir={blocker / 'logs'}"])
    assert said is not None and f"{blocker} is not a folder" in said and "paths.log_dir=<a writable" in said
    assert unwritable_log_dir([], cwd=blocker) is not None  # run from "inside" a file: logs/ under it
    assert unwritable_log_dir([f"paths.log_dir={tmp_path / 'new' / 'logs'}"]) is None  # made as needed
    assert unwritable_log_dir([], cwd=tmp_path) is None
    # Nothing is made for --help, --cfg job or --info, and a run folder given as hydra.run.dir is Hydra's.
    for extra in (["--help"], ["--cfg", "job"], ["--info"], [f"hydra.run.dir={tmp_path / 'run'}"]):
        assert unwritable_log_dir(extra, cwd=blocker) is None, extra
    if Path("/proc/1").is_dir():  # a read-only place, even for root
        assert "is not writable" in (unwritable_log_dir(["paths.log_dir=/proc/1/logs"]) or "")
    proc = _predict_py(
        ["ckpt_path=x", "input_dir=y", "output_dir=z", f"paths.log_dir={blocker / 'logs'}"], tmp_path
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.startswith("predict.py: error: cannot make the run folder under")
        and "Traceback" not in proc.stderr
    )


def test_a_log_folder_on_a_full_disk_is_one_line_before_hydra_starts(tmp_path, monkeypatch) -> None:
    """On a full disk Hydra made the run folder, then failed writing its .hydra/ record with its own
    traceback, naming no file (exit 1)."""
    import os

    from marsunits import cli_overrides

    real = os.statvfs(tmp_path)

    class Full:
        f_frsize, f_bavail = real.f_frsize, 0

    assert cli_overrides.unwritable_log_dir([f"paths.log_dir={tmp_path / 'logs'}"]) is None
    monkeypatch.setattr(os, "statvfs", lambda path: Full())
    said = cli_overrides.unwritable_log_dir([f"paths.log_dir={tmp_path / 'logs'}"])
    assert said is not None and f"the disk holding {tmp_path} is full (0 kB free)" in said
    assert "paths.log_dir=<a folder on another disk>" in said
    assert not (tmp_path / "logs").exists()


def test_paths_with_accents_brackets_quotes_or_commas_reach_the_run_as_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Hydra's grammar reads unquoted values as ASCII words: ``input_dir=/data/Séítah`` (this project's own
    unit names), ``Mars (copy)``, ``Sol 12 [Navcam]``, ``a=b`` or a quote were refused with a lexer error,
    and ``sol 12, left`` read as a sweep; a path option's value is now given to Hydra quoted, as typed.
    Sweeps (``-m``), lists, interpolations and values quoted by the user are left as they are."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from marsunits.cli_overrides import quoted_path_overrides, unreadable_or_unknown_choice

    parser = OverridesParser.create()
    names = (
        "/data/Séítah",
        "/data/Máaz (copy)",
        "/data/Sol 0012 [Navcam]",
        "/data/a=b",
        "/data/x{1}",
        "sol 12, left",
        "Jezero's, left",
        'a "b", c',
        "c:\\data, x",
        "$HOME, `x`",
        "q', \\",
    )
    for key in ("input_dir", "data.root", "+paths.log_dir", "ckpt_path", "init_ckpt_path"):
        for name in names:
            (typed,) = quoted_path_overrides([f"{key}={name}"])
            assert unreadable_or_unknown_choice([typed], CONFIG_DIR) is None, typed
            (override,) = parser.parse_overrides([typed])
            assert not override.is_sweep_override() and override.value() == name, (typed, name)
    kept = [
        "-m",
        "model.lr=1e-3,2e-3",
        "data.root=${oc.env:HOME}/data",
        "input_dir='sol 12, left'",
        "callbacks=[default,wandb,ema]",
        "input_dir=/plain/path",
        "~data.class_map",
    ]
    assert quoted_path_overrides(kept) == kept
    sweep = ["hparams_search=optuna", "init_ckpt_path=a.ckpt,b.ckpt"]  # the optuna config is a multirun
    assert quoted_path_overrides(sweep) == sweep
    assert unreadable_or_unknown_choice(sweep, CONFIG_DIR) is None
    assert unreadable_or_unknown_choice(["callbacks=[default,wandb,ema]"], CONFIG_DIR) is None
    # Through predict.py's checks before Hydra, in this process: the folder is found by its accented name.
    # (That predict.py's own start runs these checks: the wrong predict value's test below; a folder name's
    # bytes through the real command line: the module fixture's train.py start.)
    folder = tmp_path / "Séítah (copy)"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)
    given = ["ckpt_path=none.ckpt", f"input_dir={folder}"]
    given += [f"output_dir={tmp_path / 'out'}", f"hydra.run.dir={tmp_path / 'run'}"]
    status, err = _as_an_entry_point("predict.py", given, monkeypatch, capsys)
    assert status == 2 and "Traceback" not in err
    assert "none.ckpt does not exist" in err, err  # past the command line, to the checkpoint


def test_a_study_database_url_with_a_home_or_accented_path_reaches_the_sweeper_as_typed() -> None:
    """``hydra.sweeper.storage=sqlite:///~/studies/optuna.db`` (the home folder, which the sweeper reads:
    ``optuna_study.prepare_storage``) or ``sqlite:////data/Séítah/optuna.db`` was refused by Hydra's ASCII
    grammar ("cannot read the override"), though the value names a file as the path options do; it is
    quoted for Hydra like them. A URL Hydra reads as it is stays as typed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from marsunits.cli_overrides import quoted_path_overrides, unreadable_or_unknown_choice

    parser = OverridesParser.create()
    study = ["hparams_search=optuna"]  # a multirun
    for url in (
        "sqlite:///~/studies/optuna.db",
        "sqlite:////data/Séítah/optuna.db",
        "sqlite:///a b/optuna.db",
    ):
        argv = quoted_path_overrides([*study, f"hydra.sweeper.storage={url}"])
        assert unreadable_or_unknown_choice(argv, CONFIG_DIR) is None, argv
        (override,) = parser.parse_overrides(argv[1:])
        assert not override.is_sweep_override() and override.value() == url, argv
    plain = [*study, "hydra.sweeper.storage=sqlite:///logs/optuna.db"]
    assert quoted_path_overrides(plain) == plain


def test_run_folder_names_with_accents_or_latin1_bytes_reach_the_run_as_typed(
    run_a_b_under_home: tuple[Path, subprocess.CompletedProcess],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``run_name`` (and ``task_name``, ``hydra.run.dir``, ``hydra.sweep.dir``) name folders as the path
    options do, but were left to Hydra's ASCII grammar: ``run_name=Séítah`` or a Latin-1 ``run_name`` (an
    old archive's folder name) stopped train.py with "cannot read the override ... close every bracket".
    They are now quoted for Hydra like the path options, and the run gets its folder by that name."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from marsunits.cli_overrides import quoted_path_overrides, unreadable_or_unknown_choice

    parser = OverridesParser.create()
    latin1 = os.fsdecode(b"caf\xe9")
    for key in ("run_name", "task_name", "hydra.run.dir", "hydra.sweep.dir"):
        for name in ("Séítah", latin1, "sol 12, left"):
            (typed,) = quoted_path_overrides([f"{key}={name}"])
            assert unreadable_or_unknown_choice([typed], CONFIG_DIR) is None, typed
            (override,) = parser.parse_overrides([typed])
            assert not override.is_sweep_override() and override.value() == name, (typed, name)
    assert quoted_path_overrides(["run_name=${now:%H}"]) == ["run_name=${now:%H}"]  # read by Hydra as ever
    # Through the real command line (the module's one train.py start, with task_name=tcaf<0xe9>): past the
    # override, into the run folder, to the data folder without images (its layout is checked before the run
    # folder is made; its images in the run).
    where, proc = run_a_b_under_home
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"no images found in {where / 'empty' / 'images'}" in proc.stderr, proc.stderr[-3000:]
    assert (where / "home" / "runs" / f"t{latin1}" / "a,b" / f"t{latin1}.log").is_file()  # Hydra's job log
    # Resumed by a Latin-1 run_name, refused before Hydra starts (no last.ckpt): the name as \xNN, as the run
    # says it.
    monkeypatch.chdir(where)
    monkeypatch.setenv("HOME", str(where / "home"))
    resume = [
        *(a for a in proc.args[2:] if not a.startswith("run_name=")),
        f"run_name=r{latin1}",
        "ckpt_path=last",
    ]
    status, said = _as_an_entry_point("train.py", resume, monkeypatch, capsys)
    assert status == 2 and "ckpt_path=last with run_name=rcaf\\xe9: " in said, said[-3000:]


@pytest.fixture(scope="module")
def run_a_b_under_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """``train.py data=folder data.root=<empty> logger=csv run_name=a,b task_name=tcaf<0xe9>
    paths.log_dir=~/runs`` (a Latin-1 byte in the task's folder name), run once from a folder whose ``home/``
    is its home folder, for the tests of what it shows (a train.py start costs seconds of imports): that
    folder and the finished process, its output read as UTF-8 (a byte that is not: U+FFFD). The data folder
    is there with its ``images/`` and ``masks/``, empty (a missing folder, or one without that layout, is
    refused before the run), so Hydra makes the run folder and the run stops on it.

    Once for the whole run, not once per pytest-xdist worker: xdist deals the first quarter of the tests out
    one at a time, in turn, so these tests, neighbours in the file, went to both workers, and each started
    train.py (56 s of one worker's time under the suite's load). The first worker to ask runs it in the
    folder the workers' temporary folders share, the others wait for it and read what it left there."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:  # one process: nothing to share (the shared folder would be other runs' too)
        return _train_py_a_b_under_home(tmp_path_factory.mktemp("train_py"))
    import fcntl

    where = tmp_path_factory.getbasetemp().parent / "train_py_a_b_under_home"
    record = where.with_name(f"{where.name}.json")
    with open(where.with_name(f"{where.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held until closed: the other workers wait for the one run
        if not record.is_file():
            shutil.rmtree(where, ignore_errors=True)  # a worker's start that failed: the next one tries anew
            where.mkdir()
            proc = _train_py_a_b_under_home(where)[1]
            fields = {"args": proc.args, "status": proc.returncode, "out": proc.stdout, "err": proc.stderr}
            record.write_text(json.dumps(fields), encoding="utf-8")  # json escapes a lone surrogate
    kept = json.loads(record.read_text(encoding="utf-8"))
    return where, subprocess.CompletedProcess(kept["args"], kept["status"], kept["out"], kept["err"])


def _train_py_a_b_under_home(where: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """:func:`run_a_b_under_home`'s train.py start, in the empty folder ``where``."""
    (where / "home").mkdir()
    for sub in ("images", "masks"):  # a data folder with the layout but no images, refused only in the run
        (where / "empty" / sub).mkdir(parents=True)
    task = "task_name=t" + os.fsdecode(b"caf\xe9")
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "data=folder", f"data.root={where / 'empty'}"]
        + ["logger=csv", "run_name=a,b", task, "paths.log_dir=~/runs"],
        capture_output=True,
        timeout=120,
        cwd=where,
        env={**os.environ, "HOME": str(where / "home")},
    )
    out, err = proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    return where, subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_a_folder_option_given_a_list_without_multirun_says_it_is_one_run(
    run_a_b_under_home: tuple[Path, subprocess.CompletedProcess],
) -> None:
    """``train.py run_name=a,b`` (two runs meant, ``-m`` forgotten) trained one run, in a folder named
    ``a,b``, without a word: a path option's comma is kept as part of the name outside a multirun (``sol
    12, left`` is a folder). It still is, but a warning line says so and that ``-m`` makes one run per value;
    nothing is said in a multirun, for a quoted value, or for an option that is not a path."""
    where, proc = run_a_b_under_home
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    (warning,) = [line for line in proc.stderr.splitlines() if line.startswith("train.py: warning:")]
    assert "run_name=a,b" in warning and "'a,b'" in warning and "one run" in warning, warning
    assert "-m" in warning, warning
    task = os.fsdecode(b"tcaf\xe9")  # the fixture's task_name, which names its log too
    assert (where / "home" / "runs" / task / "a,b" / f"{task}.log").is_file()  # the folder it names

    from marsunits.cli_overrides import sweeps_taken_as_one_value

    said = sweeps_taken_as_one_value(["data.root=/x/sol 12, left", "input_dir=a,b", "seed=1"])
    assert [s.split(" ", 1)[0] for s in said] == ["data.root=/x/sol", "input_dir=a,b"], said
    for quiet in (
        ["-m", "run_name=a,b"],
        ["hparams_search=optuna", "run_name=a,b"],
        ["run_name='a,b'"],
        ["model.lr=1e-3,2e-3"],
        ["run_name=plain"],
        ["callbacks=[default,ema]"],
    ):
        assert sweeps_taken_as_one_value(quiet) == [], quiet


def test_a_folder_with_a_comma_that_exists_is_no_forgotten_multirun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``input_dir=sol 12, left`` naming a folder that is there (the README's example of a name with a comma)
    was warned about as ``-m`` forgotten, a list of two runs meant: a value that names an existing file or
    folder as typed is that path, and nothing is said. A warning's ``-m`` command is quoted for the shell
    (``python predict.py -m ... input_dir=x, y`` ran with ``y`` as another argument)."""
    from marsunits.cli_overrides import sweeps_taken_as_one_value

    folder = tmp_path / "sol 12, left"
    folder.mkdir()
    (tmp_path / "a,b.ckpt").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    for there in (
        f"input_dir={folder}",
        "input_dir=sol 12, left",
        "ckpt_path=a,b.ckpt",
        "data.root=~/sol 12, left",
    ):
        assert sweeps_taken_as_one_value([there]) == [], there
    (said,) = sweeps_taken_as_one_value(["input_dir=x, y"])
    assert said.endswith("(python <script>.py -m ... 'input_dir=x, y')"), said


def test_a_log_folder_under_the_home_folder_is_made_there(
    run_a_b_under_home: tuple[Path, subprocess.CompletedProcess],
) -> None:
    """``paths.log_dir=~/runs`` (zsh passes ``~`` after ``=`` as it is) made a folder named ``~`` in the
    current folder, and the run went there: Hydra makes the run folder before any code of the project
    reads the path. ``~`` is now the home folder there too, as in every other path option."""
    where, proc = run_a_b_under_home
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    task = os.fsdecode(b"tcaf\xe9")  # the fixture's task_name, which names its log too
    assert (where / "home" / "runs" / task / "a,b" / f"{task}.log").is_file(), proc.stderr[-3000:]
    assert not (where / "~").exists()


def test_torchrun_or_slurm_ranks_without_a_run_name_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torchrun or srun every process composes its own config: the default run_name is made from the
    clock, and a rank that started a second after rank 0 wrote its .hydra/ record and train.log to a run
    folder of its own."""
    from marsunits.cli_overrides import unnamed_external_ranks

    for name in ("WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    args = ["trainer=ddp", "trainer.accelerator=cpu"]
    assert unnamed_external_ranks(args, CONFIG_DIR) is None  # one process: its own folder is the run's
    monkeypatch.setenv("WORLD_SIZE", "2")
    said = unnamed_external_ranks(args, CONFIG_DIR)
    assert said is not None and "one of 2 training processes" in said and "run_name=<name>" in said
    # A shared name, or a folder given (Lightning's own launcher passes its ranks rank 0's hydra.run.dir).
    assert unnamed_external_ranks([*args, "run_name=ddp-1"], CONFIG_DIR) is None
    assert unnamed_external_ranks([*args, "hydra.run.dir=/tmp/x"], CONFIG_DIR) is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert unnamed_external_ranks(args, CONFIG_DIR) is None
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert "one of 4 training processes" in str(unnamed_external_ranks(args, CONFIG_DIR))


def test_a_single_device_run_in_a_slurm_job_of_several_tasks_needs_no_run_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``python train.py`` (one process on one device) in an sbatch script with ``--ntasks=4`` (CPUs for the
    loaders): SLURM sets SLURM_PROCID=0 and SLURM_NTASKS=4 there, but no other rank makes a folder, so the
    default run name is not refused; a second task of such a job (``srun -n 4``) is said as one."""
    from marsunits.cli_overrides import unnamed_external_ranks

    for name in (
        "WORLD_SIZE",
        "SLURM_JOB_NAME",
        "TORCHELASTIC_RUN_ID",
        "SLURM_NTASKS_PER_NODE",
        "SLURM_NNODES",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    for args in ([], ["trainer=cpu"], ["trainer=cpu", "trainer.devices=auto"]):
        assert unnamed_external_ranks(args, CONFIG_DIR) is None, args
    assert "one of 4 training processes" in str(unnamed_external_ranks(["trainer=ddp"], CONFIG_DIR))
    monkeypatch.setenv("SLURM_PROCID", "1")
    said = unnamed_external_ranks([], CONFIG_DIR)
    assert said is not None and "task 1 of 4" in said and "run_name" not in said


def test_a_slurm_trainer_whose_node_count_is_an_interpolation_still_needs_a_run_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run-name check composes the config without resolving it: ``trainer.num_nodes=${oc.env:...}`` is
    then text, not a count. One device per node on 2 nodes is 2 processes of DDP, so the trainer must not be
    taken for one process (it was, and the ranks ran without a shared run_name, each in a folder of its
    own)."""
    from marsunits.cli_overrides import unnamed_external_ranks

    unset = ("WORLD_SIZE", "SLURM_JOB_NAME", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS_PER_NODE", "SLURM_NNODES")
    for name in unset:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MARSUNITS_TEST_NNODES", raising=False)
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    for nodes in ("${oc.env:MARSUNITS_TEST_NNODES,2}", "2"):
        said = unnamed_external_ranks(["trainer=gpu", f"+trainer.num_nodes={nodes}"], CONFIG_DIR)
        assert "one of 2 training processes" in str(said), nodes
    assert unnamed_external_ranks(["trainer=gpu", "+trainer.num_nodes=1"], CONFIG_DIR) is None


def test_a_second_task_of_a_single_device_run_in_an_interactive_allocation_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``srun -n 4 python train.py`` inside ``salloc`` (job name ``interactive`` or ``bash``: Lightning then
    ignores SLURM): the tasks are four copies of one run, each training on its own. They were let through
    without a word (the SLURM world check skips interactive jobs); task 0 alone trains as on a workstation."""
    from marsunits.cli_overrides import unnamed_external_ranks

    for name in ("WORLD_SIZE", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS_PER_NODE", "SLURM_NNODES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "4")
    for job in ("interactive", "bash"):
        monkeypatch.setenv("SLURM_JOB_NAME", job)
        monkeypatch.setenv("SLURM_PROCID", "0")
        assert unnamed_external_ranks([], CONFIG_DIR) is None, job
        monkeypatch.setenv("SLURM_PROCID", "2")
        said = unnamed_external_ranks([], CONFIG_DIR)
        assert said is not None and "task 2 of 4" in said and "run_name" not in said, job


def test_the_batch_scripts_own_process_is_not_asked_for_a_run_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """``python train.py trainer=ddp`` in an sbatch script of ``--ntasks-per-node=4`` without ``srun``: one
    process (no SLURM_STEP_ID), not one of 4, so no other rank makes a folder. It was told to add a run_name,
    and then, with one, refused at train time for the missing srun: the first fix named was the wrong one."""
    from marsunits.cli_overrides import unnamed_external_ranks

    for name in ("WORLD_SIZE", "TORCHELASTIC_RUN_ID", "SLURM_JOB_NAME", "SLURM_STEP_ID", "SLURM_STEPID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in (("SLURM_JOB_ID", "4242"), ("SLURM_PROCID", "0"), ("SLURM_NTASKS", "4")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "4")
    assert unnamed_external_ranks(["trainer=ddp"], CONFIG_DIR) is None
    # A task that srun started is one of 4, and needs the shared name.
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    assert "one of 4 training processes" in str(unnamed_external_ranks(["trainer=ddp"], CONFIG_DIR))


def test_a_machine_of_a_multi_node_run_launched_by_hand_is_asked_for_a_run_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Lightning's manual multi-node launch (the same command on each machine with ``MASTER_ADDR`` and
    ``NODE_RANK``) sets no ``WORLD_SIZE``: each machine named its run folder by its own clock, so the second
    machine's ``.hydra/`` record and ``train.log`` went to a folder of their own, without a word."""
    from marsunits.cli_overrides import unnamed_external_ranks

    for name in ("WORLD_SIZE", "TORCHELASTIC_RUN_ID", "SLURM_PROCID", "SLURM_NTASKS", "GROUP_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")
    monkeypatch.setenv("NODE_RANK", "1")
    args = ["trainer=ddp", "trainer.num_nodes=2"]
    said = unnamed_external_ranks(args, CONFIG_DIR)
    assert said is not None and "NODE_RANK=1" in said and "trainer.num_nodes=2" in said and "run_name" in said
    assert unnamed_external_ranks([*args, "run_name=two-machines"], CONFIG_DIR) is None
    assert unnamed_external_ranks(["trainer=ddp", "trainer.num_nodes=1"], CONFIG_DIR) is None  # one machine
    monkeypatch.delenv("NODE_RANK")
    assert unnamed_external_ranks(args, CONFIG_DIR) is None  # not launched by hand: refused at train time


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["+model.foo=1"], "unknown option 'model.foo' in '+model.foo=1': model builds SegmentationTask, "),
        (["++model.archh=unet"], "which takes no 'archh'; did you mean model.arch=...?"),
        (["+trainer.max_epoch=3"], "trainer builds Trainer, which takes no 'max_epoch'; did you mean "),
        (["-m", "seed=1,2", "+data.foo=2"], "data builds MarsDataModule, which takes no 'foo'"),
        (["+trainer.foo.bar=1"], "unknown option 'trainer.foo' in '+trainer.foo.bar=1': trainer builds Trai"),
        (["+model.head.depth=2"], "model builds SegmentationTask, which takes no 'head'"),
        # A node in a list: the checkpoint IO (Hydra's "AtomicCheckpointIO() takes no arguments").
        (
            ["+trainer.plugins.0.bogus=1"],
            "unknown option 'trainer.plugins.0.bogus' in '+trainer.plugins.0.bogus=1': trainer.plugins.0 "
            "builds AtomicCheckpointIO, which takes no 'bogus' (every option: python train.py --cfg job, "
            "with the same overrides)",
        ),
    ],
)
def test_an_added_key_the_built_class_does_not_take_is_one_line(args: list[str], said: str) -> None:
    """Hydra added the key, and the run failed where the node was instantiated, with Hydra's multi-line
    "unexpected keyword argument" error and status 1."""
    message = unknown_option(args, CONFIG_DIR, "train")
    assert message is not None and said in message and "\n" not in message


def test_an_added_key_the_built_class_takes_or_a_node_built_from_no_class_passes() -> None:
    """What :func:`test_an_added_key_the_built_class_does_not_take_is_one_line` refuses is refused alone: keys
    a class takes, a class that takes any keyword (W&B's logger), and nodes built from no class pass. (Once,
    not again with each refusal's case: some 1.2 s of composing each on 2 cores.)"""
    for fine in (
        ["+callbacks.model_checkpoint.every_n_epochs=2"],
        ["+logger.wandb.notes=first try"],
        ["+logger.wandb.settings.x=1"],
        ["experiment=ai4mars", "++data.class_map.4=2"],
        ["+callbacks.stop._target_=my.Callback", "+callbacks.stop.step=3"],
        ["+trainer.plugins.1._target_=my.Plugin"],  # a node the list does not have: Hydra's to say
    ):
        assert unknown_option(fine, CONFIG_DIR, "train") is None, fine


@pytest.mark.parametrize(
    ("config", "args", "key", "value"),
    [
        ("train", ["+trainer.log_every_n_steps=1"], "trainer.log_every_n_steps", "1"),
        ("train", ["model=tiny", "+model.lr=1e-3"], "model.lr", "1e-3"),
        ("train", ["+seed=3"], "seed", "3"),
        ("train", ["-m", "model.lr=1e-3,2e-3", "+trainer.max_epochs=1"], "trainer.max_epochs", "1"),
        # Itself swept: left out of the sweep's own config, it failed at each trial after the folder was made.
        ("train", ["-m", "+trainer.max_epochs=1,2"], "trainer.max_epochs", "1,2"),
        ("predict", ["+tile=256"], "tile", "256"),
        ("predict", ["+contact.min_length_px=5"], "contact.min_length_px", "5"),
    ],
)
def test_a_plus_on_an_option_the_config_has_is_one_line_naming_the_override_without_it(
    config: str, args: list[str], key: str, value: str
) -> None:
    """``+trainer.log_every_n_steps=1`` (a plus on an option the config already lists) ended in Hydra's
    "Could not append to config. An item is already at ..." in five lines with status 1, where every other
    misspelt option is one line with status 2."""
    message = unknown_option(args, CONFIG_DIR, config)
    assert message is not None and "\n" not in message, message
    assert f"'+{key}={value}'" in message and f"give {key}={value}" in message, message


def test_a_plus_on_an_option_the_config_lacks_or_a_plus_plus_stays_hydras_to_add_or_set() -> None:
    """Beside :func:`test_a_plus_on_an_option_the_config_has_is_one_line_naming_the_override_without_it`: a
    plus on a key the config lacks, ++ on one it has, and a plus on one an earlier ~ deleted (Hydra applies
    them in order) stay Hydra's to add or set. (Once, not again with each refused case.)"""
    for fine in (
        ["+trainer.max_steps=6"],
        ["++trainer.log_every_n_steps=1"],
        ["++seed=3"],
        ["~trainer.log_every_n_steps", "+trainer.log_every_n_steps=1"],
    ):
        assert unknown_option(fine, CONFIG_DIR, "train") is None, fine


@pytest.mark.parametrize(
    ("config", "arg", "meant"),
    [("train", "~trainer.max_epoch", "~trainer.max_epochs"), ("predict", "~tile_size", "~tile")],
)
def test_a_deletion_of_an_option_the_config_lacks_is_one_line_naming_the_one_meant(
    config: str, arg: str, meant: str
) -> None:
    """``~trainer.max_epoch`` (a misspelt option to delete) ended in Hydra's "Could not delete from config"
    in three lines with status 1, where a misspelt option to set is one line with status 2."""
    message = unknown_option([arg], CONFIG_DIR, config)
    assert message is not None and "\n" not in message, message
    assert f"{arg!r}" in message and f"did you mean {meant}?" in message, message
    assert unknown_option(["~trainer.max_epochs"], CONFIG_DIR, "train") is None


@pytest.mark.parametrize(
    ("args", "key", "trial"),
    [
        (["~model.warmup_steps"], "model.warmup_steps", ""),
        (["-m", "model=unet_lite0,tiny", "~model.encoder_weights"], "model.encoder_weights", "model=tiny"),
    ],
)
def test_a_deletion_of_an_option_whose_value_is_null_is_not_told_to_delete_itself(
    args: list[str], key: str, trial: str
) -> None:
    """Hydra refuses to delete a key whose value is null as one that "does not exist"; the refusal said "the
    config has no model.warmup_steps to delete; did you mean ~model.warmup_steps?", the very override given,
    a fix that changes nothing. It says the key is null there, and what works instead."""
    message = unknown_option(args, CONFIG_DIR, "train")
    assert message is not None and "\n" not in message, message
    assert f"did you mean ~{key}?" not in message and f"has no {key}" not in message, message
    assert f"{key} is null" in message and trial in message, message


def test_a_new_option_added_twice_is_not_said_to_be_in_the_config() -> None:
    """``+trainer.max_steps=5 +trainer.max_steps=6`` (a key the config lacks, added twice): the second finds
    the first's, and the refusal said the config already lists it, giving ``trainer.max_steps=5``, which
    Hydra refuses as a key the config does not have."""
    message = unknown_option(["+trainer.max_steps=5", "+trainer.max_steps=6"], CONFIG_DIR, "train")
    assert message is not None and "\n" not in message, message
    assert "already an option of the config" not in message and "once" in message, message


def test_an_option_deleted_twice_is_not_told_to_delete_itself() -> None:
    """``~trainer.max_epochs ~trainer.max_epochs``: the second finds nothing to delete, and the refusal said
    "did you mean ~trainer.max_epochs?", the very override given, a fix that changes nothing."""
    message = unknown_option(["~trainer.max_epochs", "~trainer.max_epochs"], CONFIG_DIR, "train")
    assert message is not None and "\n" not in message, message
    assert "did you mean ~trainer.max_epochs?" not in message and "once" in message, message


@pytest.mark.parametrize(
    ("prog", "args", "meant"),
    [
        ("train.py", ["-m", "~trainer.max_epoch", "model.lr=1e-3,1e-4"], "~trainer.max_epochs"),
        ("train.py", ["~trainer.max_epoch", "model.lr=1e-3,1e-4", "--multirun"], "~trainer.max_epochs"),
        ("predict.py", ["-m", "~tile_size", "batch_size=1,2"], "~tile"),
    ],
)
def test_a_misspelt_deletion_in_a_multirun_is_one_line_before_any_folder(
    prog: str,
    args: list[str],
    meant: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``train.py -m ~trainer.max_epoch model.lr=1e-3,1e-4``: the check composed the sweep's values as one
    run's, Hydra refused them as ambiguous, and the misspelt deletion went on to Hydra's three lines
    ("Could not delete from config") with status 1, where the same deletion without a sweep was one line."""
    monkeypatch.chdir(tmp_path)
    status, err = _as_an_entry_point(prog, args, monkeypatch, capsys)
    assert status == 2 and err.count("\n") == 1, err
    assert err.startswith(f"{prog}: error: '{args[1] if args[0] == '-m' else args[0]}'"), err
    assert f"did you mean {meant}?" in err, err
    assert list(tmp_path.iterdir()) == []  # no sweep folder, no logs/
    # Deleting a key the config has, in a sweep, is Hydra's to do.
    assert unknown_option(["-m", "~trainer.max_epochs", "model.lr=1e-3,1e-4"], CONFIG_DIR, "train") is None


@pytest.mark.parametrize(
    ("prog", "args", "said"),
    [
        (
            "train.py",
            ["-m", "trainer.max_epoch=1,2"],
            "unknown option 'trainer.max_epoch' in 'trainer.max_epoch=1,2'; did you mean "
            "trainer.max_epochs=...?",
        ),
        (
            "train.py",
            ["model.lr=1e-3", "trainer.max_epoch=range(1,3)", "--multirun"],
            "unknown option 'trainer.max_epoch' in 'trainer.max_epoch=range(1,3)'; did you mean "
            "trainer.max_epochs=...?",
        ),
        (
            "predict.py",
            ["-m", "contact.min_lenght_px=20,30"],
            "unknown option 'contact.min_lenght_px' in 'contact.min_lenght_px=20,30'; did you mean "
            "contact.min_length_px=...?",
        ),
        (
            "predict.py",
            ["-m", "tile_sise=256,512"],
            "unknown option 'tile_sise' in 'tile_sise=256,512'; did ",
        ),
        ("train.py", ["-m", "~seed", "seed=1,2"], "'seed=1,2' sets seed, which '~seed' before it deletes: "),
    ],
)
def test_a_misspelt_swept_option_is_one_line_before_any_folder(
    prog: str,
    args: list[str],
    said: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``train.py -m trainer.max_epoch=1,2`` (the misspelt key is the one swept): Hydra leaves a sweep out of
    the sweep's own config, so the key was refused only at each trial, in Hydra's five lines, after the sweep
    folder was made (``-m ~seed seed=1,2`` the same). Checked with the sweep's first value, as its first
    trial composes it."""
    monkeypatch.chdir(tmp_path)
    status, err = _as_an_entry_point(prog, args, monkeypatch, capsys)
    assert status == 2 and err.count("\n") == 1, err
    assert err.startswith(f"{prog}: error: {said}"), err
    assert list(tmp_path.iterdir()) == []  # no sweep folder, no logs/


@pytest.mark.parametrize(
    ("args", "said"),
    [
        # data=synthetic (the first) has train_length, data=marsscapes does not: its trials failed alone.
        (
            ["-m", "~data.train_length", "data=synthetic,marsscapes"],
            "'~data.train_length': the config has no data.train_length to delete",
        ),
        (
            ["-m", "data=synthetic,marsscapes", "data.train_length=10"],
            "unknown option 'data.train_length' in 'data.train_length=10'",
        ),
        (
            ["-m", "data=synthetic,marsscapes", "data.train_length=10,20"],
            "unknown option 'data.train_length' in 'data.train_length=10,20'",
        ),
    ],
)
def test_an_option_that_a_later_choice_of_a_swept_group_lacks_is_one_line_naming_the_choice(
    args: list[str], said: str
) -> None:
    """``-m ~data.train_length data=synthetic,marsscapes``: the first trial (synthetic) has the key, and the
    trials of ``data=marsscapes`` failed one by one in Hydra's lines, after the sweep folder was made. Each
    option of a swept config group is composed once."""
    message = unknown_option(args, CONFIG_DIR, "train")
    assert message is not None and "\n" not in message, message
    assert message.startswith(f"{said} (in the trials with data=marsscapes)"), message
    assert unknown_option([a.replace("marsscapes", "synthetic") for a in args], CONFIG_DIR, "train") is None
    setting = next((a for a in args if a.startswith("data.train_length=")), None)
    if setting is not None:
        # The data module takes it: the fix given adds it where the option lacks it and sets it where not (a
        # single plus was refused at data=synthetic, which has it).
        assert f"add it with two pluses (adds or sets), ++{setting}" in message, message
        fixed = [f"++{a}" if a == setting else a for a in args]
        assert unknown_option(fixed, CONFIG_DIR, "train") is None, fixed
        for data in ("synthetic", "marsscapes"):
            trial = [f"data={data}", f"++{setting.split(',')[0]}"]
            assert compose_error(CONFIG_DIR, "train", trial)[0] == "", trial


def test_an_option_that_only_a_later_choice_of_a_swept_group_has_is_given_with_two_pluses() -> None:
    """``-m data=synthetic,marsscapes data.root=X``: the first trial (synthetic) lacks the key, marsscapes has
    it. The refusal said to add it with one plus, ``+data.root=X``, which the next command then refused at the
    trials of data=marsscapes (a plus on a key the config has); two pluses add it or set it in every trial."""
    args = ["-m", "data=synthetic,marsscapes", "data.root=/data/marsscapes"]
    message = unknown_option(args, CONFIG_DIR, "train")
    assert message is not None and "\n" not in message, message
    assert "add it with two pluses (adds or sets), ++data.root=/data/marsscapes" in message, message
    assert unknown_option([*args[:2], "++data.root=/data/marsscapes"], CONFIG_DIR, "train") is None


def test_a_plus_on_a_key_the_first_choice_of_a_swept_group_has_is_given_with_two_pluses() -> None:
    """``-m data=marsscapes,synthetic +data.root=X``: the first trial (marsscapes) has the key, synthetic
    lacks it. The refusal gave ``data.root=X`` first, which the next command then refused at the trials of
    data=synthetic (a key the config lacks); two pluses add it or set it in every trial."""
    args = ["-m", "data=marsscapes,synthetic", "+data.root=/data/marsscapes"]
    message = unknown_option(args, CONFIG_DIR, "train")
    assert message is not None and "\n" not in message, message
    assert "give ++data.root=/data/marsscapes" in message and "give data.root" not in message, message
    assert unknown_option([*args[:2], "++data.root=/data/marsscapes"], CONFIG_DIR, "train") is None


def test_valid_sweeps_pass_the_checks_of_their_trials() -> None:
    """A sweep of keys the config has, or of config groups whose every option takes the other overrides, is
    Hydra's to run."""
    for config, args in (
        ("train", ["-m", "trainer.max_epochs=1,2"]),
        ("train", ["-m", "model=tiny,unet_lite0", "model.lr=1e-3"]),
        ("train", ["-m", "model=glob(unet_lite*)", "trainer.max_epochs=1,2"]),
        ("train", ["-m", "data=synthetic,marsscapes", "data.crop_size=64", "~data.class_mix_prob"]),
        ("train", ["-m", "~trainer.max_epochs", "+trainer.max_epochs=1,2"]),
        ("train", ["-m", "experiment=synthetic,marsscapes", "trainer.max_epochs=1,2"]),
        ("train", ["hparams_search=optuna", "model.lr=interval(1e-4,1e-2)", "trainer.max_epochs=1"]),
        ("predict", ["-m", "tile=256,512", "contact.min_length_px=20,30"]),
    ):
        assert unknown_option(args, CONFIG_DIR, config) is None, args


@pytest.mark.parametrize(
    ("config", "args", "deletion", "setting"),
    [
        (
            "train",
            ["~trainer.max_epochs", "trainer.max_epochs=3"],
            "~trainer.max_epochs",
            "trainer.max_epochs=3",
        ),
        (
            "train",
            ["~trainer.max_epochs=4", "trainer.max_epochs=3"],
            "~trainer.max_epochs=4",
            "trainer.max_epochs=3",
        ),
        ("train", ["-m", "~model.lr", "model.lr=1e-3", "seed=1,2"], "~model.lr", "model.lr=1e-3"),
        ("predict", ["~tile", "tile=256"], "~tile", "tile=256"),
        ("predict", ["~contact", "contact.min_length_px=5"], "~contact", "contact.min_length_px=5"),
    ],
)
def test_an_option_set_after_its_deletion_is_one_line_naming_what_to_write(
    config: str, args: list[str], deletion: str, setting: str
) -> None:
    """``~trainer.max_epochs trainer.max_epochs=3``: Hydra deletes the key, then refuses to set a key the
    config lacks, in five lines with status 1 ("Could not override ... To append to your config use +...",
    which says nothing of the deletion). The line names both overrides and the two commands that work."""
    message = unknown_option(args, CONFIG_DIR, config)
    assert message is not None and "\n" not in message, message
    assert f"{setting!r}" in message and f"{deletion!r}" in message, message
    assert f"give {setting} alone" in message and f"{deletion} +{setting}" in message, message
    # Both fixes are taken, by the checks and by Hydra.
    others = [a for a in args if a not in (deletion, setting)]
    for fix in ([*others, setting], [*others, deletion, f"+{setting}"]):
        assert unknown_option(fix, CONFIG_DIR, config) is None, fix
        single = [a for a in fix if a != "-m" and "," not in a]
        assert compose_error(CONFIG_DIR, config, single)[0] == "", fix


@pytest.mark.parametrize(
    ("config", "args", "fix"),
    [
        ("train", ["+experiment=marsscapes"], "experiment=marsscapes"),
        ("train", ["+data=folder"], "data=folder"),
        ("train", ["+model=tiny", "trainer.max_epochs=1"], "model=tiny"),
        ("train", ["+debug=overfit"], "debug=overfit"),  # chosen as null, still in the defaults list
        ("train", ["+model=unet_lite0"], "model=unet_lite0"),  # the defaults' own choice
        ("train", ["-m", "+model=tiny,unet_lite0"], "model=tiny,unet_lite0"),  # failed at its first trial
        (  # a glob: passed, and failed at each trial
            "train",
            ["-m", "+model=glob(unet_lite*,exclude=unet_lite0*)"],
            "'model=glob(unet_lite*,exclude=unet_lite0*)'",
        ),
        ("predict", ["+logger=wandb"], "logger=wandb"),
    ],
)
def test_a_plus_on_a_config_group_the_defaults_choose_is_one_line_giving_it_without(
    config: str, args: list[str], fix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``train.py +experiment=marsscapes`` (a plus on a group the defaults list already chooses) ended in
    Hydra's "Multiple values for experiment. To override a value use 'override experiment: marsscapes'",
    a fix for a config file, not the command line, with status 1."""
    monkeypatch.chdir(tmp_path)
    plus = next(a for a in args if a.startswith("+"))
    group = plus[1:].split("=", 1)[0]
    message = unknown_option(args, CONFIG_DIR, config)
    assert message is not None and "\n" not in message, message
    assert message.startswith(f"{plus!r}:") and f"give {fix} " in message, message
    assert f"configs/{config}.yaml" in message and group in message, message
    fixed = [shlex.split(fix)[0] if a == plus else a for a in args]
    assert unknown_option(fixed, CONFIG_DIR, config) is None, fixed


def test_a_plus_on_a_group_list_or_on_a_group_deleted_first_stays_hydras_to_add(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beside :func:`test_a_plus_on_a_config_group_the_defaults_choose_is_one_line_giving_it_without`: a plus
    that adds to a group list (callbacks) or a group the command deleted first is Hydra's to add. (Once, not
    again with each refused case.)"""
    monkeypatch.chdir(tmp_path)
    for fine in (["+callbacks=ema"], ["~model", "+model=tiny"], ["~logger", "+logger=wandb"]):
        name = "predict" if "logger" in fine[0] else "train"
        assert unknown_option(fine, CONFIG_DIR, name) is None, fine


@pytest.mark.parametrize(
    ("prog", "args", "fix", "says"),
    [
        # callbacks is chosen by a list (train.yaml: [default, wandb]): one plus adds to it.
        ("train.py", ["++callbacks=ema"], "+callbacks=ema", "callbacks is chosen by a list"),
        ("train.py", ["++model=tiny", "trainer.max_epochs=1"], "model=tiny", "as composed: unet_lite0_d4"),
        ("train.py", ["++logger=csv"], "logger=csv", "as composed: wandb_csv"),
        ("train.py", ["++debug=fdr"], "debug=fdr", "as composed: null"),  # chosen as null
        ("predict.py", ["++logger=wandb"], "logger=wandb", "as composed: null"),
        ("train.py", ["-m", "++model=tiny,fpn_lite0"], "model=tiny,fpn_lite0", "unet_lite0_d4"),
        # A group the command deleted first, or another package: not in the defaults list, one plus adds it.
        ("train.py", ["~model", "++model=tiny"], "+model=tiny", "not in the defaults list"),
        ("train.py", ["++model@teacher=tiny"], "+model@teacher=tiny", "not in the defaults list"),
        # Given twice: a group of one choice takes it once, a group chosen by a list takes both at once.
        ("train.py", ["++logger=none", "++logger=csv"], "logger=csv", "as composed: wandb_csv"),
        ("train.py", ["+logger=none", "++logger=csv"], "logger=csv", "as composed: wandb_csv"),
        ("train.py", ["++callbacks=ema", "++callbacks=recovery"], "'+callbacks=[ema,recovery]'", "a list"),
    ],
)
def test_two_pluses_on_a_config_group_are_one_line_giving_the_plus_or_choice_that_works(
    prog: str,
    args: list[str],
    fix: str,
    says: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``train.py ++callbacks=ema`` (or ``++model=tiny``) passed the checks before Hydra, which then refused
    it in several lines with status 1 ("force-add of config groups is not supported"). It is one line with
    status 2, before any folder, giving what works: one plus for a group chosen by a list (it adds to the
    defaults' callbacks) or missing from the defaults list, the choice without pluses for a group of one
    choice. The fix given passes the checks and composes (with the defaults' callbacks kept)."""
    from conftest import compose_config

    monkeypatch.chdir(tmp_path)
    status, err = _as_an_entry_point(prog, args, monkeypatch, capsys)
    plus = [a for a in args if a.startswith("+")]
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    head = " and ".join(repr(a) for a in plus)
    assert err.startswith(f"{prog}: error: {head}: ") and "cannot force-add a config group" in err, err
    assert f"give {fix} " in err or err.strip().endswith(f"give {fix}"), err
    assert says in err and (len(plus) > 1) == ("once" in err or "both" in err), err
    assert list(tmp_path.iterdir()) == []  # no run folder, no logs/
    config = prog.removesuffix(".py")
    fixed = [a for a in args if a not in plus[:-1]]
    fixed[fixed.index(plus[-1])] = fix.strip("'")
    assert unknown_option(fixed, CONFIG_DIR, config) is None, fixed
    single = [a.split(",")[0] if a.startswith("model=") else a for a in fixed if a != "-m"]
    cfg = compose_config(config, tmp_path / "composed", single)
    if "callbacks" in fix:  # added to the defaults' callbacks, which stay
        meant = {"model_checkpoint", "wandb_val_images", "ema"}
        assert meant <= set(cfg.callbacks), sorted(cfg.callbacks)
    if "model@teacher" in fix:
        assert "teacher" in cfg and cfg.model.encoder != cfg.teacher.encoder


@pytest.mark.parametrize(
    ("args", "fix"),
    [
        # It said "give callbacks=ema (without the pluses), which replaces default": a run without
        # best.ckpt, when default and EMA were meant.
        (["++callbacks=ema", "callbacks=default"], "callbacks=[default,ema]"),
        (["callbacks=[default]", "model=tiny", "++callbacks=ema"], "callbacks=[default,ema]"),
        (
            ["++callbacks=ema", "++callbacks=recovery", "callbacks=default"],
            "callbacks=[default,ema,recovery]",
        ),
        (["+callbacks=ema", "++callbacks=recovery", "callbacks=default"], "callbacks=[default,ema,recovery]"),
        (["callbacks=[default,ema]", "++callbacks=ema"], "callbacks=[default,ema]"),
        # It gave +callbacks=ema, which beside the swept choice Hydra drops at each trial.
        (
            ["-m", "callbacks=[default],[default,wandb]", "++callbacks=ema"],
            "callbacks=[default,ema],[default,wandb,ema]",
        ),
    ],
)
def test_two_pluses_on_callbacks_beside_a_choice_of_callbacks_give_one_list_of_both(
    args: list[str],
    fix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``train.py ++callbacks=ema callbacks=default``: the user chose ``default`` and meant to add EMA. The
    refusal of the two pluses gave ``callbacks=ema``, which replaces ``default`` (no ``best.ckpt``), or
    ``+callbacks=ema``, which Hydra drops beside a choice of callbacks. Like the refusal of one plus beside a
    choice, it gives callbacks once, one list of the choice's options and the pluses', which passes the
    checks and composes to both."""
    from conftest import compose_config

    monkeypatch.chdir(tmp_path)
    status, err = _as_an_entry_point("train.py", args, monkeypatch, capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "cannot force-add a config group" in err, err
    assert err.strip().endswith(f"give callbacks once, '{fix}'"), err
    assert list(tmp_path.iterdir()) == []
    fixed = [a for a in args if not a.lstrip("+").startswith("callbacks=")] + [fix]
    assert unknown_option(fixed, CONFIG_DIR, "train") is None, fixed
    first = fix.split("],[")[0] + ("]" if "],[" in fix else "")
    cfg = compose_config("train", tmp_path / "composed", [first])
    assert {"model_checkpoint", "ema"} <= set(cfg.callbacks), sorted(cfg.callbacks)


@pytest.mark.parametrize(
    ("prog", "args"),
    [
        ("predict.py", ["logger=wandb", "+logger=wandb"]),
        ("predict.py", ["+logger=wandb", "logger=wandb"]),
        ("train.py", ["logger=csv", "+logger=csv"]),
        ("train.py", ["logger=csv", "++logger=csv"]),
    ],
)
def test_a_group_chosen_and_added_with_the_same_choice_is_told_it_is_given_twice(
    prog: str, args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``predict.py logger=wandb +logger=wandb`` was told to give ``logger=wandb``, "which replaces wandb": a
    choice replacing itself. The line says the choice is given twice and to give it once, without the plus."""
    status, err = _as_an_entry_point(prog, args, monkeypatch, capsys)
    choice = next(a for a in args if not a.startswith("+"))
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{choice} is given twice" in err and f"give it once, {choice} " in err, err
    assert "replaces" not in err, err
    assert unknown_option([choice], CONFIG_DIR, prog.removesuffix(".py")) is None


@pytest.mark.parametrize(
    ("prog", "args", "fix"),
    [
        # Hydra gave the plus the command line's choice: each ran tiny, gpu, synthetic, csv without a word.
        ("train.py", ["model=tiny", "+model=fpn_lite0"], "model=fpn_lite0"),
        ("train.py", ["+model=fpn_lite0", "model=tiny"], "model=fpn_lite0"),
        ("train.py", ["trainer=gpu", "+trainer=cpu"], "trainer=cpu"),
        ("train.py", ["experiment=marsscapes_scratch", "+experiment=synthetic"], "experiment=synthetic"),
        ("train.py", ["logger=wandb_csv", "+logger=csv"], "logger=csv"),
        ("train.py", ["model=tiny", "+model=fpn_lite0", "+model=unet_lite0"], "model=unet_lite0"),
        ("predict.py", ["input_dir=x", "logger=all", "+logger=csv"], "logger=csv"),
        # A sweep of the plus: each trial ran tiny.
        ("train.py", ["-m", "model=tiny", "+model=fpn_lite0,unet_lite0"], "model=fpn_lite0,unet_lite0"),
    ],
)
def test_a_plus_on_a_group_the_command_line_also_chooses_is_refused_naming_the_choice_meant(
    prog: str,
    args: list[str],
    fix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``train.py model=tiny +model=fpn_lite0``: Hydra gives a plus on a group of one choice the command
    line's own choice of it, and where that choice's config has a defaults list of its own (tiny's is
    unet_lite0's) composes the two as one, without a word: the run was tiny's. One line, status 2, no
    folder, naming the plus and the choice beside it, and the choice without the plus, which composes what
    was meant."""
    from hydra import compose, initialize_config_dir

    monkeypatch.chdir(tmp_path)
    status, err = _as_an_entry_point(prog, args, monkeypatch, capsys)
    plus = " and ".join(repr(a) for a in args if a.startswith("+"))
    choice = next(a for a in args if "=" in a and not a.startswith(("+", "input_dir")))
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{plus} with {choice!r}: " in err and "a plus adds only a config group it lacks" in err, err
    assert f"give {fix} " in err, err
    assert list(tmp_path.iterdir()) == []
    group = fix.partition("=")[0]
    fixed = [a for a in args if a.lstrip("+").partition("=")[0] != group] + [fix]
    config = prog.removesuffix(".py")
    assert unknown_option(fixed, CONFIG_DIR, config) is None, fixed
    meant = fix.partition("=")[2].split(",")[0]  # a sweep's first trial
    first = [a for a in fixed if a not in ("-m", fix)] + [f"{group}={meant}"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config, overrides=first, return_hydra_config=True)
    assert cfg.hydra.runtime.choices[group] == meant, first


@pytest.mark.parametrize(
    ("args", "fix"),
    [
        (["-m", "model=tiny,unet_lite0", "+model=fpn_lite0"], "model=tiny,unet_lite0,fpn_lite0"),
        (["-m", "+model=fpn_lite0", "model=tiny,unet_lite0"], "model=tiny,unet_lite0,fpn_lite0"),
        (["-m", "model=tiny,unet_lite0", "+model=fpn_lite0,tiny"], "model=tiny,unet_lite0,fpn_lite0"),
        (["-m", "model=tiny,unet_lite0", "+model=unet_lite0"], "model=tiny,unet_lite0"),  # swept already
        (["-m", "model=tiny,unet_lite0", "++model=fpn_lite0"], "model=tiny,unet_lite0,fpn_lite0"),
        # A glob sweep ended in Hydra's "ConfigLoader is not set" traceback, status 1; a glob plus passed,
        # and Hydra gave it each trial's choice. The glob's options are the ones Hydra's sweeper runs.
        (
            ["-m", "model=glob(unet_lite0_*)", "+model=fpn_lite0"],
            "model=unet_lite0_d4,unet_lite0_slim,fpn_lite0",
        ),
        (
            ["-m", "+model=fpn_lite0", "model=glob(unet_lite0_*)"],
            "model=unet_lite0_d4,unet_lite0_slim,fpn_lite0",
        ),
        (["-m", "model=glob(unet_lite0_*)", "+model=unet_lite0_slim"], "'model=glob(unet_lite0_*)'"),
        (
            ["-m", "model=glob(unet_lite0_*)", "++model=fpn_lite0"],
            "model=unet_lite0_d4,unet_lite0_slim,fpn_lite0",
        ),
        (["-m", "model=tiny,unet_lite0", "+model=glob(fpn_*)"], "model=tiny,unet_lite0,fpn_lite0"),
    ],
)
def test_a_plus_on_a_group_beside_its_sweep_is_refused_giving_the_sweep_meant(
    args: list[str], fix: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``train.py -m model=tiny,unet_lite0 +model=fpn_lite0`` was refused (Hydra gives the plus each trial's
    choice: fpn_lite0 never ran) with a fix for the first trial alone: "as composed: tiny ... give
    model=fpn_lite0, which replaces tiny", dropping unet_lite0 too. The line names the sweep, and gives it
    without the plus with the plus's options added (a sweep of them all), or said to be in it already; a
    glob sweep (``'model=glob(unet_lite0_*)'``) alike, by the options it matches (``fix`` as typed in a
    shell)."""
    status, err = _as_an_entry_point("train.py", args, monkeypatch, capsys)
    sweep = next(a for a in args if a.startswith("model="))
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert f"with {sweep!r}: that sweep chooses model, one option a trial" in err, err
    assert f"give {fix} " in err and "as composed" not in err and "replaces " not in err, err
    fixed = [
        "-m",
        *(a for a in args if a not in ("-m", sweep) and not a.lstrip("+").startswith("model=")),
        *shlex.split(fix),
    ]
    assert unknown_option(fixed, CONFIG_DIR, "train") is None, fixed


@pytest.mark.parametrize(
    ("args", "failing", "fix"),
    [
        (["-m", "+model=unet_lite0_d4,tiny"], "+model=tiny", "model=unet_lite0_d4,tiny"),
        (["-m", "+model=glob(unet_lite0_*)"], "+model=unet_lite0_slim", "'model=glob(unet_lite0_*)'"),
    ],
)
def test_a_plus_sweep_of_a_group_is_checked_at_each_of_its_values(
    args: list[str],
    failing: str,
    fix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``train.py -m +model=unet_lite0_d4,tiny``: its first value composes (Hydra takes a plus on a group
    whose choice is that same option: the default experiment's model is unet_lite0_d4), so the checks,
    which composed the first value alone, passed it; Hydra made the sweep folder, composed each trial and
    refused the second in its two lines, status 1, with a fix for a config file ("Multiple values for
    model. To override a value use 'override model: tiny'"). The value that fails is named, and the fix is
    the whole sweep without the plus, before any folder is made."""
    monkeypatch.chdir(tmp_path)
    status, err = _as_an_entry_point("train.py", args, monkeypatch, capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{args[1]!r} (in the trials with {failing}): model is already in the defaults list" in err, err
    assert f"give {fix} (without the plus)" in err, err
    assert list(tmp_path.iterdir()) == []
    assert unknown_option(["-m", *shlex.split(fix)], CONFIG_DIR, "train") is None


@pytest.mark.parametrize(
    ("args", "said"),
    [
        # debug=overfit sets trainer.overfit_batches, debug=fdr does not: its trials alone failed.
        (
            ["-m", "debug=fdr,overfit", "+trainer.overfit_batches=2"],
            "'+trainer.overfit_batches=2' (in the trials with debug=overfit): trainer.overfit_batches is "
            "already an option of the config",
        ),
        # The default experiment chooses unet_lite0_d4 (which the plus takes), marsscapes_scratch another.
        (
            ["-m", "experiment=synthetic,marsscapes_scratch", "+model=unet_lite0_d4"],
            "'+model=unet_lite0_d4' (in the trials with experiment=marsscapes_scratch): model is already in",
        ),
        # Hydra deletes a key given with a value only where it has that value (4, the default's).
        (
            ["-m", "~trainer.max_epochs=4,5"],
            "the trials with ~trainer.max_epochs=5 do not compose (Hydra: Could not delete from config. The "
            "value of 'trainer.max_epochs' is 4 and not 5.)",
        ),
        # A list cannot replace data.scene, a map; any other scalar composes as the first does.
        (
            ["-m", "data.scene=null,7,[1]"],
            "the trials with data.scene=[1] do not compose (Hydra: Error merging override data.scene=[1])",
        ),
    ],
)
def test_a_later_value_of_a_sweep_whose_trials_do_not_compose_is_one_line_before_any_folder(
    args: list[str],
    said: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A sweep whose first trial composes and a later one does not: the checks passed it, and Hydra made the
    sweep folder before it refused it in its lines, status 1. Each value of a swept config group or deletion,
    and each list or map value of a swept option, is composed before any folder is made."""
    monkeypatch.chdir(tmp_path)
    status, err = _as_an_entry_point("train.py", args, monkeypatch, capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"train.py: error: {said}"), err
    assert list(tmp_path.iterdir()) == []


def test_the_checks_list_a_glob_sweep_s_options_as_hydra_s_config_loader_does() -> None:
    """The checks expand ``group=glob(...)`` themselves (Hydra's parser alone cannot: "ConfigLoader is not
    set"): the options of each of the project's config groups, in the order Hydra's sweeper runs them, are
    those Hydra's own config loader lists (its own groups, ``hydra/``, are left to Hydra)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from marsunits.cli_compose import overrides_parser

    groups = sorted(p.name for p in CONFIG_DIR.iterdir() if p.is_dir() and p.name != "hydra")
    assert "model" in groups and "callbacks" in groups, groups
    with initialize_config_dir(config_dir=str(CONFIG_DIR.resolve()), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        for group in groups:
            (parsed,) = overrides_parser(CONFIG_DIR).parse_overrides([f"{group}=glob(*,exclude=x*)"])
            listed = list(parsed.sweep_string_iterator())
            assert listed and listed == loader.get_group_options(group), group


@pytest.mark.parametrize(
    ("prog", "args"),
    [
        ("train.py", ["model=tiny", "+model=tiny"]),
        ("train.py", ["+experiment=marsscapes_scratch", "experiment=marsscapes_scratch"]),
        ("predict.py", ["input_dir=x", "logger=all", "+logger=all"]),
    ],
)
def test_a_group_chosen_and_added_with_a_choice_of_its_own_defaults_is_told_it_is_given_twice(
    prog: str, args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``train.py model=tiny +model=tiny`` composed without a word, where ``logger=csv +logger=csv`` was told
    it is given twice (tiny's config has a defaults list of its own, csv's none): the same rule for both."""
    status, err = _as_an_entry_point(prog, args, monkeypatch, capsys)
    choice = next(a for a in args if "=" in a and not a.startswith(("+", "input_dir")))
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{choice} is given twice ('{choice}' and '+{choice}')" in err, err
    assert err.strip().endswith(f"give it once, {choice} (without the plus)"), err


def test_a_plus_on_the_choice_the_defaults_make_is_not_said_to_replace_it() -> None:
    """``train.py +trainer=cpu`` (the choice the defaults make already): "which replaces cpu" named a choice
    replacing itself."""
    message = unknown_option(["+trainer=cpu"], CONFIG_DIR, "train")
    assert message is not None and "give trainer=cpu (without the plus)" in message, message
    assert "replaces" not in message and "chosen there already" in message, message


@pytest.mark.parametrize(
    ("prog", "args", "fix"),
    [
        # Quoted: Hydra cannot read braces without key: value entries, and the line said to close them.
        ("train.py", ["model=tiny", "callbacks={ema,default,ema}"], "'callbacks=[ema,default]'"),
        ("train.py", ["callbacks={ema}"], "'callbacks=[ema]'"),
        ("predict.py", ["input_dir=x", "patterns={jpg,png}"], "'patterns=[jpg,png]'"),
        ("predict.py", ["input_dir=x", "++patterns={jpg,png}"], "'++patterns=[jpg,png]'"),
    ],
)
def test_a_list_written_in_braces_is_told_to_use_brackets(
    prog: str,
    args: list[str],
    fix: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """``'callbacks={ema,default,ema}'`` (quoted, or a single ``{ema}``, which bash leaves alone) reached
    Hydra's parser, and the line said to "close every bracket, brace and quote": they were closed. Braces
    hold a map's ``key: value`` entries; a list is in brackets, each choice once."""
    status, err = _as_an_entry_point(prog, args, monkeypatch, capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "a list is written in brackets" in err and err.strip().endswith(fix), err
    from conftest import compose_config

    fixed = [a for a in args if "{" not in a] + [fix.strip("'")]
    assert unknown_option(fixed, CONFIG_DIR, prog.removesuffix(".py")) is None, fixed
    compose_config(prog.removesuffix(".py"), tmp_path, fixed)


def test_a_choice_split_by_the_shell_with_a_choice_twice_is_given_once_each() -> None:
    """``callbacks={ema,default,ema}`` unquoted: the fix was ``'callbacks=[ema,default,ema]'`` "for all 3
    choices". Hydra takes a list's choice once; the fix gives each once, in the order typed."""
    args = ["model=tiny", "callbacks=ema", "callbacks=default", "callbacks=ema"]
    message = unknown_option(args, CONFIG_DIR, "train")
    assert message is not None and "'callbacks=[ema,default]' for both choices" in message, message
    assert message.startswith(
        "callbacks is given 3 times in a row (callbacks=ema callbacks=default callbacks=ema)"
    )


@pytest.mark.parametrize(
    ("prog", "args", "says"),
    [
        # bash's input_dir=data/{a,b}: predict.py read data/b alone, without a word.
        ("predict.py", ["input_dir=data/a", "input_dir=data/b"], "predict.py takes one input_dir"),
        ("predict.py", ["input_dir=x", "tile=256", "tile=512"], "Hydra would take the last alone"),
        ("predict.py", ["input_dir=x", "++tile=256", "++tile=512"], "Hydra would take the last alone"),
        ("train.py", ["trainer.max_epochs=1", "trainer.max_epochs=2"], "Hydra would take the last alone"),
        ("train.py", ["data=folder", "data.root=sol/a", "data.root=sol/b"], "the shell splits sol/{a,b}"),
        ("train.py", ["run_name=sol:1", "run_name=sol:2"], "the shell splits sol:{1,2}"),
        # A multirun sweeps a comma list given once.
        ("train.py", ["-m", "model.lr=1e-3", "model.lr=2e-3"], "to sweep them, 'model.lr=1e-3,2e-3'"),
    ],
)
def test_a_plain_option_given_again_in_a_row_with_another_value_is_refused_naming_both(
    prog: str,
    args: list[str],
    says: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """bash expands an unquoted ``input_dir=data/{a,b}`` into ``input_dir=data/a input_dir=data/b``, of
    which Hydra keeps the last: predict.py read one folder of two, without a word. An option of one value
    given again in a row with another is refused in one line naming the values and saying to give one."""
    monkeypatch.chdir(tmp_path)
    base = ["ckpt_path=m.ckpt", "output_dir=out"] if prog == "predict.py" else ["model=tiny"]
    status, err = _as_an_entry_point(prog, [*base, *args], monkeypatch, capsys)
    run = args[-2:]
    name = run[0].partition("=")[0].lstrip("+")
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"{prog}: error: {name} is given 2 times in a row ({' '.join(run)})"), err
    assert "give it once" in err and says in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("config", "args", "fix", "chosen"),
    [
        # It said "as composed: null" and gave logger=none, whose composition fails on the other +logger.
        ("train", ["+logger=none", "+logger=csv"], "logger=csv", "wandb_csv"),
        ("train", ["+logger=none", "model=tiny", "+logger=csv"], "logger=csv", "wandb_csv"),
        ("predict", ["+logger=csv", "+logger=wandb"], "logger=wandb", "null"),
        ("train", ["+debug=fdr", "+debug=overfit"], "debug=overfit", "null"),
        # Chosen by a list, not in a row (in a row, the shell-split check gives the same): it said "give
        # callbacks=ema (without the plus), which replaces recovery", a run without best.ckpt.
        (
            "train",
            ["+callbacks=ema", "model=tiny", "+callbacks=recovery"],
            "'+callbacks=[ema,recovery]'",
            None,
        ),
        # Another package, not in the defaults list: it was told '+model@teacher=[tiny,fpn_lite0]'.
        ("train", ["+model@teacher=tiny", "+model@teacher=fpn_lite0"], "+model@teacher=fpn_lite0", None),
    ],
)
def test_a_plus_on_a_config_group_given_twice_is_one_line_giving_it_once(
    config: str, args: list[str], fix: str, chosen: str | None, tmp_path: Path
) -> None:
    """``train.py +logger=none +logger=csv``: Hydra refused it ("Multiple values for logger"), and the check
    before it said "logger is already in the defaults list (as composed: null) ... give logger=none", the
    first value alone, on a composition the other ``+logger`` made fail. Like the message for one plus, it
    names the defaults' choice without either plus, and gives the option once, without the plus (the last
    given, as Hydra takes a group chosen twice); one plus, with both options, for a group chosen by a list."""
    from conftest import compose_config

    plus = [a for a in args if a.startswith("+")]
    message = unknown_option(args, CONFIG_DIR, config)
    assert message is not None and "\n" not in message, message
    assert message.startswith(" and ".join(repr(a) for a in plus) + ": "), message
    assert f"give {fix} " in message or message.endswith(f"give {fix}"), message
    if chosen is not None:  # as the message for one plus words it
        single = unknown_option([plus[-1]], CONFIG_DIR, config)
        assert single is not None
        said = f"is already in the defaults list (configs/{config}.yaml, as composed: {chosen})"
        assert said in message and said in single, (message, single)
        assert "once (without the plus" in message and f"give {fix} (without the plus)" in single
    fixed = [a for a in args if a not in plus[:-1]]
    fixed[fixed.index(plus[-1])] = fix.strip("'")
    assert unknown_option(fixed, CONFIG_DIR, config) is None, fixed
    cfg = compose_config(config, tmp_path, fixed)
    if "callbacks" in fix:
        meant = {"model_checkpoint", "wandb_val_images", "ema", "recovery_checkpoint"}
        assert meant <= set(cfg.callbacks), sorted(cfg.callbacks)


def test_a_literal_dollar_brace_in_a_path_is_one_line_with_the_escape_that_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``input_dir=data/dollar${x}`` (a folder whose name holds ``${``) ended in OmegaConf's multi-line
    "Interpolation key 'x' not found" (with ``paths.log_dir``, in Hydra's traceback). It is now refused
    before Hydra starts, in one line naming the option and the escape (``\\${``), which reaches the run as
    the literal name; interpolations that resolve (``${now:...}``, ``${paths.root_dir}``) are untouched."""
    import shlex

    from marsunits.cli_overrides import quoted_path_overrides, unresolvable_path_interpolation

    for config, arg in (
        ("predict", "input_dir=data/dollar${x}"),
        ("predict", "labels_dir=Mars (copy)/${env:X}"),
        ("predict", "output_dir=out/${ a b }"),
        ("train", "data.root=d${x}"),
        ("train", "paths.log_dir=logs${x}"),
        ("train", "ckpt_path=run${x}/last.ckpt"),
    ):
        argv = quoted_path_overrides(
            ["data=folder", arg] if config == "train" else [arg]
        )  # as the scripts do
        said = unresolvable_path_interpolation(argv, CONFIG_DIR, config)
        key = arg.split("=", 1)[0]
        assert said is not None and said.startswith(f"{key}=") and "\n" not in said, (arg, said)
        assert "OmegaConf interpolation" in said and "\\${" in said, said
    for fine in (
        "input_dir=data/${now:%Y}",
        "input_dir=${paths.root_dir}/x",
        "input_dir=${hydra:runtime.cwd}/x",  # known only once Hydra runs
        "input_dir=${oc.env:HOME}/x",
        "input_dir=data/dollar\\${x}",
        "tile=512",
    ):
        assert unresolvable_path_interpolation([fine], CONFIG_DIR, "predict") is None, fine

    folder = tmp_path / "dollar${x}"
    folder.mkdir()
    common = [
        sys.executable,
        str(REPO / "predict.py"),
        "ckpt_path=none.ckpt",
        f"output_dir={tmp_path / 'out'}",
    ]
    common.append(f"hydra.run.dir={tmp_path / 'run'}")
    proc = subprocess.run(
        [*common, f"input_dir={folder}"], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"predict.py: error: input_dir='{folder}': ${{ starts an OmegaConf interpolation")
    assert not (tmp_path / "run").exists()  # refused before Hydra made the run folder
    # The advice, as the shell would hand it over, reaches the run as the folder's literal name (through
    # predict.py's checks before Hydra in this process: its own start runs them, as above).
    advised = shlex.split(line.split("e.g. ", 1)[1].split(" (quoted", 1)[0])
    assert advised == [f"input_dir={tmp_path}/dollar\\${{x}}"]
    monkeypatch.chdir(tmp_path)
    status, err = _as_an_entry_point("predict.py", [*common[2:], *advised], monkeypatch, capsys)
    assert status == 2 and "none.ckpt does not exist" in err, err  # past input_dir
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "paths.log_dir=logs${x}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and proc.stderr.startswith(
        "train.py: error: paths.log_dir='logs${x}': ${ starts"
    )
    assert "Traceback" not in proc.stderr and not (tmp_path / "logs${x}").exists()


@pytest.mark.parametrize("script", ["train.py", "predict.py"])
def test_hydras_shell_completion_commands_are_not_taken_for_options(script: str, tmp_path: Path) -> None:
    """``python train.py -sc install=bash`` (Hydra's documented way to install tab completion) was refused
    as "unknown option 'install'": its ``install=bash`` / ``query=bash`` are the flag's arguments, not
    overrides. The completion script names the program, and a query completes the project's own groups."""
    installed = subprocess.run(
        [sys.executable, str(REPO / script), "-sc", "install=bash"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stderr
    assert "complete" in installed.stdout and "unknown option" not in installed.stderr
    line = f"python {script} experim" if script == "train.py" else f"python {script} overl"
    queried = subprocess.run(
        [sys.executable, str(REPO / script), "-sc", "query=bash"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "COMP_LINE": line},
    )
    assert queried.returncode == 0, queried.stderr
    assert ("experiment=" if script == "train.py" else "overlap=") in queried.stdout
    assert not (tmp_path / "logs").exists()  # nothing is run


def test_a_missing_best_ckpt_beside_a_last_ckpt_names_the_last_one(tmp_path: Path) -> None:
    """The README's one-minute training check (trainer.max_epochs=1, the real-data experiments validating
    every 2 epochs) writes last.ckpt and no best.ckpt; its predict.py line names best.ckpt, and the refusal
    said only to pass a .ckpt written by train.py, which the user had done."""
    from marsunits.cli_overrides import predict_refusal

    images, ckpts = tmp_path / "images", tmp_path / "run" / "checkpoints"
    images.mkdir()
    ckpts.mkdir(parents=True)
    given = [f"input_dir={images}", f"output_dir={tmp_path / 'out'}", f"ckpt_path={ckpts / 'best.ckpt'}"]
    assert "ckpt_path=" in (predict_refusal(given, CONFIG_DIR) or "")
    assert "last.ckpt" not in (predict_refusal(given, CONFIG_DIR) or "")  # nothing beside it to name
    (ckpts / "last.ckpt").write_bytes(b"not read here")
    refused = predict_refusal(given, CONFIG_DIR) or ""
    assert refused.startswith(f"checkpoint {ckpts / 'best.ckpt'} does not exist: its run wrote no best model")
    assert refused.endswith(f"ckpt_path={ckpts / 'last.ckpt'}"), refused


def test_a_missing_package_file_given_as_ckpt_path_is_refused_before_the_log_folder(tmp_path: Path) -> None:
    """predict.py ckpt_path=<folder>/model.json, the folder there and no package: taken for a package's file
    by its name, it passed the checks before Hydra, and the run refused it after logs/predict/<time>/ was
    made, in other words ('model ... does not exist; give ...', and the traceback hint). It is refused
    first, as any missing checkpoint; a package's file renamed on its way is left to the package's check."""
    from marsunits.cli_overrides import predict_refusal

    images, empty, pkg = tmp_path / "images", tmp_path / "empty", tmp_path / "received"
    for folder in (images, empty, pkg):
        folder.mkdir()
    (pkg / "model.safetensors").write_bytes(b"not read here")  # its model.json renamed on its way
    given = [f"input_dir={images}", f"output_dir={tmp_path / 'out'}"]
    for ckpt in (empty / "model.json", empty / "model.safetensors", tmp_path / "nope" / "model.json"):
        refused = predict_refusal([*given, f"ckpt_path={ckpt}"], CONFIG_DIR)
        assert refused == (
            f"checkpoint {ckpt} does not exist; pass a .ckpt written by train.py or a model package folder "
            "(python -m marsunits.export) as ckpt_path="
        ), refused
    assert predict_refusal([*given, f"ckpt_path={pkg / 'model.json'}"], CONFIG_DIR) is None
    proc = _predict_py([*given, f"ckpt_path={empty / 'model.json'}"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(
        f"predict.py: error: checkpoint {empty / 'model.json'} does not exist"
    )
    assert not (tmp_path / "logs").exists() and not (tmp_path / "out").exists()


def test_a_folder_given_as_ckpt_path_is_refused_before_the_log_folder_naming_its_checkpoint(
    tmp_path: Path,
) -> None:
    """predict.py ckpt_path=<a folder holding the .ckpt> (a geologist's models/ folder, a run's checkpoints/):
    the folder exists, so it passed the checks before Hydra, and the run refused it after logs/predict/<time>/
    was made, with the traceback hint. It is refused first, naming the checkpoint the folder holds (or, with
    none, what to give); a model package folder, or one whose package files were renamed on their way (the
    package's own check names them), is left to the run."""
    from marsunits.cli_overrides import predict_refusal

    images, models, empty, pkg = (tmp_path / n for n in ("images", "models", "empty", "pkg"))
    for folder in (images, models, empty, pkg):
        folder.mkdir()
    (models / "navcam.ckpt").write_bytes(b"not read here")
    (pkg / "model.safetensors").write_bytes(b"not read here")
    given = [f"input_dir={images}", f"output_dir={tmp_path / 'out'}"]
    refused = predict_refusal([*given, f"ckpt_path={models}"], CONFIG_DIR)
    assert refused == (
        f"{models} is a folder, not a checkpoint: give the checkpoint it holds, "
        f"ckpt_path={models / 'navcam.ckpt'}"
    ), refused
    refused = predict_refusal([*given, f"ckpt_path={empty}"], CONFIG_DIR)
    assert refused == (
        f"{empty} is a folder without model.json or model.safetensors: give a model package folder or a "
        ".ckpt file."
    ), refused
    assert predict_refusal([*given, f"ckpt_path={pkg}"], CONFIG_DIR) is None
    proc = _predict_py([*given, f"ckpt_path={models}"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"predict.py: error: {models} is a folder, not a checkpoint: give the checkpoint it holds, "
        f"ckpt_path={models / 'navcam.ckpt'}"
    ), proc.stderr
    assert not (tmp_path / "logs").exists() and not (tmp_path / "out").exists()


def test_an_image_given_as_input_dir_is_told_how_to_map_it_alone(tmp_path: Path) -> None:
    """predict.py input_dir=<one image>, a geologist's first try at one frame: told only "pass the folder that
    contains the images", which maps every image of that folder and its subfolders (82 panoramas: some 7
    minutes). The refusal names that folder as what it maps, and the ways to map the one image: a folder of
    its own, or UnitMapper from Python."""
    from marsunits.cli_overrides import predict_refusal

    sol = tmp_path / "sol0387"
    sol.mkdir()
    image = sol / "387_1.jpg"
    image.write_bytes(b"not read here")
    given = [f"input_dir={image}", f"output_dir={tmp_path / 'out'}", f"ckpt_path={tmp_path / 'm.ckpt'}"]
    refused = predict_refusal(given, CONFIG_DIR) or ""
    assert refused.startswith(
        f"input_dir {image} is a file, not a folder: predict.py maps every image of a folder"
    ), refused
    assert f"input_dir={sol} maps every image there, subfolders included" in refused, refused
    assert "to map this image alone, give a folder holding it alone as input_dir" in refused, refused
    assert f"UnitMapper.load(...).map('{image}')" in refused and "docs/prediction.md" in refused, refused


def test_a_labels_class_map_the_models_metadata_refuses_is_refused_before_the_log_folder(
    tmp_path: Path,
) -> None:
    """predict.py labels_class_map=checkpoint with a model trained on masks in project ids (the synthetic
    default), or with a model of two data sets each with its map, was refused inside the run, after Hydra
    had made logs/predict/<time>/ and the model and the images were read. The map's refusal needs only the
    model's metadata (a checkpoint's hyper-parameters, a package's model.json): read before Hydra, it is
    refused there in the run's words; a map the model has, or one given without labels_dir, is left alone."""
    import torch

    from marsunits.cli_overrides import predict_refusal
    from marsunits.errors import ConfigError
    from marsunits.inference.options import read_labels_class_map

    images, labels, pkg = tmp_path / "images", tmp_path / "labels", tmp_path / "pkg"
    for folder in (images, labels, pkg):
        folder.mkdir()
    synthetic = {"class_map": None, "dataset": "synthetic"}
    ckpt = tmp_path / "synthetic.ckpt"
    torch.save({"hyper_parameters": synthetic, "state_dict": {}, "marsunits": synthetic}, ckpt)
    two = {"marsscapes": {"0": 0, "1": 1}, "ai4mars": {"0": 2, "1": 1}}
    (pkg / "model.safetensors").write_bytes(b"not read here")
    (pkg / "model.json").write_text(
        json.dumps({"hparams": {"dataset": "ms_ai"}, "metadata": {"class_map": two, "dataset": "ms_ai"}})
    )
    given = [f"input_dir={images}", f"output_dir={tmp_path / 'out'}", f"labels_dir={labels}"]
    for model, metadata in ((ckpt, synthetic), (pkg, {"class_map": two, "dataset": "ms_ai"})):
        with pytest.raises(ConfigError) as run_says:  # as the run refuses it
            read_labels_class_map("checkpoint", metadata)
        refused = predict_refusal([*given, f"ckpt_path={model}", "labels_class_map=checkpoint"], CONFIG_DIR)
        assert refused == str(run_says.value), refused
    assert predict_refusal([*given, f"ckpt_path={pkg}", "labels_class_map=marsscapes"], CONFIG_DIR) is None
    assert predict_refusal([*given, f"ckpt_path={ckpt}", "labels_class_map=ai4mars"], CONFIG_DIR) is None
    refused = predict_refusal([*given, f"ckpt_path={ckpt}", "labels_class_map={0: 9}"], CONFIG_DIR) or ""
    assert refused.startswith("labels_class_map: native id 0 maps to 9, which is not a project id"), refused
    proc = _predict_py([*given, f"ckpt_path={ckpt}", "labels_class_map=checkpoint"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "predict.py: error: labels_class_map=checkpoint, but this model was trained on masks in project ids "
        "(dataset 'synthetic' has no class_map); give the labels' map instead: the name of their data set if "
        "it is one of ai4mars, marsscapes (the map shipped for it, e.g. labels_class_map=ai4mars for AI4Mars "
        "labels), else the class_map of their data set's configs/data/<name>.yaml as a mapping"
    ), proc.stderr
    assert not (tmp_path / "logs").exists() and not (tmp_path / "out").exists()


def test_a_classes_json_is_matched_to_a_data_set_by_its_ids_and_names(tmp_path: Path) -> None:
    """A classes.json was matched to a data set by its set of ids alone: AI4Mars' file without 3 big_rock
    (labels holding no big rock) got a map to fill in instead of AI4Mars' own, and ids 0..3 and 255 named
    as other classes were said to be AI4Mars'. A data set is now named when each id the file lists is one of
    its native ids under its name (255 under any); some of its ids are enough. Each is offered by its name,
    labels_class_map=<data set>, with the map that name reads."""
    from marsunits.cli_overrides import predict_refusal

    labels, given = _predict_command_with_labels(tmp_path)
    ai4mars_map = "labels_class_map=ai4mars (the map shipped for them, {0: 0, 2: 0, 1: 1, 3: 1, 255: 255};"
    marsscapes_map = (
        "labels_class_map=marsscapes (the map shipped for them, "
        "{0: 0, 3: 0, 1: 1, 2: 1, 4: 1, 6: 2, 7: 2, 8: 2, 9: 2, 5: 255, 255: 255};"
    )
    for classes, said, not_said in (
        # AI4Mars' file without its big rock, 255 named as its own file names it.
        ({0: "soil", 1: "Bedrock", 2: "sand", 255: "null / unlabelled"}, [ai4mars_map], [marsscapes_map]),
        ({0: "soil", 2: "sand"}, ["native ids of AI4Mars (0 soil, 2 sand)", ai4mars_map], ["<project id>"]),
        # MarsScapes' without sky and rover: its 2 is gravel, not AI4Mars' sand.
        ({i: n for i, n in MARSSCAPES_CLASSES.items() if i not in (6, 9)}, [marsscapes_map], [ai4mars_map]),
        # 0 soil and 1 bedrock alone are either's: both are named, with their maps.
        (
            {0: "soil", 1: "bedrock"},
            ["AI4Mars (0 soil, 1 bedrock) or of MarsScapes", ai4mars_map, marsscapes_map],
            [],
        ),
        # AI4Mars' ids under other names, and a name holding a data set's: a map to fill in.
        (
            {0: "rock", 1: "dust", 2: "ice", 3: "sky", 255: "none"},
            ["{0: <project id>, 1: <project id>"],
            ["AI4Mars"],
        ),
        ({0: "soil", 2: "sandstone"}, ["{0: <project id>, 2: <project id>}"], ["AI4Mars", "MarsScapes"]),
    ):
        _classes_json(labels.parent, classes)
        refused = predict_refusal(given, CONFIG_DIR) or ""
        assert all(s in refused for s in said) and not any(s in refused for s in not_said), (classes, refused)


def test_a_classes_json_among_the_labels_is_read_before_the_one_beside_them(tmp_path: Path) -> None:
    """Only the classes.json in the folder holding labels_dir was read: AI4Mars labels sent as a folder with
    their own classes.json inside were scored as project ids, sand (2) as other. The one inside is read, and
    first: it says what these labels hold where the folder above describes others."""
    from marsunits.cli_overrides import predict_refusal

    labels, given = _predict_command_with_labels(tmp_path)
    ai4mars = {0: "soil", 1: "bedrock", 2: "sand", 255: "null"}
    project = {0: "smooth_volcanic", 1: "rough_olivine", 2: "other", 255: "ignore"}
    inside = _classes_json(labels, ai4mars)
    refused = predict_refusal(given, CONFIG_DIR) or ""
    assert refused.startswith(
        f"{inside}: the labels in labels_dir={labels} hold the native ids of AI4Mars"
    ), refused
    beside = _classes_json(labels.parent, project)  # the folder above says project ids: the labels' own wins
    refused = predict_refusal(given, CONFIG_DIR) or ""
    assert refused.startswith(f"{inside}: ") and str(beside) not in refused, refused
    _classes_json(labels, project)
    _classes_json(labels.parent, ai4mars)
    assert predict_refusal(given, CONFIG_DIR) is None


def test_a_wrong_predict_value_is_refused_before_its_log_folder_is_made(tmp_path: Path) -> None:
    """predict.py refused a mistyped value (batch_size=eight, device=gpu, overlap=1.5, a checkpoint that is
    not there) only inside the run, after Hydra had made logs/predict/<time>/ with its .hydra/ record: a
    log folder of a run that never started for each slip. The command line now refuses it first, in one
    line, the same line the run gave; a command whose values pass is left to run."""
    from marsunits.cli_overrides import predict_refusal

    images = tmp_path / "images"
    images.mkdir()
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"not read here")
    given = [f"ckpt_path={ckpt}", f"input_dir={images}", f"output_dir={tmp_path / 'out'}"]
    for extra, said in (
        ("batch_size=eight", "batch_size='eight': give a whole number"),
        ("device=gpu", "device='gpu' is not a torch device"),
        ("overlap=1.5", "overlap=1.5: give a fraction"),
        (f"ckpt_path={tmp_path / 'none.ckpt'}", "none.ckpt does not exist"),
        (f"input_dir={tmp_path / 'absent'}", "absent"),
    ):
        refused = predict_refusal([*given, extra], CONFIG_DIR)
        assert refused is not None and said in refused, (extra, refused)
    assert predict_refusal(given, CONFIG_DIR) is None
    assert predict_refusal([*given, "--cfg", "job", "batch_size=eight"], CONFIG_DIR) is None  # shown, not run
    proc = _predict_py([*given, "batch_size=eight"], tmp_path)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip() == "predict.py: error: batch_size='eight': give a whole number, e.g. batch_size=4"
    )
    assert not (tmp_path / "logs").exists() and not (tmp_path / "out").exists()


def test_predict_ckpt_path_last_is_refused_before_hydra_naming_the_newest_best_ckpt(tmp_path: Path) -> None:
    """predict.py ckpt_path=last (train.py's resume word) was refused before Hydra started, but as 'checkpoint
    <cwd>/last does not exist': the refusal now says what last means and names the newest run's best.ckpt
    under paths.log_dir, as the run itself does (test_predict_safety.py)."""
    from marsunits.cli_overrides import predict_refusal

    images = tmp_path / "images"
    images.mkdir()
    best = tmp_path / "runs" / "train" / "2026-01-01_00-00-00" / "checkpoints" / "best.ckpt"
    best.parent.mkdir(parents=True)
    best.write_bytes(b"not read here")
    given = ["ckpt_path=last", f"input_dir={images}", f"output_dir={tmp_path / 'out'}"]
    refused = predict_refusal([*given, f"paths.log_dir={tmp_path / 'runs'}"], CONFIG_DIR)
    assert refused is not None and refused.startswith("ckpt_path=last means something only to train.py")
    assert f"ckpt_path={best} " in refused, refused


def test_predict_with_logger_wandb_is_checked_before_hydra_too(tmp_path: Path, monkeypatch) -> None:
    """With ``logger=wandb`` every check before Hydra was skipped: the W&B node's ``save_dir`` is the run
    folder Hydra has not made yet (``${paths.output_dir}``), so the options did not resolve, and
    ``ckpt_path=last``, a missing checkpoint or folder, ``tta=yes`` were refused only inside the run, after
    Hydra had made ``logs/predict/<time>/`` (and with the traceback hint: two lines)."""
    from marsunits.cli_overrides import predict_refusal

    monkeypatch.setenv("WANDB_MODE", "offline")
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"not read here")
    folders = [f"input_dir={images}", f"output_dir={tmp_path / 'out'}", "logger=wandb"]
    for args, said in (
        (["ckpt_path=last"], "ckpt_path=last means something only to train.py"),
        ([f"ckpt_path={tmp_path / 'nope.ckpt'}"], "does not exist"),
        ([f"ckpt_path={tmp_path / 'nope.ckpt'}", "tta=yes"], "tta='yes': give tta=true or tta=false"),
    ):
        refused = predict_refusal([*args, *folders], CONFIG_DIR)
        assert refused is not None and said in refused, (args, refused)
    model = tmp_path / "m.ckpt"
    model.write_bytes(b"not read here")
    assert predict_refusal([f"ckpt_path={model}", *folders], CONFIG_DIR) is None


def test_predict_help_and_its_refusals_before_hydra_import_no_torch_nor_scipy(tmp_path: Path) -> None:
    """``predict.py --help`` and a command refused before Hydra starts (a required option missing, a folder
    that is not there, a value out of its range, labels beside a classes.json of native ids) imported torch,
    through the runner the checks lived in: some 4 s of CPU for a line of help or of refusal, and SciPy and
    Shapely (the contact options' class: over 1 s) with it. The checks that need no device import none of
    them, nor Lightning or segmentation_models_pytorch; the help and the refusals say what they said. With
    ``logger=wandb`` too: the W&B checks (the mode, W&B's data folder) imported Lightning, and torch with it,
    through the module that starts the loggers."""
    images = tmp_path / "images"
    images.mkdir()
    folders = [f"input_dir={images}", f"output_dir={tmp_path / 'out'}"]
    (tmp_path / "a_file").write_text("W&B's data folder cannot be made under a file")
    labels = tmp_path / "ai4mars" / "labels"
    labels.mkdir(parents=True)
    classes = _classes_json(labels.parent, {0: "soil", 1: "bedrock", 2: "sand", 3: "big_rock", 255: "null"})
    cases = [
        (["--help"], 0, ""),
        (["input_dir=/nonexistent", "ckpt_path=x", "output_dir=/tmp/o"], 2, "input_dir /nonexistent does"),
        ([f"input_dir={images}"], 2, "missing required option(s) ckpt_path, output_dir: run python"),
        (["ckpt_path=x", *folders, "overlap=1.5"], 2, "overlap=1.5: give a fraction of the window"),
        (["ckpt_path=x", *folders, "tta=yes"], 2, "tta='yes': give tta=true or tta=false"),
        (["ckpt_path=x", *folders, f"labels_dir={labels}"], 2, f"{classes}: the labels in labels_dir="),
        (["ckpt_path=x", *folders, "logger=wandb", "logger.wandb.mode=onlien"], 2, "W&B mode 'onlien'"),
        (["ckpt_path=x", *folders, "logger=wandb", "logger.wandb.mode=offline"], 2, "W&B cannot write"),
    ]
    code = (
        "import contextlib, io, json, runpy, sys\n"
        "for argv in json.loads(sys.argv[1]):\n"
        f"    sys.argv[:] = [{str(REPO / 'predict.py')!r}, *argv]\n"
        "    said, shown = io.StringIO(), io.StringIO()\n"
        "    try:\n"
        "        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(shown):\n"
        "            runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "    except SystemExit as stop:\n"
        "        status = stop.code\n"
        "    heavy = [m for m in ('torch', 'lightning', 'segmentation_models_pytorch', 'scipy', 'shapely')\n"
        "             if m in sys.modules]\n"
        "    print(json.dumps([status, said.getvalue(), shown.getvalue(), heavy]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps([args for args, _, _ in cases])],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "WANDB_DATA_DIR": str(tmp_path / "a_file" / "wandb")},
    )
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(lines) == len(cases), proc.stdout + proc.stderr[-2000:]
    for (args, status, said), line in zip(cases, lines, strict=True):
        got_status, stderr, stdout, heavy = json.loads(line)
        assert (got_status, heavy) == (status, []), (args, got_status, stderr, heavy)
        if status == 2:
            assert stderr.startswith(f"predict.py: error: {said}") and stderr.count("\n") == 1, (args, stderr)
        else:
            assert stdout.startswith("predict.py: label every pixel") and "ckpt_path: ???" in stdout, stdout
    assert not (tmp_path / "out").exists() and not (tmp_path / "logs").exists()


def test_train_help_and_its_refusals_of_plain_values_import_no_torch_nor_lightning(tmp_path: Path) -> None:
    """``train.py trainer.max_epochs=abc`` (or ``model.lr=-1``, ``data.batch_size=0``) was refused before
    Hydra started, but only after the check of the config's ``_target_`` classes had imported Lightning,
    torch, smp, timm, SciPy and Shapely: 6-7 s on a quiet 2-core machine (19 s under load) for one line,
    where ``data=nope`` took 0.8 s. The values that need no class are checked first, and the model's names
    that the project has tested without smp or timm; an unknown ``model.arch`` or ``model.encoder`` asks smp
    or timm (and so torch), never Lightning (the slow test below: those imports were 40% of this test's
    time). So are ``logger=wandb``'s mode and ``log_model``, its node told
    by its ``_target_``'s name (6 s, where 1.5 s), ``trainer.precision=bogus`` (Lightning's list written
    out, :func:`test_the_precisions_refused_without_lightning_are_lightnings_own`), ``data.crop_size=100``
    (the input multiple of the project's architectures known without smp), ``model.channels_last=fasle``
    and ``data.val_context_px=3`` (a key the config does not list: add it with a plus), both judged by the
    parameters of marsunits' own classes written out
    (:func:`test_the_parameters_known_without_importing_are_the_classes_own`), and ``train=false
    ckpt_path=x.ckpt`` (a checkpoint file that is not there, told from its path), and ``ckpt_path`` or
    ``init_ckpt_path`` naming a text file (its first bytes read). The help and the refusals say what they
    said."""
    none: list[str] = []
    cases = [
        (["--help"], 0, "", none),
        (["trainer.max_epochs=abc"], 2, "trainer.max_epochs='abc': expected a whole number >= -1", none),
        (["model.lr=-1"], 2, "model.lr must be a number > 0, got -1 (e.g. model.lr=0.001", none),
        (["data.batch_size=0"], 2, "data.batch_size=0: expected a whole number >= 1", none),
        (["train=abc"], 2, "train='abc': give train=true or train=false", none),
        # A config group chosen as null: Hydra's traceback, status 1, where it is one line.
        (["debug=null"], 2, "'debug=null': Hydra cannot choose a config group as null: debug is not", none),
        (["model=null", "+model=tiny"], 2, "'model=null': Hydra cannot choose a config group as null", none),
        (["trainer.devices=abc"], 2, "trainer.devices='abc': give a number of devices", none),
        (["trainer.limit_val_batches=2.5"], 2, "trainer.limit_val_batches=2.5: expected a fraction", none),
        (["model.optimizer=adamx"], 2, "model.optimizer='adamx': Unknown optimizer 'adamx'.", none),
        (["model.loss=dice"], 2, "model.loss='dice': Unknown loss 'dice'.", none),
        (["model.encoder_depth=7"], 2, "model.encoder_depth=7: encoder_depth must be a whole number", none),
        (["model.num_classes=4"], 2, "model.num_classes=4: the project has 3 classes", none),
        (["data.in_channels=2"], 2, "data.in_channels=2: give 1 (grey) or 3 (colour)", none),
        (
            ["model.encoder_weights=lite1_offline"],
            2,
            "model.encoder_weights='lite1_offline': encoder_weights='lite1_offline' holds weights for",
            none,
        ),
        (["model=tiny", "model.lr=0"], 2, "model.lr must be a number > 0, got 0", none),
        (["model=fpn_lite0", "model.encoder_depth=2"], 2, "model.encoder_depth=2: encoder_depth=2", none),
        # The network's input multiple: asked of smp (and checked after the _target_ classes were imported,
        # 18 s), where the project's architectures have theirs known.
        (["data.crop_size=100"], 2, "data.crop_size=100: expected a multiple of 16 (model.arch=unet", none),
        (
            ["model=deeplabv3plus_lite0", "data.crop_size=100"],
            2,
            "data.crop_size=100: expected a multiple of 16 (model.arch=deeplabv3plus with model.encoder",
            none,
        ),
        # The switches of marsunits' own task and data module: read from their signatures (17 s).
        (["model.channels_last=fasle"], 2, "model.channels_last='fasle': give model.channels_last=", none),
        (["data.pin_memory=no"], 2, "data.pin_memory='no': give data.pin_memory=true or", none),
        (["+data.scene.distortion=fasle"], 2, "data.scene.distortion='fasle': give data.scene", none),
        # A key of marsunits' own task or data module that the config does not list, or one they do not
        # take: told from their signatures, which imported them (23 s).
        (
            ["data.val_context_px=3"],
            2,
            "unknown option 'data.val_context_px' in 'data.val_context_px=3': the config does not list it, "
            "but data builds MarsDataModule, which takes 'val_context_px': add it with a plus, "
            "+data.val_context_px=3",
            none,
        ),
        (["model.palette=null"], 2, "unknown option 'model.palette' in 'model.palette=null': the", none),
        (["+model.channel_last=true"], 2, "unknown option 'model.channel_last' in '+model.channel", none),
        # A checkpoint file that is not there: checked after the _target_ classes were imported (23 s).
        (["train=false", "ckpt_path=x.ckpt"], 2, "ckpt_path=x.ckpt: no such file or model package.", none),
        (["ckpt_path=x.ckpt"], 2, "ckpt_path=x.ckpt: no such file. Pass an existing .ckpt file", none),
        (["init_ckpt_path=x.ckpt"], 2, "init_ckpt_path=x.ckpt: no such file or model package. Give", none),
        # A text file given as the checkpoint: its first bytes read after the _target_ classes (10 s).
        (
            ["ckpt_path=notes.txt"],
            2,
            "ckpt_path=notes.txt is not a checkpoint: the file is a text file",
            none,
        ),
        (["init_ckpt_path=config.yaml"], 2, "init_ckpt_path=config.yaml is not a checkpoint: the file", none),
        # Lightning's precisions: read from Lightning, after the _target_ classes were imported (13 s).
        (["trainer.precision=bogus"], 2, "trainer.precision='bogus': give one of Lightning's", none),
        # W&B's settings: the logger node was told by importing Lightning's WandbLogger, after the check of
        # the _target_ classes had imported Lightning, torch, smp and timm.
        (["logger=wandb", "logger.wandb.mode=onlien"], 2, "W&B mode 'onlien' (logger.wandb.mode", none),
        (
            ["logger=wandb", "logger.wandb.log_model=yes"],
            2,
            "logger.wandb.log_model='yes': expected auto, true, false or all (yes/no/on/off are read as",
            none,
        ),
        # A key of a callback or the checkpoint IO: told from their classes' signatures, which imported
        # Lightning (some 13 s under load). Said word for word as before.
        (
            ["callbacks.interrupt_checkpoint.bogus=1"],
            2,
            "unknown option 'callbacks.interrupt_checkpoint.bogus' in "
            "'callbacks.interrupt_checkpoint.bogus=1' (every option: python train.py --cfg job, with the "
            "same overrides)\n",
            none,
        ),
        (
            ["+callbacks.model_checkpoint.bogus=1"],
            2,
            "unknown option 'callbacks.model_checkpoint.bogus' in '+callbacks.model_checkpoint.bogus=1': "
            "callbacks.model_checkpoint builds RunModelCheckpoint, which takes no 'bogus' (every option: "
            "python train.py --cfg job, with the same overrides)\n",
            none,
        ),
        (
            ["callbacks.recovery_checkpoint.every_n_epochs=2"],
            2,
            "unknown option 'callbacks.recovery_checkpoint.every_n_epochs' in "
            "'callbacks.recovery_checkpoint.every_n_epochs=2': the config does not list it, but "
            "callbacks.recovery_checkpoint builds RecoveryCheckpoint, which takes 'every_n_epochs': add it "
            "with a plus, +callbacks.recovery_checkpoint.every_n_epochs=2\n",
            none,
        ),
        (
            ["callbacks=[default,wandb]", "+callbacks.wandb_val_images.bogus=1"],
            2,
            "unknown option 'callbacks.wandb_val_images.bogus' in '+callbacks.wandb_val_images.bogus=1': "
            "callbacks.wandb_val_images builds WandbValidationImages, which takes no 'bogus' (every option: "
            "python train.py --cfg job, with the same overrides)\n",
            none,
        ),
        (
            ["callbacks.lr_monitor.log_momentum=no"],
            2,
            "unknown option 'callbacks.lr_monitor.log_momentum' in 'callbacks.lr_monitor.log_momentum=no': "
            "the config does not list it, but callbacks.lr_monitor builds LearningRateMonitor, which takes "
            "'log_momentum': add it with a plus, +callbacks.lr_monitor.log_momentum=no\n",
            none,
        ),
        (
            ["+trainer.plugins.0.bogus=1"],
            2,
            "unknown option 'trainer.plugins.0.bogus' in '+trainer.plugins.0.bogus=1': trainer.plugins.0 "
            "builds AtomicCheckpointIO, which takes no 'bogus' (every option: python train.py --cfg job, "
            "with the same overrides)\n",
            none,
        ),
        (
            ["callbacks=[default,ema]", "callbacks.ema.bogus=1"],
            2,
            "unknown option 'callbacks.ema.bogus' in 'callbacks.ema.bogus=1' (every option: python train.py "
            "--cfg job, with the same overrides)\n",
            none,
        ),
    ]
    _train_py_refusals_in_one_python(cases, tmp_path)


@pytest.mark.slow
def test_an_unknown_architecture_or_encoder_is_refused_importing_no_lightning(tmp_path: Path) -> None:
    """``model.arch=unet3`` and ``model.encoder=nope`` are refused from smp's and timm's own lists of names
    (which import torch: no cheaper), never Lightning's. Slow: torch, smp and timm's imports are some 8 s
    (35 s under the suite's load), 40% of the test above, whose other refusals import none of them; the
    refusals' words are checked by default in ``test_train.py`` (``model.encoder=nope``,
    ``model.arch=unet++``)."""
    names = ["segmentation_models_pytorch", "timm", "torch"]
    cases = [
        (["model.arch=unet3"], 2, "model.arch='unet3': Unknown architecture 'unet3'. Valid choices", names),
        (["model.encoder=nope"], 2, "model.encoder='nope': Unknown encoder 'nope': not a timm model", names),
    ]
    _train_py_refusals_in_one_python(cases, tmp_path)


def _train_py_refusals_in_one_python(
    cases: list[tuple[list[str], int, str, list[str]]], tmp_path: Path
) -> None:
    """Each case's ``train.py <args>`` run by one Python, one after the other, in ``tmp_path`` (with a text
    file ``notes.txt`` and a YAML ``config.yaml`` there): its status, its one line on stderr (``--help``:
    its help on stdout), and which of torch, Lightning, smp, timm, SciPy and Shapely were imported by then,
    as each case says; no ``logs/`` made."""
    (tmp_path / "notes.txt").write_text("some notes on the run\n", encoding="utf-8")
    (tmp_path / "config.yaml").write_text("model:\n  lr: 0.001\n", encoding="utf-8")
    code = (
        "import contextlib, io, json, runpy, sys\n"
        "for argv in json.loads(sys.argv[1]):\n"
        f"    sys.argv[:] = [{str(REPO / 'train.py')!r}, *argv]\n"
        "    said, shown = io.StringIO(), io.StringIO()\n"
        "    status = None\n"
        "    try:\n"
        "        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(shown):\n"
        "            runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "    except SystemExit as stop:\n"
        "        status = stop.code\n"
        "    heavy = [m for m in ('lightning', 'segmentation_models_pytorch', 'timm', 'torch', 'scipy',\n"
        "                         'shapely') if m in sys.modules]\n"
        "    print(json.dumps([status, said.getvalue(), shown.getvalue(), heavy]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps([args for args, _, _, _ in cases])],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(lines) == len(cases), proc.stdout + proc.stderr[-2000:]
    for (args, status, said, imported), line in zip(cases, lines, strict=True):
        got_status, stderr, stdout, heavy = json.loads(line)
        assert (got_status, heavy) == (status, imported), (args, got_status, stderr, heavy)
        if status == 2:
            assert stderr.startswith(f"train.py: error: {said}") and stderr.count("\n") == 1, (args, stderr)
        else:
            assert "== Configuration groups ==" in stdout and "max_epochs:" in stdout, stdout
    assert not (tmp_path / "logs").exists()


def test_the_precisions_refused_without_lightning_are_lightnings_own() -> None:
    """``trainer.precision`` is checked against a list written out in :mod:`marsunits.run_checks`, so that
    its refusal imports no Lightning: it is the list Lightning's own check reads, in its order (the refusal
    shows it), so that a Lightning that takes another precision is not refused one, nor the reverse."""
    from typing import get_args

    from lightning.fabric.plugins.precision.precision import (
        _PRECISION_INPUT_INT,
        _PRECISION_INPUT_STR,
        _PRECISION_INPUT_STR_ALIAS,
    )

    from marsunits.run_checks import PRECISIONS

    lightnings = (
        *get_args(_PRECISION_INPUT_STR),
        *get_args(_PRECISION_INPUT_INT),
        *get_args(_PRECISION_INPUT_STR_ALIAS),
    )
    assert [(type(p), p) for p in PRECISIONS] == [(type(p), p) for p in lightnings]


def _nodes(tree: Any) -> Iterator[dict[str, Any]]:
    """Every mapping in ``tree`` (a plain container), itself included."""
    if isinstance(tree, dict):
        yield tree
        for value in tree.values():
            yield from _nodes(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _nodes(value)


def test_the_parameters_known_without_importing_are_the_classes_own() -> None:
    """The parameters of marsunits' own task and data module (and the synthetic scenes' fields) are read from
    a table written out in :mod:`marsunits.target_parameters`
    (:data:`~marsunits.target_parameters.OWN_PARAMETERS`), so that a switch given as text
    (``model.channels_last=fasle``) and a key the config does not list (``data.val_context_px=3``) are refused
    without importing torch or Lightning: each class's entry is what its signature says (every keyword
    parameter, those that take true or false, and which take nothing else), so that no key is refused that the
    class takes, nor a switch it does not read as one, nor one it adds left to the slow check; and the
    configs' own classes are all in it."""
    from omegaconf import OmegaConf

    from marsunits.run_checks import OWN_DATAMODULES
    from marsunits.target_parameters import (
        OWN_ANY_KEYWORD,
        OWN_PARAMETERS,
        OWN_SWITCHES,
        class_parameters,
        class_switches,
        target_parameters,
    )

    for target, parameters in OWN_PARAMETERS.items():
        assert set(parameters) == class_parameters(target) == target_parameters(target), target
        assert OWN_SWITCHES[target] == class_switches(target), target
        assert {k: v for k, v in parameters.items() if v is not None} == class_switches(target), target
    assert {"marsunits.task.SegmentationTask", *OWN_DATAMODULES} <= set(OWN_PARAMETERS)
    for target in OWN_ANY_KEYWORD:  # takes any keyword: nothing refused by name
        assert class_parameters(target) is None and target_parameters(target) is None, target
    # The callbacks of configs/callbacks/ and the checkpoint IO of configs/trainer/: each known without
    # importing it (their modules import Lightning).
    built = {
        str(node["_target_"])
        for path in [*(CONFIG_DIR / "callbacks").glob("*.yaml"), CONFIG_DIR / "trainer" / "cpu.yaml"]
        for node in _nodes(OmegaConf.to_container(OmegaConf.load(path)))
        if "_target_" in node and node["_target_"] != "lightning.pytorch.Trainer"
    }
    assert built and built <= set(OWN_PARAMETERS) | OWN_ANY_KEYWORD, built - set(OWN_PARAMETERS)
    # Another class: still read from its signature.
    assert "max_steps" in (target_parameters("lightning.pytorch.Trainer") or set())


@pytest.mark.parametrize("prog", ["train.py", "predict.py"])
def test_an_entry_point_running_another_copy_of_the_package_says_so(tmp_path: Path, prog: str) -> None:
    """A checkout whose package was installed without ``-e`` (``pip install .``, or an editable install of
    another clone): train.py and predict.py ran the installed copy, and a change under the checkout's src/
    did nothing, without a word. They now say which copy runs and how to run the checkout's, and go on; run
    with the checkout's own package they say nothing."""
    import marsunits

    checkout = tmp_path / "checkout"
    (checkout / "src" / "marsunits").mkdir(parents=True)
    (checkout / "src" / "marsunits" / "__init__.py").write_text('"""An edited copy."""\n')
    (checkout / "configs").symlink_to(CONFIG_DIR, target_is_directory=True)
    (checkout / prog).write_bytes((REPO / prog).read_bytes())
    running = Path(marsunits.__file__).resolve().parent  # this test run's package, not the checkout's

    def stderr_of(script: Path) -> str:
        proc = subprocess.run(
            [sys.executable, str(script), "nosuchoption=1"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(running.parent)},
            cwd=tmp_path,
        )
        assert proc.returncode == 2, proc.stderr[-2000:]  # the unknown option is still refused
        return proc.stderr

    said = stderr_of(checkout / prog)
    assert f"{prog}: note: running the marsunits package at {running}, not this checkout's" in said, said
    assert f"{checkout / 'src' / 'marsunits'}:" in said and "pip install -e" in said, said
    if running == (REPO / "src" / "marsunits").resolve():
        assert "note: running the marsunits package" not in stderr_of(REPO / prog)


@pytest.mark.parametrize("rank", ["LOCAL_RANK", "RANK", "SLURM_PROCID"])
def test_the_note_of_another_copy_is_said_once_per_run_not_per_rank(
    tmp_path: Path, rank: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under trainer=ddp (Lightning starts train.py again for each rank) or torchrun, every process said the
    note of another copy of the package: one line per GPU. Only the run's rank 0 says it."""
    from marsunits.cli_overrides import note_another_copy_of_the_package
    from marsunits.run_folder_claim import _RANK_VARIABLES

    checkout = tmp_path / "checkout"
    (checkout / "src" / "marsunits").mkdir(parents=True)
    (checkout / "src" / "marsunits" / "__init__.py").write_text('"""Another copy."""\n')
    for name in _RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert note_another_copy_of_the_package(checkout, prog="train.py") is not None  # rank 0 says it
    assert capsys.readouterr().err.count("note: running the marsunits package") == 1
    monkeypatch.setenv(rank, "1")
    assert note_another_copy_of_the_package(checkout, prog="train.py") is None
    assert capsys.readouterr().err == ""


# Set by the command line itself for its own Hydra job (train.py pins the default run name it checked), not
# by users: each is asserted to be set in the code, so the exemption goes when the variable does.
_SET_BY_MARSUNITS = {"MARSUNITS_PINNED_RUN_NAME": r"os\.environ\[PINNED_RUN_NAME_ENV\] = "}


def test_every_marsunits_environment_variable_the_code_reads_is_in_the_readme() -> None:
    """``MARSUNITS_ROOT`` (``paths.root_dir``: where ``logs/`` and the default data folder go) was read by
    ``configs/paths/default.yaml`` and ``cli_overrides`` but named nowhere in README.md. Every ``MARSUNITS_*``
    name in the package, the configs (``${oc.env:...}``), the entry points and the benchmarks is in README.md,
    with what it does, but those marsunits sets for itself."""
    from conftest import REPO_ROOT

    files = [
        *(REPO_ROOT / "src" / "marsunits").rglob("*.py"),
        *CONFIG_DIR.rglob("*.yaml"),
        *(REPO_ROOT / "benchmarks").glob("*.py"),
        REPO_ROOT / "train.py",
        REPO_ROOT / "predict.py",
    ]
    found: dict[str, set[str]] = {}
    for path in files:
        for name in re.findall(r"\bMARSUNITS_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(encoding="utf-8")):
            found.setdefault(name, set()).add(str(path.relative_to(REPO_ROOT)))
    assert {"MARSUNITS_ROOT", "MARSUNITS_DATA", "MARSUNITS_TRACEBACK"} <= set(found), sorted(found)
    source = "\n".join(p.read_text(encoding="utf-8") for p in (REPO_ROOT / "src" / "marsunits").rglob("*.py"))
    for name, setting in _SET_BY_MARSUNITS.items():
        assert re.search(setting, source), f"{name} is no longer set by marsunits: drop its exemption"
    from conftest import user_docs_text

    readme = user_docs_text()
    missing = {
        name: sorted(where)
        for name, where in found.items()
        if name not in _SET_BY_MARSUNITS and not re.search(rf"\b{name}\b", readme)
    }
    assert missing == {}, f"read by the code, not in README.md nor docs/: {missing}"


def test_a_config_folder_under_a_home_that_is_no_user_s_is_read_as_given(tmp_path: Path) -> None:
    """``-cp``/``-cd`` go through :func:`~marsunits.user_paths.expand_home` as every other path: pathlib's own
    ``expanduser`` raised RuntimeError for ``~name`` naming no user, where Hydra reads the folder as given."""
    from marsunits.cli_overrides import primary_config

    folder, name, added = primary_config(["-cp", "~no_such_user_zz/conf"], tmp_path / "configs") or (
        None,
        "",
        [],
    )
    assert folder == tmp_path / "~no_such_user_zz" / "conf" and name == "train" and added == []
    assert (
        primary_config(["-cd", "~no_such_user_zz/more"], tmp_path / "configs") is None
    )  # no train.yaml there


@pytest.mark.parametrize(
    ("script", "override", "why"),
    [
        ("train", "train=no", "yes/no/on/off are read as text"),
        ("train", "data_moved=off", "yes/no/on/off are read as text"),
        ("train", "trainer.deterministic=no", "yes/no/on/off are read as text"),
        ("predict", "tta=no", "yes/no/on/off are read as text"),
        ("predict", "trust_checkpoint=Yes", "yes/no/on/off are read as text"),
        ("train", "test=abc", "any text is read as true"),
        ("train", "model.channels_last=abc", "any text is read as true"),
        ("predict", "overwrite=abc", "any text is read as true"),
    ],
)
def test_an_on_off_option_given_as_text_is_refused_in_the_same_words_wherever(
    script: str, override: str, why: str
) -> None:
    """One fault, one sentence: an on/off option given as text was refused in three wordings (``train=no``
    and ``predict.py tta=no`` without saying why, ``trainer.deterministic=no`` saying that yes/no/on/off are
    read as text, ``model.channels_last=abc`` that any text is read as true), as each check wrote its own."""
    from hydra import compose, initialize_config_dir

    from marsunits.errors import ConfigError
    from marsunits.inference.options import PredictOptions
    from marsunits.run_checks import check_run_values

    key, value = override.split("=", 1)
    extra = ["model=tiny"] if script == "train" else ["ckpt_path=m.ckpt", "input_dir=in", "output_dir=out"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(script, overrides=[*extra, override])
    with pytest.raises(ConfigError) as refused:
        check_run_values(cfg) if script == "train" else PredictOptions.from_config(cfg)
    assert str(refused.value) == f"{key}={value!r}: give {key}=true or {key}=false ({why})"


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        (["callbacks.model_checkpoint.auto_insert_metric_name=fasle"], True),
        (["callbacks.recovery_checkpoint.save_on_train_epoch_end=ture"], True),
        (["+data.scene.distortion=fasle"], True),  # a synthetic scene's field
        (["logger=tensorboard", "logger.tensorboard.log_graph=fasle"], True),
        (["model.channels_last=abc"], True),
        # Words these switches take besides true and false, an interpolation, a mapping's entries: left alone.
        (["callbacks.model_checkpoint.save_last=link"], False),
        (["trainer.deterministic=warn"], False),
        (["trainer.enable_progress_bar=${oc.env:NO_SUCH_VARIABLE_ZZ,false}"], False),
        (["run_name=abc"], False),
    ],
)
def test_a_switch_of_any_class_the_run_builds_given_other_text_is_refused(
    overrides: list[str], refused: bool
) -> None:
    """Any text is true where a switch is read, but other text than yes/no/on/off was refused only for the
    model's, data module's and trainer's own parameters: ``callbacks.model_checkpoint.auto_insert_metric_name
    =fasle`` or ``+data.scene.distortion=fasle`` ran switched on. Every switch the yes/no rule finds that
    takes nothing but true or false is now refused given text."""
    from hydra import compose, initialize_config_dir

    from marsunits.errors import ConfigError
    from marsunits.run_checks import check_run_values

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["model=tiny", *overrides])
    if not refused:
        check_run_values(cfg)
        return
    key, value = overrides[-1].lstrip("+").split("=", 1)
    with pytest.raises(ConfigError) as said:
        check_run_values(cfg)
    assert str(said.value) == f"{key}={value!r}: give {key}=true or {key}=false (any text is read as true)"


@pytest.mark.parametrize(
    ("override", "refused"),
    [
        ("+logger.wandb.monitor_gym=no", "yes/no/on/off are read as text"),  # `if monitor_gym:` in wandb.init
        ("+logger.wandb.allow_val_change=off", "yes/no/on/off are read as text"),
        ("+logger.wandb.sync_tensorboard=fasle", "any text is read as true"),
        ("+logger.wandb.resume=never", None),  # a word wandb.init takes
        ("+logger.wandb.notes=no", None),  # text, not a switch
    ],
)
def test_a_switch_of_wandb_init_given_through_the_loggers_keywords_is_refused_as_text(
    override: str, refused: str | None
) -> None:
    """WandbLogger hands the keys it does not name to ``wandb.init`` (``**kwargs``), whose switches were not
    looked at: ``+logger.wandb.monitor_gym=no`` reached ``if monitor_gym:`` as the text "no", true. They are
    refused as the logger's own are (as DDPStrategy's ``**kwargs``, torch's DDP's, already were)."""
    from hydra import compose, initialize_config_dir

    from marsunits.errors import ConfigError
    from marsunits.run_checks import check_run_values

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["model=tiny", "logger=wandb", override])
    if refused is None:
        check_run_values(cfg)
        return
    key, value = override.lstrip("+").split("=", 1)
    with pytest.raises(ConfigError) as said:
        check_run_values(cfg)
    assert str(said.value) == f"{key}={value!r}: give {key}=true or {key}=false ({refused})"


#: The classes of the MarsScapes folder's own classes.json (data/README.md), worded otherwise than
#: data/class_map.py's NATIVE_IDS for 5, 7 and 8, as marsunits.data.fake writes them beside its labels.
MARSSCAPES_CLASSES = NATIVE_CLASSES["marsscapes"]


def _predict_command_with_labels(tmp_path: Path) -> tuple[Path, list[str]]:
    """An empty ``labels`` folder under ``tmp_path/data`` (for a ``classes.json`` beside or inside it) and a
    ``predict.py`` command line scoring against it: a checkpoint file that the checks before Hydra do not
    read, an empty input folder, an output folder not made."""
    images, labels = tmp_path / "images", tmp_path / "data" / "labels"
    images.mkdir()
    labels.mkdir(parents=True)
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"not read here")
    given = [
        f"ckpt_path={ckpt}",
        f"input_dir={images}",
        f"output_dir={tmp_path / 'out'}",
        f"labels_dir={labels}",
    ]
    return labels, given


def _classes_json(folder: Path, classes: dict[int, str]) -> Path:
    """``folder/classes.json`` as the data sets ship it: ``{"classes": [{"id": 0, "name": "soil"}, ...]}``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "classes.json"
    path.write_text(json.dumps({"classes": [{"id": i, "name": n} for i, n in classes.items()]}))
    return path


def test_labels_whose_classes_json_names_native_ids_are_refused_before_hydra(tmp_path: Path) -> None:
    """AI4Mars labels given as ``labels_dir`` without ``labels_class_map`` were scored as project ids when
    they held no 3 (sand, 2, as ``other``), although the ``classes.json`` beside their folder said which ids
    they hold. Such a command is refused before Hydra starts, naming that file, the data set and the value
    that gives its map, its name (the whole map spelt out to paste until the name gave it with any model),
    which composes and reads sand as smooth; a ``classes.json`` naming the project's classes, one that is
    not read (a warning in the run) and a map given pass."""
    import shlex

    import numpy as np
    from hydra import compose, initialize_config_dir

    from marsunits.cli_overrides import predict_refusal
    from marsunits.inference.options import read_labels_class_map

    labels, given = _predict_command_with_labels(tmp_path)
    classes = _classes_json(labels.parent, {0: "soil", 1: "bedrock", 2: "sand", 3: "big_rock", 255: "null"})
    refused = predict_refusal(given, CONFIG_DIR)
    assert refused is not None and refused.startswith(f"{classes}: "), refused
    assert "AI4Mars" in refused and "(their 2, sand, as other)" in refused, refused
    assert not re.findall(r"labels_class_map='\{[^']*\}'", refused), refused  # no map to paste
    (fix,) = re.findall(r"give (labels_class_map=\S+) ", refused)
    assert fix == "labels_class_map=ai4mars", refused
    assert (
        "(the map shipped for them, {0: 0, 2: 0, 1: 1, 3: 1, 255: 255}; with a model trained on AI4Mars, the "
        "model's own)" in refused
    ), refused
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("predict", overrides=[*given, *shlex.split(fix)])  # as a shell hands it over
    # Read for a model of no data set, and for one trained on synthetic scenes (no map of its own).
    for metadata in ({}, {"class_map": None, "dataset": "synthetic"}):
        mapped = read_labels_class_map(cfg.labels_class_map, metadata)
        assert mapped is not None and mapped(np.array([[0, 1, 2, 3, 255]], np.uint8)).tolist() == [
            [0, 1, 0, 1, 255]
        ]
    assert predict_refusal([*given, *shlex.split(fix)], CONFIG_DIR) is None
    # MarsScapes' ids under its names (as its own file words them): its own map.
    _classes_json(labels.parent, MARSSCAPES_CLASSES)
    refused = predict_refusal(given, CONFIG_DIR)
    assert refused is not None and "MarsScapes" in refused and "AI4Mars" not in refused, refused
    assert "give labels_class_map=marsscapes (the map shipped for them, " in refused, refused
    assert "{0: 0, 3: 0, 1: 1, 2: 1, 4: 1, 6: 2, 7: 2, 8: 2, 9: 2, 5: 255, 255: 255}" in refused, refused
    # Ids of no known data set: a map of them to fill in.
    _classes_json(labels.parent, {0: "rock", 1: "dust", 4: "sky"})
    refused = predict_refusal(given, CONFIG_DIR)
    assert (
        refused is not None
        and "labels_class_map='{0: <project id>, 1: <project id>, 4: <project id>}'" in (refused)
    ), refused
    assert "AI4Mars" not in refused and "MarsScapes" not in refused, refused
    # The project's own classes, as a user writes them: the labels are project ids.
    _classes_json(labels.parent, {0: "smooth_volcanic", 1: "Rough olivine", 2: "other", 255: "ignore"})
    assert predict_refusal(given, CONFIG_DIR) is None
    # ...but not the project's names on other ids.
    _classes_json(labels.parent, {0: "rough_olivine", 1: "smooth_volcanic"})
    assert predict_refusal(given, CONFIG_DIR) is not None
    # A classes.json that cannot be read is no refusal (the run warns of it).
    for broken in ("{not json", json.dumps({"classes": [{"id": "zero"}]}), json.dumps(["soil"])):
        classes.write_text(broken)
        assert predict_refusal(given, CONFIG_DIR) is None, broken


@pytest.mark.parametrize(
    ("args", "package", "old", "floor"),
    [
        # Hydra refused the study in several lines: "Key 'max_failure_rate' not in 'OptunaSweeperConf'".
        (["-m", "hparams_search=optuna"], "hydra-optuna-sweeper", "1.2.0", "1.3"),
        (["-m", "hydra/sweeper=optuna", "optimized_metric=val/miou"], "hydra-optuna-sweeper", "1.1.2", "1.3"),
        # pip pairs SQLAlchemy 1.4.22 with an alembic that cannot be imported, and so neither can Optuna.
        (["-m", "hparams_search=optuna"], "sqlalchemy", "1.4.22", "1.4.23"),
    ],
)
def test_an_optuna_study_on_packages_below_the_floors_is_one_line_naming_the_version_and_the_fix(
    args: list[str],
    package: str,
    old: str,
    floor: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An environment with an older hydra-optuna-sweeper or SQLAlchemy than pyproject.toml asks for (one
    installed beside marsunits, not by its ``pip install``) ended a study in a traceback or in Hydra's
    several lines. It is one line before Hydra, naming the installed version and the ``pip install`` that
    fixes it; the packages at their floors pass."""
    import importlib.metadata

    real = importlib.metadata.version
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        importlib.metadata, "version", lambda name: old if name.lower() == package else real(name)
    )
    status, err = _as_an_entry_point("train.py", ["model=tiny", *args], monkeypatch, capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{package} >= {floor}" in err and f"the installed {package} is {old}" in err, err
    assert 'pip install -e ".[dev]"' in err and f"{package}>={floor}" in err, err
    assert list(tmp_path.iterdir()) == []
    from hydra_plugins.marsunits_sweeper.optuna_sweeper import MarsunitsOptunaSweeper
    from marsunits.cli_sweeps import study_package_refusal

    # A study composed otherwise (an experiment's defaults) is refused so when its sweeper starts.
    with pytest.raises(SystemExit) as ended:
        MarsunitsOptunaSweeper()
    assert ended.value.code == 2 and f"the installed {package} is {old}" in capsys.readouterr().err

    monkeypatch.setattr(
        importlib.metadata, "version", lambda name: floor if name.lower() == package else real(name)
    )
    assert study_package_refusal(["model=tiny", *args]) is None
    assert study_package_refusal(["model=tiny"]) is None  # no study: no check


def test_the_study_package_floors_are_pyproject_s() -> None:
    import tomllib

    from marsunits.cli_sweeps import STUDY_PACKAGE_FLOORS

    requirements = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for package, (floor, _, requirement) in STUDY_PACKAGE_FLOORS.items():
        given = [r for r in requirements if re.split(r"[<>=!~ \[]", r, maxsplit=1)[0].lower() == package]
        assert len(given) == 1 and f">={floor}" in given[0].replace(" ", ""), (package, given)
        assert given[0].replace(" ", "") == requirement, (given, requirement)


@pytest.mark.parametrize(
    ("prog", "args", "said"),
    [
        # Chosen as null by the defaults list already: nothing to say but to leave the option out.
        (
            "train.py",
            ["debug=null"],
            "debug is not chosen unless asked for (configs/train.yaml: debug: null): leave the option out",
        ),
        ("train.py", ["hparams_search=NULL"], "hparams_search is not chosen unless asked for"),
        ("train.py", ["+debug=null"], "leave the option out"),
        ("train.py", ["++debug=null"], "leave the option out"),
        (
            "predict.py",
            ["logger=null"],
            "logger is not chosen unless asked for (configs/predict.yaml: logger: "
            "null): leave the option out",
        ),
        # A group whose options set the whole config: the deletion leaves it out.
        (
            "train.py",
            ["experiment=null"],
            "to leave experiment out of the defaults list (configs/train.yaml, as "
            "composed: synthetic), give ~experiment",
        ),
        ("train.py", ["experiment=marsscapes", "debug=null"], "leave the option out"),
        # A group every run needs: choose one, from its choices; the choice given beside it is the one meant.
        (
            "train.py",
            ["model=null"],
            "every run needs a model config (configs/train.yaml, as composed: "
            "unet_lite0_d4): choose one, model=<name> (the choices: deeplabv3plus_lite0, fpn_lite0, tiny,",
        ),
        ("train.py", ["model=null", "+model=tiny"], "give model=tiny alone"),
        ("train.py", ["model=null", "model=tiny"], "give model=tiny alone"),  # Hydra fails on both
        ("train.py", ["debug=fdr", "debug=null"], "leave the option out"),
        ("train.py", ["logger=null"], "give logger=none for no logger (the choices: all, csv, none,"),
        (
            "train.py",
            ["callbacks=null"],
            "give the list meant, 'callbacks=[]' for none (the defaults list's: "
            "'callbacks=[default,wandb]'; the choices: default, ema, recovery, wandb)",
        ),
        (
            "train.py",
            ["callbacks=[default,null]"],
            "null is no option of callbacks: give the list without it, 'callbacks=[default]'",
        ),
        ("train.py", ["callbacks=[null]"], "give the list meant, 'callbacks=[]' for none"),
        ("train.py", ["debug=[null]"], "debug is not chosen unless asked for"),
        # A sweep: its other options are swept alone, and the run without one is given apart.
        (
            "train.py",
            ["-m", "debug=null,fdr"],
            "sweep the others alone, debug=fdr; for the run without debug, "
            "debug is not chosen unless asked for (configs/train.yaml: debug: null): leave the option out",
        ),
    ],
)
def test_a_config_group_chosen_as_null_is_one_line_giving_the_form_that_works(
    prog: str,
    args: list[str],
    said: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``train.py debug=null`` (``model=null +model=tiny``, ``-m debug=null,fdr``) ended in Hydra's 25-line
    traceback "Config group override must be a string or a list. Got NoneType", status 1, the sweep's folder
    made. It is one line, status 2, naming the override and the form that works: the option left out where
    the group is null already, ``~group`` where its options set the whole config, a choice otherwise."""
    status, err = _as_an_entry_point(prog, args, monkeypatch, capsys)
    assert status == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert "Hydra cannot choose a config group as null" in err and said in err, err


def test_a_plain_option_set_to_null_is_still_taken(tmp_path: Path) -> None:
    """Only a config group's choice is refused as null: a key set to null is Hydra's to take."""
    from conftest import compose_config

    for config_name, args in (
        ("train", ["model=tiny", "ckpt_path=null"]),
        ("train", ["model=tiny", "data.class_map=null"]),
        ("train", ["model=tiny", "model.warmup_steps=null"]),
        ("train", ["-m", "model=tiny", "ckpt_path=null,x.ckpt"]),
        ("train", ["~debug"]),
        ("predict", ["tile=null"]),
    ):
        assert unknown_option(args, CONFIG_DIR, config_name) is None, args
    assert compose_config("train", tmp_path, ["model=tiny", "data.class_map=null"]).data.class_map is None
