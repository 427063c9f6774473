#!/usr/bin/env bash
# Build what a cluster run uploads:
#   dist/samplemix_spark-*.whl      the library (Databricks: a job library; EMR: inside the packed env)
#   dist/bundle/jobs/*.py            spark-submit entry points
#   dist/bundle/conf/*.yaml          configs
# With --emr, also dist/pyenv.tar.gz: a packed Python environment with the wheel and its
# dependencies, for `spark-submit --archives pyenv.tar.gz#environment` (see emr/steps.json).
set -euo pipefail
cd "$(dirname "$0")"
python="${PYTHON:-python3}"
rm -rf dist
"$python" -m pip wheel --no-deps --wheel-dir dist .
mkdir -p dist/bundle
cp -r jobs conf dist/bundle/
if [[ "${1:-}" == "--emr" ]]; then
  "$python" -m venv dist/pyenv
  dist/pyenv/bin/pip install -q dist/samplemix_spark-*.whl venv-pack
  dist/pyenv/bin/venv-pack -p dist/pyenv -o dist/pyenv.tar.gz
  rm -rf dist/pyenv
fi
echo "built: $(ls dist/*.whl)"
