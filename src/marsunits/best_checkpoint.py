"""The run's ``best.ckpt`` callback, which keeps the best model across a resume into a new run folder.

``ckpt_path=last`` without a ``run_name`` continues a run in a new folder (docs/training.md). Lightning's
``ModelCheckpoint`` then forgets the best score, because its folder changed ("The dirpath has changed ...
won't be reloaded"): the first validation of the resumed run was kept as ``best.ckpt`` whatever it scored,
and ``metrics.json`` described that model, worse than the earlier run's best. Here the earlier best
checkpoint is copied into the new folder and its score kept, so ``best.ckpt`` stays the best over the whole
run, as a resume in place (same ``run_name``) gives. A resume into a new folder that has no best model to
carry (a ``debug=fdr`` run's ``last.ckpt``) is quiet; one that leaves a best model behind (its file gone, or
another ``monitor``) says so in one line of ours, in place of Lightning's warning.

It also keeps ``last.ckpt`` at the end of every epoch, as ``save_last=True`` did before Lightning 2.6.
Lightning 2.6 writes it at an epoch's end only when that epoch saved a new best, and at the end of training
only when it never wrote it: with the recovery checkpoint's saves every 50 steps, a run whose last epoch
was not its best ended with ``last.ckpt`` at the last best or recovery step, and ``ckpt_path=last`` would
have thrown the later steps away.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only

from marsunits.atomic import atomic_write

__all__ = ["RecoveryCheckpoint", "RunModelCheckpoint"]

log = logging.getLogger(__name__)


class RunModelCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that carries the best checkpoint (file and score) into a new run folder on resume,
    and writes ``last.ckpt`` at the end of every epoch (see the module docstring).

    Only for one best model (``save_top_k=1``) monitored under the same name; otherwise, and when the
    earlier best file is gone, the state is read as Lightning reads it, the best score left behind, with our
    line (:meth:`_forget_earlier_folder`) in place of Lightning's "The dirpath has changed" warning.
    """

    #: The (earlier, new) best file copied at the resume, so that a later restore of the same state (a
    #: test of the copy) does not copy it again.
    _carried: tuple[Path, Path] | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_behind(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_behind(trainer)

    def _save_last_if_behind(self, trainer: pl.Trainer) -> None:
        """Write ``last.ckpt`` unless this step was saved already (Lightning's skip test also covers the
        sanity check, ``fast_dev_run`` and stages other than fitting)."""
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old_dir = state_dict.get("dirpath", self.dirpath)
        old_best = Path(str(state_dict.get("best_model_path") or ""))
        carry = (
            self.dirpath is not None
            and old_dir != self.dirpath
            and self.save_top_k == 1
            and state_dict.get("monitor") == self.monitor
            and state_dict.get("best_model_score") is not None
            and old_best.name != ""
            and old_best.is_file()
        )
        if not carry:
            if self.dirpath is None or old_dir == self.dirpath:
                super().load_state_dict(state_dict)
            else:
                self._forget_earlier_folder(state_dict, old_best)
            return
        new_best = Path(str(self.dirpath)) / old_best.name
        score = state_dict["best_model_score"]
        # trainer.validate/test with a checkpoint restore the callbacks too: testing the copy made at the
        # resume (no better model since) loaded its state, which still names the earlier folder, and the
        # earlier file was copied over it again and said so a second time.
        carried = (old_best, new_best)
        if carried != self._carried or not new_best.is_file():
            if getattr(rank_zero_only, "rank", 0) == 0:  # every DDP rank loads the state: one copies
                atomic_write(new_best, lambda fh: _copy_into(old_best, fh))
            log.info(
                "resumed into %s: best checkpoint so far (%s %s) copied from %s",
                self.dirpath,
                self.monitor,
                float(score),
                old_best,
            )
            self._carried = carried
        super().load_state_dict(
            {
                **state_dict,
                "dirpath": self.dirpath,
                "best_model_path": str(new_best),
                "kth_best_model_path": str(new_best),
                "kth_value": score,
                "best_k_models": {str(new_best): score},
                "last_model_path": "",
            }
        )

    def _forget_earlier_folder(self, state_dict: dict[str, Any], old_best: Path) -> None:
        """A resume into a new folder whose best model is not carried over: Lightning's reading of the state
        (only ``best_model_path`` is kept), with one line of ours where a best model is left behind instead
        of Lightning's "The dirpath has changed from ... won't be reloaded". That warning came on every
        resume of a run that had no best model to lose (a ``debug=fdr`` run's ``last.ckpt``, a run stopped
        before its first validation), naming five attributes a user does not know; where a best model is
        left behind, ours says which, why, and what ``best.ckpt`` is then."""
        self.best_model_path = state_dict["best_model_path"]
        score = state_dict.get("best_model_score")
        if score is None:
            return
        if state_dict.get("monitor") != self.monitor:
            why = f"it was chosen by {state_dict.get('monitor')}, this run's by {self.monitor}"
        elif self.save_top_k != 1:
            why = f"this run keeps save_top_k={self.save_top_k} models"
        else:
            why = "that file is gone"
        log.warning(
            "resumed into %s: the earlier run's best checkpoint (%s, %s %s) is not carried over, since %s: "
            "best.ckpt here is the best of the validations from the resume on",
            self.dirpath,
            old_best,
            state_dict.get("monitor"),
            float(score),
            why,
        )


class RecoveryCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` of the mid-epoch ``last.ckpt`` (``configs/callbacks/recovery.yaml``), quiet on a
    resume into a new run folder.

    It monitors nothing and keeps no best model, yet on ``ckpt_path=last`` into a new folder Lightning warned
    "The dirpath has changed ..., therefore `best_model_score` ... won't be reloaded", right after
    :class:`RunModelCheckpoint`'s line saying that the best checkpoint and its score were carried over, as
    if they were lost. Its state of the earlier folder (``last_model_path`` there) is dropped without a
    word, Lightning keeping ``best_model_path`` alone as before; in the same folder the state is loaded as
    Lightning loads it. Its state is filed under ``ModelCheckpoint{...}``, as when it was Lightning's own
    class, so that runs saved then resume with their state and without Lightning's warning to "add the
    following callbacks".
    """

    def _generate_state_key(self, **kwargs: Any) -> str:
        return f"{ModelCheckpoint.__qualname__}{kwargs!r}"

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("dirpath", self.dirpath) == self.dirpath:
            super().load_state_dict(state_dict)
            return
        self.best_model_path = state_dict["best_model_path"]


def _copy_into(source: Path, fh: Any) -> None:
    with open(source, "rb") as src:
        shutil.copyfileobj(src, fh)
