"""pyproject.toml's pytest settings: the warnings its ``filterwarnings`` hides from the suite's output."""

from __future__ import annotations

import tomllib
import warnings

from _pytest.config import apply_warning_filters  # how pytest applies the ini's filters, to each test

from conftest import REPO_ROOT

#: Torch's deprecation of ``LeafSpec``, as Lightning 2.6's ``CombinedLoader`` raises it (torch 2.14).
LEAF_SPEC = (
    "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) and "
    "treespec.is_leaf()` instead."
)


def _shown(message: str, category: type[Warning], module: str) -> bool:
    """Whether a warning ``message`` of ``category`` raised in ``module`` reaches the suite's output under
    pyproject.toml's ``filterwarnings``, applied as pytest applies them."""
    with open(REPO_ROOT / "pyproject.toml", "rb") as file:
        filters = tomllib.load(file)["tool"]["pytest"]["ini_options"]["filterwarnings"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        apply_warning_filters(filters, [])
        warnings.warn_explicit(message, category, f"{module.replace('.', '/')}.py", 21, module=module)
    return bool(caught)


def test_lightnings_leafspec_future_warning_alone_is_filtered() -> None:
    """Lightning's ``FutureWarning`` "`isinstance(treespec, LeafSpec)` is deprecated" (filtered for
    ``train.py`` runs by ``lightning_logging._quiet_lightning_deprecations``) filled the suite's warnings
    summary at each test that fits, validates or predicts. It is filtered there too; the same words from
    another module, another warning of that module, and another category are still shown."""
    pytree = "lightning.pytorch.utilities._pytree"
    assert not _shown(LEAF_SPEC, FutureWarning, pytree)
    assert _shown(LEAF_SPEC, FutureWarning, "marsunits.training")
    assert _shown(LEAF_SPEC, FutureWarning, pytree + "_extra")
    assert _shown(LEAF_SPEC, UserWarning, pytree)
    assert _shown("`isinstance(spec, TreeSpec)` is deprecated", FutureWarning, pytree)
