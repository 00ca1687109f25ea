"""A training started by SLURM (``srun``) must have one task per device on each node: checked before set-up.

No SLURM here: the job step's variables are given as ``srun`` sets them (or as an ``sbatch`` script's own
process sees them, without ``srun``'s step variables).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import LAUNCH_VARIABLES, compose_config
from marsunits.errors import ConfigError
from marsunits.slurm_world import slurm_world_problem
from marsunits.training import run
from test_train import TINY


def _step(ntasks: int, per_node: int | None, nodes: int, **extra: str) -> dict[str, str]:
    """The variables ``srun`` gives one task of a job step (rank 0)."""
    return {
        **_batch(ntasks, per_node, nodes),
        "SLURM_STEP_ID": "0",
        "SLURM_STEPID": "0",
        "SLURM_STEP_NUM_TASKS": str(ntasks),
        **extra,
    }


def _batch(ntasks: int, per_node: int | None, nodes: int, **extra: str) -> dict[str, str]:
    """The variables an ``sbatch`` script's own process sees (``#SBATCH --ntasks``/``--ntasks-per-node``,
    ``--nodes``): the job's counts and rank 0, but none of the ``SLURM_STEP_*`` that ``srun`` sets."""
    env = {
        "SLURM_JOB_ID": "4242",
        "SLURM_NTASKS": str(ntasks),
        "SLURM_NNODES": str(nodes),
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "SLURM_JOB_NAME": "train",
        **extra,
    }
    if per_node is not None:
        env["SLURM_NTASKS_PER_NODE"] = str(per_node)
    return env


def test_the_readme_layouts_and_other_launchers_pass() -> None:
    # The README's command: srun --nodes 2 --ntasks-per-node 4 ... trainer.devices=4 trainer.num_nodes=2
    assert slurm_world_problem({"devices": 4, "num_nodes": 2}, _step(8, 4, 2)) is None
    # trainer=ddp's devices=auto: Lightning counts the visible devices and compares them itself.
    assert slurm_world_problem({"devices": "auto", "num_nodes": 1}, _step(4, 4, 1)) is None
    assert slurm_world_problem({"devices": [0, 1], "num_nodes": 1}, _step(2, 2, 1)) is None
    assert slurm_world_problem({"devices": "0,1", "num_nodes": 1}, _step(2, 2, 1)) is None
    # One GPU in a batch job (sbatch --ntasks=1, no --ntasks-per-node).
    assert slurm_world_problem({"devices": 1, "num_nodes": 1}, _step(1, None, 1)) is None
    # Not SLURM's processes: no SLURM, an interactive SLURM shell, torchrun inside a SLURM job.
    assert slurm_world_problem({"devices": 4, "num_nodes": 2}, {}) is None
    interactive = _step(1, None, 1, SLURM_JOB_NAME="interactive")
    assert slurm_world_problem({"devices": 4, "num_nodes": 1}, interactive) is None
    torchrun = _step(1, None, 1, TORCHELASTIC_RUN_ID="x")
    assert slurm_world_problem({"devices": 4, "num_nodes": 1}, torchrun) is None


@pytest.mark.parametrize(
    ("devices", "num_nodes", "ntasks", "per_node", "nodes", "named"),
    [
        # --ntasks 6 with --ntasks-per-node 4 on 2 nodes: Lightning's own checks pass, 2 of 8 shards unseen.
        (4, 2, 6, 4, 2, ["SLURM_NTASKS=6", "is 8", "--ntasks-per-node 4", "trainer.num_nodes=2"]),
        ("auto", 2, 6, 4, 2, ["SLURM_NTASKS=6", "is 8"]),
        # python train.py in an sbatch script with --ntasks=1 (no srun): one process, trained on 1/4.
        (4, 1, 1, None, 1, ["SLURM_NTASKS=1", "is 4", "srun --nodes 1 --ntasks-per-node 4"]),
        # --ntasks 8 alone: Lightning raised a RuntimeError with a traceback.
        (4, 2, 8, None, 2, ["without --ntasks-per-node", "trainer.devices=4"]),
        (2, 1, 4, 4, 1, ["--ntasks-per-node=4", "trainer.devices=4"]),
        (4, 1, 8, 4, 2, ["--nodes=2", "trainer.num_nodes=2"]),
    ],
)
def test_a_layout_that_does_not_fit_names_the_fix(
    devices: object, num_nodes: int, ntasks: int, per_node: int | None, nodes: int, named: list[str]
) -> None:
    problem = slurm_world_problem(
        {"devices": devices, "num_nodes": num_nodes}, _step(ntasks, per_node, nodes)
    )
    assert problem is not None
    for part in named:
        assert part in problem, (part, problem)


def test_training_refuses_such_a_layout_before_writing_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started as one SLURM task with trainer.devices=2, Lightning joined a world of 1 and split the data in
    2 shards: the run trained and validated on half the images and reported success."""
    for name, value in _step(1, None, 1, SLURM_JOB_ID="4242", SLURM_NODELIST="127.0.0.1").items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    run_dir = tmp_path / "run"
    overrides = [
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.sync_batchnorm=false",
    ]
    cfg = compose_config("train", run_dir, [*TINY, *overrides, "trainer.max_epochs=1"])
    with pytest.raises(ConfigError, match=r"SLURM_NTASKS=1.*trainer\.devices=2"):
        run(cfg)
    assert not (run_dir / "config.yaml").exists() and not (run_dir / "checkpoints").exists()


@pytest.mark.parametrize(
    ("trainer", "env"),
    [
        # sbatch --ntasks=4 (CPUs for the loaders) and `python train.py` in the script: one process.
        ({"devices": 1, "num_nodes": 1}, _batch(4, None, 1)),
        # sbatch --ntasks-per-node=4 --gres=gpu:1 (trainer=gpu's devices=1), no srun.
        ({"devices": 1, "num_nodes": 1, "strategy": "auto"}, _batch(4, 4, 1)),
        # trainer=cpu given as text on the command line.
        ({"devices": "1", "num_nodes": 1}, _step(2, None, 1)),
        # trainer=cpu trainer.devices=auto: one CPU device, as Lightning counts it.
        ({"accelerator": "cpu", "devices": "auto", "num_nodes": 1}, _step(4, None, 1)),
    ],
)
def test_a_single_device_trainer_in_a_job_of_several_tasks_is_not_refused(
    trainer: dict[str, object], env: dict[str, str]
) -> None:
    """Lightning runs devices=1 on one node as one process (SingleDeviceStrategy): it reads no rank or world
    size from SLURM and trains on every image, so the job's task counts do not matter. Such jobs trained
    before the layout check and were refused by it."""
    assert slurm_world_problem(trainer, env) is None


def test_a_second_task_of_a_single_device_run_is_refused() -> None:
    """srun -n 4 with trainer.devices=1: four copies of the same one-device run. Rank 0 goes on; the others
    stop, naming the fix."""
    env = {**_step(4, None, 1), "SLURM_PROCID": "2"}
    problem = slurm_world_problem({"devices": 1, "num_nodes": 1}, env)
    assert problem is not None and "SLURM_PROCID=2" in problem and "srun --ntasks 1" in problem
    # An explicit DDP strategy on one device is still checked as a world of processes.
    ddp = {"devices": 1, "num_nodes": 1, "strategy": "ddp"}
    assert slurm_world_problem(ddp, _step(4, None, 1)) is not None


def test_a_second_task_of_a_single_device_run_in_an_interactive_allocation_is_refused() -> None:
    """``srun -n 4 python train.py run_name=x`` inside ``salloc`` (job name ``interactive``/``bash``, which
    Lightning takes for no SLURM): four copies each training the same run; they were let through. Task 0, an
    interactive shell's own process, and torchrun's ranks inside such a job are not concerned."""
    one = {"devices": 1, "num_nodes": 1}
    for job in ("interactive", "bash"):
        env = {**_step(4, None, 1, SLURM_JOB_NAME=job), "SLURM_PROCID": "3"}
        problem = slurm_world_problem(one, env)
        assert problem is not None and "SLURM_PROCID=3" in problem, job
        assert slurm_world_problem(one, {**env, "SLURM_PROCID": "0"}) is None, job
        assert slurm_world_problem(one, {**env, "TORCHELASTIC_RUN_ID": "1"}) is None, job


DDP = {"_target_": "lightning.pytorch.strategies.DDPStrategy", "static_graph": True}


@pytest.mark.parametrize(
    ("trainer", "env"),
    [
        # #SBATCH --ntasks-per-node=4, then `python train.py trainer=ddp trainer.devices=4` (srun forgotten).
        ({"devices": 4, "num_nodes": 1, "strategy": DDP}, _batch(4, 4, 1)),
        # trainer=ddp's devices=auto on a node of 4 GPUs.
        ({"devices": "auto", "num_nodes": 1, "strategy": DDP}, _batch(4, 4, 1)),
        # Two nodes of 4: the script runs on the first node only.
        ({"devices": 4, "num_nodes": 2, "strategy": DDP}, _batch(8, 4, 2)),
    ],
)
def test_ddp_in_the_batch_script_itself_is_refused_naming_srun(
    trainer: dict[str, object], env: dict[str, str]
) -> None:
    """The layout fits, so it passed every check, and Lightning took the script's own process for rank 0 of
    SLURM_NTASKS and waited for ranks that nothing starts: a hang until the job's time limit, without a word.
    srun sets SLURM_STEP_ID for each task it starts; the batch script's step has none."""
    problem = slurm_world_problem(trainer, env)
    ntasks = env["SLURM_NTASKS"]
    assert problem is not None and f"SLURM_NTASKS={ntasks}" in problem and "no SLURM_STEP_ID" in problem
    assert "srun python train.py" in problem and "without trainer=ddp" in problem
    # The same layout started by srun: one task per device, each with its step variables.
    assert slurm_world_problem(trainer, {**env, "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": ntasks}) is None
    assert slurm_world_problem(trainer, {**env, "SLURM_STEPID": "0", "SLURM_STEP_NUM_TASKS": ntasks}) is None


def test_processes_the_batch_script_does_not_leave_waiting_are_not_refused() -> None:
    """Only a world of several processes with one started waits: a batch job of one task, torchrun in the
    script (Lightning prefers it to SLURM), an interactive job (Lightning ignores SLURM), and a one-device
    trainer (Lightning reads no rank) are let through."""
    ddp = {"devices": 4, "num_nodes": 1, "strategy": DDP}
    assert slurm_world_problem({"devices": 1, "num_nodes": 1, "strategy": DDP}, _batch(1, 1, 1)) is None
    assert slurm_world_problem(ddp, _batch(4, 4, 1, TORCHELASTIC_RUN_ID="x")) is None
    for job in ("bash", "interactive"):
        assert slurm_world_problem(ddp, _batch(4, 4, 1, SLURM_JOB_NAME=job)) is None, job
    assert slurm_world_problem({"devices": 1, "num_nodes": 1}, _batch(4, 4, 1)) is None
    # A step whose task count is not given (a step id without SLURM_STEP_NUM_TASKS): nothing is assumed.
    assert slurm_world_problem(ddp, {**_step(4, 4, 1), "SLURM_STEP_NUM_TASKS": ""}) is None


def test_a_step_of_fewer_tasks_than_slurm_ntasks_is_refused() -> None:
    """``srun --preserve-env -n 1`` (or salloc's interactive step) keeps the job's SLURM_NTASKS=4 while the
    step has one task: Lightning waited for 3 ranks that were never started."""
    ddp = {"devices": 4, "num_nodes": 1, "strategy": DDP}
    problem = slurm_world_problem(ddp, {**_step(4, 4, 1), "SLURM_STEP_NUM_TASKS": "1"})
    assert problem is not None and "SLURM_STEP_NUM_TASKS=1" in problem and "--preserve-env" in problem
    assert "this job step started 1 task (SLURM_STEP_NUM_TASKS=1)" in problem, problem  # not "1 task(s)"


def test_predict_layouts_are_judged_by_its_own_sharding_and_named_with_its_options() -> None:
    """predict.py's shards follow SLURM_NTASKS (Fabric's world), so ``-n 6`` on two nodes of 4 predicts every
    image once where training leaves 2 of 8 shards unseen; its messages name ``devices=``/``predict.py``,
    which its command line takes, not ``trainer.devices=``."""
    from marsunits.slurm_world import PREDICT, TRAIN

    sharded = {"devices": 4, "num_nodes": 2, "strategy": "ddp"}
    assert slurm_world_problem(sharded, _step(6, 4, 2), TRAIN) is not None
    assert slurm_world_problem(sharded, _step(6, 4, 2), PREDICT) is None
    misfit = slurm_world_problem({**sharded, "devices": 2}, _step(8, 4, 2), PREDICT)
    assert misfit is not None and "set devices=4" in misfit and "trainer." not in misfit
    waiting = slurm_world_problem(sharded, _batch(8, 4, 2), PREDICT)
    assert waiting is not None and "srun python predict.py ... devices=4" in waiting
    assert "prediction processes" in waiting and "trainer" not in waiting


@pytest.mark.parametrize(
    "env",
    [
        {},  # a workstation's shell
        {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"},  # Lightning's own default, set by hand
        {"MASTER_ADDR": "localhost"},
        {"MASTER_ADDR": "::1"},
        {"LOCAL_RANK": "0"},  # processes started by hand, but on this machine only
        # salloc --nodes 2, then python train.py in its shell: Lightning ignores an interactive job's SLURM.
        {**_batch(2, 1, 2), "SLURM_JOB_NAME": "interactive"},
    ],
)
def test_several_nodes_without_a_launcher_are_refused_naming_the_ways_to_start_them(
    env: dict[str, str],
) -> None:
    """``python train.py trainer=ddp trainer.devices=2 trainer.num_nodes=2`` on a workstation: Lightning's
    LightningEnvironment made a world of 4, started the 2 ranks of this machine with MASTER_ADDR=127.0.0.1 and
    waited for the other machine's 2, which nothing starts ("MEMBER: 1/4"), until the process-group timeout
    (30 minutes) or for ever. predict.py devices=2 num_nodes=2 hung the same way."""
    from marsunits.slurm_world import PREDICT, launch_problem, unlaunched_nodes_problem

    ddp = {"devices": 2, "num_nodes": 2, "strategy": DDP}
    problem = launch_problem(ddp, env)
    assert problem is not None and problem == unlaunched_nodes_problem(ddp, env)
    for part in (
        "trainer.num_nodes=2",
        "MASTER_ADDR=<first machine's address> MASTER_PORT=<free port> NODE_RANK=<0..1>",
        "srun --nodes 2",
        "torchrun --nnodes 2",
        "trainer.num_nodes=1",
    ):
        assert part in problem, (part, problem)
    assert "\n" not in problem
    assert "wait for the other machine's ranks, which nothing starts" in problem, problem
    sharded = {"devices": 2, "num_nodes": 3, "strategy": "ddp"}
    predict = launch_problem(sharded, env, PREDICT)
    assert predict is not None and "trainer" not in predict
    assert (
        " num_nodes=3 asks" in f" {predict}"
        and "NODE_RANK=<0..2>" in predict
        and "set num_nodes=1" in predict
    )
    assert "wait for the other 2 machines' ranks, which nothing starts" in predict, predict


@pytest.mark.parametrize(
    "env",
    [
        # Lightning's manual launch, the same command on each machine: the first machine and another one.
        {"MASTER_ADDR": "10.10.10.16", "MASTER_PORT": "29500", "NODE_RANK": "1", "WORLD_SIZE": "4"},
        {"MASTER_PORT": "29500", "NODE_RANK": "0", "WORLD_SIZE": "4"},  # Lightning: no MASTER_ADDR on node 0
        {"MASTER_ADDR": "gpu-node-01", "MASTER_PORT": "29500"},
        {"MASTER_ADDR": "192.168.1.20"},
        {"GROUP_RANK": "1", "MASTER_ADDR": "127.0.0.1"},  # two "machines" on one, for a test
        # torchrun, srun, jsrun and mpirun start the other machines' ranks themselves.
        {"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "4", "MASTER_ADDR": "127.0.0.1"},
        _step(4, 2, 2),
        {"JSM_NAMESPACE_SIZE": "4"},
        {"OMPI_COMM_WORLD_SIZE": "4"},
    ],
)
def test_several_nodes_that_a_launcher_or_a_manual_launch_joins_are_let_through(env: dict[str, str]) -> None:
    from marsunits.slurm_world import PREDICT, launch_problem

    ddp = {"devices": 2, "num_nodes": 2, "strategy": DDP}
    assert launch_problem(ddp, env) is None
    assert launch_problem({"devices": 2, "num_nodes": 2, "strategy": "ddp"}, env, PREDICT) is None


def test_one_node_or_a_trainer_with_its_own_cluster_environment_is_not_refused() -> None:
    from marsunits.slurm_world import launch_problem

    assert launch_problem({"devices": 2, "num_nodes": 1, "strategy": DDP}, {}) is None
    assert launch_problem({"devices": 1, "num_nodes": 1}, {}) is None
    # An interpolation left unresolved: the number of nodes is not known here.
    assert launch_problem({"devices": 2, "num_nodes": "${oc.env:NNODES}"}, {}) is None
    two = {"devices": 2, "num_nodes": 2, "strategy": DDP}
    environments = "lightning.fabric.plugins.environments"
    for own in (f"{environments}.KubeflowEnvironment", "my_cluster.Environment"):  # the latter: not judged
        plugins = [{"_target_": "marsunits.checkpoint_io.AtomicCheckpointIO"}, {"_target_": own}]
        assert launch_problem({**two, "plugins": plugins}, {}) is None, own
    strategy = {**DDP, "cluster_environment": {"_target_": f"{environments}.KubeflowEnvironment"}}
    assert launch_problem({**two, "strategy": strategy}, {}) is None
    # The project's checkpoint plugin, or Lightning's default environment named by hand, still waits.
    for plugin in ("marsunits.checkpoint_io.AtomicCheckpointIO", f"{environments}.LightningEnvironment"):
        assert launch_problem({**two, "plugins": [{"_target_": plugin}]}, {}) is not None, plugin


def test_training_on_several_nodes_without_a_launcher_is_refused_before_anything_is_set_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hang made an error: the set-up after the launch checks (checked_start) raises if it is reached."""
    from marsunits import training

    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)

    def set_up(*_: object) -> None:
        raise AssertionError("the run was set up")  # Lightning would then wait for the other machine

    monkeypatch.setattr(training, "checked_start", set_up)
    run_dir = tmp_path / "run"
    overrides = [
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.num_nodes=2",
        "trainer.sync_batchnorm=false",
    ]
    cfg = compose_config("train", run_dir, [*TINY, *overrides, "trainer.max_epochs=1"])
    with pytest.raises(ConfigError, match=r"trainer\.num_nodes=2 asks for 2 machines.*NODE_RANK=<0\.\.1>"):
        run(cfg)
    assert not (run_dir / "config.yaml").exists() and not (run_dir / "checkpoints").exists()
    # The same command on the first machine of a manual launch goes on to set up the run.
    monkeypatch.setenv("MASTER_ADDR", "10.10.10.16")
    monkeypatch.setenv("NODE_RANK", "0")
    with pytest.raises(AssertionError, match="the run was set up"):
        run(cfg)
