# The task-aligned assigner from the first iteration (no ATSS warm-up), for comparison with TOOD's
# recipe (configs/common/models/tood.py; docs/methods.md, "TOOD task-aligned assignment"). The
# head's box bias of 4 (atss_fcos.py) starts every point with an 8 * stride box, so the predicted
# boxes overlap their GTs (u > 0) from the start.
from detectron2.config import LazyCall as L

from dense_assign.assigners import TaskAlignedAssigner

from .tood import model

model.assigner = L(TaskAlignedAssigner)(
    num_classes="${..num_classes}",
    topk=13,  # m = 13 (TOOD Sec. 3.2; official topk)
    alpha=1.0,  # alpha = 1, beta = 6 (TOOD Sec. 3.2; official)
    beta=6.0,
    topk_over="inside",  # top 13 inside the GT (docs/methods.md)
    box2box_transform="${..box2box_transform}",
)
