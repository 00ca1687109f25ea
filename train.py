"""Train a marsunits model: `python train.py [overrides]` (see configs/train.yaml and the README)."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from marsunits.cli_overrides import (
    exit_on_unknown_option,
    home_expanded_overrides,
    note_another_copy_of_the_package,
    quoted_path_overrides,
    warn_sweeps_taken_as_one_value,
)
from marsunits.errors import quiet_interrupt_at_start, readable_log_handlers
from marsunits.sweep_trials import end_sweep, run_trial, stopped_sweep


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    readable_log_handlers()  # caf\xe9.png in train.log and on the console, whatever hydra/job_logging is
    from marsunits.training import run  # torch and Lightning: seconds of start-up, inside the stop guard

    # A sweeper (hparams_search=optuna) optimises the value returned here. Under torchrun, each rank's own
    # error also goes to its agent's error file (the run's summary).
    return run_trial(lambda: run(cfg), cfg, prog="train.py")


if __name__ == "__main__":
    try:
        # a stop at start-up: one line, 130 or 143; a sweep stopped between trials says which finished
        with quiet_interrupt_at_start("train.py"), stopped_sweep("train.py"):
            note_another_copy_of_the_package(Path(__file__).resolve().parent, prog="train.py")  # pip install
            warn_sweeps_taken_as_one_value(sys.argv[1:], prog="train.py")  # run_name=a,b without -m
            sys.argv[1:] = quoted_path_overrides(home_expanded_overrides(sys.argv[1:]))  # Séítah, ~/runs
            exit_on_unknown_option(Path(__file__).resolve().parent / "configs", "train", prog="train.py")
            main()
    except BaseException as ended:
        end_sweep("train.py", ended)  # a grid ended early with failed trials: which; its status stands
        raise
    end_sweep("train.py")  # a grid whose trials failed: which, and status 1
