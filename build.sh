#!/usr/bin/env bash
# Build what a cluster run uploads:
#   dist/samplemix_spark-*.whl      the library (Databricks: a job library; EMR: inside the packed env)
#   dist/bundle/jobs/*.py            spark-submit entry points
#   dist/bundle/conf/*.yaml          configs
# With --emr cpu|gpu, also dist/pyenv-cpu.tar.gz or dist/pyenv-gpu.tar.gz: a packed Python
# environment with the wheel and what the executors need, for `spark-submit --archives
# pyenv-cpu.tar.gz#environment` (see emr/steps.json). It holds no pyspark: the cluster's Spark
# provides it, so the job runs on the cluster's own Spark version.
#   cpu: CPU torch (torch==$TORCH_VERSION; where PyPI's build of it is a CUDA one, set
#        TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu) and faiss-cpu
#   gpu: PyPI's CUDA torch and faiss-gpu-cu12 in place of faiss-cpu
# DIST (default dist) is the output folder; PYTHON the interpreter to build with (its minor
# version must be the cluster nodes' Python, since venv-pack packs no interpreter).
set -euo pipefail
cd "$(dirname "$0")"
python="${PYTHON:-python3}"
dist="${DIST:-dist}"
variant=""
if [[ "${1:-}" == "--emr" ]]; then
  variant="${2:-}"
  if [[ "$variant" != "cpu" && "$variant" != "gpu" ]]; then
    echo "usage: ./build.sh [--emr cpu|gpu]" >&2
    exit 2
  fi
fi
rm -rf "$dist"
"$python" -m pip wheel -q --no-deps --wheel-dir "$dist" .
mkdir -p "$dist/bundle"
cp -r jobs conf "$dist/bundle/"
if [[ -n "$variant" ]]; then
  env="$dist/pyenv-$variant"
  "$python" -m venv "$env"
  if [[ "$variant" == "cpu" ]]; then
    "$env/bin/pip" install -q ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==${TORCH_VERSION:-2.13.0}"
    "$env/bin/pip" install -q "$dist"/samplemix_spark-*.whl venv-pack
  else
    "$env/bin/pip" install -q "$dist"/samplemix_spark-*.whl venv-pack
    # Both wheels install the module `faiss`: remove the CPU one before adding the GPU one.
    "$env/bin/pip" uninstall -q -y faiss-cpu
    "$env/bin/pip" install -q faiss-gpu-cu12
  fi
  if "$env/bin/python" -c "import pyspark" 2>/dev/null; then
    echo "build.sh: pyspark got into the packed environment; it must come from the cluster" >&2
    exit 1
  fi
  "$env/bin/venv-pack" -q -p "$env" -o "$dist/pyenv-$variant.tar.gz"
  rm -rf "$env"
  echo "packed: $dist/pyenv-$variant.tar.gz ($(du -h "$dist/pyenv-$variant.tar.gz" | cut -f1))"
fi
echo "built: $(ls "$dist"/*.whl)"
