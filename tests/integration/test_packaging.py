"""A built wheel carries the configs: ``dense_assign.model_zoo.get_config`` works after a
non-editable ``pip install`` (no source tree next to the package)."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_carries_the_configs_and_get_config_works_from_it(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(REPO)],
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = (tmp_path / "dist").glob("dense_assign-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        z.extractall(tmp_path / "site")
    configs = sorted(n for n in names if n.startswith("dense_assign/model_zoo_configs/"))
    in_repo = [
        p.relative_to(REPO / "configs").as_posix()
        for p in (REPO / "configs").rglob("*.py")
        if "__pycache__" not in p.parts
    ]
    assert len(configs) == len(in_repo) > 40
    # import the installed copy, not the repository's: another working directory, the copy first
    code = (
        "import dense_assign, dense_assign.model_zoo as z; "
        "print(dense_assign.__file__); "
        "c = z.get_config('COCO-Detection/fcos_R_50_FPN_1x.py'); print(c.model.num_classes)"
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    where, num_classes = out.stdout.split()[-2:]
    assert where.startswith(str(tmp_path / "site")) and num_classes == "80"
