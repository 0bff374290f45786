#!/usr/bin/env bash
# Set up (once) and run the whole test suite: unit tests and the real-browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
. .venv/bin/activate
pip install -q -r requirements-test.txt
# The browser tests drive Debian's Chromium through Playwright (never `playwright install`).
if ! command -v chromium >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ||
    echo "warning: could not install chromium; browser tests will be skipped"
fi
# The guided-tour test's Japanese screenshots need a CJK font to be readable (the test passes without).
if ! fc-list :lang=ja 2>/dev/null | grep -q .; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-cjk >/dev/null) ||
    echo "warning: could not install fonts-noto-cjk; Japanese screenshots will show empty boxes"
fi
python -m pytest -q "$@"
