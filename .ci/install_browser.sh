#!/usr/bin/env bash
# Install Debian's chromium + chromium-driver for the headless review-page test
# (tests/api/test_review_page.py). Idempotent: does nothing when both are present.
# Nothing is downloaded by selenium itself; the test points at /usr/bin/chromedriver.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "chromium and chromedriver already installed: $(chromium --version 2>/dev/null || true)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver fonts-dejavu-core
chromium --version
chromedriver --version
