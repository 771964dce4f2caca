"""Loading a LazyConfig for ``train_net.py``, with errors that name the file or the key at fault.

detectron2's ``LazyConfig.apply_overrides`` silently *adds* a key that does not exist
(``train.max_itr=5`` is accepted and ignored), so :func:`apply_overrides` checks every key
first. A key may be new only when that is legitimate:

* it is one of :data:`OPTIONAL_KEYS` (keys this project reads with a default), or
* its parent is a ``LazyCall`` node (``_target_``) or one of :data:`KWARGS_NODES`: the new key is
  a keyword argument of that call, and a wrong one fails when the object is built, naming it, or
* it is written with hydra's ``+`` prefix (``+train.my_key=1``), which says "add this key".

The value of an override of an existing key is type-checked against the config's current value
before anything is built (:func:`check_override_type`; detectron2 would store ``abc`` for an int and
fail minutes later, not naming the key). A wrong type is a :class:`ConfigError` naming the override,
the expected type and the config's value. The rules (the value as hydra parses it: ``true`` /
``false`` are bools, ``null`` is None, ``[1,2]`` a list, ``'5'`` a string):

* **int**: an int; also a float with an integral value (``1e4``), stored as the int ``10000``:
  iteration counts are often written that way and the value is exact, while ``2.5`` is refused
  (an int where a float is meant would fail later in ``range()`` or a modulo). A bool is not an
  int here. If the key is an argument of a LazyCall whose parameter is annotated ``float``
  (``box_weight=1`` in a config), it is a float key.
* **float**: an int or a float (kept as given: ``model.test_nms_thresh=0`` stays ``0``).
* **bool**: ``true`` / ``false`` only (not ``0`` / ``1`` / ``yes``).
* **str**: a string; a number or a bool is refused (quote it, ``key='2024'``, for the text).
* **list / tuple**: a list; when the config's list holds only numbers, only strings or only
  bools, each new element must be of that kind (``[0.6,abc]`` is refused).
* **dict / LazyCall node**: a dict (merged into the node, as detectron2 does); a scalar or a list
  is refused (set one argument with ``key.ARG=VALUE``), except a string for a node in
  :data:`NAMED_NODES` (a registered or score-function name, checked when the model is built).
* keys of :data:`SCALAR_OR_LIST_KEYS` (last part of the key) take a scalar or a list, as the
  constructors they configure do (dataset ``names``, ``short_edge_length``).
* ``null`` is accepted for any key: it is typed on purpose (never a typo) and is how an
  ``Optional`` argument or a node is switched off (``train.ddp.device_ids=null``,
  ``center_sampling_radius=null``); a key that cannot be None fails where it is used, as before.
* anything is accepted where the type is unknown: the config's value is None or ``???``, an
  interpolation (``${...}``), or of another type; and a value that is itself an interpolation.
* new keys (see above) are not checked: there is no value to compare with.
* ``++key=value`` (hydra's "force") applies the value without the type check.
"""

import copy
import inspect
import logging
import math
import os
import re
import typing
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
    "check_override_type",
    "NAMED_NODES",
    "SCALAR_OR_LIST_KEYS",
    "cfg_get",
    "cfg_option",
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
    # --eval-only of a checkpoint that leaves model parameters unset: warning instead of error
    "train.allow_partial_checkpoint": False,
}

#: Config nodes that are passed as ``**kwargs`` to a constructor (or read as options): a new
#: child key is an argument (checked when it is used).
KWARGS_NODES = ("train.ddp", "train.checkpointer", "train.amp", "train.clip_grad")

#: LazyCall nodes that may be replaced by a string on the command line: the registered name of a
#: component (``model.assigner=ATSSAssigner``, ``model.head=DenseHead``; see
#: ``dense_assign.registry``), checked when the model is built.
NAMED_NODES = ("model.assigner", "model.head", "model.test_score_fn")

#: Arguments (the last part of a key) that take a scalar or a list of them, whichever the config
#: has: detectron2's dataset ``names`` (a name or a list of names) and ``ResizeShortestEdge``'s
#: ``short_edge_length`` (a length, or a list to choose from). Value: the scalar type.
SCALAR_OR_LIST_KEYS = {"names": str, "short_edge_length": int}

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


def cfg_option(cfg, key: str) -> Any:
    """The value of the optional key ``key`` (one of :data:`OPTIONAL_KEYS`), or its default."""
    return cfg_get(cfg, key, OPTIONAL_KEYS[key])


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


def _override_parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def _parse_override(parser, item: str, text: str):
    """The value of override ``text`` as hydra parses it (what detectron2 will store)."""
    try:
        override = parser.parse_overrides([text])[0]
    except Exception as e:  # hydra's OverrideParseException / HydraException
        reason = " ".join(str(e).split())  # hydra's message has a line break
        raise ConfigError(f"Config override {item!r} cannot be parsed: {reason}") from None
    if override.is_sweep_override():
        raise ConfigError(
            f"Config override {item!r} is a sweep (several values), which is not supported: "
            "a list is written [a,b], a text with a comma is quoted ('a,b')"
        )
    return override.value()


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _target_name(target) -> str:
    return getattr(target, "__qualname__", None) or str(target).rpartition(".")[2]


def _show_config_value(old) -> str:
    if isinstance(old, DictConfig):
        if "_target_" in old:
            return f"{_target_name(old._get_node('_target_')._value())}(...)"
        return "a dict with keys " + _short(str(sorted(str(k) for k in old.keys())))
    if isinstance(old, ListConfig):
        old = OmegaConf.to_container(old, resolve=False)
    if isinstance(old, bool):
        return str(old).lower()
    return _short(repr(old))


def _describe(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the bool {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {_short(repr(value))}"
    if isinstance(value, (int, float)):
        return f"the {type(value).__name__} {value!r}"
    if isinstance(value, (list, tuple, dict)):
        return f"the {type(value).__name__} {_short(repr(value))}"
    return f"a {type(value).__name__}"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _annotated_float(parent, name: str) -> bool:
    """Whether ``name`` is a parameter annotated ``float`` (or Optional / a Union with float) of
    the target of the LazyCall node ``parent``."""
    if not isinstance(parent, DictConfig) or "_target_" not in parent:
        return False
    target = parent._get_node("_target_")._value()
    try:
        if isinstance(target, str):
            from detectron2.utils.registry import locate

            target = locate(target)
        param = inspect.signature(target).parameters.get(str(name))
    except Exception:  # not importable, no signature: no annotation known
        return False
    annotation = getattr(param, "annotation", inspect.Parameter.empty)
    if isinstance(annotation, str):  # postponed annotations (from __future__ import annotations)
        return re.search(r"\bfloat\b", annotation) is not None
    return annotation is float or float in typing.get_args(annotation)


def _list_kind(items) -> Optional[Tuple[str, Any]]:
    """(name, predicate) of the one kind of all ``items`` (numbers, strings, bools), if any."""
    kinds = (
        ("numbers", _is_number),
        ("strings", lambda v: isinstance(v, str)),
        ("bools", lambda v: isinstance(v, bool)),
    )
    if not items:
        return None
    for name, is_kind in kinds:
        if all(is_kind(v) for v in items):
            return name, is_kind
    return None


def check_override_type(cfg, key: str, value, item: str = "") -> Any:
    """Check ``value`` (as hydra parsed it) for the existing key ``key`` of ``cfg`` against the
    config's current value (rules: the module docstring). Returns the value to store (the same,
    or an integral float as an int); raises :class:`ConfigError` naming ``item`` (the override as
    given), the expected type and the config's value."""
    item = item or f"{key}={value}"
    parent_key, _, last = key.rpartition(".")
    parent = (
        OmegaConf.select(cfg, parent_key, throw_on_resolution_failure=False) if parent_key else cfg
    )
    if isinstance(parent, ListConfig):
        last = int(last) if last.lstrip("-").isdigit() else last
    if isinstance(parent, (DictConfig, ListConfig)):
        try:
            if OmegaConf.is_interpolation(parent, last):
                return value  # its type is the one it resolves to: not known here
        except Exception:
            pass
    old = OmegaConf.select(
        cfg, key, default=None, throw_on_resolution_failure=False, throw_on_missing=False
    )
    if old is None or value is None:
        return value
    if isinstance(value, str) and "${" in value:
        return value  # an interpolation given on the command line: resolved when it is used

    hint = ""
    scalar_or_list = SCALAR_OR_LIST_KEYS.get(str(last))
    if scalar_or_list is not None and isinstance(old, (ListConfig, scalar_or_list)):
        if isinstance(value, list) or (
            isinstance(value, scalar_or_list) and not isinstance(value, bool)
        ):
            return value
        expected = f"{'a string' if scalar_or_list is str else 'an int'} or a list of them"
    elif isinstance(old, DictConfig):
        if isinstance(value, dict):
            return value
        if "_target_" in old:
            if isinstance(value, str) and key in NAMED_NODES:
                return value
            name = _target_name(old._get_node("_target_")._value())
            expected = f"a dict of {name}'s arguments"
            hint = f"; set one argument with {key}.ARG=VALUE"
            if key in NAMED_NODES:
                hint += f", or give a registered name ({key}=NAME)"
        else:
            expected = "a dict"
            hint = f"; set one key with {key}.KEY=VALUE"
    elif isinstance(old, ListConfig):
        if isinstance(value, (list, tuple)):
            kind = _list_kind(list(old))
            if kind is None or all(kind[1](v) for v in value):
                return value
            expected = f"a list of {kind[0]}"
        else:
            expected = "a list"
    elif isinstance(old, bool):
        if isinstance(value, bool):
            return value
        expected = "a bool (true or false)"
    elif isinstance(old, int) and not _annotated_float(parent, last):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        expected = "an int"
    elif isinstance(old, (int, float)):
        if _is_number(value):
            return value
        expected = "a float"
    elif isinstance(old, str):
        if isinstance(value, str):
            return value
        expected = "a string"
        if isinstance(value, (bool, int, float)):
            text = item.partition("=")[2]
            hint = f"; to give the text, quote it: \"{key}='{text}'\""
    else:
        return value  # another type (a Path, an object): not checked
    raise ConfigError(
        f"Config override {item}: expected {expected} (the config has "
        f"{_show_config_value(old)}), got {_describe(value)}{hint}"
    )


def apply_overrides(cfg, overrides: Optional[Iterable[str]], config_file: str = "") -> Any:
    """Apply ``key=value`` overrides (hydra syntax, as ``LazyConfig.apply_overrides``) in place,
    one after the other, each after checking that its key exists and that its value has the
    config's type (see the module docstring). Returns ``cfg``."""
    where = f" of {config_file}" if config_file else ""
    parser = None
    for item in overrides or []:
        raw_key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"Config override {item!r} is not of the form key=value")
        key = raw_key.strip()
        add = key.startswith("+")
        force = key.startswith("++")
        key = key.lstrip("+")
        if key.startswith("~"):  # deletion: let detectron2 report that it does not support it
            LazyConfig.apply_overrides(cfg, [item])
            continue
        exists = _exists(cfg, key)
        if not add and not exists and not _may_add(cfg, key):
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
        text = f"{key}={value}"
        parser = parser or _override_parser()
        parsed = _parse_override(parser, item, text)
        if exists and not force:
            checked = check_override_type(cfg, key, parsed, item)
            if checked is not parsed:  # an integral float for an int key: store the int
                text = f"{key}={checked}"
        # the old value is read above, before this override replaces it
        LazyConfig.apply_overrides(cfg, [text])
    return cfg


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
    """``model.num_classes`` must equal the number of classes of every train and test dataset,
    and the class ids of their annotations must be in ``[0, model.num_classes)``; a dataset name
    must be registered. Runs before the model is built (``check_config``).

    The classes are those the loaders will see (:func:`dense_assign.data.checks.dataset_classes`):
    the metadata's ``thing_classes``; else, for a COCO json (``register_coco_instances``, whose
    ``thing_classes`` are set only when the json is loaded), its ``categories``; else those of the
    dataset dicts, loaded as the loaders load them. A dataset's COCO json (metadata
    ``json_file``) is checked on the way: duplicate image ids and annotations of missing images
    are a ``DatasetError`` (:func:`dense_assign.data.checks.check_coco_json`). A dataset with
    fewer classes than ``model.num_classes`` is an error too: training would run to its end and
    the COCO evaluation then fail on a prediction of a class the dataset does not have."""
    from detectron2.data import DatasetCatalog

    from ..data.checks import dataset_classes

    where = f" in {config_file}" if config_file else ""
    num_classes = cfg_get(cfg, "model.num_classes", None)
    registered = set(DatasetCatalog.list())
    checked = set()
    for key in DATASET_NAME_KEYS:
        for name in dataset_names(cfg, key):
            if name not in registered:
                similar = sorted(n for n in registered if n.split("_")[0] == name.split("_")[0])
                raise ConfigError(
                    f"{key}: dataset {name!r}{where} is not registered"
                    + (f" (registered with that prefix: {similar[:12]})" if similar else "")
                    + "; register it in the config file or in an imported module"
                )
            if name in checked:
                continue
            checked.add(name)
            info = dataset_classes(name)
            if num_classes is None:
                continue
            n = int(num_classes)
            classes, ids = info["classes"], info["class_ids"] or []
            outside = [i for i in ids if not 0 <= i < n]
            if (classes is None or len(classes) == n) and not outside:
                continue
            if classes is not None:
                shown = list(classes[:8]) + (["..."] if len(classes) > 8 else [])
                what = f"has {len(classes)} classes {shown}"
                fix = len(classes)
            else:
                what = "has no class names in its metadata (thing_classes)"
                fix = max(ids) + 1
            if outside:
                what += (
                    f", and its annotations use class id(s) {outside[:8]}"
                    + (f" ({len(outside)} in all)" if len(outside) > 8 else "")
                    + f" outside [0, {n})"
                )
            elif len(classes) < n:
                what += (
                    " (fewer: training would run, and the COCO evaluation at its end fail on a "
                    "prediction of a class the dataset does not have)"
                )
            source = f" (json_file={info['json_file']})" if info["json_file"] else ""
            advice = (
                f"set model.num_classes={fix}"
                if fix > n or classes is not None
                else "fix the annotations' category ids"
            )
            raise ConfigError(
                f"model.num_classes={num_classes}{where} but dataset {name!r} ({key}) {what}"
                f"{source}: {advice}"
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
    window = cfg_option(cfg, "train.metrics_window")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigError(f"train.metrics_window={window!r}{where} must be an integer >= 1")
    check_num_classes(cfg, config_file)
