"""Our FCOS and RetinaNet, configured as detectron2's, give detectron2's losses on a fixed batch.

detectron2's own models are built from its model-zoo LazyConfigs, ours from
configs/common/models/{fcos_detectron2,retinanet}.py; both get the same tiny backbone, the weights
are copied across, and two training forwards (the second uses the updated EMA normalizer) must give
the same losses to 1e-5.
"""

import pytest
import torch
from detectron2 import model_zoo
from detectron2.config import instantiate
from detectron2.utils.events import EventStorage

import dense_assign.modeling  # noqa: F401

from ..helpers import load_model_cfg, random_batch, shrink_model

# our loss name -> detectron2's
FCOS_NAMES = {
    "loss_cls": "loss_fcos_cls",
    "loss_box_reg": "loss_fcos_loc",
    "loss_centerness": "loss_fcos_ctr",
}
RETINA_NAMES = {"loss_cls": "loss_cls", "loss_box_reg": "loss_box_reg"}


def _build_pair(d2_config: str, our_config: str):
    theirs_cfg = shrink_model(model_zoo.get_config(d2_config).model)
    ours_cfg = shrink_model(load_model_cfg(our_config))
    if "smooth_l1_beta" in ours_cfg.loss:
        theirs_cfg.smooth_l1_beta = ours_cfg.loss.smooth_l1_beta
    torch.manual_seed(0)
    theirs = instantiate(theirs_cfg)
    ours = instantiate(ours_cfg)
    state = {
        k.replace("head.ctrness.", "head.quality_pred."): v for k, v in theirs.state_dict().items()
    }
    missing, unexpected = ours.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    # only our extra state may be missing: EMA buffers of the loss
    assert all(k.startswith("loss.") for k in missing), missing
    return theirs, ours


@pytest.mark.parametrize(
    "d2_config,our_config,names",
    [
        ("common/models/fcos.py", "configs/common/models/fcos_detectron2.py", FCOS_NAMES),
        ("common/models/retinanet.py", "configs/common/models/retinanet.py", RETINA_NAMES),
    ],
)
def test_losses_equal_detectron2(d2_config, our_config, names):
    theirs, ours = _build_pair(d2_config, our_config)
    theirs.train()
    ours.train()
    for step in range(2):
        batch = random_batch(num_images=2, num_boxes=5, seed=step)
        with EventStorage():
            l_theirs = theirs(batch)
            l_ours = ours(batch)
        assert set(l_ours) == set(names)
        for ours_name, theirs_name in names.items():
            a, b = l_ours[ours_name].item(), l_theirs[theirs_name].item()
            assert b > 0
            assert a == pytest.approx(b, rel=1e-5, abs=1e-6), (step, ours_name, a, b)


def test_inference_matches_detectron2_fcos():
    theirs, ours = _build_pair("common/models/fcos.py", "configs/common/models/fcos_detectron2.py")
    theirs.eval()
    ours.eval()
    # lower the threshold so an untrained model produces detections to compare
    theirs.test_score_thresh = ours.test_score_thresh = 0.01
    batch = [{"image": x["image"]} for x in random_batch(num_images=1, seed=3)]
    with torch.no_grad():
        a = ours(batch)[0]["instances"]
        b = theirs(batch)[0]["instances"]
    assert len(a) == len(b) > 0
    assert torch.allclose(a.scores, b.scores, atol=1e-6)
    assert torch.allclose(a.pred_boxes.tensor, b.pred_boxes.tensor, atol=1e-4)
    assert torch.equal(a.pred_classes, b.pred_classes)
