"""Import this to register every dense_assign component (meta-arch, heads, assigners)."""

from . import assigners, heads, losses, meta_arch  # noqa: F401
from .assigners import *  # noqa: F401,F403
from .heads import DenseHead  # noqa: F401
from .losses import DenseLoss  # noqa: F401
from .meta_arch import OneStageDetector, point_prior_generator  # noqa: F401
