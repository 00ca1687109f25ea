"""The run's ``best.ckpt`` callback, which keeps the best model across a resume into a new run folder.

``ckpt_path=last`` without a ``run_name`` continues a run in a new folder (README, Training). Lightning's
``ModelCheckpoint`` then forgets the best score, because its folder changed ("The dirpath has changed ...
won't be reloaded"): the first validation of the resumed run was kept as ``best.ckpt`` whatever it scored,
and ``metrics.json`` described that model, worse than the earlier run's best. Here the earlier best
checkpoint is copied into the new folder and its score kept, so ``best.ckpt`` stays the best over the whole
run, as a resume in place (same ``run_name``) gives.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only

from marsunits.atomic import atomic_write

__all__ = ["RunModelCheckpoint"]

log = logging.getLogger(__name__)


class RunModelCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that carries the best checkpoint (file and score) into a new run folder on resume.

    Only for one best model (``save_top_k=1``) monitored under the same name; otherwise, and when the
    earlier best file is gone, Lightning's behaviour is unchanged.
    """

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
            super().load_state_dict(state_dict)
            return
        new_best = Path(str(self.dirpath)) / old_best.name
        if getattr(rank_zero_only, "rank", 0) == 0:  # every DDP rank loads the state: one copies
            atomic_write(new_best, lambda fh: _copy_into(old_best, fh))
        score = state_dict["best_model_score"]
        log.info(
            "resumed into %s: best checkpoint so far (%s %s) copied from %s",
            self.dirpath,
            self.monitor,
            float(score),
            old_best,
        )
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


def _copy_into(source: Path, fh: Any) -> None:
    with open(source, "rb") as src:
        shutil.copyfileobj(src, fh)
