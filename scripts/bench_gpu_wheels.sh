#!/usr/bin/env bash
# Wheels the benchmark needs on a GPU machine whose image has torch, transformers and numpy but not
# diffusers (and possibly not peft / pydantic), fetched here into .whl/ for Python 3.12 on x86-64.
# Then, on the GPU machine, in the repository root (see BENCHMARKS.md):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && PYTHONPATH=/tmp/site python3 scripts/bench_gpu.py
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
mkdir -p .whl
$PYTHON -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  diffusers==0.42.1 importlib_metadata==10.2.0 peft==0.21.2 \
  pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
ls -la .whl
