# Installs the GPU check kit (.gpukit/wheels, made by `make gpu-kit`) on the GPU machine, with no
# registry: pip installs the wheel files themselves into a folder of their own, and PYTHONPATH points
# at that folder and at the repository, so `import detectron2, fvcore, pycocotools, omegaconf, hydra,
# dense_assign` work in the machine's own Python next to its torch.
#
#   source dev/gpu/install.sh            (from any directory; bash)
#
# PYTHON (default python3) is the interpreter to install for; GPUKIT_SITE (default /tmp/gpukit-site)
# the folder the wheels go to. Sourced, it exports PYTHONPATH=$GPUKIT_SITE:<repo>[:old PYTHONPATH];
# run as a script it installs and prints that export line. A second run with the same wheels only
# sets PYTHONPATH. If the interpreter has no pip, the wheels are unpacked with Python's zipfile module
# instead (their *.data/scripts, antlr4's pygrun only, are left out: nothing here runs them);
# GPUKIT_UNZIP=1 asks for that way even where pip is there.
#
# Meant to be sourced, so: no `set -e` here (it would stay set in the caller's shell); every failure
# returns non-zero with a message instead.

_gpukit_install() {
    local repo wheels site py stamp sums
    repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)" || return 1
    wheels="$repo/.gpukit/wheels"
    site="${GPUKIT_SITE:-/tmp/gpukit-site}"
    py="${PYTHON:-python3}"
    _gpukit_say() { printf '[gpu-kit] %s\n' "$*"; }
    _gpukit_err() { printf '[gpu-kit] ERROR: %s\n' "$*" >&2; }

    if ! compgen -G "$wheels/*.whl" >/dev/null; then
        _gpukit_err "no wheels in $wheels: run \`make gpu-kit\` on a machine with the registry and let"
        _gpukit_err ".gpukit/ travel with the working tree (it is git-ignored); see dev/gpu/README.md"
        return 1
    fi
    command -v "$py" >/dev/null 2>&1 || { _gpukit_err "Python '$py' not found (set PYTHON=...)"; return 1; }
    # pycocotools' wheel is cp312-abi3; the others are pure Python.
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 12))' \
        || { _gpukit_err "$("$py" -V 2>&1) is older than the kit's Python 3.12"; return 1; }
    # The sums prepare.sh wrote: a wheel damaged or missing on the way is caught here.
    sums="$repo/.gpukit/SHA256SUMS"
    if [ -f "$sums" ] && command -v sha256sum >/dev/null 2>&1; then
        (cd "$wheels" && sha256sum --quiet -c "$sums") \
            || { _gpukit_err "the wheels do not match $sums: copy .gpukit/ again"; return 1; }
    fi

    # The stamp holds the wheels' checksums: a kit that changed, even a wheel rebuilt under the same
    # name, is installed again (--upgrade replaces what is there).
    stamp="$site/.gpukit-installed"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(cd "$wheels" && cksum -- *.whl)" ]; then
        _gpukit_say "kit already installed in $site"
    else
        mkdir -p "$site" || { _gpukit_err "cannot create $site"; return 1; }
        if "$py" -m pip --version >/dev/null 2>&1 && [ -z "${GPUKIT_UNZIP:-}" ]; then
            _gpukit_say "installing $(cd "$wheels" && ls -- *.whl | wc -l) wheels into $site (no index)"
            # PIP_CONFIG_FILE=/dev/null: the machine's pip configuration (an index, find-links) plays
            # no part; --no-deps: the kit's requirements are either in the kit or on the machine.
            PIP_CONFIG_FILE=/dev/null "$py" -m pip install -q --disable-pip-version-check \
                --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
                "$wheels"/*.whl \
                || { _gpukit_err "pip could not install the wheels (messages above)"; return 1; }
        else
            _gpukit_say "no pip in $py: unpacking $(cd "$wheels" && ls -- *.whl | wc -l) wheels into $site"
            "$py" - "$site" "$wheels"/*.whl <<'PYEOF' || { _gpukit_err "unpacking failed"; return 1; }
import sys, zipfile

site = sys.argv[1]
for wheel in sys.argv[2:]:
    with zipfile.ZipFile(wheel) as z:
        for member in z.infolist():
            parts = member.filename.split("/")
            if parts[0].endswith(".data"):
                # purelib / platlib belong in site itself; scripts and data are not needed.
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    continue
                member.filename = "/".join(parts[2:])
            z.extract(member, site)
PYEOF
        fi
        (cd "$wheels" && cksum -- *.whl) > "$stamp"
    fi

    case ":${PYTHONPATH:-}:" in
        *":$site:$repo:"*) ;;
        *) export PYTHONPATH="$site:$repo${PYTHONPATH:+:$PYTHONPATH}" ;;
    esac
    "$py" - <<'PYEOF' || { _gpukit_err "the kit is installed but does not import (messages above)"; return 1; }
import detectron2, fvcore, hydra, iopath, omegaconf, pycocotools, torch, torchvision  # noqa: F401
import dense_assign

print(f"[gpu-kit] ready: torch {torch.__version__} (CUDA available: {torch.cuda.is_available()}), "
      f"detectron2 {detectron2.__version__} from {detectron2.__path__[0]}, "
      f"dense_assign {dense_assign.__version__}")
PYEOF
    _gpukit_say "PYTHONPATH=$PYTHONPATH"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    # Run as a script: install, then say how to get the same PYTHONPATH in the calling shell.
    _gpukit_install || exit $?
    printf '[gpu-kit] run as a script: in your shell, `export PYTHONPATH=%s` (or source this file)\n' \
        "$PYTHONPATH"
elif _gpukit_install; then
    unset -f _gpukit_install _gpukit_say _gpukit_err
else
    unset -f _gpukit_install _gpukit_say _gpukit_err
    return 1
fi
