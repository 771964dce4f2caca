"""README "Train on your own data": its config, word for word in the README, trains on a COCO json
that the test writes (registered the plain detectron2 way, inside the config file) and evaluates."""

import json
import re

import numpy as np
from PIL import Image

from ..helpers import REPO, assert_ok, read_metrics, run_train_net

CONFIG = REPO / "configs" / "Examples" / "fcos_R_50_FPN_own_coco_data.py"


def test_the_readme_shows_the_config_file_as_it_is():
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert CONFIG.read_text() in blocks


def _write_dataset(root, num_images=4, size=(96, 128)):
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(("cat", "dog", "bird"))]
    images, annotations = [], []
    for i in range(num_images):
        h, w = size
        pixels = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
        for k in range(2):
            x, y, bw, bh = 10 + 50 * k, 20, 30, 40
            pixels[y : y + bh, x : x + bw] = 200 + 20 * k
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": categories[(i + k) % 3]["id"],
                    "bbox": [x, y, bw, bh],
                    "area": bw * bh,
                    "iscrowd": 0,
                }
            )
        name = f"img_{i}.png"
        Image.fromarray(pixels).save(root / "images" / name)
        images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
    for split in ("train", "val"):
        data = {"images": images, "annotations": annotations, "categories": categories}
        (root / f"{split}.json").write_text(json.dumps(data))


def test_the_readme_config_trains_and_evaluates_on_a_coco_json(tmp_path):
    data = tmp_path / "my_data"
    _write_dataset(data)
    out = tmp_path / "out"
    proc = run_train_net(
        [
            "train.max_iter=2",
            "train.device=cpu",
            "train.init_checkpoint=",
            "dataloader.train.total_batch_size=2",
            "dataloader.train.num_workers=0",
            "dataloader.test.num_workers=0",
            # small images, to keep the test short (the recipe's 480-544 px make it minutes)
            "dataloader.train.mapper.augmentations.0.short_edge_length=[96]",
            "dataloader.train.mapper.augmentations.0.max_size=128",
            "dataloader.test.mapper.augmentations.0.short_edge_length=96",
            "dataloader.test.mapper.augmentations.0.max_size=128",
            f"train.output_dir={out}",
        ],
        tmp_path,
        config=CONFIG,
        timeout=600,
        env={"MY_DATA": str(data)},
    )
    assert_ok(proc)
    assert len(read_metrics(out)) >= 1
    results = json.loads((out / "final_results.json").read_text())
    assert "bbox" in json.dumps(results)
