"""dense_assign: pluggable label assignment for one-stage dense detectors on detectron2."""

__version__ = "0.1.0"
