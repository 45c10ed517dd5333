#!/usr/bin/env bash
# Build a Python-3 port of Autobahn|Testsuite (wstest) from the sdist tarball alone.
# Result: $AB/py3 (converted suite), $AB/venv (runtime), $AB/venv/bin/wstest (launcher).
# $AB defaults to ~/.cache/autobahn-py3; the sdist is fetched from PyPI when not there.
# Route: the suite is written against autobahn 0.10.9's internals (sendFrame(payload_len, chopsize),
# logTxFrame hooks, xormasker, utf8validator, compress ...), and autobahn 0.10.9 itself already
# runs on Python 3 (six-based).  So we install autobahn==0.10.9 (pins ignored, modern Twisted) and
# port only the *suite*: lib2to3 + the targeted, anchor-checked edits in the Python block below.
set -euo pipefail
AB=${AB:-${AUTOBAHN_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/autobahn-py3}}
TARBALL=${TARBALL:-$AB/autobahntestsuite-25.10.1.tar.gz}
PY=${PYTHON:-python3}
mkdir -p "$AB"
[ -f "$TARBALL" ] || $PY -m pip download -q --no-deps --no-binary :all: "autobahntestsuite==25.10.1" -d "$AB"

# 1) fresh tree from the tarball, converted by lib2to3 (deprecated but still shipped in 3.11)
rm -rf "$AB/py3" && mkdir -p "$AB/py3"
tar xzf "$TARBALL" -C "$AB/py3" --strip-components=1
(cd "$AB/py3" && $PY -W ignore -m lib2to3 -w -n autobahntestsuite >/dev/null 2>&1)

# 2) venv: autobahn 0.10.9 without its py2-era pins; Twisted; pyOpenSSL for wss://;
#    wsaccel (C utf8/xor, as the original autobahn[accelerate] pin); websockets (reference server)
[ -x "$AB/venv/bin/python" ] || $PY -m venv "$AB/venv"
"$AB/venv/bin/pip" install -q --force-reinstall --no-deps "autobahn==0.10.9"  # fresh copy: patched below
"$AB/venv/bin/pip" install -q six txaio twisted pyopenssl service_identity jinja2 wsaccel websockets

# 3) targeted edits.  sub() fails loudly if an anchor is missing, so a drifted input is noticed.
"$AB/venv/bin/python" - "$AB/py3/autobahntestsuite" \
  "$("$AB/venv/bin/python" -c 'import autobahn,os;print(os.path.dirname(autobahn.__file__))')" <<'PYEOF'
import sys, os, re, glob
suite, abdir = sys.argv[1], sys.argv[2]
def sub(path, old, new, count=1, regex=False):
    s = open(path, encoding='utf-8').read()
    n = len(re.findall(old, s, re.M)) if regex else s.count(old)
    assert n >= 1 and (count is None or n == count), (path, old, n)
    s = re.sub(old, new, s, flags=re.M) if regex else s.replace(old, new)
    open(path, 'w', encoding='utf-8').write(s)
P = lambda *p: os.path.join(suite, *p)

# (a) autobahn 0.10.9 py3 bug: float division in repeated payloads (sendFrame(payload_len=...), cases 9.x)
sub(os.path.join(abdir, 'websocket', 'protocol.py'),
    'range(payload_len / len(payload))', 'range(payload_len // len(payload))')

# (b) helper module: py2 "str" literals were byte strings -> b() maps str to bytes (latin-1 keeps
#     '\xNN' escapes byte-exact; anything wider is UTF-8); hexs() = b2a_hex returning text
open(P('py3compat.py'), 'w').write('''import binascii
def b(x):
    if isinstance(x, str):
        try:
            return x.encode('latin-1')
        except UnicodeEncodeError:
            return x.encode('utf-8')
    return x
def hexs(x):
    return binascii.b2a_hex(b(x)).decode('ascii')
def norm(events):
    """events [(kind, payload, ...)] with every non-kind str field as bytes, for comparison"""
    return [tuple(v if i == 0 else b(v) for i, v in enumerate(t)) for t in events]
def jsonable(o):
    if isinstance(o, (bytes, bytearray)):
        return bytes(o).decode('utf-8', 'backslashreplace')
    raise TypeError(repr(o))
''')
for f in glob.glob(P('case', '*.py')) + [P('fuzzing.py')]:
    s = open(f, encoding='utf-8').read()
    if 'binascii.b2a_hex(' in s:
        s = s.replace('binascii.b2a_hex(', 'hexs(')
        s = 'from autobahntestsuite.py3compat import hexs\n' + s
        open(f, 'w', encoding='utf-8').write(s)

# (c) py2 source was utf-8 and these str literals were UTF-8 *bytes* (6.2.1-6.2.3)
for f in ['case6_2_1.py', 'case6_2_2.py', 'case6_2_3.py']:
    sub(P('case', f), r'^(\s*PAYLOAD\d? = "[^"\n]*[^\x00-\x7f][^"\n]*")$', r'\1.encode("utf-8")',
        count=None, regex=True)
# 6.5.x-6.23.x: UTF-8 test vectors are '\xNN' str literals / chr(i) -> bytes
sub(P('case', 'case6_x_x.py'), 'v.validate(vss[:i])', "v.validate(vss[:i].encode('latin-1'))")
sub(P('case', 'case6_x_x.py'), '{"PAYLOAD": p[1],', "{\"PAYLOAD\": p[1].encode('latin-1'),")
sub(P('case', 'case6_x_x.py'), '.tostring()', '.tobytes()', count=None)
# dynamically built case classes: type(n, (object, Case), ..) was fine for py2's old-style Case only
for f in glob.glob(P('case', '*.py')):
    if '(object, Case, )' in open(f).read():
        sub(f, '(object, Case, )', '(Case, )', count=None)
# 9.9.1 (imported, not in the case list): zope's class advice is gone in py3
sub(P('case', 'case9_9_1.py'), 'from zope.interface import implements', 'from zope.interface import implementer')
sub(P('case', 'case9_9_1.py'), 'class FrameProducer:\n\n   implements(interfaces.IPushProducer)',
    '@implementer(interfaces.IPushProducer)\nclass FrameProducer:')
# 10.1.1: integer frame count
sub(P('case', 'case10_1_1.py'), 'len(self.payload) / self.p.autoFragmentSize',
    'len(self.payload) // self.p.autoFragmentSize')

# (d) Case.compare: was pickle.dumps(a)==pickle.dumps(b) (py2 str==bytes); compare values with
#     str payload literals mapped to bytes (autobahn delivers bytes); avoids pickle memo artefacts
sub(P('case', 'case.py'), 'return pickle.dumps(obj1) == pickle.dumps(obj2)',
    'from autobahntestsuite.py3compat import norm\n      return norm(obj1) == norm(obj2)')

# modern txaio no longer picks the framework implicitly (autobahn 0.10.9 relied on that)
sub(P('wstest.py'), 'from . import choosereactor\n', 'from . import choosereactor\nimport txaio; txaio.use_twisted()\n')
# wstest: the 'serializer' mode needs autobahn's WAMP tests (unittest2): optional, not needed here
sub(P('wstest.py'), 'from . import serializer\n',
    'try:\n   from . import serializer\nexcept ImportError:\n   serializer = None\n')

# (e) fuzzing protocol: coerce str payloads handed to autobahn by the cases; log helpers on bytes
F = P('fuzzing.py')
sub(F, 'from autobahntestsuite.py3compat import hexs\n',
    'from autobahntestsuite.py3compat import hexs, b, jsonable\n')
sub(F, '''def binLogData(data, maxlen = 64):
   ellipses = " ..."''', '''def binLogData(data, maxlen = 64):
   data = b(data)
   ellipses = " ..."''')
sub(F, '''      if len(data) > maxlen - len(ellipses):
         dd = data[:maxlen] + ellipses
      else:
         dd = data
      return dd.decode('utf8', errors = 'replace' if replace else 'strict')''',
'''      data = b(data)
      if len(data) > maxlen - len(ellipses):
         return data[:maxlen].decode('utf8', errors = 'replace' if replace else 'strict') + ellipses
      return data.decode('utf8', errors = 'replace' if replace else 'strict')''')
sub(F, "p = ''.join(payload)", "p = b''.join(payload)")
sub(F, '''   MAX_WIRE_LOG_DATA = 256
''', '''   MAX_WIRE_LOG_DATA = 256

   # py3 port: case code passes py2-style str payloads; autobahn 0.10.9 wants bytes
   def sendFrame(self, opcode, payload = b'', *a, **kw):
      return super(FuzzingProtocol, self).sendFrame(opcode, b(payload), *a, **kw)

   def sendMessage(self, payload, *a, **kw):
      return super(FuzzingProtocol, self).sendMessage(b(payload), *a, **kw)

   def sendMessageFrameData(self, payload, *a, **kw):
      return super(FuzzingProtocol, self).sendMessageFrameData(b(payload), *a, **kw)

   def sendPing(self, payload = None):
      return super(FuzzingProtocol, self).sendPing(None if payload is None else b(payload))

   def sendCloseFrame(self, code = None, reasonUtf8 = None, isReply = False):
      if isinstance(reasonUtf8, str):
         # a reply echoes autobahn's decoded remoteCloseReason (text); cases pass byte literals
         reasonUtf8 = reasonUtf8.encode('utf-8') if isReply else b(reasonUtf8)
      return super(FuzzingProtocol, self).sendCloseFrame(code, reasonUtf8, isReply)
''')
# reports: the HTML writer mixes bytes/str (py2 code); we need only JSON. Write JSON first and
# let an HTML failure only warn (otherwise the exception skips reactor.stop() and wstest hangs)
sub(F, '''      if produceHtml:
         self.createMasterReportHTML(self.outdir)
      if produceJson:
         self.createMasterReportJSON(self.outdir)''', '''      if produceJson:
         self.createMasterReportJSON(self.outdir)
      if produceHtml:
         try:
            self.createMasterReportHTML(self.outdir)
         except Exception as e:
            print("py3 port: HTML master report skipped (%r)" % e)''')
sub(F, '''            if produceHtml:
               self.createAgentCaseReportHTML(agentId, caseId, self.outdir)''', '''            if produceHtml:
               try:
                  self.createAgentCaseReportHTML(agentId, caseId, self.outdir)
               except Exception as e:
                  produceHtml = False
                  print("py3 port: HTML case reports skipped (%r)" % e)''')
# JSON reports: bytes fields (httpRequest/Response, localCloseReason) -> text
sub(F, "json.dumps(case, sort_keys = True, indent = 3, separators = (',', ': '))",
    "json.dumps(case, sort_keys = True, indent = 3, separators = (',', ': '), default = jsonable)")
PYEOF

# 4) launcher: run the converted tree in place
cat > "$AB/venv/bin/wstest" <<EOF
#!/bin/sh
PYTHONPATH="$AB/py3" exec "$AB/venv/bin/python" -W ignore -c 'import sys; sys.argv[0] = "wstest"; from autobahntestsuite.wstest import run; run()' "\$@"
EOF
chmod +x "$AB/venv/bin/wstest"
"$AB/venv/bin/wstest" -a
