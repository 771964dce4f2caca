"""Command-line overrides are type-checked against the config's value when the config is loaded
(``engine.load_config``), before anything is built: a wrong type is a ``ConfigError`` naming the
override, the expected type and the config's value (rules: ``dense_assign.engine.config``)."""

import time

import pytest

from dense_assign import engine

from ..helpers import REPO, TINY_CONFIG, run_train_net

FCOS = str(REPO / "configs" / "Synthetic-Detection" / "fcos_R_18_FPN.py")
RETINANET = str(REPO / "configs" / "Synthetic-Detection" / "retinanet_R_18_FPN.py")
TINY = str(TINY_CONFIG)


def _error(config, override):
    with pytest.raises(engine.ConfigError) as info:
        engine.load_config(config, [override])
    return str(info.value)


# ================================================================================ refused
def test_string_for_an_int_names_the_key_and_the_value():
    # before: TypeError: can't multiply sequence by non-int of type 'float', a minute later
    assert _error(FCOS, "train.max_iter=abc") == (
        "Config override train.max_iter=abc: expected an int (the config has 600), "
        "got the string 'abc'"
    )


def test_string_for_a_float_names_the_key_and_the_value():
    # before: TypeError: '<' not supported between instances of 'str' and 'int', when built
    assert _error(FCOS, "model.assigner.center_sampling_radius=abc") == (
        "Config override model.assigner.center_sampling_radius=abc: expected a float "
        "(the config has 1.5), got the string 'abc'"
    )


@pytest.mark.parametrize(
    "override,expected",
    [
        ("train.max_iter=2.5", "expected an int (the config has 600), got the float 2.5"),
        ("train.max_iter=true", "expected an int (the config has 600), got the bool true"),
        ("train.amp.enabled=1", "expected a bool (true or false) (the config has false)"),
        ("train.amp.enabled=yes", "got the string 'yes'"),
        ("model.head.prior_prob=[0.01]", "expected a float (the config has 0.01), got the list"),
        ("model.head.conv_dims=96", "expected a list (the config has [96, 96]), got the int 96"),
        ("model.head.conv_dims=[96,abc]", "expected a list of numbers"),
        ("model.head.norm=1", "\"model.head.norm='1'\""),  # a string key: quote the number
        ("model.head.conv_dims.0=abc", "model.head.conv_dims.0=abc: expected an int"),
        ("model.backbone=resnet", "expected a dict of FPN's arguments (the config has FPN(...))"),
        ("model.assigner=5", "got the int 5; set one argument with model.assigner.ARG=VALUE"),
        ("dataloader.train.dataset.names=5", "expected a string or a list of them"),
        ("train.checkpointer=5", "expected a dict"),
        ("train.max_iter=1,2", "is a sweep (several values)"),
        ("train.max_iter=[1,", "cannot be parsed"),
    ],
)
def test_wrong_types_are_refused(override, expected):
    message = _error(FCOS, override)
    assert message.startswith(f"Config override {override}") or repr(override) in message
    assert expected in message, message
    assert "\n" not in message


# ================================================================================ accepted
def test_accepted_overrides_keep_their_meaning():
    cfg = engine.load_config(
        FCOS,
        [
            "model.assigner.center_sampling_radius=2",  # an int for a float key, kept as given
            "model.test_nms_thresh=0.6",
            "train.max_iter=1e3",  # an integral float for an int key: stored as an int
            "train.amp.enabled=True",  # a bool
            "train.clip_grad.enabled=false",
            "model.head.conv_dims=[64,64,64]",  # a list for a list key
            "model.pixel_std=[1,2,3]",  # ints in a list of floats
            "train.device=cpu",
            "train.init_checkpoint=null",  # null for any key
            "dataloader.train.dataset.names=[synthetic_shapes_train,synthetic_shapes_val]",
            "dataloader.train.mapper.augmentations.0.short_edge_length=[96,128]",
            "train.checkpointer={period:5}",  # a dict is merged into a dict node
            "train.eval_period=${train.max_iter}",  # an interpolation: resolved when read
        ],
    )
    assert cfg.model.assigner.center_sampling_radius == 2
    assert cfg.model.test_nms_thresh == 0.6
    assert cfg.train.max_iter == 1000 and type(cfg.train.max_iter) is int
    assert cfg.train.amp.enabled is True and cfg.train.clip_grad.enabled is False
    assert list(cfg.model.head.conv_dims) == [64, 64, 64]
    assert list(cfg.model.pixel_std) == [1, 2, 3]
    assert cfg.train.init_checkpoint is None
    assert list(cfg.dataloader.train.dataset.names) == [
        "synthetic_shapes_train",
        "synthetic_shapes_val",
    ]
    assert list(cfg.dataloader.train.mapper.augmentations[0].short_edge_length) == [96, 128]
    assert cfg.train.checkpointer.period == 5 and "max_to_keep" in cfg.train.checkpointer
    assert cfg.train.eval_period == 1000


def test_null_for_a_none_key_and_a_node():
    cfg = engine.load_config(TINY, ["train.ddp.device_ids=null", "model.head.conv_dims=null"])
    assert cfg.train.ddp.device_ids is None and cfg.model.head.conv_dims is None
    # a key that is None in the config takes any type (none is known)
    cfg = engine.load_config(TINY, ["train.ddp.device_ids=null", "train.ddp.device_ids=[0]"])
    assert list(cfg.train.ddp.device_ids) == [0]
    cfg = engine.load_config(FCOS, ["model.backbone.top_block=null"])
    assert cfg.model.backbone.top_block is None


def test_registered_name_for_a_named_node():
    cfg = engine.load_config(TINY, ["model.assigner=ATSSAssigner", "model.head=DenseHead"])
    assert cfg.model.assigner == "ATSSAssigner" and cfg.model.head == "DenseHead"


def test_an_int_for_a_parameter_annotated_float_is_a_float_key():
    # a config that writes a float argument as an int (DenseLoss's focal_alpha: float)
    cfg = engine.load_config(FCOS)
    cfg.model.loss.focal_alpha = 1
    engine.apply_overrides(cfg, ["model.loss.focal_alpha=0.5"])
    assert cfg.model.loss.focal_alpha == 0.5
    # an int argument without such an annotation stays an int key
    with pytest.raises(engine.ConfigError, match="expected an int"):
        engine.apply_overrides(cfg, ["model.head.num_anchors=1.5"])


def test_overrides_apply_in_order_and_new_keys_are_not_type_checked():
    # a new key has no type to check against; once added, it is checked as any other
    cfg = engine.load_config(TINY, ["+train.my_note=hello", "train.my_note=bye"])
    assert cfg.train.my_note == "bye"
    with pytest.raises(engine.ConfigError, match="train.my_note=5: expected a string"):
        engine.load_config(TINY, ["+train.my_note=hello", "train.my_note=5"])
    # keys the project reads with a default, constructor arguments the config does not set
    cfg = engine.load_config(TINY, ["train.vis_predictions=3", "model.test_topk_candidates=50"])
    assert cfg.train.vis_predictions == 3 and cfg.model.test_topk_candidates == 50
    # ++ (hydra's "force") skips the check
    assert engine.load_config(TINY, ["++train.max_iter=abc"]).train.max_iter == "abc"


def test_overrides_used_by_the_project_still_load():
    engine.load_config(
        TINY,
        [
            "train.device=cpu",
            "train.amp.enabled=True",
            "train.max_iter=3",
            "train.seed=0",
            "train.checkpointer.period=2",
            "train.eval_period=0",
            "train.metrics_window=1",
            "train.deterministic_data=False",
            "train.clip_grad.enabled=True",
            "train.clip_grad.clip_value=5",
            "model.num_classes=3",
            "model.assigner.center_sampling_radius=-1",
            "model.test_nms_thresh=0",
            "model.test_score_fn=cls",
            "model.head.conv_dims=[]",
            "model.head.quality=none",
            "model.loss.box_weight=-1",
            "model.backbone.bottom_up.freeze_at=1",
            "dataloader.test.dataset.names=synthetic_tiny_vall",
            "optimizer.lr=1e30",
        ],
    )
    engine.load_config(
        RETINANET, ["model.assigner.thresholds=[0.6,0.5]", "model.head.num_anchors=9"]
    )


@pytest.mark.long  # a train_net.py subprocess (~10 s); the check itself is tested in-process
def test_train_net_refuses_a_wrong_type_at_once(tmp_path):
    start = time.time()
    proc = run_train_net(["train.max_iter=abc"], tmp_path, config=FCOS, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (
        "train_net.py: error: Config override train.max_iter=abc: expected an int "
        "(the config has 600), got the string 'abc'"
    )
    assert "Traceback" not in proc.stderr
    assert time.time() - start < 60
