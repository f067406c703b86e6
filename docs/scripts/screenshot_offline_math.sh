#!/usr/bin/env bash
# Screenshot docs/neurons.html (the top of the page: inline and table equations) rendered with
# no network at all, to show that the equations need nothing from the internet (MathJax comes
# with sphinx-mathjax-offline, see docs/conf.py).
#
# Usage: bash docs/scripts/screenshot_offline_math.sh [OUT.png]
#        (default: docs/_static/offline_math.png)
# Needs: the docs extra (pip install torch==2.13.0 -e ".[docs]"), chromium (Debian: apt-get install
# chromium), unshare from util-linux and the right to make a network namespace (root, or user
# namespaces), pillow (comes with matplotlib) to shrink the PNG.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$(realpath -m "${1:-$ROOT/docs/_static/offline_math.png}")
HTML=$(mktemp -d)
trap 'rm -rf "$HTML"' EXIT
mkdir -p "$(dirname "$OUT")"
sphinx-build -q -b html "$ROOT/docs" "$HTML"
# unshare --net: a fresh network namespace has only a loopback that is down, so nothing can be
# fetched. --virtual-time-budget lets MathJax finish before the screenshot.
unshare --net -- chromium --headless --disable-gpu --no-sandbox --hide-scrollbars \
    --virtual-time-budget=15000 --window-size=1200,1600 --screenshot="$HTML/full.png" \
    "file://$HTML/neurons.html" 2>/dev/null
python - "$HTML/full.png" "$OUT" <<'PY'
import sys
from PIL import Image

image = Image.open(sys.argv[1]).convert("RGB")
image = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.LANCZOS)
image.quantize(colors=64).save(sys.argv[2], optimize=True)
PY
echo "wrote $OUT ($(stat -c %s "$OUT") bytes)"
