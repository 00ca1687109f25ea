"""init_ckpt_path: a new training run whose network starts from an earlier checkpoint (fine-tuning)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from conftest import compose_config
from marsunits.checkpoint_loading import load_task
from marsunits.errors import ConfigError
from marsunits.fine_tuning import initialise_from_checkpoint
from marsunits.task import CheckpointError
from marsunits.training import run
from marsunits.training_extent import barely_trained, steps_in_all
from test_train import TINY

#: Tiny networks on tiny inputs: intra-op threads only oversubscribe a shared 2-core machine (conftest).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def source_ckpt(tmp_path_factory) -> Path:
    """best.ckpt of a one-epoch tiny run."""
    out = tmp_path_factory.mktemp("source")
    run(compose_config("train", out, [*TINY, "trainer.max_epochs=1"]))
    return out / "checkpoints" / "best.ckpt"


def test_new_network_takes_every_weight_of_the_checkpoint(source_ckpt: Path, tmp_path: Path) -> None:
    cfg = compose_config("train", tmp_path, [*TINY, f"init_ckpt_path={source_ckpt}"])
    torch.manual_seed(123)
    task = instantiate(cfg.model)
    theirs = load_task(source_ckpt).model.state_dict()
    assert any(not torch.equal(v, theirs[k]) for k, v in task.model.state_dict().items())
    initialise_from_checkpoint(task, source_ckpt)
    ours = task.model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_fine_tuning_run_starts_fresh_and_records_its_origin(source_ckpt: Path, tmp_path: Path) -> None:
    cfg = compose_config("train", tmp_path, [*TINY, "trainer.max_epochs=1", f"init_ckpt_path={source_ckpt}"])
    metrics = run(cfg)
    assert metrics["init_ckpt"] == str(source_ckpt)
    source = torch.load(source_ckpt.with_name("last.ckpt"), map_location="cpu", weights_only=False)
    tuned = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    # A new run: the epoch and step counts restart (a resume would continue them).
    assert tuned["global_step"] == source["global_step"] and tuned["epoch"] == source["epoch"]
    assert 0.0 <= metrics["val/miou"] <= 1.0
    # The steps behind the weights count those of the model it started from: a short fine-tuning of a
    # trained model is not a barely trained one (training_extent.barely_trained).
    steps = source["global_step"]
    assert source["marsunits"]["training"]["steps_before"] == 0
    assert tuned["marsunits"]["training"]["steps_before"] == steps
    assert steps_in_all(load_task(tmp_path / "checkpoints" / "last.ckpt").training_record) == 2 * steps
    said = barely_trained(tuned["marsunits"]["training"])
    assert said is not None and f"({steps} of them by the model it was fine-tuned from)" in said, said
    best = tuned["marsunits"]["training"]["best_val_miou"]  # the run's RunModelCheckpoint score, recorded
    assert 0.0 <= best <= 1.0 and f"best validation mIoU {best:.3f}" in said, said


def test_resuming_a_fine_tuning_run_ignores_init_ckpt_path(source_ckpt: Path, tmp_path: Path) -> None:
    first = compose_config(
        "train", tmp_path / "a", [*TINY, "trainer.max_epochs=1", f"init_ckpt_path={source_ckpt}"]
    )
    run(first)
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    second = compose_config(
        "train",
        tmp_path / "b",
        [*TINY, "trainer.max_epochs=2", f"init_ckpt_path={source_ckpt}", f"ckpt_path={last}"],
    )
    assert run(second)["init_ckpt"] == str(source_ckpt)  # what the run started from, from its first part
    resumed = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert resumed["epoch"] == torch.load(last, map_location="cpu", weights_only=False)["epoch"] + 1
    # The steps of the model it started from stay counted in the resumed part's checkpoints.
    source_steps = torch.load(source_ckpt, map_location="cpu", weights_only=True)["global_step"]
    assert resumed["marsunits"]["training"]["steps_before"] == source_steps > 0
    # Another model given as init_ckpt_path to a resumed run is ignored: metrics.json named it all the same,
    # a model the run never started from.
    other = compose_config(
        "train",
        tmp_path / "c",
        [
            *TINY,
            "trainer.max_epochs=3",
            f"init_ckpt_path={last}",
            f"ckpt_path={tmp_path / 'b' / 'checkpoints' / 'last.ckpt'}",
        ],
    )
    assert run(other)["init_ckpt"] == str(source_ckpt)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        (
            "model.decoder_channels=[16,16,8]",
            r"does not fit.*decoder_channels.*model\.decoder_channels=\[32,16,8\]",  # pasteable: no spaces
        ),
        (  # one tensor, the stem's: it read "1 tensor names or shapes differ"
            "data.in_channels=1",
            r"does not fit this run's model \(1 tensor name or shape differs, the checkpoint has \d+ "
            r"tensors: \['encoder\.model\.conv_stem\.weight'\]; .*in_channels.*\(data\.in_channels=3\)",
        ),
        ("model.mean=[0.5,0.5,0.5]", r"mean=\[0\.485.*Set model\.mean="),
    ],
)
def test_a_checkpoint_that_does_not_fit_names_the_setting_to_change(
    source_ckpt: Path, tmp_path: Path, override: str, match: str
) -> None:
    cfg = compose_config("train", tmp_path, [*TINY, override, f"init_ckpt_path={source_ckpt}"])
    with pytest.raises(CheckpointError, match=match):
        initialise_from_checkpoint(instantiate(cfg.model), source_ckpt)


def test_a_refused_starting_checkpoint_leaves_no_run_record(source_ckpt: Path, tmp_path: Path) -> None:
    """A run stopped because its init_ckpt_path does not fit never started: it leaves no config.yaml (the
    record a later ckpt_path=last compares with), as a refused setting does."""
    cfg = compose_config(
        "train", tmp_path, [*TINY, "model.decoder_channels=[16,16,8]", f"init_ckpt_path={source_ckpt}"]
    )
    with pytest.raises(CheckpointError, match="does not fit"):
        run(cfg)
    assert not (tmp_path / "config.yaml").exists()


def test_the_advice_is_in_hydra_spelling() -> None:
    from marsunits.fine_tuning import _override

    assert _override("decoder_channels", None) == "model.decoder_channels=null"  # None would be a string
    assert _override("decoder_channels", [128, 64]) == "model.decoder_channels=[128,64]"
    assert _override("encoder", "efficientnet_lite0") == "model.encoder=efficientnet_lite0"
    assert _override("in_channels", 1) == "data.in_channels=1"
    assert _override("subclasses", None) == "data.subclass_map=null data.subclasses=null"
    assert _override("subclasses", [0, 0, 1]) == "data.subclasses=[0,0,1]"


def test_missing_init_checkpoint_names_the_key(tmp_path: Path) -> None:
    cfg = compose_config("train", tmp_path, [*TINY, f"init_ckpt_path={tmp_path / 'nope.ckpt'}"])
    with pytest.raises(
        FileNotFoundError, match=r"init_ckpt_path=.*nope\.ckpt: no such file or model package"
    ):
        run(cfg)


def test_a_model_package_is_a_starting_point_too(source_ckpt: Path, tmp_path: Path) -> None:
    """Models are shared as packages (python -m marsunits.export); fine-tuning takes them as they are."""
    from marsunits.model_package import write_package

    package = tmp_path / "shared_model"
    write_package(load_task(source_ckpt), package)
    theirs = load_task(source_ckpt).model.state_dict()
    for given in (package, package / "model.safetensors"):
        task = instantiate(compose_config("train", tmp_path / "run", TINY).model)
        initialise_from_checkpoint(task, given)
        assert all(torch.equal(v, theirs[k]) for k, v in task.model.state_dict().items())
    # Resuming a package was said to be "no such file" of a folder that is there.
    with pytest.raises(ConfigError, match=r"is a model package .* cannot be resumed. .*init_ckpt_path="):
        run(compose_config("train", tmp_path / "resume", [*TINY, f"ckpt_path={package}"]))


def test_data_and_model_channels_that_differ_stop_before_training(tmp_path: Path) -> None:
    cfg = compose_config("train", tmp_path, [*TINY, "data.in_channels=1", "model.in_channels=3"])
    with pytest.raises(
        ConfigError, match=r"data\.in_channels=1 but model\.in_channels=3.*data\.in_channels only"
    ):
        run(cfg)
    assert not (tmp_path / "config.yaml").exists()


def test_a_sub_class_model_for_project_class_data_is_told_what_runs(tmp_path: Path) -> None:
    """A sub-class model as init_ckpt_path for data whose masks hold the project classes was told to set
    data.subclasses=[...], which does not run without a data.subclass_map from the dataset's native ids."""
    sub = instantiate(compose_config("train", tmp_path / "s", [*TINY, "model.subclasses=[0,0,1,2]"]).model)
    plain = instantiate(compose_config("train", tmp_path / "p", TINY).model)
    with pytest.raises(CheckpointError) as refused:
        initialise_from_checkpoint(plain, tmp_path / "sub.ckpt", source=sub)
    said = str(refused.value)
    assert "is a sub-class model" in said and "data.subclasses=[0,0,1,2]" in said
    assert "experiment=marsscapes_subclasses" in said and "no init_ckpt_path" in said
    # The reverse runs as advised: a three-class model for a sub-class run turns the sub-classes off.
    with pytest.raises(CheckpointError, match=r"data\.subclass_map=null data\.subclasses=null"):
        initialise_from_checkpoint(sub, tmp_path / "plain.ckpt", source=plain)


def test_init_ckpt_path_under_the_home_folder_is_read_as_typed_there(
    source_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``init_ckpt_path=~/runs/best.ckpt`` (zsh passes ``~`` after ``=`` as it is; Python callers quote it)
    was refused as "no such file": the checkpoint was opened as a file under a folder named ``~``, though
    every other path option (``ckpt_path``, ``data.root``) reads ``~`` as the home folder."""
    import shutil

    from marsunits.model_package import write_package

    home = tmp_path / "home"
    (home / "runs").mkdir(parents=True)
    shutil.copy(source_ckpt, home / "runs" / "best.ckpt")
    write_package(load_task(source_ckpt), home / "runs" / "package")
    monkeypatch.setenv("HOME", str(home))
    theirs = load_task(source_ckpt).model.state_dict()
    for given in ("~/runs/best.ckpt", "~/runs/package"):
        task = instantiate(compose_config("train", tmp_path / "run", TINY).model)
        initialise_from_checkpoint(task, given)
        assert all(torch.equal(v, theirs[k]) for k, v in task.model.state_dict().items())
