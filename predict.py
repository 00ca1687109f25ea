"""Predict unit masks, overlays and contacts for a folder of rover images.

    python predict.py ckpt_path=model.ckpt input_dir=images/ output_dir=predictions/

Options: configs/predict.yaml (docs/prediction.md). Exit status: 0 success, 1 some inputs failed (see
manifest.csv), labels_dir was given and not one image could be scored against it (see metrics.json; the
outputs are written) or a bug ended the run (a traceback), 2 the run could not start or a full disk stopped
it (the one-line message says why), 130 / 143 stopped by Ctrl-C / SIGTERM (reports of what was done are
written). summary.json's exit_status and exit_reasons say which (docs/troubleshooting.md).
"""

from __future__ import annotations

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
from marsunits.errors import (
    quiet_interrupt_at_start,
    readable_log_handlers,
    recorded_for_torchrun,
    report_user_errors,
)


@hydra.main(config_path="configs", config_name="predict", version_base="1.3")
def main(cfg: DictConfig) -> None:
    readable_log_handlers()  # caf\xe9.png in predict.log and on the console, whatever hydra/job_logging is
    from marsunits.inference import run  # torch: seconds of start-up, inside the stop guard

    # Under torchrun, each rank's own error also goes to its agent's error file (the run's summary).
    sys.exit(report_user_errors(recorded_for_torchrun(lambda: run(cfg)), prog="predict.py"))


if __name__ == "__main__":
    with quiet_interrupt_at_start("predict.py"):  # Ctrl-C, SIGTERM at start-up: one line, 130 or 143
        note_another_copy_of_the_package(Path(__file__).resolve().parent, prog="predict.py")  # pip install .
        warn_sweeps_taken_as_one_value(sys.argv[1:], prog="predict.py")  # input_dir=a,b without -m
        sys.argv[1:] = quoted_path_overrides(home_expanded_overrides(sys.argv[1:]))  # Séítah, ~/runs
        exit_on_unknown_option(Path(__file__).resolve().parent / "configs", "predict", prog="predict.py")
        main()
