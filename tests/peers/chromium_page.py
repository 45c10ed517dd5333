#!/usr/bin/env python3
"""Opens a page in Debian's headless Chromium and waits until it shows some text.

The CA given with --ca is trusted the way a user trusts it: imported into a fresh NSS
database in a throwaway $HOME (Chromium on Linux reads user roots from ~/.pki/nssdb). Chromium
is driven over the DevTools protocol with the `websockets` library. Prints one JSON line:
{"found": bool, "status": "...", "log": "...", "url": "...", "svgs": N}
(N: SVG charts on the page that drew something) and exits 0 if the text was found.

With --drive instead of --expect, it takes commands from stdin, one JSON object a line, and
answers each with one JSON line, so a test can script several pages:
  {"cmd": "open", "url": U}                      -> {"ok": true, "page": N}   (the first page is 0)
  {"cmd": "eval", "page": N, "js": E}            -> {"ok": true, "value": V}
  {"cmd": "wait", "page": N, "js": E, "timeout": S}
      -> {"ok": true, "value": V} once E is truthy, else {"ok": false, "value": last, "text": body}
  {"cmd": "viewport", "page": N, "width": W, "height": H}   -> {"ok": true}  (then reloads)
  {"cmd": "security", "page": N}
      -> {"ok": true, "protocol": P, "cipher": C, "alpn": A}: Chromium's own view of the TLS
         its page's document came over (reloads the page; P like "TLS 1.3", C like "AES_128_GCM")
  {"cmd": "console", "page": N}
      -> {"ok": true, "entries": [{"level": L, "text": T}, ...]}: the page's console and log
         entries so far (errors, warnings, failed loads), replayed by DevTools on request
"""
import argparse
import asyncio
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import websockets


def trust_ca(home, ca):
    nssdb = os.path.join(home, ".pki", "nssdb")
    os.makedirs(nssdb)
    certutil = shutil.which("certutil")
    if not certutil:
        sys.exit("certutil not found: apt-get install libnss3-tools")
    subprocess.run([certutil, "-N", "-d", "sql:" + nssdb, "--empty-password"], check=True)
    subprocess.run([certutil, "-A", "-d", "sql:" + nssdb, "-t", "C,,", "-n", "protolab test CA", "-i", ca], check=True)


def die_with_this_script():
    """Runs in the child before chromium starts: the kernel kills chromium when this script dies.

    Tests stop this script with SIGKILL when they end, so its `finally` never runs; without
    this every test that drove a page left a headless browser running."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def start_chromium(home, url):
    chromium = shutil.which("chromium")
    if not chromium:
        sys.exit("chromium not found: apt-get install chromium")
    profile = os.path.join(home, "profile")
    cmd = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
        "--user-data-dir=" + profile, url,
    ]
    env = dict(os.environ, HOME=home)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=die_with_this_script)
    port_file = os.path.join(profile, "DevToolsActivePort")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if os.path.exists(port_file):
            with open(port_file) as f:
                lines = f.read().split()
            if lines:
                return proc, int(lines[0])
        if proc.poll() is not None:
            sys.exit(f"chromium exited with {proc.returncode} before opening DevTools")
        time.sleep(0.1)
    proc.kill()
    sys.exit("chromium did not open its DevTools port within 20 s")


def page_ws_url(port, url):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
            for target in json.load(r):
                if target.get("type") == "page":
                    return target["webSocketDebuggerUrl"]
        time.sleep(0.1)
    sys.exit("no page target in chromium")


async def watch(ws_url, expect, timeout, screenshot, selector=None):
    script = """(() => {
      const sel = %s;
      const picked = sel ? document.querySelector(sel) : null;
      const s = document.getElementById('status');
      const l = document.getElementById('log');
      // Charts that drew something: an SVG with a size and at least one mark in it.
      const svgs = [...document.querySelectorAll('svg')].filter(g => {
        const b = g.getBoundingClientRect();
        return b.width > 0 && b.height > 0 && g.querySelectorAll('rect,polyline,circle,line').length > 0;
      }).length;
      return JSON.stringify({url: location.href, title: document.title, svgs,
        selected: picked ? picked.textContent : null,
        status: s ? s.textContent : '', log: l ? l.innerText : document.body ? document.body.innerText : ''});
    })()""" % json.dumps(selector)
    async with websockets.connect(ws_url, max_size=None) as cdp:
        seq = 0

        async def call(method, params=None):
            nonlocal seq
            seq += 1
            await cdp.send(json.dumps({"id": seq, "method": method, "params": params or {}}))
            while True:
                msg = json.loads(await cdp.recv())
                if msg.get("id") == seq:
                    return msg

        state = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            res = await call("Runtime.evaluate", {"expression": script, "returnByValue": True})
            value = res.get("result", {}).get("result", {}).get("value")
            if value:
                state = json.loads(value)
                text = state.get("selected") if selector else state.get("log", "")
                if text is not None and expect in text:
                    state["found"] = True
                    break
            await asyncio.sleep(0.2)
        else:
            state["found"] = False
        if screenshot:
            import base64
            shot = await call("Page.captureScreenshot", {"format": "png"})
            data = shot.get("result", {}).get("data")
            if data:
                with open(screenshot, "wb") as f:
                    f.write(base64.b64decode(data))
        return state


class Page:
    """One tab, driven over its own DevTools connection."""

    def __init__(self, cdp):
        self.cdp = cdp
        self.seq = 0
        self.entries = []

    async def call(self, method, params=None):
        self.seq += 1
        await self.cdp.send(json.dumps({"id": self.seq, "method": method, "params": params or {}}))
        while True:
            msg = json.loads(await self.cdp.recv())
            if msg.get("id") == self.seq:
                return msg
            self.keep_event(msg)

    def keep_event(self, msg):
        """Console and log events that arrive while waiting for an answer."""
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Log.entryAdded":
            entry = params.get("entry", {})
            self.entries.append({"level": entry.get("level"), "text": entry.get("text")})
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.entries.append({"level": params.get("type"), "text": text})
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text")
            self.entries.append({"level": "error", "text": text})

    async def evaluate(self, js):
        res = await self.call("Runtime.evaluate", {"expression": js, "returnByValue": True, "awaitPromise": True})
        result = res.get("result", {})
        if "exceptionDetails" in result:
            return {"error": result["exceptionDetails"].get("exception", {}).get("description", "exception")}
        return {"value": result.get("result", {}).get("value")}


async def drive(port, first_url):
    pages = [Page(await websockets.connect(page_ws_url(port, first_url), max_size=None))]
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        command = json.loads(line)
        cmd = command.get("cmd")
        if cmd == "open":
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/json/new?{urllib.parse.quote(command['url'], safe='')}", method="PUT")
            with urllib.request.urlopen(req, timeout=10) as r:
                target = json.load(r)
            pages.append(Page(await websockets.connect(target["webSocketDebuggerUrl"], max_size=None)))
            answer = {"ok": True, "page": len(pages) - 1}
        elif cmd in ("eval", "wait"):
            page = pages[command.get("page", 0)]
            deadline = time.monotonic() + float(command.get("timeout", 0))
            while True:
                result = await page.evaluate(command["js"])
                done = "error" not in result and bool(result.get("value"))
                if cmd == "eval" or done or time.monotonic() >= deadline:
                    break
                await asyncio.sleep(0.2)
            answer = {"ok": cmd == "eval" and "error" not in result or done, **result}
            if not answer["ok"]:
                text = await page.evaluate("document.body ? document.body.innerText : ''")
                answer["text"] = text.get("value")
        elif cmd == "viewport":
            page = pages[command.get("page", 0)]
            await page.call("Emulation.setDeviceMetricsOverride", {
                "width": int(command["width"]), "height": int(command["height"]),
                "deviceScaleFactor": 1, "mobile": False})
            await page.call("Page.reload", {"ignoreCache": True})
            answer = {"ok": True}
        elif cmd == "security":
            page = pages[command.get("page", 0)]
            await page.call("Network.enable")
            await page.call("Page.reload", {"ignoreCache": True})
            answer = {"ok": False, "error": "no document response within 15 s"}
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    msg = json.loads(await asyncio.wait_for(page.cdp.recv(), deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    break
                params = msg.get("params", {})
                if msg.get("method") == "Network.responseReceived" and params.get("type") == "Document":
                    response = params.get("response", {})
                    details = response.get("securityDetails") or {}
                    answer = {"ok": True, "protocol": details.get("protocol"), "cipher": details.get("cipher"),
                              "alpn": response.get("protocol")}
                    break
                page.keep_event(msg)
            await page.call("Network.disable")
        elif cmd == "console":
            page = pages[command.get("page", 0)]
            # Enabling replays what was logged before; a second call flushes the replay.
            page.entries = []
            await page.call("Log.enable")
            await page.call("Runtime.enable")
            await asyncio.sleep(0.3)
            await page.call("Runtime.evaluate", {"expression": "1"})
            answer = {"ok": True, "entries": page.entries}
        else:
            answer = {"ok": False, "error": f"unknown command {cmd!r}"}
        print(json.dumps(answer), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("url")
    p.add_argument("--ca", help="CA certificate (PEM) to trust")
    p.add_argument("--expect", help="text the page's log must come to contain")
    p.add_argument("--drive", action="store_true", help="take commands from stdin (see above)")
    p.add_argument("--timeout", type=float, default=15)
    p.add_argument("--screenshot", help="write a PNG of the page here")
    p.add_argument("--selector", help="CSS selector of the element whose text must contain --expect")
    args = p.parse_args()
    if not args.drive and args.expect is None:
        p.error("give --expect TEXT or --drive")
    home = tempfile.mkdtemp(prefix="protolab-chromium-")
    proc = None
    try:
        if args.ca:
            trust_ca(home, args.ca)
        proc, port = start_chromium(home, args.url)
        if args.drive:
            asyncio.run(drive(port, args.url))
            return 0
        state = asyncio.run(watch(page_ws_url(port, args.url), args.expect, args.timeout, args.screenshot,
                                 args.selector))
        print(json.dumps(state), flush=True)
        return 0 if state.get("found") else 1
    finally:
        if proc:
            proc.kill()
            proc.wait()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
