#!/usr/bin/env bash
# Set up sgdwalk in ./.venv on a fresh machine: a virtual environment, PyTorch, then the
# package with its test extras, Ray (for `sgdwalk sweep --backend ray`) and the integrations
# (Lightning, Hugging Face, TensorBoard, W&B; tested against the real packages). Safe to run
# again; it only installs what is missing.
#
# PyTorch comes first and pinned (torch==2.13.0): on the development machines that takes the
# CPU build lying on disk and never pulls a CUDA build. Put your own torch into .venv before
# running this to keep it: the package itself accepts any torch >= 2.1.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install --quiet torch==2.13.0
fi
.venv/bin/pip install --quiet -e ".[test,parquet,ray,integrations]"
