"""dense_assign: pluggable label assignment for one-stage dense detectors on detectron2."""

import warnings as _warnings

__version__ = "0.1.0"

# Known, harmless warnings of the dependencies, filtered in this one place (before detectron2 and
# fvcore are imported) so that a normal run prints none: fvcore and detectron2 call
# torch.jit.script at import, which torch >= 2.10 deprecates; detectron2 imports pkg_resources,
# which setuptools deprecates; detectron2 v0.6's anchor generator calls torch.meshgrid without
# `indexing` (upstream passes it). Each filter matches only that message.
KNOWN_DEPENDENCY_WARNINGS = (
    (FutureWarning, r"`torch\.jit\.script` is deprecated"),
    (UserWarning, r"pkg_resources is deprecated"),
    (UserWarning, r"torch\.meshgrid: in an upcoming release, it will be required"),
)
for _category, _message in KNOWN_DEPENDENCY_WARNINGS:
    _warnings.filterwarnings("ignore", message=_message, category=_category)
