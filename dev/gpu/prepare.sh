#!/usr/bin/env bash
# Gathers the GPU check kit: .gpukit/wheels/, one wheel for each package the project needs that the
# GPU machine lacks, so that dev/gpu/install.sh can install them there with no registry at all.
#
#   make gpu-kit        (or: bash dev/gpu/prepare.sh, from anywhere, once .venv exists)
#
# The GPU machine has Python 3.12 (manylinux x86-64) with torch, torchvision, numpy, scipy, opencv,
# matplotlib, pillow, tabulate, pyyaml, cloudpickle, portalocker, pytest, tqdm, tensorboard, packaging
# and requests. What it lacks, and why the project needs it (dev/gpu/README.md, "Preparing the kit"):
#   pb1-detectron2 0.6    detectron2 itself: the registry's v0.6 sources with .ci/patches/detectron2-v0.6.patch,
#                         Python files and model-zoo configs only (built here, py3-none-any)
#   fvcore, iopath        detectron2's config/checkpoint/file helpers (fvcore is sdist-only: built here)
#   omegaconf, hydra-core LazyConfig and its command-line overrides (omegaconf < 2.4 for hydra 1.3)
#   antlr4-python3-runtime 4.9.3  omegaconf's and hydra's grammar runtime (sdist-only: built here)
#   pycocotools           COCO evaluation (compiled: the cp312 manylinux wheel is downloaded)
#   yacs, termcolor       fvcore / detectron2 imports
#   setuptools < 81       detectron2.model_zoo imports pkg_resources, which setuptools 81 removed; the
#                         GPU machine's own setuptools (pulled in by torch) may be newer
# Requirements of these wheels that the GPU machine already has (numpy, pyyaml, tqdm, pillow, tabulate,
# portalocker, packaging, matplotlib, tensorboard, cloudpickle) are not in the kit. detectron2 v0.6
# also declares black, future and pydot; none is imported by what the project runs (black only by
# LazyConfig.to_py), so they are left out too.
#
# Idempotent: a wheel already in .gpukit/wheels is kept; a wheel of another version of a kit package
# is removed (one wheel per package). Fails when the kit exceeds GPUKIT_LIMIT_MIB (60 MiB).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
VENV="${VENV:-$repo/.venv}"
KIT="${GPUKIT_DIR:-$repo/.gpukit}"
WHEELS="$KIT/wheels"
SCRATCH="$KIT/build"
LIMIT_MIB="${GPUKIT_LIMIT_MIB:-60}"
PATCH="$repo/.ci/patches/detectron2-v0.6.patch"
D2_VERSION="0.6"

# Wheels the registry has (pure ones, and pycocotools' cp312 manylinux build).
DOWNLOAD=(
    iopath==0.1.9
    omegaconf==2.3.1
    hydra-core==1.3.8
    pycocotools==2.0.11
    yacs==0.1.8
    termcolor==3.3.0
    setuptools==80.10.2
)
# Packages the registry has as sources only: built here into py3-none-any wheels.
BUILD_FROM_SDIST=(
    fvcore==0.1.5.post20221221
    antlr4-python3-runtime==4.9.3
)

say() { printf '[gpu-kit] %s\n' "$*"; }
die() { printf '[gpu-kit] ERROR: %s\n' "$*" >&2; exit 1; }

VENV="$(cd "$VENV" 2>/dev/null && pwd)" || die "${VENV}: no such directory: run \`make install\` first"
VPY="$VENV/bin/python"
[ -x "$VPY" ] || die "$VPY not found: run \`make install\` first (the kit is built with .venv's pip)"
pip_() { "$VPY" -m pip --disable-pip-version-check "$@"; }

# Wheel file names spell the project name with '_' for any run of '-', '_', '.'; compare lower-cased.
norm() { printf '%s' "$1" | tr 'A-Z' 'a-z' | sed -E 's/[-_.]+/_/g'; }
# The wheel of name==version in $WHEELS, if there is one.
find_wheel() {
    local name ver f
    name="$(norm "$1")"; ver="$2"
    for f in "$WHEELS"/*.whl; do
        [ -e "$f" ] || continue
        case "$(basename "$f" | tr 'A-Z' 'a-z')" in
            "$name-$ver-"*) printf '%s\n' "$f"; return 0 ;;
        esac
    done
    return 1
}
# Removes wheels of another version of the package, so that install.sh's *.whl holds one per package.
drop_other_versions() {
    local name ver f base
    name="$(norm "$1")"; ver="$2"
    for f in "$WHEELS"/*.whl; do
        [ -e "$f" ] || continue
        base="$(basename "$f" | tr 'A-Z' 'a-z')"
        case "$base" in
            "$name-$ver-"*) ;;
            "$name-"*) say "removing $(basename "$f") (the kit wants $1 $ver)"; rm -f "$f" ;;
        esac
    done
}
# Only pure wheels or CPython 3.12 manylinux x86-64 ones install on the GPU machine.
check_tag() {
    case "$(basename "$1")" in
        *-py3-none-any.whl | *-py2.py3-none-any.whl) ;;
        *-cp312-cp312-manylinux*x86_64*.whl | *-cp312-abi3-manylinux*x86_64*.whl) ;;
        *) die "$(basename "$1") does not install on CPython 3.12 manylinux x86-64" ;;
    esac
}

mkdir -p "$WHEELS"

# ------------------------------------------------------------------------------- registry wheels
for spec in "${DOWNLOAD[@]}"; do
    name="${spec%%==*}"; ver="${spec#*==}"
    drop_other_versions "$name" "$ver"
    if find_wheel "$name" "$ver" >/dev/null; then continue; fi
    say "downloading $spec (CPython 3.12 manylinux x86-64)"
    rm -rf "$SCRATCH/dl" && mkdir -p "$SCRATCH/dl"
    pip_ download -q --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux_2_28_x86_64 --platform any \
        -d "$SCRATCH/dl" "$spec"
    mv "$SCRATCH"/dl/*.whl "$WHEELS"/
done

# --------------------------------------------------------------------------- sdist-only packages
for spec in "${BUILD_FROM_SDIST[@]}"; do
    name="${spec%%==*}"; ver="${spec#*==}"
    drop_other_versions "$name" "$ver"
    if find_wheel "$name" "$ver" >/dev/null; then continue; fi
    say "building a wheel of $spec from its sources"
    rm -rf "$SCRATCH/dl" && mkdir -p "$SCRATCH/dl"
    pip_ wheel -q --no-deps --no-build-isolation --no-binary :all: -w "$SCRATCH/dl" "$spec"
    mv "$SCRATCH"/dl/*.whl "$WHEELS"/
done

# ------------------------------------------------------------------------------------ detectron2
drop_other_versions pb1-detectron2 "$D2_VERSION"
if ! find_wheel pb1-detectron2 "$D2_VERSION" >/dev/null; then
    src="$SCRATCH/pb1-detectron2-$D2_VERSION"
    rm -rf "$src" "$SCRATCH/dl" && mkdir -p "$SCRATCH/dl"
    # The tree .ci/install.sh unpacked and patched, when it is there and the patch is in it (the patch
    # then applies in reverse); otherwise the sdist, fetched the installer's way, and the patch.
    reuse="$VENV/src/pb1-detectron2-$D2_VERSION"
    if [ -f "$reuse/setup.py" ] \
        && (cd "$reuse" && patch -p1 -R -f --dry-run --quiet < "$PATCH") >/dev/null 2>&1; then
        say "detectron2: copying the patched sources in $reuse"
        mkdir -p "$src"
        tar -C "$reuse" --exclude=./build --exclude='./*.egg-info' -cf - . | tar -C "$src" -xf -
    else
        say "detectron2: fetching pb1-detectron2==$D2_VERSION and applying $PATCH"
        # pip >= 26 refuses this sdist (its metadata names a direct-URL extra); pip < 26 fetches it.
        oldpip="$VENV/src/oldpip"
        if [ ! -d "$oldpip/pip" ]; then
            oldpip="$SCRATCH/oldpip"
            [ -d "$oldpip/pip" ] || pip_ install -q --target "$oldpip" 'pip<26'
        fi
        PYTHONPATH="$oldpip" "$VPY" -m pip --disable-pip-version-check download -q --no-deps \
            --no-binary :all: --no-build-isolation "pb1-detectron2==$D2_VERSION" -d "$SCRATCH/dl"
        tar -xzf "$SCRATCH/dl/pb1-detectron2-$D2_VERSION.tar.gz" -C "$SCRATCH"
        (cd "$src" && patch -p1 --forward --quiet < "$PATCH")
    fi
    rm -rf "$SCRATCH/dl" && mkdir -p "$SCRATCH/dl"
    say "detectron2: building the wheel (no compiled extension)"
    # setup.py imports torch (for its extension helpers): .venv's torch, hence no build isolation.
    pip_ wheel -q --no-deps --no-build-isolation -w "$SCRATCH/dl" "$src"
    built=("$SCRATCH"/dl/*.whl)
    [ "${#built[@]}" -eq 1 ] || die "detectron2: expected one wheel, got: ${built[*]}"
    case "$(basename "${built[0]}")" in
        pb1_detectron2-"$D2_VERSION"-py3-none-any.whl) ;;
        *) die "detectron2: $(basename "${built[0]}") is not a py3-none-any wheel" ;;
    esac
    # The model zoo's configs must be in (LazyConfig / get_config read them), compiled code must not.
    "$VPY" - "${built[0]}" <<'PYEOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
configs = [n for n in names if n.startswith("detectron2/model_zoo/configs/")]
compiled = [n for n in names if n.endswith((".so", ".pyd", ".dylib"))]
if len(configs) < 10 or not any(n.endswith(".py") for n in configs) or compiled:
    sys.exit(f"[gpu-kit] ERROR: detectron2 wheel has {len(configs)} model-zoo configs, "
             f"compiled files {compiled}")
print(f"[gpu-kit] detectron2: {len(configs)} model-zoo config files, no compiled extension")
PYEOF
    mv "${built[0]}" "$WHEELS"/
fi
rm -rf "$SCRATCH"

# -------------------------------------------------------------------------------------- summary
expected=()
for spec in "${DOWNLOAD[@]}" "${BUILD_FROM_SDIST[@]}" "pb1-detectron2==$D2_VERSION"; do
    f="$(find_wheel "${spec%%==*}" "${spec#*==}")" || die "no wheel for $spec in $WHEELS"
    check_tag "$f"
    expected+=("$(basename "$f")")
done
total=0
for f in "$WHEELS"/*.whl; do
    base="$(basename "$f")"
    [[ " ${expected[*]} " == *" $base "* ]] || die "$base in $WHEELS is no kit package: remove it"
    size=$(stat -c %s "$f")
    total=$((total + size))
    awk -v s="$size" -v b="$base" 'BEGIN { printf "[gpu-kit] %9.1f KiB  %s\n", s / 1024, b }'
done
(cd "$WHEELS" && sha256sum -- *.whl) > "$KIT/SHA256SUMS"
awk -v t="$total" -v n="${#expected[@]}" -v d="$WHEELS" \
    'BEGIN { printf "[gpu-kit] %9.2f MiB  total, %d wheels in %s\n", t / 1048576, n, d }'
[ "$total" -le $((LIMIT_MIB * 1048576)) ] || die "the kit exceeds $LIMIT_MIB MiB"
