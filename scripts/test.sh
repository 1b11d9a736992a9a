#!/usr/bin/env bash
# Set up .venv with the test references and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh test
exec .venv/bin/python -m pytest "${@:-tests}"
