"""Loading a LazyConfig for ``train_net.py``, with errors that name the file or the key at fault.

detectron2's ``LazyConfig.apply_overrides`` silently *adds* a key that does not exist
(``train.max_itr=5`` is accepted and ignored), so :func:`apply_overrides` checks every key
first. A key may be new only when that is legitimate:

* it is one of :data:`OPTIONAL_KEYS` (keys this project reads with a default), or
* its parent is a ``LazyCall`` node (``_target_``) or one of :data:`KWARGS_NODES`: the new key is
  a keyword argument of that call, and a wrong one fails when the object is built, naming it, or
* it is written with hydra's ``+`` prefix (``+train.my_key=1``), which says "add this key".
"""

import copy
import logging
import math
import os
from typing import Any, Dict, Iterable, List, Optional, Tuple

from detectron2.config import LazyConfig
from omegaconf import DictConfig, ListConfig, OmegaConf

__all__ = [
    "ConfigError",
    "OPTIONAL_KEYS",
    "KWARGS_NODES",
    "CLIP_GRAD_DEFAULTS",
    "CLIP_TYPES",
    "load_config",
    "apply_overrides",
    "cfg_get",
    "check_config",
    "check_num_classes",
    "clip_grad_options",
    "DATASET_NAME_KEYS",
    "dataset_names",
    "device_of",
    "instantiate_checked",
]

logger = logging.getLogger(__name__)

#: Keys this project reads with a default when a config does not define them (key -> default).
OPTIONAL_KEYS = {
    "train.vis_predictions": 0,
    "train.seed": -1,
    "train.cudnn_benchmark": False,
    # the training batches are a function of (seed, iteration): exact --resume and multi-process
    # equivalence (dense_assign.engine.data)
    "train.deterministic_data": True,
    # losses written to metrics.json / console / TensorBoard are the median over this many
    # iterations (detectron2's 20); 1 writes each iteration's own values
    "train.metrics_window": 20,
}

#: Config nodes that are passed as ``**kwargs`` to a constructor (or read as options): a new
#: child key is an argument (checked when it is used).
KWARGS_NODES = ("train.ddp", "train.checkpointer", "train.amp", "train.clip_grad")

#: ``train.clip_grad``: gradient clipping before each optimizer step (after AMP unscaling).
#: ``clip_type`` "norm": the global norm of all gradients (``clip_grad_norm_``, as mmdetection's
#: ``grad_clip=dict(max_norm, norm_type)``) is limited to ``clip_value``; "value": each gradient
#: element is clamped to [-clip_value, clip_value]. (detectron2's yacs SOLVER.CLIP_GRADIENTS
#: "norm" is per parameter tensor; LazyConfig training has no clipping of its own.)
CLIP_GRAD_DEFAULTS = {"enabled": False, "clip_type": "norm", "clip_value": 35.0, "norm_type": 2.0}
CLIP_TYPES = ("norm", "value")

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


#: Config files executed in this process: (real path, mtime_ns, size) -> the loaded config.
_LOADED_CONFIGS: Dict[Tuple[str, int, int], Any] = {}


def _load_once(config_file: str):
    """``LazyConfig.load``, executing each config file once per process (a copy of the result is
    returned on later calls, a new one after the file changes). train_net.py loads the config to
    check it before it starts the training processes, and again in the training process; a config
    file with side effects, such as ``register_coco_instances(...)`` the plain detectron2 way,
    would otherwise run them twice and fail with "Dataset ... is already registered"."""
    st = os.stat(config_file)
    key = (os.path.realpath(config_file), st.st_mtime_ns, st.st_size)
    if key not in _LOADED_CONFIGS:
        _LOADED_CONFIGS[key] = LazyConfig.load(config_file)
    return copy.deepcopy(_LOADED_CONFIGS[key])


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
    cfg = _load_once(config_file)
    missing = [k for k in _REQUIRED_TOP_KEYS if k not in cfg]
    if missing:
        raise ConfigError(
            f"Config file {config_file} is not a detectron2 LazyConfig with the standard layout: "
            f"it defines no {missing} (found top-level keys {sorted(cfg.keys())}). "
            "Old-style yacs configs (CfgNode .yaml) are not supported."
        )
    return apply_overrides(cfg, overrides, config_file)


def clip_grad_options(cfg, config_file: str = "") -> Dict[str, Any]:
    """``train.clip_grad`` merged over :data:`CLIP_GRAD_DEFAULTS`, checked: a
    :class:`ConfigError` names the key and the allowed values."""
    where = f" in {config_file}" if config_file else ""
    node = cfg_get(cfg, "train.clip_grad", None)
    if node is None:
        return dict(CLIP_GRAD_DEFAULTS)
    given = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    if not isinstance(given, dict):
        raise ConfigError(
            f"train.clip_grad={given!r}{where} must be a dict with keys {sorted(CLIP_GRAD_DEFAULTS)}"
        )
    unknown = sorted(set(given) - set(CLIP_GRAD_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"train.clip_grad{where} has unknown key(s) {unknown}; allowed: {sorted(CLIP_GRAD_DEFAULTS)}"
        )
    options = dict(CLIP_GRAD_DEFAULTS, **given)
    if options["clip_type"] not in CLIP_TYPES:
        raise ConfigError(
            f"train.clip_grad.clip_type={options['clip_type']!r}{where}; allowed: {', '.join(CLIP_TYPES)}"
        )
    for key in ("clip_value", "norm_type"):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"train.clip_grad.{key}={value!r}{where} must be a number > 0")
    if not math.isfinite(options["clip_value"]):
        raise ConfigError(
            f"train.clip_grad.clip_value={options['clip_value']!r}{where} must be finite"
        )
    options["enabled"] = bool(options["enabled"])
    return options


#: Where a config names its datasets (each a string or a list of strings).
DATASET_NAME_KEYS = ("dataloader.train.dataset.names", "dataloader.test.dataset.names")


def dataset_names(cfg, key: str) -> List[str]:
    """The dataset name(s) at ``key`` of ``cfg`` (a string or a list) as a list of strings; empty
    when the key is absent."""
    value = cfg_get(cfg, key, None)
    if value is None:
        return []
    return [str(value)] if isinstance(value, str) else [str(v) for v in value]


def check_num_classes(cfg, config_file: str = "") -> None:
    """``model.num_classes`` must equal the number of classes (``thing_classes``) of every train
    and test dataset whose metadata has them; a dataset name must be registered."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    where = f" in {config_file}" if config_file else ""
    num_classes = cfg_get(cfg, "model.num_classes", None)
    registered = set(DatasetCatalog.list())
    for key in DATASET_NAME_KEYS:
        for name in dataset_names(cfg, key):
            if name not in registered:
                similar = sorted(n for n in registered if n.split("_")[0] == name.split("_")[0])
                raise ConfigError(
                    f"{key}: dataset {name!r}{where} is not registered"
                    + (f" (registered with that prefix: {similar[:12]})" if similar else "")
                    + "; register it in the config file or in an imported module"
                )
            classes = MetadataCatalog.get(name).get("thing_classes", None)
            if num_classes is None or classes is None:
                continue
            if int(num_classes) != len(classes):
                shown = list(classes[:8]) + (["..."] if len(classes) > 8 else [])
                raise ConfigError(
                    f"model.num_classes={num_classes}{where} but dataset {name!r} ({key}) has "
                    f"{len(classes)} classes {shown}: set model.num_classes={len(classes)}"
                )


def _lazy_children(node, key: str):
    """(key, child) of the LazyCall nodes directly below ``node`` (lists included)."""
    if isinstance(node, DictConfig):
        for k in node.keys():
            if k == "_target_" or OmegaConf.is_interpolation(node, k):
                continue  # an interpolation is the node it points to, checked there
            yield from _lazy_children_of_value(node[k], f"{key}.{k}")
    elif isinstance(node, ListConfig):
        for i, child in enumerate(node):
            yield from _lazy_children_of_value(child, f"{key}[{i}]")


def _lazy_children_of_value(child, key: str):
    if isinstance(child, DictConfig) and "_target_" in child:
        yield key, child
    elif isinstance(child, (DictConfig, ListConfig)):
        yield from _lazy_children(child, key)


def _failing_node(node, key: str):
    """The deepest LazyCall node below (or at) ``node`` whose instantiation fails."""
    from detectron2.config import instantiate

    for child_key, child in _lazy_children(node, key):
        try:
            instantiate(child)
        except Exception:
            return _failing_node(child, child_key)
    return key, node


def instantiate_checked(node, key: str):
    """``instantiate(node)``; an error becomes a :class:`ConfigError` that names the config key
    of the object that failed to build (the deepest failing ``LazyCall``), e.g.
    ``model.assigner (MaxIoUAssigner): thresholds must be ...``. (On failure the sub-nodes are
    built again, one by one, to find it.)"""
    from detectron2.config import instantiate

    try:
        return instantiate(node)
    except ConfigError:
        raise
    except Exception as e:
        failed_key, failed = _failing_node(node, key)
        target = failed.get("_target_", "?") if isinstance(failed, DictConfig) else "?"
        name = getattr(target, "__qualname__", None) or str(target).rpartition(".")[2]
        raise ConfigError(f"Cannot build {failed_key} ({name}): {type(e).__name__}: {e}") from e


def check_config(cfg, eval_only: bool = False, config_file: str = "") -> None:
    """Check what ``train_net.py`` needs beyond the layout, before any process is started:
    required keys, the output directory, the device, ``train.clip_grad`` and that
    ``model.num_classes`` matches the datasets."""
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
    clip_grad_options(cfg, config_file)
    window = cfg_get(cfg, "train.metrics_window", OPTIONAL_KEYS["train.metrics_window"])
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigError(f"train.metrics_window={window!r}{where} must be an integer >= 1")
    check_num_classes(cfg, config_file)
