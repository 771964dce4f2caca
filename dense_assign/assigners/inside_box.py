"""The AF-baseline of the Pseudo-IoU paper: every point inside a GT box is a positive.

Paper: "Pseudo-IoU: Improving Label Assignment in Anchor-Free Object Detection" (Li et al., CVPRW
2021), Sec. 3 / Table 1a (T = 0). A point inside several GTs takes the minimum-area one; optionally
FCOS's per-level scale ranges restrict which level takes which GT (the official Pseudo-IoU code keeps
them). No center sampling.
"""

from typing import Optional, Sequence

from ..registry import ASSIGNER_REGISTRY
from .fcos import FCOS_SCALE_RANGES, FCOSAssigner


@ASSIGNER_REGISTRY.register()
class InsideBoxAssigner(FCOSAssigner):
    """All points inside a GT are candidates; FCOS scale ranges on by default, no center sampling."""

    def __init__(
        self,
        *,
        num_classes: int,
        scale_ranges: Optional[Sequence[Sequence[float]]] = FCOS_SCALE_RANGES,
        inclusive_ranges: bool = True,
        **kwargs,
    ):
        super().__init__(
            num_classes=num_classes,
            center_sampling_radius=None,
            scale_ranges=scale_ranges,
            inclusive_ranges=inclusive_ranges,
            **kwargs,
        )
