#!/usr/bin/env bash
# Builds durable-rules from source for one Python in a throwaway venv and runs one rule through it.
# Usage: scripts/check-durable-build.sh /path/to/python3.X
set -euo pipefail
py=${1:?python interpreter}
here=$(cd "$(dirname "$0")" && pwd)
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
"$py" -m venv "$venv"
CPPFLAGS="$("$here/durable-cppflags.sh" "$py")" "$venv/bin/pip" install -q --no-binary durable-rules durable-rules==2.0.28
"$venv/bin/python" - <<'PY'
import json, sys
import durable_rules_engine as e
h = e.create_ruleset("probe", json.dumps({"r": {"all": [{"m": {"a": 1}}]}}))
code, state = e.assert_fact(h, json.dumps({"sid": "s", "id": "1", "a": 1}))
assert code == 0, code
assert json.loads(e.start_action_for_state(h, state)[1]) == {"r": {"m": {"sid": "s", "id": "1", "a": 1}}}
print("durable-rules builds and runs on Python %d.%d" % sys.version_info[:2])
PY
