#!/usr/bin/env bash
# dense_assign installer: creates (or completes) the virtual environment used by `make demo` / `make test`.
#
#   PYTHON=python3 VENV=.venv bash .ci/install.sh
#
# Order of preference for detectron2 (the script prints which one it used):
#   (a) a detectron2 already importable in $PYTHON (a user's own build): the venv sees that Python's
#       site-packages, and its torch / torchvision are used as they are;
#   (b) upstream detectron2 from its git repository, when the repository answers within a few seconds
#       (compiles detectron2._C, about 2 minutes on 2 cores);
#   (c) otherwise the registry's v0.6 sources (sdist `pb1-detectron2==0.6`) with the project's
#       compatibility patch .ci/patches/detectron2-v0.6.patch (see the header of that file).
# With (a) and a PYTHON that is a virtual environment, that environment's site-packages are layered
# under the new venv (a .pth file). INSTALL_VENV_ONLY=1 stops once the venv exists and detectron2
# imports in it (tests/integration/test_installer.py).
# Then `pip install -e .[test]` for dense_assign itself. Every step is skipped when already done, so a
# re-run after an interruption finishes the job instead of starting over.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-$repo/.venv}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
D2_GIT_URL="${D2_GIT_URL:-https://github.com/facebookresearch/detectron2.git}"
D2_SDIST_SPEC="pb1-detectron2==0.6"
PATCH="$here/patches/detectron2-v0.6.patch"

say() { printf '[install] %s\n' "$*"; }
die() { printf '[install] ERROR: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null 2>&1 || die "Python interpreter '$PYTHON' not found (set PYTHON=...)"

# ---------------------------------------------------------------------------------------------- venv
mode=""
if "$PYTHON" -c "import detectron2" >/dev/null 2>&1; then
    mode="a"
fi
if [ ! -x "$VENV/bin/python" ]; then
    if [ "$mode" = "a" ]; then
        say "creating $VENV with access to $PYTHON's site-packages (it already has detectron2)"
        "$PYTHON" -m venv --system-site-packages "$VENV"
    else
        say "creating $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
fi
VPY="$VENV/bin/python"
pip_() { "$VPY" -m pip --disable-pip-version-check "$@"; }

# (a) with a PYTHON that is itself a virtual environment (how most people hold their own detectron2):
# `venv --system-site-packages` layers the new venv on that venv's *base* interpreter, whose
# site-packages do not hold the user's detectron2 and torch. A .pth file in the new venv adds the
# given venv's own site-packages after the new venv's (re-written on every run).
if [ "$mode" = "a" ]; then
    base_paths="$("$PYTHON" -c 'import site, sys
if sys.prefix != sys.base_prefix:
    print("\n".join(site.getsitepackages()))')"
    if [ -n "$base_paths" ]; then
        vsite="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
        printf '%s\n' "$base_paths" > "$vsite/_dense_assign_given_python.pth"
        say "$PYTHON is a virtual environment: its site-packages are layered under $VENV ($vsite/_dense_assign_given_python.pth)"
    fi
fi
if [ -n "${INSTALL_VENV_ONLY:-}" ]; then
    # used by tests/integration/test_installer.py: stop once the venv is made, saying where detectron2 comes from
    "$VPY" -c "import detectron2; print('[install] detectron2 from', detectron2.__file__)" \
        || die "detectron2 does not import in $VENV"
    exit 0
fi

# setuptools 81 removed pkg_resources, which detectron2 (v0.6 and main) still imports.
pip_ install -q 'setuptools>=77.0.3,<81' wheel

# --------------------------------------------------------------------------------------------- torch
if "$VPY" -c "import torch, torchvision" >/dev/null 2>&1; then
    say "torch $("$VPY" -c 'import torch; print(torch.__version__)') already installed"
else
    say "installing $TORCH_SPEC"
    # shellcheck disable=SC2086
    pip_ install $TORCH_SPEC
fi

# ------------------------------------------------------------------------------------------ detectron2
if [ "$mode" = "a" ]; then
    say "detectron2: (a) using the build already importable in $PYTHON"
elif "$VPY" -c "import detectron2" >/dev/null 2>&1; then
    say "detectron2: already installed in $VENV ($("$VPY" -c 'import detectron2; print(detectron2.__file__)'))"
elif GIT_TERMINAL_PROMPT=0 timeout 15 git ls-remote --heads "$D2_GIT_URL" >/dev/null 2>&1; then
    say "detectron2: (b) building upstream from $D2_GIT_URL"
    pip_ install --no-build-isolation "git+$D2_GIT_URL"
else
    say "detectron2: (c) $D2_GIT_URL is not reachable; using the registry's v0.6 sources + $PATCH"
    build="$VENV/src"
    rm -rf "$build/pb1-detectron2-0.6" "$build/dl"
    mkdir -p "$build/dl"
    # pip >= 26 refuses to download this sdist because its metadata names a direct-URL extra
    # (panopticapi); an older pip, used only for this download, still fetches it.
    oldpip="$build/oldpip"
    [ -d "$oldpip/pip" ] || pip_ install -q --target "$oldpip" 'pip<26'
    PYTHONPATH="$oldpip" "$VPY" -m pip --disable-pip-version-check download -q --no-deps \
        --no-build-isolation "$D2_SDIST_SPEC" -d "$build/dl"
    tar -xzf "$build"/dl/pb1-detectron2-0.6.tar.gz -C "$build"
    (cd "$build/pb1-detectron2-0.6" && patch -p1 --forward --quiet < "$PATCH")
    pip_ install --no-build-isolation "$build/pb1-detectron2-0.6"
    rm -rf "$build/dl"
fi
"$VPY" -W ignore::FutureWarning -c "import detectron2, detectron2.layers, detectron2.modeling" \
    || die "detectron2 is installed but does not import; see the messages above"

# ------------------------------------------------------------------------------------------ dense_assign
say "installing dense_assign (editable) and its dependencies"
pip_ install -q --no-build-isolation -e "$repo[test]"
"$VPY" -W ignore::FutureWarning - <<'EOF'
import detectron2, torch, torchvision
import dense_assign
try:
    from detectron2 import _C  # noqa: F401
    ops = "with C++ ops"
except ImportError:
    ops = "without C++ ops"
print(f"[install] ready: torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"detectron2 {detectron2.__version__} ({ops}), dense_assign {dense_assign.__version__}, "
      f"CUDA available: {torch.cuda.is_available()}")
EOF
