"""The misspelt-option check of train.py and predict.py: typos are caught with a suggestion, and no
override the README or the configs use is refused."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import CONFIG_DIR
from marsunits.cli_overrides import unknown_option

REPO = CONFIG_DIR.parent


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


def test_overrides_in_use_pass() -> None:
    """Every ``key=value`` of a train.py / predict.py command in the README, plus Hydra's own forms."""
    text = (REPO / "README.md").read_text()
    commands = re.findall(r"(train|predict)\.py((?:[ \t]+(?:\\\n\s*)?[^\s`]+)+)", text)
    checked = 0
    for prog, tail in commands:
        tail = tail.split(" #")[0]  # a shell comment after the command
        tokens = [a.strip("'\"(),;:") for a in tail.replace("\\\n", " ").split()]
        args = [a for a in tokens if re.match(r"^[A-Za-z_][\w.@/-]*=", a)]  # prose around commands skipped
        assert unknown_option(args, CONFIG_DIR, prog) is None, (prog, args)
        checked += len(args)
    assert checked > 30  # the README has many such commands: the pattern found them
    hydra_forms = ["--cfg", "job", "-m", "+contact.min_length_px=20", "~logger", "hydra.run.dir=/tmp/x",
                   "logger@x=csv", "callbacks=[default,wandb,ema]", "model.lr=1e-3,3e-4",
                   "hydra/launcher=basic", "hydra/job_logging=disabled"]  # fmt: skip
    assert unknown_option(hydra_forms, CONFIG_DIR, "train") is None
    # Another primary config or config folder: its names are not train.yaml's, so Hydra checks them.
    assert unknown_option(["--config-name=mine", "anything=1"], CONFIG_DIR, "train") is None
    assert unknown_option(["-cd", "/my/configs", "anything=1"], CONFIG_DIR, "train") is None


def test_predict_py_stops_before_hydra_with_status_2() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "predict.py"), "inputdir=x", "ckpt_path=y"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "predict.py: error: unknown option 'inputdir' in 'inputdir=x'; did you mean input_dir=...? "
        "(the options: configs/predict.yaml)"
    )
