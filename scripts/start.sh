#!/usr/bin/env bash
# Set up (once) and start the app on http://127.0.0.1:7860 with the shipped checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
. .venv/bin/activate
pip install -q -r requirements.txt
exec python app.py "$@"
