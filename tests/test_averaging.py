"""EMA of the weights (callbacks=[...,ema]): what is validated is what is saved, tested and predicted with."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from conftest import compose_config, train_py_checks
from marsunits.averaging import EMAWeights
from marsunits.checkpoint_loading import load_task
from marsunits.training import run
from test_train import TINY

#: Tiny networks on tiny inputs: intra-op threads only oversubscribe a shared 2-core machine (conftest).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


#: The weight-averaging callbacks a run may train with: marsunits' EMA (``callbacks=ema``), Lightning's own
#: EMA added directly in the callbacks, and Lightning's plain ``WeightAveraging`` (an equal-weight average).
AVERAGING = {
    "callbacks=ema": ["callbacks=[default,ema]", "callbacks.ema.decay=0.5"],
    "lightning_ema": [
        "+callbacks.lema._target_=lightning.pytorch.callbacks.EMAWeightAveraging",
        "+callbacks.lema.decay=0.5",
    ],
    "lightning_swa": ["+callbacks.swa._target_=lightning.pytorch.callbacks.WeightAveraging"],
}


@pytest.mark.parametrize("averaging", AVERAGING.values(), ids=AVERAGING.keys())
def test_ema_checkpoint_holds_the_average_and_test_scores_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, averaging: list[str]
) -> None:
    """Whichever weight-averaging callback a run has, best.ckpt holds the average, and the val/* and
    test/* figures train.py reports for it are the average's: Lightning's own callbacks, added directly,
    still held the average after fit, so the test of best.ckpt reloaded its raw weights
    (``current_model_state``, Lightning's "Found current_model_state") and scored those instead."""
    cfg = compose_config("train", tmp_path, [*TINY, "trainer.max_epochs=2", *averaging])
    metrics, told = _run_and_tell(cfg, caplog)
    assert not [m for m in told if "current_model_state" in m or "outside the 'fit' stage" in m], told

    ckpt = torch.load(metrics["best_ckpt"], map_location="cpu", weights_only=True)
    averaged, raw = ckpt["state_dict"], ckpt["current_model_state"]
    assert averaged.keys() == raw.keys()
    assert any(not torch.equal(averaged[k], raw[k]) for k in averaged if averaged[k].is_floating_point())

    # The checkpoint alone (as predict.py loads it) carries the averaged weights ...
    task = load_task(metrics["best_ckpt"])
    for name, value in task.state_dict().items():
        torch.testing.assert_close(value, averaged[name], rtol=0, atol=0)
    # ... and those are the weights train.py's test stage scored.
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    tested = trainer.test(task, datamodule=instantiate(cfg.data), verbose=False)[0]
    assert tested["test/miou"] == pytest.approx(metrics["test/miou"], abs=1e-6)
    # So are the val/* train.py reports for the kept checkpoint (validated after fit, the average dropped).
    validated = trainer.validate(task, datamodule=instantiate(cfg.data), verbose=False)[0]
    assert validated["val/miou"] == pytest.approx(metrics["val/miou"], abs=1e-6)


def test_ema_decay_out_of_range_is_refused() -> None:
    for decay in (1.0, 0.0, -0.5):  # (0, 1): 0 would keep no average at all
        with pytest.raises(ValueError, match="decay must be in"):
            EMAWeights(decay=decay)


def test_a_lightning_keeping_the_average_under_another_name_is_refused_before_training(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``EMAWeights`` drops the average after fit through Lightning's private ``_average_model``; where a
    Lightning release names it otherwise, that drop did nothing and test scored (and exported) the raw
    weights in silence. It is refused when the callback is made, naming the version and the two ways on."""
    from lightning.pytorch.callbacks import WeightAveraging

    from marsunits.errors import ConfigError

    real = WeightAveraging.__init__

    def renamed(self: WeightAveraging, *args: object, **kwargs: object) -> None:
        real(self, *args, **kwargs)  # type: ignore[arg-type]
        self._averaged = self.__dict__.pop("_average_model")

    monkeypatch.setattr(WeightAveraging, "__init__", renamed)
    with pytest.raises(ConfigError) as refused:
        EMAWeights(decay=0.9)
    said = str(refused.value)
    assert said.startswith(f"callbacks=ema: Lightning {L.__version__}'s weight averaging")
    assert "_average_model" in said and "lightning~=2.6.0" in said and "without callbacks=ema" in said


@pytest.mark.parametrize("averaging", list(AVERAGING.values())[1:], ids=list(AVERAGING)[1:])
def test_lightnings_own_averaging_on_a_lightning_keeping_the_average_elsewhere_is_refused_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, averaging: list[str]
) -> None:
    """Lightning's own averaging callbacks, added directly, have their average dropped after fit through the
    same private ``_average_model`` as ``callbacks=ema``: where a Lightning release names it otherwise, the
    run is refused as the callbacks are made, before any step, naming the class and the ways on."""
    from lightning.pytorch.callbacks import WeightAveraging

    from marsunits.errors import ConfigError

    real = WeightAveraging.__init__

    def renamed(self: WeightAveraging, *args: object, **kwargs: object) -> None:
        real(self, *args, **kwargs)  # type: ignore[arg-type]
        self._averaged = self.__dict__.pop("_average_model")

    monkeypatch.setattr(WeightAveraging, "__init__", renamed)
    cfg = compose_config("train", tmp_path, [*TINY, "trainer.max_epochs=1", *averaging])
    with pytest.raises(ConfigError) as refused:
        run(cfg)
    said = str(refused.value)
    name = averaging[0].rsplit(".", 1)[1]
    assert said.startswith(f"callbacks: Lightning {L.__version__}'s weight averaging ({name}) keeps"), said
    assert "_average_model" in said and "lightning~=2.6.0" in said and "\n" not in said
    assert not list(tmp_path.rglob("*.ckpt"))


def test_two_weight_averaging_callbacks_are_refused_before_the_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``callbacks=[default,ema]`` beside Lightning's own EMA added directly: each swapped its average in and
    out around validation, so training went on from an average, and each wrote its average as the
    checkpoint's weights (the first's then kept as the raw ones). It is one line before any folder, naming
    both; one of them alone trains."""
    from marsunits.errors import ConfigError

    two = [*AVERAGING["callbacks=ema"], *AVERAGING["lightning_ema"]]
    status, said = train_py_checks(
        tmp_path, monkeypatch, capsys, *TINY, f"paths.log_dir={tmp_path / 'logs'}", *two
    )
    assert status == 2, said
    line = "callbacks.ema (EMAWeights), callbacks.lema (EMAWeightAveraging): 2 weight-averaging callbacks"
    assert said.count("\n") == 1 and line in said, said
    assert "'+callbacks=[ema]'" in said and "keep one" in said, said
    assert not (tmp_path / "logs").exists()
    # A config composed another way (a notebook) is refused by the run, before any step, the same way.
    with pytest.raises(
        ConfigError, match=r"callbacks\.ema \(EMAWeights\), callbacks\.swa \(WeightAveraging\)"
    ):
        run(
            compose_config(
                "train", tmp_path / "r", [*TINY, *AVERAGING["callbacks=ema"], *AVERAGING["lightning_swa"]]
            )
        )
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.parametrize("averaging", AVERAGING, ids=AVERAGING.keys())
def test_an_average_without_its_batch_norm_statistics_is_refused_before_the_run_folder(
    averaging: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``use_buffers=false`` on a weight-averaging callback: torch then copies the raw network's batch-norm
    statistics into the average at each update (a tiny run's ``best.ckpt`` held them, to the last value,
    beside the averaged weights), and Lightning leaves recomputing them for the average
    (``torch.optim.swa_utils.update_bn``) to the user, which train.py never is: validation, ``best.ckpt``,
    its test and ``predict.py`` used averaged weights with another network's statistics, without a word.
    It is one line before any folder, naming the callback and the fix; a config composed another way is
    refused by the run before any step."""
    from marsunits.errors import ConfigError

    key = "ema" if averaging == "callbacks=ema" else AVERAGING[averaging][0].split(".")[1]
    args = [*AVERAGING[averaging], f"+callbacks.{key}.use_buffers=false"]
    status, said = train_py_checks(
        tmp_path, monkeypatch, capsys, *TINY, f"paths.log_dir={tmp_path / 'logs'}", *args
    )
    assert status == 2 and said.count("\n") == 1, said
    assert f"callbacks.{key}.use_buffers=false (" in said and "update_bn" in said, said
    assert "leave use_buffers out" in said, said
    assert ("'+callbacks=[ema]'" in said) == (averaging != "callbacks=ema"), said
    assert not (tmp_path / "logs").exists()
    with pytest.raises(ConfigError, match=rf"callbacks\.{key}\.use_buffers=false"):
        run(compose_config("train", tmp_path / "r", [*TINY, *args]))
    assert not list(tmp_path.rglob("*.ckpt"))
    # With the statistics averaged too (use_buffers=true, the default) the same command passes the checks.
    kept = [a.replace("=false", "=true") for a in args]
    status, said = train_py_checks(
        tmp_path, monkeypatch, capsys, *TINY, f"paths.log_dir={tmp_path / 'logs2'}", *kept
    )
    assert status == 0, said


def test_ema_test_pass_straight_after_fit_scores_the_average(tmp_path: Path) -> None:
    """Real data tests on its validation images right after fit (no validation pass in between, which
    would drop the average too): that test must score the checkpoint's averaged weights, not the raw ones."""
    from marsunits.data.fake import write_fake_folder

    root = write_fake_folder(tmp_path / "data", n_images=4, height=64, width=64)
    overrides = [
        "model=tiny",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "data=folder",
        f"data.root={root}",
        "data.batch_size=4",
        "data.crop_size=64",
        "data.samples_per_epoch=8",
        "data.num_workers=0",
        "trainer.max_epochs=2",
        "callbacks=[default,ema]",
        "callbacks.ema.decay=0.5",
    ]
    cfg = compose_config("train", tmp_path / "r", overrides)
    metrics = run(cfg)
    assert metrics["test_is_validation"] is True
    task = load_task(metrics["best_ckpt"])
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    tested = trainer.test(task, datamodule=instantiate(cfg.data), verbose=False)[0]
    assert tested["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-5)


def test_a_run_trained_with_ema_resumed_without_it_is_refused_before_anything_is_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``ckpt_path=last`` (or the file) on a run trained with ``callbacks=[default,ema]``, the EMA callback
    left out, resumed from the raw weights with the average dropped, Lightning's "Please add the following
    callbacks: ['EMAWeights']" its only sign. It is one line naming the checkpoint and the callbacks to add;
    with them the resume goes on."""
    from marsunits.errors import ConfigError

    short = [*TINY, "test=false"]
    ema = ["callbacks=[default,ema]", "callbacks.ema.decay=0.5"]
    run(compose_config("train", tmp_path / "run", [*short, *ema, "trainer.max_epochs=1"]))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    steps = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    for where, resume in (("run", "ckpt_path=last"), ("new", f"ckpt_path={last}")):
        cfg = compose_config("train", tmp_path / where, [*short, "trainer.max_epochs=2", resume])
        with pytest.raises(ConfigError) as refused:
            run(cfg)
        said = str(refused.value)
        assert "\n" not in said and said.startswith("ckpt_path=")
        assert str(last) in said and "trained with the EMA callback" in said
        assert "'+callbacks=[ema]'" in said and "'callbacks=[default,ema]'" in said
    assert last.read_bytes() == before
    assert not (tmp_path / "new" / "checkpoints").exists() or not list(
        (tmp_path / "new" / "checkpoints").iterdir()
    )
    # With the callback added as the refusal says, the same resume trains on.
    more = ["+callbacks=[ema]", "trainer.max_epochs=2", f"ckpt_path={last}"]
    resumed = run(compose_config("train", tmp_path / "new", [*short, *more]))
    assert torch.load(resumed["last_ckpt"], map_location="cpu", weights_only=True)["global_step"] > steps
    # So does Lightning's own EMA callback, which restores the average as well (it was refused as missing),
    # without Lightning's "Please add the following callbacks: ['EMAWeights']": the average is taken over.
    theirs = ["+callbacks.lema._target_=lightning.pytorch.callbacks.EMAWeightAveraging", *more[1:]]
    resumed, told = _run_and_tell(compose_config("train", tmp_path / "theirs", [*short, *theirs]), caplog)
    assert torch.load(resumed["last_ckpt"], map_location="cpu", weights_only=True)["global_step"] > steps
    assert not [m for m in told if "Please add the following callbacks" in m], told


def _run_and_tell(cfg: Any, caplog: pytest.LogCaptureFixture) -> tuple[dict[str, Any], list[str]]:
    """:func:`run`'s metrics, and every warning and log line it gave."""
    caplog.clear()
    with warnings.catch_warnings(record=True) as said, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        metrics = run(cfg)
    return metrics, [str(w.message) for w in said] + [r.getMessage() for r in caplog.records]


def test_only_another_callback_left_out_of_a_resume_is_still_warned_of() -> None:
    """The EMA classes' "Please add the following callbacks" is silenced for a fit that has the other
    class, only for the one key it names: a resume leaving out another callback is warned as Lightning
    does, and a fit without a weight-averaging callback silences nothing."""
    from marsunits.lightning_logging import _quiet_averaging_taken_over

    def warned(kept: list[str], left_out: list[str]) -> bool:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            _quiet_averaging_taken_over(kept, ["EMAWeights", "EMAWeightAveraging"])
            warnings.warn(
                "Be aware that when using `ckpt_path`, callbacks used to create the checkpoint need to be "
                "provided during `Trainer` instantiation. Please add the following callbacks: "
                f"{left_out}.",
                UserWarning,
                stacklevel=1,
            )
        return bool(said)

    assert not warned(["EMAWeights"], ["EMAWeightAveraging"])
    assert not warned(["EMAWeightAveraging"], ["EMAWeights"])
    assert warned(["EMAWeights"], ["EMAWeights"])  # its own key left out: cannot be, but not hidden
    assert warned(["EMAWeights"], ["EMAWeightAveraging", "LearningRateMonitor"])
    assert warned(["EMAWeights"], ["LearningRateMonitor"])
    assert warned([], ["EMAWeightAveraging"])


def test_a_run_trained_with_lightnings_own_ema_is_refused_too_and_any_ema_takes_it_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A user may add Lightning's ``EMAWeightAveraging`` instead of ``callbacks=ema``: its checkpoints are the
    same (the average as ``state_dict``, the raw weights as ``current_model_state``) under another state key,
    so a resume without it was let through, training on from the average without averaging, the raw weights
    dropped. It is refused as ``callbacks=ema``'s is, naming Lightning's callback; an EMA callback of either
    kind on the resume takes the average and the raw weights over (Lightning's ``WeightAveraging`` restores
    both), where ``callbacks=ema`` on a resume of a run trained with Lightning's was refused as missing."""
    from marsunits.errors import ConfigError

    short = [*TINY, "test=false"]
    lightning_ema = [
        "+callbacks.lema._target_=lightning.pytorch.callbacks.EMAWeightAveraging",
        "+callbacks.lema.decay=0.5",
    ]
    run(compose_config("train", tmp_path / "run", [*short, *lightning_ema, "trainer.max_epochs=1"]))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert "EMAWeightAveraging" in saved["callbacks"] and "current_model_state" in saved
    resume = ["trainer.max_epochs=2", f"ckpt_path={last}"]
    with pytest.raises(ConfigError) as refused:
        run(compose_config("train", tmp_path / "bare", [*short, *resume]))
    said = str(refused.value)
    assert "\n" not in said and said.startswith(f"ckpt_path={last}: its run was trained with Lightning's EMA")
    assert "'+callbacks.ema._target_=lightning.pytorch.callbacks.EMAWeightAveraging'" in said, said
    assert "'+callbacks=[ema]'" in said, said
    assert not list((tmp_path / "bare").rglob("*.ckpt"))

    # callbacks=ema takes it over: Lightning restores the average (its count goes on) and the raw weights,
    # where a run it did not take over from starts a new average (its "not created with WeightAveraging").
    ours = compose_config("train", tmp_path / "ours", [*short, "+callbacks=[ema]", *resume])
    resumed, told = _run_and_tell(ours, caplog)
    after = torch.load(resumed["last_ckpt"], map_location="cpu", weights_only=True)
    # ... without Lightning's "Please add the following callbacks: ['EMAWeightAveraging']".
    assert not [m for m in told if "Please add the following callbacks" in m], told
    more = after["global_step"] - saved["global_step"]
    assert more > 0
    before_count = int(saved["averaging_state"]["n_averaged"])
    assert int(after["averaging_state"]["n_averaged"]) == before_count + more
