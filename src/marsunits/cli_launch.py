"""How a command was started, checked before Hydra starts: a training process that is one of several ranks
(torchrun, SLURM, machines started by hand) whose run folder is named after the clock
(:func:`unnamed_external_ranks`), and a command that runs a copy of the package other than its checkout's
(:func:`note_another_copy_of_the_package`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from marsunits.cli_argv import is_multirun, override_arguments
from marsunits.errors import readable
from marsunits.slurm_world import in_batch_step, launched_by_slurm, runs_as_one_process, slurm_world_problem

__all__ = ["note_another_copy_of_the_package", "unnamed_external_ranks"]


def unnamed_external_ranks(argv: Sequence[str], config_dir: Path) -> str | None:
    """The refusal of a training process started as one of several by torchrun or SLURM (``WORLD_SIZE``, or
    ``SLURM_NTASKS`` with ``SLURM_PROCID``), or on one of ``trainer.num_nodes`` > 1 machines launched by hand
    (``NODE_RANK`` or ``GROUP_RANK`` without ``WORLD_SIZE``, and no SLURM ranks that Lightning would read
    instead), whose run folder is named after the clock (the
    default ``run_name``); None otherwise.

    Each such process composes its config itself: a rank that started a second after rank 0 made a run
    folder of its own (its ``.hydra/`` record and ``train.log``), while checkpoints and metrics went to
    rank 0's. Lightning's own launcher is not concerned: its ranks get rank 0's ``hydra.run.dir``. Nor is an
    ``sbatch`` script's own process (``srun`` forgotten, :func:`~marsunits.slurm_world.in_batch_step`): it is
    one process whatever ``SLURM_NTASKS`` says, and a trainer of several is refused at train time, naming
    ``srun`` (asking it for a run_name first sent the user to fix the wrong thing).
    """
    world = os.environ.get("WORLD_SIZE", "")
    if not world and "SLURM_PROCID" in os.environ and not in_batch_step():
        world = os.environ.get("SLURM_NTASKS", "")
    # A multi-node run launched by hand, as Lightning documents it (the same command on each machine with
    # MASTER_ADDR and NODE_RANK), sets no WORLD_SIZE: each machine still composes its own run folder. Where
    # Lightning takes the ranks from SLURM, NODE_RANK is not what places this process (an sbatch script that
    # exports NODE_RANK=$SLURM_NODEID): the batch script's own process is refused at train time, naming srun.
    node_rank = os.environ.get("NODE_RANK", "").strip() or os.environ.get("GROUP_RANK", "").strip()
    by_hand = not world.strip() and bool(node_rank) and not launched_by_slurm(os.environ)
    if is_multirun(argv) or not (by_hand or (world.strip().isdigit() and int(world) >= 2)):
        return None
    keys = [a.split("=", 1)[0].lstrip("+") for a in argv if "=" in a]
    if any(k in ("run_name", "hydra.run.dir", "paths.output_dir") for k in keys):
        return None
    overrides = override_arguments(argv)
    try:
        with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
            raw = OmegaConf.to_container(compose("train", overrides=overrides), resolve=False)
    except Exception:  # noqa: BLE001 - a config that does not compose is Hydra's to report
        return None
    if "now:" not in str(raw.get("run_name")):  # type: ignore[union-attr]
        return None  # a fixed name from the config: every rank composes the same folder
    trainer = raw.get("trainer") if isinstance(raw, dict) else None
    if by_hand:
        num_nodes = trainer.get("num_nodes", 1) if isinstance(trainer, dict) else 1
        if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 2:
            return None  # one machine: Lightning's own processes get rank 0's folder
        return (
            f"this is machine NODE_RANK={node_rank} of a run of trainer.num_nodes={num_nodes} started by "
            "hand, and its run folder is named after the clock (run_name's default): each machine composes "
            "its own, so the machines' records and logs land in different folders. Add run_name=<name>, the "
            "same on every machine"
        )
    if not os.environ.get("WORLD_SIZE", "") and isinstance(trainer, dict) and runs_as_one_process(trainer):
        # SLURM's counts, but a trainer Lightning runs as one process (python train.py in an sbatch script
        # with --ntasks=4 for the loaders' CPUs): no other rank makes a folder. A second task of such a
        # job (srun -n 4, inside salloc too) is said as what it is, not as a missing run_name.
        return slurm_world_problem(trainer)
    return (
        f"this is one of {int(world)} training processes started by torchrun or SLURM, and its run folder "
        "is named after the clock (run_name's default): each process composes its own, and one that starts "
        "a second later writes to a folder of its own. Add run_name=<name>, the same for every process "
        "(e.g. run_name=ddp-$SLURM_JOB_ID)"
    )


def note_another_copy_of_the_package(checkout: Path, prog: str) -> str | None:
    """Say on stderr, in one line, that ``prog`` runs a copy of the package other than its checkout's
    ``src/marsunits``, and return that line (None, and nothing said, where it runs the checkout's own or the
    checkout has no ``src/marsunits``, or in a process that is not the run's global rank 0: said once a run,
    not once a DDP rank).

    train.py and predict.py import ``marsunits`` from wherever Python finds it. After a non-editable
    ``pip install .`` (or an editable install of another clone) that is a copy of the code taken at install
    time: a change under the checkout's src/ did nothing, and the configs of the checkout could name options
    the copy does not know, without a word about why. The run goes on: the copy may be the one meant.

    Args:
        checkout: The folder of the entry point (the repository root).
        prog: The entry point's name, for the message.
    """
    import marsunits
    from marsunits.run_folder_claim import is_global_rank_zero

    own = checkout / "src" / "marsunits"
    running = Path(marsunits.__file__).resolve().parent
    if not (own / "__init__.py").is_file() or running == own.resolve():
        return None
    if not is_global_rank_zero():  # a DDP/torchrun rank started again: the run's rank 0 has said it
        return None
    line = readable(
        f"{prog}: note: running the marsunits package at {running}, not this checkout's {own}: changes "
        f"under {own} are not used until it is installed again; `pip install -e {checkout}` installs the "
        "checkout itself, so they take effect at once"
    )
    print(line, file=sys.stderr)
    return line
