"""marsunits: map smooth volcanic and rough olivine-rich terrain, and their contact, in rover images."""

import os

from omegaconf import OmegaConf

__version__ = "0.1.0"

# ``${marsunits.cwd:}`` in configs/paths: the directory the command was launched from (hydra.job.chdir is
# false, so it stays the working directory). Hydra's own ``${hydra:runtime.cwd}`` cannot be resolved while a
# multirun (``-m``, ``hparams_search=optuna``) creates its sweep folder, before any job has started
# (facebookresearch/hydra#2247), so ``python train.py -m ...`` failed as soon as it started.
if not OmegaConf.has_resolver("marsunits.cwd"):
    OmegaConf.register_new_resolver("marsunits.cwd", os.getcwd)
