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


class _DropMessage:
    """A logging filter that drops the records whose message starts with ``prefix``."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def filter(self, record) -> bool:
        return not str(record.msg).startswith(self.prefix)


# torch logs (not warns) "No CUDA runtime is found, using CUDA_HOME=..." when
# torch.utils.cpp_extension is imported on a machine without a GPU (detectron2's environment
# report imports it): expected on CPU, and nothing depends on CUDA_HOME here.
KNOWN_DEPENDENCY_LOG_MESSAGES = (("torch.utils.cpp_extension", "No CUDA runtime is found"),)
for _logger, _prefix in KNOWN_DEPENDENCY_LOG_MESSAGES:
    __import__("logging").getLogger(_logger).addFilter(_DropMessage(_prefix))
