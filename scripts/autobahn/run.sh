#!/usr/bin/env bash
# Run Autobahn|Testsuite fuzzingclient (the py3 port that build-py3.sh makes) against one WebSocket URL.
# usage: run-autobahn.sh URL OUTDIR [CASES]   CASES: comma-separated patterns, default 1-7,9,10
#        AGENT=name (default protolab) is the agent name in the report.
set -euo pipefail
URL=$1; OUT=$2; CASES=${3:-"1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*"}
AB=${AB:-${AUTOBAHN_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/autobahn-py3}}; AGENT=${AGENT:-protolab}
mkdir -p "$OUT"
# spec file: one server, the chosen cases, reports into $OUT
python3 - "$URL" "$OUT" "$CASES" "$AGENT" > "$OUT/spec.json" <<'PY'
import json, sys
url, out, cases, agent = sys.argv[1:]
print(json.dumps({"outdir": out, "servers": [{"agent": agent, "url": url}],
                  "cases": cases.split(","), "exclude-cases": [], "exclude-agent-cases": {}}, indent=1))
PY
start=$(date +%s)
(cd "$OUT" && "$AB/venv/bin/wstest" -m fuzzingclient -s spec.json) > "$OUT/wstest.log" 2>&1 || echo "wstest exited $?"
echo "wall time: $(( $(date +%s) - start )) s   (log: $OUT/wstest.log)"
# summary from index.json + per-case JSON
python3 - "$OUT" "$AGENT" <<'PY'
import json, sys, os, collections
out, agent = sys.argv[1:]
idx = json.load(open(os.path.join(out, "index.json")))[agent]
key = lambda c: tuple(int(x) for x in c.split("."))
cats = collections.OrderedDict()
for cid in sorted(idx, key=key):
    cats.setdefault(cid.split(".")[0], collections.Counter())[idx[cid]["behavior"]] += 1
cols = ["OK", "NON-STRICT", "INFORMATIONAL", "FAILED", "UNIMPLEMENTED"]
print("%-4s %s  %s" % ("cat", " ".join("%13s" % c for c in cols), "other"))
for cat, cnt in cats.items():
    other = {k: v for k, v in cnt.items() if k not in cols}
    print("%-4s %s  %s" % (cat, " ".join("%13d" % cnt[c] for c in cols), other or ""))
print("total %d cases" % len(idx))
for cid in sorted(idx, key=key):
    r = idx[cid]
    if r["behavior"] in ("FAILED", "NON-STRICT") or r["behaviorClose"] not in ("OK", "INFORMATIONAL"):
        d = json.load(open(os.path.join(out, r["reportfile"])))
        print("\n%s %s/%s close=%s  %dms\n  expect: %s\n  result: %s | %s" % (cid, r["behavior"], r["behaviorClose"],
              r["remoteCloseCode"], r["duration"], d["expectation"], d["result"], d["resultClose"]))
t9 = {c: idx[c]["duration"] for c in idx if c.startswith("9.")}
if t9:
    print("\n9.x durations (ms): " + " ".join("%s=%d" % (c, t9[c]) for c in sorted(t9, key=key)))
    print("9.x total: %d ms" % sum(t9.values()))
PY
