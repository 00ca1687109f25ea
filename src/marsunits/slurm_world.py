"""The process layout of a training started by SLURM (``srun``), checked before anything is set up.

Under ``srun`` Lightning's ``SLURMEnvironment`` takes the world size from ``SLURM_NTASKS`` and each rank from
``SLURM_PROCID``, but splits the data (``DistributedSampler``) into ``trainer.devices * trainer.num_nodes``
shards. Lightning checks ``--ntasks-per-node`` against ``devices`` and ``--nodes`` against ``num_nodes``
(when it launches, after the data and the W&B run were set up), not the total: a job with
``--nodes 2 --ntasks-per-node 4 --ntasks 6`` (or ``-n 6``) passed both checks and trained 6 processes on 6 of
8 shards, a quarter of the images unseen every epoch and unscored at every validation, without a word
(Lightning issue #20391). :func:`slurm_world_problem` names such a layout and the fix, on every rank, before
any of them waits for the others.

Lightning takes any process that sees ``SLURM_NTASKS`` for one of ``srun``'s tasks, the ``sbatch`` script's
own process too: ``python train.py trainer=ddp trainer.devices=4`` in a script of ``--ntasks-per-node=4``
(``srun`` forgotten) passed every layout check and waited, as rank 0 of 4, for three ranks nothing starts,
without a word until the time limit. ``srun`` sets ``SLURM_STEP_ID`` (and the older ``SLURM_STEPID``) and
``SLURM_STEP_NUM_TASKS`` for every task it starts; the batch script's step gets neither (Slurm's
``env_array_for_step``, and ``setup_env``, which writes no step id for the batch step):
:func:`unstarted_ranks_problem`.

``predict.py`` is checked here too (:data:`PREDICT`, from
:func:`marsunits.inference.distributed.launch_problem`): Fabric reads the same variables, with the same checks
and hangs, but its shards are ``todo[rank::SLURM_NTASKS]``, so a total of tasks other than devices x num_nodes
still predicts every image once and is let through.

Outside any launcher, ``num_nodes`` > 1 hangs as well (:func:`unlaunched_nodes_problem`): Lightning's
``LightningEnvironment`` makes a world of devices x num_nodes, starts ``devices`` processes on this machine
with ``MASTER_ADDR=127.0.0.1`` and waits for the other nodes' ranks, which nothing starts. Both entry points
ask :func:`launch_problem`, which is :func:`slurm_world_problem` or that.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import ListConfig

from marsunits.errors import counted

__all__ = [
    "PREDICT",
    "TRAIN",
    "EntryPoint",
    "in_batch_step",
    "launch_problem",
    "launched_by_slurm",
    "runs_as_one_process",
    "second_task_problem",
    "slurm_world_problem",
    "started_alone",
    "unlaunched_nodes_problem",
    "unstarted_ranks_problem",
]


@dataclass(frozen=True)
class EntryPoint:
    """How the checks' messages spell an entry point that Lightning runs under SLURM, and how it shards.

    Attributes:
        script: The script to put after ``srun python`` (``train.py``).
        prefix: What comes before ``devices=``/``num_nodes=`` on its command line (``trainer.``).
        work: What its processes do, in "Lightning waits for 4 <work> processes".
        one_process: The fix that runs it as one process, for a message's "or ...".
        shards_by_ntasks: Whether its shards follow the world size Lightning takes from ``SLURM_NTASKS``
            (prediction's ``todo[rank::world_size]``, with Fabric's rank ``SLURM_PROCID``): a total of tasks
            other than devices x num_nodes then still gives every item to one process, once. Training's
            ``DistributedSampler`` splits into devices x num_nodes shards whatever the world size.
    """

    script: str
    prefix: str
    work: str
    one_process: str
    shards_by_ntasks: bool


#: ``train.py``: ``trainer.devices``/``trainer.num_nodes``, shards of ``DistributedSampler``.
TRAIN = EntryPoint("train.py", "trainer.", "training", "train as one process without trainer=ddp", False)
#: ``predict.py``: ``devices``/``num_nodes``, sharded by Fabric's world size (:mod:`marsunits.inference`).
PREDICT = EntryPoint(
    "predict.py", "", "prediction", "predict in this one process with devices=1 num_nodes=1", True
)


def launched_by_slurm(environ: Mapping[str, str]) -> bool:
    """Whether Lightning takes its ranks from SLURM: ``SLURM_NTASKS`` set outside an interactive shell
    (job name ``bash`` or ``interactive``: Lightning's ``SLURMEnvironment.detect``), and not torchrun,
    which Lightning prefers inside SLURM (``TORCHELASTIC_RUN_ID``)."""
    if "TORCHELASTIC_RUN_ID" in environ:
        return False
    return "SLURM_NTASKS" in environ and environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")


def _count(value: Any) -> int | None:
    """Processes per node that ``trainer.devices`` asks for, as Lightning counts them; None for ``auto`` or
    ``-1`` (all visible devices: Lightning compares its count with ``--ntasks-per-node`` itself)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, (list, tuple, ListConfig)):
        return len(value)
    if isinstance(value, str):
        text = value.strip()
        if "," in text:
            return len([part for part in text.split(",") if part.strip()])
        if text.isdigit() and int(text) > 0:
            return int(text)
    return None


def _one_process(trainer_cfg: Mapping[str, Any], devices: int | None, num_nodes: int) -> bool:
    """Whether Lightning runs this trainer as one process on one device (``SingleDeviceStrategy``): one device
    on one node and no strategy named. It then reads no rank or world size from SLURM and samples every
    image, whatever the job's task counts: ``python train.py`` in an ``sbatch`` script that asked for
    ``--ntasks=4`` (CPUs for the data loaders, as some clusters hand them out) trains as on a workstation."""
    strategy = trainer_cfg.get("strategy", "auto")
    # devices=auto on the CPU is one device (Lightning's CPUAccelerator.auto_device_count).
    on_cpu = trainer_cfg.get("accelerator") == "cpu" and trainer_cfg.get("devices") in ("auto", None)
    return (devices == 1 or on_cpu) and num_nodes == 1 and (strategy is None or strategy == "auto")


def runs_as_one_process(trainer_cfg: Mapping[str, Any]) -> bool:
    """Whether Lightning runs the ``trainer`` config as one process on one device, whatever SLURM's task
    counts say (:func:`_one_process` on the config's ``devices`` and ``num_nodes``). False where that is not
    known: a ``num_nodes`` that is no whole number, such as an interpolation of a config composed without
    resolving (``${oc.env:SLURM_NNODES}``), which may well be 2 or more."""
    num_nodes = trainer_cfg.get("num_nodes", 1)
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int):
        return False
    return _one_process(trainer_cfg, _count(trainer_cfg.get("devices", 1)), num_nodes)


def second_task_problem(environ: Mapping[str, str] | None = None) -> str | None:
    """For a trainer of one process on one device: why this process, a task after the first of a SLURM job
    step (``SLURM_PROCID`` > 0: ``srun -n 4``, four copies of one run side by side), must not train, or None.
    Said whatever the job's name: in an interactive allocation Lightning ignores SLURM, and the copies still
    each train the same run on their own."""
    env = os.environ if environ is None else environ
    procid, ntasks = _int(env, "SLURM_PROCID"), _int(env, "SLURM_NTASKS")
    if "TORCHELASTIC_RUN_ID" in env or procid is None or procid < 1:
        return None
    return (
        f"this is task {procid} of {ntasks or '?'} that SLURM started (SLURM_PROCID={procid}), but the "
        "trainer runs one process on one device (trainer.devices=1, trainer.num_nodes=1), so every "
        "task would train the same run on its own; start one task (srun --ntasks 1, or python "
        "train.py without srun), or train on several devices with trainer=ddp trainer.devices=<n>"
    )


def _int(environ: Mapping[str, str], name: str) -> int | None:
    text = environ.get(name, "").strip()
    return int(text) if text.isdigit() else None


def in_batch_step(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process belongs to a SLURM job (``SLURM_JOB_ID``) but to no step that ``srun`` started:
    neither ``SLURM_STEP_ID`` nor ``SLURM_STEPID``, which ``srun`` sets for each of its tasks. That is the
    ``sbatch`` script's own process (and ``salloc``'s shell on the login node): one process, whatever
    ``SLURM_NTASKS`` says."""
    env = os.environ if environ is None else environ
    return "SLURM_JOB_ID" in env and "SLURM_STEP_ID" not in env and "SLURM_STEPID" not in env


def started_alone(environ: Mapping[str, str] | None = None) -> bool:
    """Whether SLURM started this process as the one process of its step, whatever ``SLURM_NTASKS`` says: the
    ``sbatch`` script's own process (:func:`in_batch_step`) or a step of one task (``SLURM_STEP_NUM_TASKS=1``:
    ``srun --preserve-env``/``-E -n 1``, which keeps the job's ``SLURM_NTASKS``, or ``salloc``'s interactive
    step). Nothing else will start beside it."""
    env = os.environ if environ is None else environ
    return in_batch_step(env) or _int(env, "SLURM_STEP_NUM_TASKS") == 1


def unstarted_ranks_problem(
    environ: Mapping[str, str] | None = None, entry: EntryPoint = TRAIN, devices: object = None
) -> str | None:
    """For a run of several processes that Lightning takes from SLURM (:func:`launched_by_slurm`): why it
    would wait forever, or None. Lightning makes the world ``SLURM_NTASKS`` processes and this one rank
    ``SLURM_PROCID``, but fewer were started: the ``sbatch`` script's own process (:func:`in_batch_step`,
    ``srun`` forgotten) is one, and a step of ``srun --preserve-env``/``-E`` (or ``salloc``'s interactive
    step) has ``SLURM_STEP_NUM_TASKS`` tasks while ``SLURM_NTASKS`` keeps the job's count. None where the
    step's task count is not known (a step id without ``SLURM_STEP_NUM_TASKS``): nothing is assumed.

    Args:
        environ: The environment to read (default: ``os.environ``).
        entry: The script the message names (:data:`TRAIN`, :data:`PREDICT`).
        devices: Its ``devices`` value, for the ``srun`` line the message gives (default ``<devices>``).
    """
    env = os.environ if environ is None else environ
    ntasks = _int(env, "SLURM_NTASKS")
    if ntasks is None or ntasks < 2 or not launched_by_slurm(env):
        return None
    count = devices if devices is not None else "<devices>"
    srun_line = f"srun python {entry.script} ... {entry.prefix}devices={count}"
    if in_batch_step(env):
        return (
            f"this process is the batch script's own, not a task that srun started (no SLURM_STEP_ID), but "
            f"SLURM_NTASKS={ntasks} makes Lightning wait for {ntasks} {entry.work} processes, "
            f"{ntasks - 1} of which nothing starts: it would hang until the time limit. Put srun in front of "
            f"the command ({srun_line}, one task per device: --ntasks-per-node {count}), or "
            f"{entry.one_process}. (Started by srun inside a container that passes on only some SLURM "
            "variables? Pass SLURM_STEP_ID through too.)"
        )
    started = _int(env, "SLURM_STEP_NUM_TASKS")
    if started is None or started >= ntasks:
        return None
    return (
        f"this job step started {counted(started, 'task')} (SLURM_STEP_NUM_TASKS={started}) but "
        f"SLURM_NTASKS={ntasks} (the job's count, kept by srun --preserve-env/-E or an interactive step) "
        f"makes Lightning wait for {ntasks} {entry.work} processes: it would hang until the time limit. "
        f"Start the step with srun --ntasks-per-node {count} without --preserve-env/-E ({srun_line}), or "
        f"{entry.one_process}"
    )


def slurm_world_problem(
    trainer_cfg: Mapping[str, Any], environ: Mapping[str, str] | None = None, entry: EntryPoint = TRAIN
) -> str | None:
    """Why the SLURM job step this process belongs to does not fit ``trainer.devices`` and
    ``trainer.num_nodes`` (the message names the values and the fix), or None: not started by ``srun``, or
    one task per device on each of ``num_nodes`` nodes, or a trainer of one process on one device (Lightning
    then ignores the job's task counts; only a second task of such a run, ``SLURM_PROCID`` > 0, is refused,
    in an interactive allocation too: :func:`second_task_problem`). A layout that fits is still refused where
    fewer processes were started than ``SLURM_NTASKS``, the ``sbatch`` script's own process above all
    (:func:`unstarted_ranks_problem`): Lightning would wait for the others forever.

    Args:
        trainer_cfg: The ``trainer`` config node (``devices``, ``num_nodes``, ``strategy``), or a mapping of
            the same keys for another entry point (``predict.py``: ``strategy="ddp"``, which Fabric runs).
        environ: The environment to read (default: ``os.environ``).
        entry: The script whose options the message names and whose sharding it judges: for
            :data:`PREDICT`, whose shards follow ``SLURM_NTASKS``, a total of tasks other than
            devices x num_nodes (``-n 6`` on two nodes of 4) predicts every image once and is let through.
    """
    env = os.environ if environ is None else environ
    devices = _count(trainer_cfg.get("devices", 1))
    num_nodes = trainer_cfg.get("num_nodes", 1)
    num_nodes = num_nodes if isinstance(num_nodes, int) and num_nodes > 0 else 1
    if runs_as_one_process(trainer_cfg):  # interactive allocations too: the copies still train
        return second_task_problem(env)
    if not launched_by_slurm(env):
        return None
    ntasks = _int(env, "SLURM_NTASKS")
    if ntasks is None:
        return None
    per_node, nnodes = _int(env, "SLURM_NTASKS_PER_NODE"), _int(env, "SLURM_NNODES")
    per_device = devices or per_node
    opt = entry.prefix
    fix = (
        f"start one task per device on each node: srun --nodes {num_nodes} --ntasks-per-node "
        f"{per_device or '<devices>'} (no --ntasks/-n) with {opt}devices={per_device or '<devices>'} "
        f"{opt}num_nodes={num_nodes}, the same numbers in the #SBATCH lines"
    )
    if ntasks > 1 and per_node is None:
        return (
            f"SLURM started {ntasks} tasks (SLURM_NTASKS={ntasks}) without --ntasks-per-node, which "
            f"Lightning needs to place one process per device; {fix}"
        )
    if devices is not None and per_node is not None and devices != per_node:
        return (
            f"SLURM starts {per_node} tasks per node (--ntasks-per-node={per_node}) but "
            f"{opt}devices={trainer_cfg.get('devices')} asks for {devices} processes per node; set "
            f"{opt}devices={per_node}, or {fix}"
        )
    if nnodes is not None and nnodes != num_nodes:
        return (
            f"the SLURM job has {nnodes} nodes (--nodes={nnodes}) but {opt}num_nodes={num_nodes}; set "
            f"{opt}num_nodes={nnodes}, or {fix}"
        )
    if not entry.shards_by_ntasks and per_device is not None and ntasks != per_device * num_nodes:
        return (
            f"SLURM started {ntasks} tasks in all (SLURM_NTASKS={ntasks}, e.g. from --ntasks/-n), but "
            f"{opt}devices={per_device} x {opt}num_nodes={num_nodes} is {per_device * num_nodes}: "
            f"Lightning would split each epoch's images into {per_device * num_nodes} shards for {ntasks} "
            f"processes and leave the others' shards untrained and unscored (or stop on a rank it cannot "
            f"place); {fix}"
        )
    return unstarted_ranks_problem(env, entry, per_device)


#: Variables of launchers other than SLURM that Lightning takes ranks from: torchrun (``TORCHELASTIC_RUN_ID``,
#: ``TorchElasticEnvironment``), IBM's jsrun (``JSM_NAMESPACE_SIZE``, ``LSFEnvironment``) and mpirun/mpiexec
#: (Open MPI's ``OMPI_COMM_WORLD_SIZE``, MPICH's ``PMI_SIZE``, PMIx's ``PMIX_RANK``; ``MPIEnvironment``). Any
#: one of them lets a multi-node run through: the launcher, not this machine alone, makes the world.
_OTHER_LAUNCHERS = (
    "TORCHELASTIC_RUN_ID",
    "JSM_NAMESPACE_SIZE",
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "PMIX_RANK",
)


def _loopback(address: str) -> bool:
    """Whether ``MASTER_ADDR`` names this machine only (``localhost``, ``127.x``, ``::1``, ``0.0.0.0``,
    empty): no other machine reaches rank 0 there."""
    host = address.strip().strip("[]").lower()
    if host in ("", "localhost", "ip6-localhost", "ip6-loopback") or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a host name: the first node's, for all we know
    return ip.is_loopback or ip.is_unspecified


def _own_cluster_environment(trainer_cfg: Mapping[str, Any]) -> bool:
    """Whether the trainer names a cluster environment of its own, which Lightning then uses instead of
    detecting one: a ``ClusterEnvironment`` among ``plugins`` (the project's ``AtomicCheckpointIO`` is none;
    ``LightningEnvironment``, the one that waits, counts as none either) or a strategy's
    ``cluster_environment``. A plugin whose ``_target_`` cannot be imported counts as one: it
    is not judged here (Hydra names it when the trainer is built)."""
    strategy = trainer_cfg.get("strategy")
    if isinstance(strategy, Mapping) and strategy.get("cluster_environment") is not None:
        return True
    plugins = trainer_cfg.get("plugins")
    if plugins is None:
        return False
    if isinstance(plugins, (str, Mapping)) or not isinstance(plugins, (list, tuple, ListConfig)):
        plugins = [plugins]
    from lightning.fabric.plugins.environments import ClusterEnvironment, LightningEnvironment

    for plugin in plugins:
        if isinstance(plugin, ClusterEnvironment) and type(plugin) is not LightningEnvironment:
            return True
        target = plugin.get("_target_") if isinstance(plugin, Mapping) else None
        if not isinstance(target, str):
            continue
        try:
            from hydra.utils import get_class

            cls = get_class(target)
        except Exception:  # noqa: BLE001 - any failure to import: not ours to judge
            return True
        if isinstance(cls, type) and issubclass(cls, ClusterEnvironment) and cls is not LightningEnvironment:
            return True
    return False


def unlaunched_nodes_problem(
    trainer_cfg: Mapping[str, Any], environ: Mapping[str, str] | None = None, entry: EntryPoint = TRAIN
) -> str | None:
    """Why a run of ``num_nodes`` > 1 that no launcher started would wait for ever, or None.

    Without srun (:func:`launched_by_slurm`), torchrun, jsrun or mpirun (:data:`_OTHER_LAUNCHERS`) Lightning
    takes its ranks from ``LightningEnvironment``: a world of devices x num_nodes, this machine node
    ``NODE_RANK`` (default 0), rank 0 at ``MASTER_ADDR`` (default ``127.0.0.1``). It starts ``devices``
    processes here and waits for the other nodes' ranks: ``python train.py trainer=ddp trainer.devices=2
    trainer.num_nodes=2`` on a workstation hung at "MEMBER: 1/4" until the process-group timeout (30
    minutes), and ``predict.py devices=2 num_nodes=2`` the same. A manual multi-node launch, as Lightning
    documents it (the same command on each node with ``MASTER_ADDR``, ``MASTER_PORT`` and ``NODE_RANK``), is
    let through: ``NODE_RANK`` (or torch's ``GROUP_RANK``) set, or ``MASTER_ADDR`` naming another machine than
    this one (:func:`_loopback`). So are a trainer given a cluster environment of its own
    (:func:`_own_cluster_environment`), ``num_nodes`` = 1, and a ``num_nodes`` that is no whole number (not
    known here).

    Args:
        trainer_cfg: The ``trainer`` config node, or the same keys for ``predict.py`` (``devices``,
            ``num_nodes``).
        environ: The environment to read (default: ``os.environ``).
        entry: The script whose options the message names (:data:`TRAIN`, :data:`PREDICT`).
    """
    env = os.environ if environ is None else environ
    num_nodes = trainer_cfg.get("num_nodes", 1)
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 2:
        return None
    if _own_cluster_environment(trainer_cfg):
        return None
    if launched_by_slurm(env) or any(name in env for name in _OTHER_LAUNCHERS):
        return None
    if env.get("NODE_RANK", "").strip() or env.get("GROUP_RANK", "").strip():
        return None
    address = env.get("MASTER_ADDR")
    if address is not None and not _loopback(address):
        return None
    opt = entry.prefix
    devices = trainer_cfg.get("devices", 1)
    here = f"MASTER_ADDR={address} is this machine" if address is not None else "no MASTER_ADDR"
    others = "machine's" if num_nodes == 2 else f"{num_nodes - 1} machines'"
    return (
        f"{opt}num_nodes={num_nodes} asks for {num_nodes} machines, but nothing started this process as one "
        f"of them (no srun, torchrun or mpirun; {here}, no NODE_RANK): Lightning would start the "
        f"{opt}devices={devices} {entry.work} process(es) of this machine only and wait for the other "
        f"{others} ranks, which nothing starts, for 30 minutes (the process-group "
        f"timeout) or for ever. Run the same command on each machine with "
        f"MASTER_ADDR=<first machine's address> MASTER_PORT=<free port> NODE_RANK=<0..{num_nodes - 1}> "
        f"(0 on the first), or start it with srun "
        f"--nodes {num_nodes} or torchrun --nnodes {num_nodes}, or set {opt}num_nodes=1 to use this "
        "machine alone"
    )


def launch_problem(
    trainer_cfg: Mapping[str, Any], environ: Mapping[str, str] | None = None, entry: EntryPoint = TRAIN
) -> str | None:
    """Why the processes of this run would not meet, or None: the SLURM job step does not fit
    (:func:`slurm_world_problem`), or several nodes were asked for without a launcher to start the others
    (:func:`unlaunched_nodes_problem`). Asked by ``train.py`` and ``predict.py`` before anything is set up."""
    env = os.environ if environ is None else environ
    return slurm_world_problem(trainer_cfg, env, entry) or unlaunched_nodes_problem(trainer_cfg, env, entry)
