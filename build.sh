#!/usr/bin/env bash
# Build the wheel and collect what a cluster run uploads: dist/samplemix_spark-*.whl,
# dist/bundle/jobs/*.py (spark-submit entry points) and dist/bundle/conf/*.yaml.
set -euo pipefail
cd "$(dirname "$0")"
rm -rf dist
python3 -m pip wheel --no-deps --wheel-dir dist .
mkdir -p dist/bundle
cp -r jobs conf dist/bundle/
echo "built: $(ls dist/*.whl); upload dist/bundle/jobs and dist/bundle/conf next to it"
