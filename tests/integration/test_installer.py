"""The installer's path (a): a detectron2 already importable in the given Python is used, also when
that Python is a virtual environment (where ``venv --system-site-packages`` alone would layer the
new venv on the base interpreter and lose the user's packages)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_path_a_with_a_virtual_environment_that_holds_detectron2(tmp_path):
    user = tmp_path / "user-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(user)], check=True)
    user_py = user / "bin" / "python"
    site = subprocess.run(
        [str(user_py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    stand_in = Path(site) / "detectron2"
    stand_in.mkdir(parents=True)
    (stand_in / "__init__.py").write_text('__version__ = "stand-in"\n')
    env = dict(os.environ, PYTHON=str(user_py), VENV=str(tmp_path / "venv"), INSTALL_VENV_ONLY="1")
    out = subprocess.run(
        ["bash", str(REPO / ".ci" / "install.sh")], env=env, capture_output=True, text=True
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "it already has detectron2" in text  # path (a)
    assert "is a virtual environment: its site-packages are layered" in text
    assert f"[install] detectron2 from {stand_in / '__init__.py'}" in text
