#!/usr/bin/env bash
# `make docker-test`: build camtl's image on a local Debian base and run a short CA-MTL-mini job in it
# with no network, then check the job's outputs on the host. Works from a fresh clone on a Debian 12
# machine whose only outside access is package mirrors: no image registry is needed.
#
#   1. docker.io and debootstrap from Debian when missing; dockerd started when none answers
#   2. the base image BASE_IMAGE: debootstrap of bookworm with python3, pip and a venv (skipped when
#      the image exists)
#   3. the wheels of torch==2.13.0 and requirements.txt downloaded into .whl/ by the host's pip, so
#      that its configuration (mirror, certificates, the local CPU torch wheel) applies; the build
#      container has no network and installs from .whl/ alone
#   4. the image IMAGE built from the Dockerfile with --build-arg BASE_IMAGE=... PIP_NO_INDEX=1
#   5. the `docker run` of docs/scale.md with --network none, GLUE mounted read-only and OUT_DIR mounted
#      for the outputs, which are then checked
#
# Settings (environment): DATA_DIR, OUT_DIR, IMAGE, BASE_IMAGE, DEBIAN_MIRROR, PYTHON, and
# PIP_DOWNLOAD_FLAGS (extra `pip download` flags, e.g. an index with a CPU torch wheel).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR=${DATA_DIR:-../shared/glue}
OUT_DIR=${OUT_DIR:-output/docker-test}
IMAGE=${IMAGE:-camtl:cpu}
BASE_IMAGE=${BASE_IMAGE:-camtl-base:bookworm-py311}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PYTHON=${PYTHON:-python3}
PIP_DOWNLOAD_FLAGS=${PIP_DOWNLOAD_FLAGS:-}
WHEELS=.whl  # gitignored, and the one folder besides the sources that .dockerignore lets through
TASKS=(rte mrpc)

START=$SECONDS
step() { printf '\n== [%4ds] %s\n' "$((SECONDS - START))" "$*"; }
fail() {
    printf '\ndocker-test FAILED: %s\n' "$*" >&2
    exit 1
}
# Before the minutes of set-up, not after them.
[ -d "$DATA_DIR" ] || fail "no GLUE data in $DATA_DIR"

# apt-get, debootstrap and dockerd need root.
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
fi

step "tools: docker.io, debootstrap"
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
"$PYTHON" -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

step "docker daemon"
DOCKER=(docker)
if ! docker info >/dev/null 2>&1 && ! "${SUDO[@]}" docker info >/dev/null 2>&1; then
    # No service manager here (a container); setsid keeps dockerd running after this script.
    echo "starting dockerd (log: /var/log/camtl-dockerd.log)"
    "${SUDO[@]}" setsid sh -c 'dockerd >>/var/log/camtl-dockerd.log 2>&1' </dev/null &
    for _ in $(seq 60); do
        "${SUDO[@]}" docker info >/dev/null 2>&1 && break
        sleep 1
    done
fi
if ! docker info >/dev/null 2>&1; then
    DOCKER=("${SUDO[@]}" docker)
fi
"${DOCKER[@]}" info >/dev/null 2>&1 || fail "dockerd does not answer (see /var/log/camtl-dockerd.log)"
# Without the buildx plugin, docker builds with its legacy builder (and prints a deprecation notice):
# the Dockerfile needs nothing that only BuildKit has.

step "base image $BASE_IMAGE"
if "${DOCKER[@]}" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    echo "exists: skipped"
else
    rootfs=$(mktemp -d /var/tmp/camtl-rootfs.XXXXXX)
    trap '"${SUDO[@]}" rm -rf "$rootfs"' EXIT
    # minbase + passwd: the Dockerfile's useradd. Python 3.11 is bookworm's, the torch wheel's ABI.
    "${SUDO[@]}" debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,passwd \
        bookworm "$rootfs" "$DEBIAN_MIRROR"
    # A venv because Debian's python refuses `pip install` into the system (PEP 668); its bin/
    # comes first on PATH, so `python` and `pip` in the Dockerfile are the venv's.
    "${SUDO[@]}" chroot "$rootfs" python3 -m venv /opt/venv
    "${SUDO[@]}" sh -c "rm -rf '$rootfs'/var/cache/apt/archives/*.deb '$rootfs'/var/lib/apt/lists/*"
    "${SUDO[@]}" tar -C "$rootfs" -c . | "${DOCKER[@]}" import \
        --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV VIRTUAL_ENV=/opt/venv' \
        --change 'CMD ["python3"]' - "$BASE_IMAGE"
    "${SUDO[@]}" rm -rf "$rootfs"
    trap - EXIT
fi

step "wheels in $WHEELS/"
# Resolving takes half a minute even with every wheel present: skip it while the requirements and
# flags are those of the last complete download (the stamp).
stamp="$WHEELS/.downloaded"
want=$(cat requirements.txt; echo "torch==2.13.0 setuptools $PIP_DOWNLOAD_FLAGS")
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "up to date with requirements.txt: skipped"
else
    # Wheels for the image's CPython 3.11; the platform tags are the host's (x86_64 glibc).
    # shellcheck disable=SC2086  # PIP_DOWNLOAD_FLAGS is a list of flags
    "$PYTHON" -m pip download --quiet --dest "$WHEELS" --only-binary=:all: \
        --implementation cp --python-version 3.11 --abi cp311 $PIP_DOWNLOAD_FLAGS \
        torch==2.13.0 setuptools -r requirements.txt
    printf '%s\n' "$want" >"$stamp"
fi
ls "$WHEELS"/torch-2.13.0*.whl >/dev/null 2>&1 || fail "no torch 2.13.0 wheel in $WHEELS/"

step "image $IMAGE"
# --network none: the build installs from .whl/ alone (PIP_NO_INDEX=1).
"${DOCKER[@]}" build --network none --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg PIP_NO_INDEX=1 \
    -t "$IMAGE" .

step "CA-MTL-mini on ${TASKS[*]} in the container, --network none"
"${SUDO[@]}" rm -rf "$OUT_DIR"
mkdir -p "$OUT_DIR"
# The documented command runs as the host user (--user), so the outputs are the host user's. As root
# here, that would run the job as root: run it as the image's own non-root user instead.
if [ "$(id -u)" -ne 0 ]; then
    run_user="$(id -u):$(id -g)"
else
    run_user="$("${DOCKER[@]}" run --rm --network none --entrypoint id "$IMAGE" -u)"
    run_user="$run_user:$("${DOCKER[@]}" run --rm --network none --entrypoint id "$IMAGE" -g)"
    chown "$run_user" "$OUT_DIR"
fi
rc=0
"${DOCKER[@]}" run --rm --network none --user "$run_user" \
    -v "$(realpath "$DATA_DIR")":/data:ro -v "$(realpath "$OUT_DIR")":/out \
    "$IMAGE" --model_name_or_path CA-MTL-mini --data_dir /data --output_dir /out \
    --tasks "${TASKS[@]}" --do_train --do_eval --max_steps 3 --max_train_samples 64 \
    --max_eval_samples 32 --max_seq_length 64 --per_device_train_batch_size 8 || rc=$?
[ "$rc" -eq 0 ] || fail "docker run exited with $rc"

step "outputs in $OUT_DIR"
for name in eval_results.json model.safetensors config.json; do
    [ -s "$OUT_DIR/$name" ] || fail "$OUT_DIR/$name is missing or empty"
    [ -r "$OUT_DIR/$name" ] || fail "$OUT_DIR/$name is not readable by $(id -un)"
done
foreign=$(find "$OUT_DIR" ! -uid "${run_user%%:*}" | head -5)
[ -z "$foreign" ] || fail "files not owned by uid ${run_user%%:*}: $foreign"
"$PYTHON" - "$OUT_DIR/eval_results.json" "${TASKS[@]}" <<'EOF' || fail "eval_results.json is wrong"
import json
import math
import sys

results = json.load(open(sys.argv[1]))
missing = [task for task in sys.argv[2:] if task not in results]
assert not missing, f"tasks missing from eval_results.json: {missing}"
average = results.get("glue_average")
assert isinstance(average, float) and math.isfinite(average), f"glue_average is {average!r}"
print(f"eval_results.json: {', '.join(sys.argv[2:])}, glue_average {average:.4f}")
EOF

step "docker-test passed in $((SECONDS - START)) s"
