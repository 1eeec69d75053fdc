# camtl on PyTorch: `docker run IMAGE <run.py flags>` (docs/scale.md, Docker).
# The default base is the CUDA PyTorch image of the pinned torch (torch==2.13.0); its tag follows the
# official pytorch/pytorch naming and torch 2.13.0's own CUDA (13.0), but it was not pulled where this
# file was written (no image registry there). `make docker-test` builds on a local Debian base instead:
# --build-arg BASE_IMAGE=camtl-base:bookworm-py311 (scripts/docker_test.sh).
ARG BASE_IMAGE=pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime
FROM ${BASE_IMAGE}

# Wheels in the build context's .whl/ folder (optional: the CPU torch wheel, or every requirement for an
# offline build) are seen by pip next to the index; --build-arg PIP_NO_INDEX=1 makes pip use them alone.
ARG PIP_NO_INDEX=0
ARG PIP_FIND_LINKS=/tmp/wheels
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# The requirements layer comes first so that code edits do not reinstall them. torch==2.13.0 is a
# requirement of the same install (requirements-with-torch.txt): on the CUDA base the installed torch
# 2.13.0 satisfies it and stays; on a base without torch pip installs 2.13.0 (a .whl/ wheel first).
# The check fails the build when the base brings a torch other than 2.13.0 and pip could not replace it.
# The glob copies .whl/ when it exists and nothing otherwise; its wheels stay in that layer.
COPY requirements.txt requirements-with-torch.txt .whl* /tmp/wheels/
RUN pip install --no-cache-dir -r /tmp/wheels/requirements-with-torch.txt \
    && python -c "import torch; v = torch.__version__; assert v.split('+')[0] == '2.13.0', v; print('torch', v)"

WORKDIR /opt/camtl
COPY pyproject.toml README.md ./
COPY camtl/ camtl/
COPY run.py download_glue_data.py ./
RUN pip install --no-cache-dir --no-deps . && rm -rf build camtl.egg-info

# A non-root default user (uid 10001: free on Debian and Ubuntu bases). `docker run --user
# "$(id -u):$(id -g)"` (docs/scale.md) writes the outputs as the host user instead; HOME=/tmp gives any user
# a writable home for the feature cache (~/.cache/camtl) and the matplotlib and Hugging Face caches.
RUN useradd --no-log-init --create-home --uid 10001 --shell /usr/sbin/nologin camtl
ENV HOME=/tmp
USER 10001

ENTRYPOINT ["python", "run.py"]
