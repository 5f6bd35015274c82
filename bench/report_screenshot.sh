#!/usr/bin/env bash
# Render a workspace's report in a real headless browser (Chromium) and save a PNG of the page.
#   bench/report_screenshot.sh [WORKSPACE] [OUT.png] [WIDTHxHEIGHT]
# Needs Chromium (Debian: apt-get install -y chromium). Writes the report first (`lifelean report`), then
# loads reports/index.html from disk with no network, as a reader would open it.
set -euo pipefail
ws="${1:-${LIFELEAN_WORKSPACE:-workspaces/default}}"
out="${2:-docs/report.png}"
size="${3:-1280x2400}"
here="$(cd "$(dirname "$0")/.." && pwd)"
lifelean="${LIFELEAN:-$here/.venv/bin/lifelean}"
browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
if [ -z "$browser" ]; then
  echo "error: no Chromium on PATH; install it (Debian: apt-get install -y chromium)" >&2
  exit 2
fi
"$lifelean" -w "$ws" report >/dev/null
page="$(cd "$ws" && pwd)/reports/index.html"
mkdir -p "$(dirname "$out")"
"$browser" --headless=new --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
  --user-data-dir="$(mktemp -d)" --window-size="${size/x/,}" --screenshot="$out" "file://$page" 2>/dev/null
echo "screenshot of $page written to $out ($(du -h "$out" | cut -f1))"
