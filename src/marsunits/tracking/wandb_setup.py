"""Set up and close the experiment loggers of a training run, with W&B that also works with no network.

:func:`prepare_loggers` instantiates ``cfg.logger`` (CSV, TensorBoard, W&B, any combination), and for W&B:

* decides the mode: ``mode: auto`` (the default, or ``WANDB_MODE`` unset) means *online* when an API key and
  the W&B server are available, else *offline*, announced in ONE line. ``online`` falls back the same way;
  ``offline`` and ``disabled`` are taken as they are (``disabled`` drops the W&B logger);
* decides ``log_model`` (upload checkpoints as artifacts): ``auto`` = on online, off offline; ``true``
  or ``"all"`` are honoured offline too (stored with the offline run, uploaded by ``wandb sync``);
* resumes the run stored in a checkpoint (``ckpt_path``), so a resumed training continues the same W&B run;
* starts the run eagerly, so a failing login falls back to offline before training starts, not after.

Then it records the run's context with every logger: the resolved config, git commit and dirty flag, dataset
and class map (:func:`run_context`).

:func:`finish_loggers` closes everything and prints where each run is, with the exact ``wandb sync`` command
for an offline W&B run.

The checks of the W&B settings that need no logger (:func:`checked_wandb_mode`, :func:`check_wandb_staging`,
:func:`check_wandb_folder`, :func:`check_wandb_modes`, :data:`WANDB_MODES`) live in
:mod:`marsunits.tracking.wandb_checks`, which imports no Lightning (``predict.py`` and ``train.py`` run them
before Hydra starts); they are importable from here too.
"""

from __future__ import annotations

import configparser
import contextlib
import http.client
import netrc
import os
import shlex
import shutil
import socket
import ssl
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from marsunits.constants import CLASS_NAMES
from marsunits.errors import TerminatedError, counted, readable
from marsunits.tracking.git_info import git_info
from marsunits.tracking.wandb_checks import WANDB_MODES as WANDB_MODES
from marsunits.tracking.wandb_checks import check_wandb_folder as check_wandb_folder
from marsunits.tracking.wandb_checks import check_wandb_modes as check_wandb_modes
from marsunits.tracking.wandb_checks import check_wandb_staging as check_wandb_staging
from marsunits.tracking.wandb_checks import checked_wandb_mode as checked_wandb_mode
from marsunits.tracking.wandb_checks import is_wandb_node, resolve_log_model
from marsunits.user_paths import expand_home

#: The server of W&B releases before 0.31 (:func:`wandb_default_base_url` asks the installed one).
DEFAULT_WANDB_HOST = "https://api.wandb.ai"


def wandb_default_base_url() -> str:
    """The server the installed W&B logs to when nothing chooses another: its ``Settings.base_url`` default
    (``https://api.forge.coreweave.com`` from wandb 0.31, ``https://api.wandb.ai`` before), where ``wandb
    login`` also stores the key in the netrc file. Hard-wiring api.wandb.ai found no key after a ``wandb
    login`` with 0.31, so every run went offline."""
    try:
        from wandb.sdk.wandb_settings import Settings

        default = getattr(Settings.model_fields.get("base_url"), "default", None)
    except Exception:  # noqa: BLE001 - another W&B layout: the long-standing server
        default = None
    return default if isinstance(default, str) and default.startswith("http") else DEFAULT_WANDB_HOST


def _rank() -> int:
    """Global rank of this process (Lightning sets ``rank_zero_only.rank`` from the launcher)."""
    return int(getattr(rank_zero_only, "rank", 0))


def announce(line: str) -> None:
    """Print one status line for the user (rank zero only, so DDP does not repeat it), a byte of a file name
    that is not UTF-8 written ``\\xNN`` (:func:`~marsunits.errors.readable`): on a strict UTF-8 console (a
    terminal in ``en_US.UTF-8``) the line naming ``metrics.csv`` in a Latin-1 run folder raised
    UnicodeEncodeError after training, and the run ended with status 2 and no ``metrics.json``."""
    if _rank() == 0:
        print(f"[marsunits] {readable(line)}", flush=True)


def _wandb_settings() -> dict[str, str]:
    """The ``[default]`` section of W&B's global settings file (``$WANDB_CONFIG_DIR/settings``, else
    ``~/.config/wandb/settings``), where ``wandb login --host URL`` records ``base_url``; {} without one."""
    folder = os.environ.get("WANDB_CONFIG_DIR", "").strip()
    path = (expand_home(folder) if folder else Path.home() / ".config" / "wandb") / "settings"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return {}
    return dict(parser["default"]) if parser.has_section("default") else {}


def wandb_base_url() -> str:
    """The W&B server's URL: ``WANDB_BASE_URL``, else the ``base_url`` that ``wandb login --host`` stored in
    W&B's settings file (a self-hosted server was always taken for api.wandb.ai), else the installed W&B's
    default (:func:`wandb_default_base_url`)."""
    url = (
        os.environ.get("WANDB_BASE_URL", "").strip()
        or _wandb_settings().get("base_url", "").strip()
        or wandb_default_base_url()
    )
    try:  # a CoreWeave Forge proxy address (https://forge.coreweave.com/api/wandb) is its api. host to W&B
        from wandb.sdk.lib.urls import normalize_forge_base_url

        return str(normalize_forge_base_url(url))
    except Exception:  # noqa: BLE001 - an older W&B, or an address W&B refuses itself when it starts
        return url


def _upstream_base_url(url: str) -> str | None:
    """The W&B server behind a CoreWeave Forge address (``api.wandb.ai`` behind ``api.forge.coreweave.com``),
    whose netrc key W&B 0.31 also takes (a ``wandb login`` of an earlier release stored it there); None
    for other servers or an older W&B."""
    try:
        from wandb.sdk.lib.urls import forge_upstream_url

        upstream = str(forge_upstream_url(url))
    except Exception:  # noqa: BLE001 - an older W&B: no Forge
        return None
    return upstream if upstream != url else None


def wandb_host() -> str:
    """Host name of the W&B server in use (:func:`wandb_base_url`)."""
    return (
        urlparse(wandb_base_url()).hostname or urlparse(wandb_default_base_url()).hostname or "api.wandb.ai"
    )


def wandb_credentials_available(host: str | None = None) -> bool:
    """Whether W&B can log in without asking: an API key in the environment or in the netrc file.

    Checks ``WANDB_API_KEY``, ``WANDB_IDENTITY_TOKEN_FILE`` and a ``machine <host>`` entry with a password in
    ``$NETRC`` or ``~/.netrc`` (where ``wandb login`` stores the key). Read with the standard ``netrc`` module
    rather than W&B's private auth helpers, whose location changes between W&B releases.

    Args:
        host: Server host name; default :func:`wandb_host`.
    """
    if os.environ.get("WANDB_API_KEY", "").strip() or _wandb_settings().get("api_key", "").strip():
        return True
    token_file = os.environ.get("WANDB_IDENTITY_TOKEN_FILE", "").strip()
    if token_file and Path(token_file).is_file():
        return True
    path = expand_home(os.environ.get("NETRC") or Path.home() / ".netrc")
    if not path.is_file():
        return False
    # wandb login stores the key under the server's host:port when the URL has a port.
    base = wandb_base_url()
    urls = [urlparse(base)] + [urlparse(u) for u in (_upstream_base_url(base),) if u]
    machines = [host] if host else [m for url in urls for m in (url.netloc, url.hostname) if m]
    try:
        entries = netrc.netrc(str(path))
    except (netrc.NetrcParseError, OSError, UnicodeDecodeError):
        return False
    return any((entry := entries.authenticators(m)) and entry[2] for m in machines)


def wandb_proxy(url: str | None = None) -> tuple[str, int] | None:
    """The proxy that requests to the W&B server go through, as ``(host, port)``, or None: W&B's own proxy
    setting for the server URL's scheme (``WANDB_HTTPS_PROXY`` for https, ``WANDB_HTTP_PROXY`` for http),
    which wandb uses for every request to its server; else the environment's (``HTTPS_PROXY``/``https_proxy``
    for https, ``HTTP_PROXY`` for http), none for a server that ``NO_PROXY`` names (``host``,
    ``host:port``, or a network holding its address, ``10.0.0.0/8``) or on this machine (``localhost``, a
    loopback address). (Probed directly, a network that reaches W&B only through ``WANDB_HTTPS_PROXY`` read
    as "no network", and every run went offline.)

    These are the settings wandb's service reads (Go's proxy-from-environment rules): it never uses
    ``ALL_PROXY`` and never proxies a loopback server, so probing such a proxy (a SOCKS tunnel that is down,
    a corporate proxy beside a W&B Server on ``http://localhost:8080``) sent runs offline that W&B would have
    logged online directly.

    Args:
        url: The server's URL; default :func:`wandb_base_url`.
    """
    import ipaddress
    from urllib.request import getproxies_environment, proxy_bypass_environment  # type: ignore[attr-defined]

    server = urlparse(url or wandb_base_url())
    proxy = os.environ.get("WANDB_HTTP_PROXY" if server.scheme == "http" else "WANDB_HTTPS_PROXY")
    if proxy:
        return _proxy_address(proxy)
    proxies = getproxies_environment()
    proxy = proxies.get(server.scheme or "https")
    if not proxy or not server.hostname or server.hostname.lower() == "localhost":
        return None
    try:
        address = ipaddress.ip_address(server.hostname)
    except ValueError:  # a host name, not an address
        address = None
    if address is not None and address.is_loopback:
        return None
    if address is not None and _in_no_proxy_network(address, proxies.get("no", "")):
        return None
    try:
        netloc = f"{server.hostname}:{server.port or (80 if server.scheme == 'http' else 443)}"
    except ValueError:  # a port that is not a number: W&B itself will say what is wrong
        netloc = server.hostname
    if proxy_bypass_environment(netloc, proxies):
        return None
    return _proxy_address(proxy)


def _in_no_proxy_network(address: Any, no_proxy: str) -> bool:
    """Whether ``address`` (an ``ipaddress`` address) lies in a network that ``no_proxy`` names in CIDR
    notation (``10.0.0.0/8``), which wandb's service (Go's rules) does not proxy; Python's
    ``proxy_bypass_environment`` compares such entries as text and never matches them."""
    import ipaddress

    for entry in no_proxy.split(","):
        if "/" not in entry:
            continue
        try:
            if address in ipaddress.ip_network(entry.strip(), strict=False):
                return True
        except (ValueError, TypeError):  # not a network; or IPv4 against IPv6
            continue
    return False


def _proxy_address(proxy: str) -> tuple[str, int] | None:
    """``(host, port)`` of a proxy URL (``http://`` when it has no scheme), or None where it has none."""
    parsed = urlparse(proxy if "://" in proxy else f"http://{proxy}")
    try:
        port = parsed.port or {"https": 443, "socks5": 1080, "socks5h": 1080}.get(parsed.scheme, 80)
    except ValueError:  # a port that is not a number: W&B itself will say what is wrong
        return None
    return (parsed.hostname, port) if parsed.hostname else None


#: How long the reachability probe waits for the W&B server's HTTP answer once its port accepts a connection.
ANSWER_TIMEOUT_S = 10.0
#: What the last :func:`wandb_reachable` probe found wrong (None: nothing, or not probed), for the reason.
_last_probe_problem: str | None = None


def wandb_reachable(
    host: str | None = None, timeout_s: float = 2.0, answer_timeout_s: float = ANSWER_TIMEOUT_S
) -> bool:
    """Whether the W&B server answers: a TCP connection to it opens within ``timeout_s`` seconds and it
    answers an HTTP ``HEAD`` (any status: 401 for an expired key is W&B's to report) within
    ``answer_timeout_s``. ``host`` is probed on port 443, by default the server of :func:`wandb_base_url` on
    its own port (443 for https, 80 for http: a self-hosted ``http://localhost:8080`` was probed on 443 and
    always read as unreachable). A server that accepts connections but never answers (hung, or a firewall or
    captive portal completing the handshake) passed a TCP-only probe, and W&B then waited its 90 s
    ``init_timeout`` in silence before the fallback. A TLS failure counts as an answer (W&B says what is
    wrong with the certificate).

    Behind a proxy (:func:`wandb_proxy`) it is the proxy that has to answer a TCP connection: the direct
    probe says nothing there, and one that does not answer (a setting left from another network) made W&B
    try for its ``init_timeout``, 90 s, before the run fell back to offline. A proxy that answers lets W&B
    itself try (a failing start then falls back to offline in :func:`prepare_loggers`, after that wait).
    """
    global _last_probe_problem
    _last_probe_problem = None
    url = urlparse(f"https://{host}" if host else wandb_base_url())
    try:
        port = url.port or (80 if url.scheme == "http" else 443)
    except ValueError:  # a port that is not a number: W&B itself will say what is wrong
        return True
    proxy = wandb_proxy(url.geturl())
    address = proxy or (url.hostname or wandb_host(), port)
    try:
        sock = socket.create_connection(address, timeout=timeout_s)
    except Exception:  # noqa: BLE001 - DNS failure, refusal, timeout, a blocked socket: all mean "no".
        return False
    with sock:
        if proxy:
            return True
        sock.settimeout(answer_timeout_s)
        hostname = str(address[0])
        connection: http.client.HTTPConnection
        try:
            if url.scheme == "http":
                connection = http.client.HTTPConnection(hostname, port, timeout=answer_timeout_s)
                connection.sock = sock
            else:
                connection = http.client.HTTPSConnection(hostname, port, timeout=answer_timeout_s)
                connection.sock = ssl.create_default_context().wrap_socket(sock, server_hostname=hostname)
            connection.request("HEAD", url.path or "/")
            connection.getresponse().close()
        except ssl.SSLError:  # it answered, in TLS: W&B judges the certificate
            return True
        except Exception:  # noqa: BLE001 - silence past the timeout, a reset, garbage: no usable server.
            _last_probe_problem = f"accepted the connection but did not answer within {answer_timeout_s:g} s"
            return False
        return True


def resolve_wandb_mode(requested: str | None) -> tuple[str, str | None]:
    """Turn a requested W&B mode into the one to use.

    Args:
        requested: ``auto``/``online``/``offline``/``disabled`` (or None/empty = ``auto``).

    Returns:
        ``(mode, reason)``: ``mode`` is ``online``, ``offline`` or ``disabled``; ``reason`` says why an
        ``auto``/``online`` request became offline (None when it did not).

    Raises:
        ConfigError: For any other value.
    """
    mode = checked_wandb_mode(requested)
    if mode in ("offline", "disabled"):
        return mode, None
    host = wandb_host()
    if not wandb_credentials_available():
        return "offline", f"no W&B API key found (set WANDB_API_KEY or run `wandb login` to log to {host})"
    if not wandb_reachable():
        proxy = wandb_proxy()
        if proxy:
            return "offline", f"the proxy {proxy[0]}:{proxy[1]} (from the *_PROXY settings) is not reachable"
        server = urlparse(wandb_base_url()).netloc or host
        if _last_probe_problem:
            return "offline", (
                f"the W&B server {server} {_last_probe_problem} (WANDB_MODE=offline skips the probe; "
                "check WANDB_BASE_URL or `wandb login --host`)"
            )
        return "offline", f"{server} is not reachable (no network?)"
    return "online", None


def run_id_from_checkpoint(ckpt_path: str | Path | None) -> str | None:
    """The W&B run id stored in a checkpoint or model package, or None (:func:`run_from_checkpoint`)."""
    return run_from_checkpoint(ckpt_path).get("id")


def run_from_checkpoint(ckpt_path: str | Path | None) -> dict[str, str]:
    """The W&B run stored in a checkpoint or model package: ``{"id", "name", "group"}``, each present only
    when stored ({} when none was given, or it was trained without W&B; name and group are in checkpoints
    from 2026-12-05 on).

    A checkpoint: ``checkpoint["marsunits"]["wandb_run_id"]`` (the task's metadata), then the saved
    hyper-parameters; read with ``weights_only=True`` (memory-mapped, so the weights are not read): the
    ids are plain strings, and a full unpickling here ran a shared checkpoint's code for a W&B label, behind
    the back of ``trust_checkpoint``. A checkpoint that only loads with arbitrary unpickling gives None. A
    model package (:mod:`marsunits.export`): ``model.json``'s ``metadata.wandb_run_id`` (packages were read
    as having none, so a prediction run lost its link to the training run).
    """
    if not ckpt_path:
        return {}
    from marsunits.model_package import is_package, read_package_json

    if is_package(ckpt_path):
        try:
            found = read_package_json(ckpt_path).get("metadata", {}).get("wandb_run_id")
        except (OSError, ValueError):
            return {}
        return {"id": str(found)} if found else {}
    if not Path(ckpt_path).is_file():
        return {}
    import torch

    # torch maps only a file whose path is valid UTF-8: one under a folder named in Latin-1 bytes raised
    # UnicodeEncodeError, read as "no run id", and the resumed run started a new W&B run.
    mappable = readable(str(ckpt_path)) == str(ckpt_path)
    try:
        try:
            ckpt = torch.load(str(ckpt_path), map_location="cpu", weights_only=True, mmap=mappable)
        except RuntimeError:  # an old (non-zip) checkpoint cannot be memory-mapped
            ckpt = torch.load(str(ckpt_path), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - unpickling refused or a broken file: no id (the loader reports those)
        return {}
    for holder in (ckpt.get("marsunits"), ckpt.get("hyper_parameters")):
        if isinstance(holder, dict) and holder.get("wandb_run_id"):
            run = {"id": str(holder["wandb_run_id"])}
            for key in ("name", "group"):
                if holder.get(f"wandb_run_{key}"):
                    run[key] = str(holder[f"wandb_run_{key}"])
            return run
    return {}


def _data_choice() -> str | None:
    """The name of the ``data`` config chosen (e.g. ``synthetic``), if Hydra is set up."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get().runtime.choices.get("data")
    except (ValueError, AttributeError):  # no Hydra run (notebook, hand-made config)
        return None


def run_context(cfg: DictConfig) -> dict[str, Any]:
    """What a reader of the dashboard needs to reproduce a run.

    Returns:
        ``{"config": <the fully resolved config>, "git": {"commit", "dirty"} of the repository holding the
        marsunits code that runs (read at this package's folder: read at the launch folder,
        ``paths.root_dir``, a run started from a data folder inside another repository recorded that
        repository's commit, and one started from any other folder "unknown"; "unknown" for a copy git does
        not track, ``pip install .`` into any environment), "dataset": <data.name, else
        the data config's name>, "data_class_map": <the dataset's native id -> project id map, or
        "identity">, "class_names": [...]}``. (``data_class_map``, not ``class_map``: Lightning logs the
        model's hyper-parameters into the same config afterwards, and its ``class_map`` null, for data in
        project ids, replaced "identity" on the dashboard.)
    """
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    if isinstance(resolved, dict):
        resolved.pop("hydra", None)
    data = cfg.get("data") or {}
    class_map = data.get("class_map") if isinstance(data, DictConfig) else None
    return {
        "config": resolved,
        "git": git_info(Path(__file__).resolve().parent),
        "dataset": (data.get("name") if data else None) or _data_choice() or "unknown",
        "data_class_map": (
            OmegaConf.to_container(class_map) if isinstance(class_map, DictConfig) else "identity"
        ),
        "class_names": list(CLASS_NAMES),
    }


def _build_wandb_logger(spec: dict[str, Any], mode: str, run_id: str | None) -> WandbLogger:
    """``WandbLogger`` from a resolved logger node (without ``mode``/``offline``) in the given mode."""
    log_model = resolve_log_model(spec.get("log_model", "auto"), mode)
    save_dir = expand_home(str(spec.get("save_dir") or ".")).resolve()
    check_wandb_folder(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    overrides: dict[str, Any] = {
        # Lightning refuses offline=True with log_model; wandb.init(mode="offline") has no such limit, and
        # an offline artifact is uploaded by `wandb sync` like everything else.
        "offline": False,
        "mode": mode,
        "log_model": log_model,
        "save_dir": str(save_dir),
    }
    if run_id:
        overrides["id"] = run_id
        overrides["resume"] = "allow"
    logger = instantiate({**spec, **overrides}, _convert_="all")
    # Lightning always hands wandb.init ``anonymous=None``, which current wandb answers on every run with
    # "WARNING The anonymous setting has no effect"; without the key wandb says nothing.
    init_kwargs = getattr(logger, "_wandb_init", None)
    if isinstance(init_kwargs, dict) and init_kwargs.get("anonymous", "") is None:
        del init_kwargs["anonymous"]
    return logger


def _start_wandb(spec: dict[str, Any], requested: Any, run_id: str | None) -> WandbLogger | None:
    """Create the W&B logger in the resolved mode and start its run; fall back to offline if that fails."""
    mode, reason = resolve_wandb_mode(requested)
    if mode == "disabled":
        announce(
            "W&B disabled (WANDB_MODE/logger.wandb.mode=disabled); metrics go to the other loggers only."
        )
        return None
    if reason:
        announce(f"W&B offline: {reason}; the run is saved locally and `wandb sync` uploads it later.")
    logger = _build_wandb_logger(spec, mode, run_id)
    if _rank() != 0:
        return logger
    try:
        with readable_argv():
            _ = logger.experiment
    except Exception as exc:  # noqa: BLE001 - any login/network failure: keep training, log offline.
        if mode != "online":
            raise
        announce(
            f"W&B offline: could not start an online run ({type(exc).__name__}: {exc}); logging offline."
        )
        logger = _build_wandb_logger(spec, "offline", run_id)
        with readable_argv():
            _ = logger.experiment
    return logger


@contextlib.contextmanager
def readable_argv() -> Iterator[None]:
    """``sys.argv`` through :func:`~marsunits.errors.readable` while W&B starts its run, then as it was.

    Why: ``wandb.init`` records the command line (``sys.argv``) in its settings, protobuf strings that must be
    valid UTF-8; a value naming a folder that is not UTF-8 (``data.root=/data/caf<0xe9>``, which Python holds
    as ``caf\\udce9``) stopped every run with the default logger in ``UnicodeEncodeError`` before training.
    The dashboard shows such a byte as ``\\xNN``, as ``manifest.csv`` writes names."""
    saved = sys.argv[:]
    sys.argv[:] = [readable(arg) for arg in saved]
    try:
        yield
    finally:
        sys.argv[:] = saved


def sweep_trial_names(spec: dict[str, Any], run_name: str, task_name: str) -> dict[str, Any]:
    """``spec`` (a W&B logger's settings) with the default name and group made per trial and per sweep when
    this process runs a Hydra sweep (``train.py -m ...``): every trial of a grid was named after the one
    run name (the time the sweep started) and grouped with every ordinary run of the task, so the trials
    could not be told apart on the dashboard. Names and groups that a config sets itself (the Optuna
    sweep's ``trial-<n>`` in ``optuna-<time>``) are kept.

    Returns:
        A new dict: name ``<run_name>-<job number>``, group ``<task_name>-<sweep folder name>``.
    """
    from marsunits.sweep_trials import in_multirun

    if not in_multirun():
        return spec
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get()
    named = dict(spec)
    if named.get("name") == run_name:
        named["name"] = f"{run_name}-{hydra.job.num}"
    if named.get("group") == task_name:
        named["group"] = f"{task_name}-{Path(str(hydra.sweep.dir)).name}"
    return named


def prepare_loggers(cfg: DictConfig, ckpt_path: str | Path | None = None) -> list[Logger]:
    """Instantiate ``cfg.logger`` for a training run and record the run's context with each logger.

    Args:
        cfg: The composed ``train.yaml`` config (``cfg.logger`` maps names to logger nodes with ``_target_``;
            nodes without one are ignored, like an empty ``logger: none``).
        ckpt_path: The checkpoint the run resumes from (already resolved to a file), or None. Its stored W&B
            run id makes the W&B logger continue that run (``resume="allow"``).

    Returns:
        The loggers, to pass to ``Trainer(logger=...)`` (an empty list means no logger) and afterwards to
        :func:`finish_loggers`.

    Raises:
        ConfigError: If ``logger.wandb.mode`` or ``log_model`` has an invalid value.
    """
    group = cfg.get("logger")
    loggers: list[Logger] = []
    if group:
        for node in group.values():
            if not isinstance(node, DictConfig) or "_target_" not in node:
                continue
            if is_wandb_node(node):
                # Resolved here, against the whole config (save_dir: ${paths.output_dir}).
                spec: dict[str, Any] = OmegaConf.to_container(node, resolve=True)  # type: ignore[assignment]
                requested = spec.pop("mode", None)
                if spec.pop("offline", False) is True:
                    requested = "offline"
                spec = sweep_trial_names(spec, str(cfg.get("run_name")), str(cfg.get("task_name")))
                resumed = run_from_checkpoint(ckpt_path)
                # A resumed W&B run keeps its name and group unless the command gives them: a sweep trial
                # resumed alone was renamed (trial-None) and moved to a group of its own, and a resume into
                # a new run folder took that folder's name.
                kept = [k for k in ("name", "group") if k in resumed and not _given(f"logger.wandb.{k}")]
                spec.update({key: resumed[key] for key in kept})
                # Shown on the dashboard, sent as UTF-8: a Latin-1 run_name as caf\xe9 (W&B refused it)
                for key in ("name", "group", "notes"):
                    if isinstance(spec.get(key), str):
                        spec[key] = readable(spec[key])
                if isinstance(spec.get("tags"), list):
                    spec["tags"] = [readable(t) if isinstance(t, str) else t for t in spec["tags"]]
                logger = _start_wandb(spec, requested, resumed.get("id"))
                if logger is not None:
                    loggers.append(logger)
            else:
                loggers.append(instantiate(node, _convert_="all"))
    if loggers:
        context = run_context(cfg)
        for each in loggers:
            each.log_hyperparams(context)
    return loggers


def _given(key: str) -> bool:
    """Whether the running Hydra job's command line sets ``key`` (``key=...``, ``+key=``, ``++key=``)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False
    return any(o.lstrip("+").split("=", 1)[0] == key for o in HydraConfig.get().overrides.task)


def _program(name: str) -> str:
    """A command (``wandb``, ``tensorboard``) as a printed line should name it: as the shell finds it; where
    it is not on ``PATH`` (the virtual environment not activated, as with ``.venv/bin/python train.py``),
    the one installed next to this Python, so the printed command works as it is pasted."""
    beside = Path(sys.executable).parent / name
    if shutil.which(name) is None and beside.is_file():
        return shlex.quote(str(beside))
    return name


def sync_command(*sync_dirs: str | Path) -> str:
    """The shell command that uploads offline W&B run folders (several: the parts of a resumed run), with
    the ``wandb`` of :func:`_program`."""
    return f"{_program('wandb')} sync " + " ".join(shlex.quote(str(d)) for d in sync_dirs)


def offline_parts(sync_dir: str | Path, run_id: str) -> list[Path]:
    """Every offline folder of the W&B run ``run_id``: ``sync_dir`` and those that earlier parts of a resumed
    run left in other run folders of the same task: ``<log dir>/<task>/*/wandb/offline-run-*-<id>`` and the
    trials of sweeps, ``<log dir>/<task>/multirun-*/*/wandb/offline-run-*-<id>``.

    A run resumed with ``ckpt_path=last`` (or from a sweep trial's checkpoint) continues the same W&B run in
    a new run folder, so its history is split over two offline folders; syncing only the newest would never
    upload the first part.
    """
    own = Path(sync_dir)
    run_folder = own.parent.parent if len(own.parents) > 1 else own.parent  # <run>/wandb/offline-run-...
    task_dir = run_folder.parent
    if task_dir.name.startswith("multirun-"):  # this part is a sweep trial: <task>/multirun-<time>/<n>
        task_dir = task_dir.parent
    found = {own}
    for pattern in (f"*/wandb/offline-run-*-{run_id}", f"multirun-*/*/wandb/offline-run-*-{run_id}"):
        found |= set(task_dir.glob(pattern))
    return sorted(found, key=lambda p: p.name)  # offline-run-<YYYYmmdd_HHMMSS>-<id>: oldest first


def close_run(run: Any, exit_code: int, offline: bool, url: str | None, unsynced: Sequence[Path]) -> None:
    """``run.finish(exit_code=exit_code)``: close the W&B ``run`` (``url``: its address, None offline) of
    which ``unsynced`` are the local folders not uploaded (an offline run's own among them).

    A stop (SIGTERM's :class:`~marsunits.errors.TerminatedError`, Ctrl-C) while it closes (writing or
    uploading its last records) is raised on after a line naming the run, that its record may be incomplete
    and the ``wandb sync`` that uploads what its local folders hold (an online run's own too): the stop passed
    over the line said once the run had closed, and an offline run's folder was named nowhere.
    """
    try:
        run.finish(exit_code=exit_code)
    except (KeyboardInterrupt, TerminatedError):
        sync_dir = getattr(run.settings, "sync_dir", None)
        if sync_dir:
            kept = list(unsynced) if offline else [*unsynced, Path(sync_dir)]
            named = f"W&B run {run.id}" if offline else f"W&B run {run.id} ({url})"
            record = f"its offline record in {sync_dir}" if offline else "its record online"
            announce(
                f"{named} was stopped while closing, so {record} may be incomplete; upload what it holds "
                f"with: {sync_command(*kept)}"
            )
        raise


def _finish_wandb(logger: WandbLogger, status: str) -> str | None:
    """Finish the W&B run (marking it failed unless ``status == "success"``); return the line to print.

    An online run that continues a run whose earlier parts were logged offline (trained in the field, resumed
    at the office) names those parts that ``wandb sync`` has not uploaded (no ``.wandb.synced`` marker): the
    line gave only the run's address, and the earlier epochs stayed on disk with nothing saying so.

    A stop while the run closes is raised on after a line saying where it is (:func:`close_run`).
    """
    if _rank() != 0 or getattr(logger, "_experiment", None) is None:
        return None
    run = logger.experiment
    run_id, sync_dir = run.id, getattr(run.settings, "sync_dir", None)
    offline = bool(getattr(run, "offline", False)) or getattr(run.settings, "mode", "") == "offline"
    url = None if offline else run.url
    # Each part of the run kept on this machine and not uploaded: an offline run's every part; an online
    # run's earlier parts logged offline (its own folder is uploaded as it goes).
    unsynced = [
        part
        for part in (offline_parts(sync_dir, run_id) if sync_dir else [])
        if offline
        or (part.name.startswith("offline-run-") and not (part / f"run-{run_id}.wandb.synced").exists())
    ]
    close_run(run, 0 if status == "success" else 1, offline, url, unsynced)
    if offline and sync_dir:
        where = f"in {sync_dir}" if len(unsynced) == 1 else f"in {len(unsynced)} parts (it was resumed)"
        return f"W&B run {run_id} saved offline {where}; upload it with: {sync_command(*unsynced)}"
    line = f"W&B run {run_id}: {url}" if url else f"W&B run {run_id} finished"
    if unsynced:
        line += (
            f"; {counted(len(unsynced), 'earlier part')} of it logged offline "
            f"{'is' if len(unsynced) == 1 else 'are'} not uploaded yet: "
            f"{sync_command(*unsynced)}"
        )
    return line


def _earlier_csv_parts(csv_file: Path) -> str:
    """`` (this part of the run; its earlier parts, before it was resumed: version_0/metrics.csv)`` where
    the CSV logger's folder holds the tables of earlier versions (a run resumed in its folder starts a
    version of its own each time, and the last one holds none of the epochs before it), else ``""``."""
    here = csv_file.parent

    def number(folder: Path) -> int | None:
        tail = folder.name.removeprefix("version_")
        return int(tail) if folder.name.startswith("version_") and tail.isdigit() else None

    mine = number(here)
    if mine is None:
        return ""
    earlier = sorted(
        (n, folder)
        for folder in here.parent.glob("version_*")
        if (n := number(folder)) is not None and n < mine and (folder / "metrics.csv").is_file()
    )
    if not earlier:
        return ""
    named = ", ".join(f"{folder.name}/metrics.csv" for _, folder in earlier)
    return f" (this part of the run; its earlier parts, before it was resumed: {named})"


def finish_loggers(loggers: Sequence[Logger], status: str) -> None:
    """Finalise every logger and print where the run's records are.

    Never raises an error: a logger that fails to close is reported on stderr, so it cannot hide the
    training's own error (this is called from a ``finally`` block). A stop (Ctrl-C, SIGTERM's
    :class:`~marsunits.errors.TerminatedError`) while one closes (``wandb.finish`` uploading) is raised once
    the others are closed: skipping them lost the CSV logger's last rows.

    Args:
        loggers: As returned by :func:`prepare_loggers`.
        status: ``"success"`` or ``"failed"`` (Lightning's logger status); a failed W&B run is marked failed,
            and checkpoints are only uploaded on success.
    """
    stop: KeyboardInterrupt | TerminatedError | None = None
    for logger in loggers:
        try:
            logger.finalize(status)
            if isinstance(logger, WandbLogger):
                line = _finish_wandb(logger, status)
            elif isinstance(logger, CSVLogger):
                csv_file = Path(logger.log_dir) / "metrics.csv"
                line = (  # none for a run that failed early
                    f"CSV metrics: {csv_file}{_earlier_csv_parts(csv_file)}" if csv_file.is_file() else None
                )
            elif isinstance(logger, TensorBoardLogger):
                line = f"TensorBoard: {_program('tensorboard')} --logdir {shlex.quote(str(logger.log_dir))}"
            else:
                line = None
        except (KeyboardInterrupt, TerminatedError) as exc:
            stop = stop or exc
            continue
        except Exception as exc:  # noqa: BLE001 - see docstring
            print(f"[marsunits] could not close logger {type(logger).__name__}: {exc}", file=sys.stderr)
            continue
        if line:
            announce(line)
    if stop is not None:
        raise stop
