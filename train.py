"""Train a marsunits model: `python train.py [overrides]` (see configs/train.yaml and the README)."""

import hydra
from omegaconf import DictConfig

from marsunits.errors import report_user_errors
from marsunits.training import run


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    report_user_errors(lambda: run(cfg), prog="train.py")


if __name__ == "__main__":
    main()
