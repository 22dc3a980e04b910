#!/usr/bin/env bash
# Installs the system packages the test suite needs, only when they are missing.
# Java 17 runs Spark in local mode (the scale-out tests); Chromium opens the HTML reports and the
# dashboard in the browser tests (Playwright drives it by path: `playwright install` cannot
# download browsers here); PostgreSQL's server binaries run the operations-store tests against a
# throwaway server (scripts/postgres.sh).
set -euo pipefail
need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "installing system packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
