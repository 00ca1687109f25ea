"""Train a marsunits model: `python train.py [overrides]` (see configs/train.yaml and the README)."""

import math
from pathlib import Path

import hydra
from omegaconf import DictConfig

from marsunits.cli_overrides import exit_on_unknown_option
from marsunits.errors import report_user_errors
from marsunits.training import run


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = report_user_errors(lambda: run(cfg), prog="train.py")
    # A sweeper (hparams_search=optuna) optimises the value returned here; NaN marks a failed trial.
    name = cfg.get("optimized_metric")
    if not name:
        return None
    value = metrics.get(name)
    return float(value) if value is not None else math.nan


if __name__ == "__main__":
    exit_on_unknown_option(Path(__file__).resolve().parent / "configs", "train", prog="train.py")
    main()
