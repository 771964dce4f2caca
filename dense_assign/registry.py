"""Registries of the pluggable parts of a dense detector.

LazyConfig configs build components directly (``L(FCOSAssigner)(...)``); the registries give every
component a stable name as well, so a config or the command line can pick one by name
(``model.assigner=ATSSAssigner``), and so tests can iterate over every registered assigner.
"""

from detectron2.utils.registry import Registry

ASSIGNER_REGISTRY = Registry("DENSE_ASSIGNER")
ASSIGNER_REGISTRY.__doc__ = """
Label assigners: ``assigner(priors, gt_instances, predictions=None, image_size=None) -> AssignResult``.
See :mod:`dense_assign.assigners.base` for the contract.
"""

DENSE_HEAD_REGISTRY = Registry("DENSE_HEAD")
DENSE_HEAD_REGISTRY.__doc__ = """
Dense prediction heads: ``head(features) -> (logits, box_deltas, quality)`` per level.
"""


def build_from_registry(registry: Registry, spec, config_key: str, **kwargs):
    """Return ``spec`` if it is already an object; if it is a registered name, build it.

    Raises a ValueError naming ``config_key`` and the allowed names for an unknown name.
    """
    if not isinstance(spec, str):
        return spec
    names = sorted(k for k, _ in registry)
    if spec not in names:
        raise ValueError(
            f"{config_key}={spec!r} is not a registered {registry._name}; allowed: {', '.join(names)}"
        )
    return registry.get(spec)(**kwargs)
