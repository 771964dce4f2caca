#!/usr/bin/env python
"""dense_assign: label assignment for one-stage dense detectors, on detectron2.

detectron2 itself is NOT a requirement here: it has no usable registry package, so the installer
(.ci/install.sh, run by `make demo` / `make test`) installs it first; see README.md.
"""

import os
import re
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "dense_assign", "__init__.py")) as f:
    version = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)


class BuildPyWithConfigs(build_py):
    """Builds the package with the repository's configs/ copied in as
    dense_assign/model_zoo_configs: a wheel (a non-editable install) has no source tree, and
    dense_assign.model_zoo.get_config looks there first. Editable installs read configs/ itself."""

    def run(self):
        # start from an empty build/lib/dense_assign: a module or config removed or moved in the
        # source tree must not stay in the wheel from an earlier build
        shutil.rmtree(os.path.join(self.build_lib, "dense_assign"), ignore_errors=True)
        super().run()
        target = os.path.join(self.build_lib, "dense_assign", "model_zoo_configs")
        shutil.copytree(
            os.path.join(here, "configs"),
            target,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )


setup(
    name="dense_assign",
    version=version,
    description="Pluggable label assignment (FCOS, RetinaNet, ATSS, Pseudo-IoU, IoU-aware, "
    "AutoAssign, SAPD) for detectron2 one-stage detectors",
    packages=find_packages(include=("dense_assign", "dense_assign.*")),
    # The packaged configs (copied in by BuildPyWithConfigs), so that
    # dense_assign.model_zoo.get_config works after a non-editable install.
    cmdclass={"build_py": BuildPyWithConfigs},
    python_requires=">=3.9",
    install_requires=[
        "torch>=1.10",
        "torchvision",
        "fvcore>=0.1.5",
        "iopath",
        "pycocotools>=2.0.2",
        "numpy",
        "Pillow",
        "matplotlib",
        "tabulate",
        "tensorboard",
        # detectron2's visualizer imports cv2 but does not declare it.
        "opencv-python-headless",
        # hydra-core 1.3 (LazyConfig overrides) needs omegaconf < 2.4; detectron2 main pins it too.
        "omegaconf>=2.1,<2.4",
        "hydra-core>=1.1",
    ],
    extras_require={"test": ["pytest>=7", "pytest-timeout", "pytest-xdist"]},
)
