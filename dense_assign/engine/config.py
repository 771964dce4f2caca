"""Loading a LazyConfig for ``train_net.py``, with errors that name the file or the key at fault.

detectron2's ``LazyConfig.apply_overrides`` silently *adds* a key that does not exist
(``train.max_itr=5`` is accepted and ignored), so :func:`apply_overrides` checks every key
first. A key may be new only when that is legitimate:

* it is one of :data:`OPTIONAL_KEYS` (keys this project reads with a default), or
* its parent is a ``LazyCall`` node (``_target_``) or one of :data:`KWARGS_NODES`: the new key is
  a keyword argument of that call, and a wrong one fails when the object is built, naming it, or
* it is written with hydra's ``+`` prefix (``+train.my_key=1``), which says "add this key".
"""

import logging
import os
from typing import Any, Iterable, List, Optional

from omegaconf import DictConfig, OmegaConf

from detectron2.config import LazyConfig

__all__ = [
    "ConfigError",
    "OPTIONAL_KEYS",
    "KWARGS_NODES",
    "load_config",
    "apply_overrides",
    "cfg_get",
    "check_config",
    "device_of",
]

logger = logging.getLogger(__name__)

#: Keys this project reads with a default when a config does not define them (key -> default).
OPTIONAL_KEYS = {
    "train.vis_predictions": 0,
    "train.seed": -1,
    "train.cudnn_benchmark": False,
}

#: Config nodes that are passed as ``**kwargs`` to a constructor: a new child key is an argument.
KWARGS_NODES = ("train.ddp", "train.checkpointer", "train.amp")

_CONFIG_EXTENSIONS = (".py", ".yaml", ".yml")
_REQUIRED_TOP_KEYS = ("model", "dataloader", "train")
_TRAIN_TOP_KEYS = ("optimizer", "lr_multiplier")
_MISSING = object()


class ConfigError(ValueError):
    """A config file or a command-line override that ``train_net.py`` cannot use."""


def cfg_get(cfg, key: str, default: Any = None) -> Any:
    """``cfg.<key>`` for a dotted ``key``, or ``default`` when any part of it is absent."""
    value = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)
    return default if value is _MISSING else value


def device_of(cfg):
    """``train.device`` as a ``torch.device`` (default: cuda when available, else cpu)."""
    import torch

    default = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(str(cfg_get(cfg, "train.device", default)))


def _exists(cfg, key: str) -> bool:
    value = OmegaConf.select(
        cfg, key, default=_MISSING, throw_on_resolution_failure=False, throw_on_missing=False
    )
    if value is not _MISSING:
        return True
    # A mandatory value ("???") exists although select() does not return it.
    parent, _, last = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, throw_on_resolution_failure=False) if parent else cfg
    return isinstance(node, DictConfig) and last in node.keys()


def _may_add(cfg, key: str) -> bool:
    if key in OPTIONAL_KEYS:
        return True
    parent = key.rpartition(".")[0]
    if parent in KWARGS_NODES:
        return True
    if not parent or not _exists(cfg, parent):
        return False
    node = OmegaConf.select(cfg, parent, throw_on_resolution_failure=False)
    return isinstance(node, DictConfig) and "_target_" in node


def apply_overrides(cfg, overrides: Optional[Iterable[str]], config_file: str = "") -> Any:
    """Apply ``key=value`` overrides (hydra syntax, as ``LazyConfig.apply_overrides``) in place,
    after checking that each key exists (see the module docstring). Returns ``cfg``."""
    checked: List[str] = []
    where = f" of {config_file}" if config_file else ""
    for item in overrides or []:
        raw_key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"Config override {item!r} is not of the form key=value")
        key = raw_key.strip()
        add = key.startswith("+")
        key = key.lstrip("+")
        if key.startswith("~"):  # deletion: let detectron2 report that it does not support it
            checked.append(item)
            continue
        if not add and not _exists(cfg, key) and not _may_add(cfg, key):
            parent = key.rpartition(".")[0]
            hint = ""
            if parent and _exists(cfg, parent):
                node = OmegaConf.select(cfg, parent, throw_on_resolution_failure=False)
                if isinstance(node, DictConfig):
                    hint = f" Keys under '{parent}': {sorted(str(k) for k in node.keys())}."
            raise ConfigError(
                f"Config override {item!r}: key '{key}' does not exist in the config{where}."
                f"{hint} To add a new key on purpose, write '+{key}={value}'."
            )
        checked.append(f"{key}={value}")
    return LazyConfig.apply_overrides(cfg, checked)


def load_config(config_file: str, overrides: Optional[Iterable[str]] = None):
    """Load a LazyConfig file (``.py``, or a ``.yaml`` written by ``LazyConfig.save`` such as the
    ``config.yaml`` of an output directory) and apply command-line overrides.

    Raises :class:`ConfigError`, naming the file, when it does not exist, has another extension or
    does not have the LazyConfig layout (``model``, ``dataloader``, ``train``; a yacs ``.yaml``
    config of detectron2's old style is not supported), and naming the key for a bad override.
    """
    if not config_file:
        raise ConfigError("No config file given: pass --config-file PATH.py")
    if not os.path.isfile(config_file):
        raise ConfigError(f"Config file not found: {config_file}")
    if os.path.splitext(config_file)[1] not in _CONFIG_EXTENSIONS:
        raise ConfigError(
            f"Config file {config_file} is not a LazyConfig: expected a python (.py) config file "
            "(or a .yaml written by LazyConfig.save)"
        )
    cfg = LazyConfig.load(config_file)
    missing = [k for k in _REQUIRED_TOP_KEYS if k not in cfg]
    if missing:
        raise ConfigError(
            f"Config file {config_file} is not a detectron2 LazyConfig with the standard layout: "
            f"it defines no {missing} (found top-level keys {sorted(cfg.keys())}). "
            "Old-style yacs configs (CfgNode .yaml) are not supported."
        )
    return apply_overrides(cfg, overrides, config_file)


def check_config(cfg, eval_only: bool = False, config_file: str = "") -> None:
    """Check what ``train_net.py`` needs beyond the layout, before any process is started."""
    import torch

    where = f" in {config_file}" if config_file else ""
    needed = ["dataloader.test"] + ([] if eval_only else ["dataloader.train", *_TRAIN_TOP_KEYS])
    for key in needed:
        if cfg_get(cfg, key, None) is None:
            raise ConfigError(f"Config key '{key}' is missing{where}")
    if not eval_only and not cfg_get(cfg, "train.output_dir", ""):
        raise ConfigError(f"train.output_dir is empty{where}: training needs an output directory")
    device = cfg_get(cfg, "train.device", None)
    try:
        dev = device_of(cfg)
    except RuntimeError as e:
        raise ConfigError(f"train.device={device!r}{where} is not a valid device: {e}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"train.device={device!r}{where} but CUDA is not available on this machine: "
            "add the override train.device=cpu"
        )
