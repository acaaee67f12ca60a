#!/usr/bin/env bash
# Install Debian's headless Chromium for the report page test, if it is not there yet.
set -u
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "browser.sh: could not install chromium; the browser test will be skipped (loudly)." >&2
else
  echo "browser.sh: chromium missing and not root; the browser test will be skipped (loudly)." >&2
fi
exit 0
