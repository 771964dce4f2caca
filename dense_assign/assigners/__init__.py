"""Label assigners, one file per paper, all behind :class:`BaseAssigner`'s interface."""

from .atss import ATSSAssigner
from .autoassign import AutoAssign
from .base import BaseAssigner
from .dsl import DynamicSoftLabelAssigner
from .fcos import FCOS_SCALE_RANGES, FCOSAssigner
from .inside_box import InsideBoxAssigner
from .max_iou import MaxIoUAssigner
from .ota import OTAAssigner
from .paa import PAAAssigner
from .phased import PhasedAssigner
from .pseudo_iou import PseudoIoUAssigner, pseudo_iou
from .sapd import FeatureSelectionNet, SAPDAssigner
from .simota import SimOTAAssigner
from .tal import TaskAlignedAssigner

__all__ = [k for k in globals().keys() if not k.startswith("_")]
