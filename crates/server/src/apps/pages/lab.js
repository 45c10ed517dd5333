// What the lab's server knows of this page's connection (the facts block before this
// script), shown under the title, and links to the lab's other apps under this host name.
(() => {
  "use strict";
  const facts = JSON.parse(document.getElementById("lab-facts").textContent);
  const here = document.currentScript;
  const conn = document.createElement("p");
  conn.id = "lab-conn";
  conn.className = "lab-conn";
  const tls = facts.tls
    ? [facts.tls.version, facts.tls.cipher, "ALPN " + (facts.tls.alpn || "none")]
    : ["no TLS (plain TCP)"];
  conn.textContent = "This page came over " + [facts.http, ...tls].join(" · ");
  conn.title = "as the lab saw the connection that fetched this page; a browser's own scripts cannot read it";
  const nav = document.createElement("nav");
  nav.id = "lab-apps";
  nav.className = "lab-apps";
  nav.append("The lab's apps: ");
  const ownPort = Number(location.port || (location.protocol === "https:" ? 443 : 80));
  facts.apps.forEach((app, i) => {
    if (i > 0) nav.append(" · ");
    if (app.port === ownPort) {
      const strong = document.createElement("strong");
      strong.textContent = app.name;
      nav.append(strong);
      return;
    }
    const a = document.createElement("a");
    a.href = app.scheme + "://" + location.hostname + ":" + app.port + "/";
    a.textContent = app.name;
    nav.append(a);
  });
  here.after(conn, nav);

  // What the WS and SSE pages share, under one global named for the lab, so that a console
  // snippet's own names (`ws`, `log`) stay free.
  const clock = (date) => date.toTimeString().slice(0, 8) + "." + String(date.getMilliseconds()).padStart(3, "0");
  // A function that adds a timestamped line of `kind` (out, in, push, sys) to `list`.
  function logger(list) {
    return (kind, text) => {
      const li = document.createElement("li");
      li.className = kind;
      const time = document.createElement("time");
      const now = new Date();
      time.dateTime = now.toISOString();
      time.textContent = clock(now);
      const arrow = { out: "→ ", in: "← ", push: "⇐ ", sys: "· " }[kind];
      li.append(time, arrow + text);
      list.prepend(li);
      while (list.children.length > 200) list.lastChild.remove();
    };
  }
  // Echo round trips, last and median shown in `summary`. The lab answers echoes in the order
  // the messages went out, so each answer is the oldest send's.
  function echoTimer(summary) {
    let pending = [];
    const rtts = [];
    return {
      sent() { pending.push(performance.now()); },
      forgetLast() { pending.pop(); },
      reset() { pending = []; },
      // The oldest send's round trip in ms, or undefined when none is pending.
      answered() {
        const sent = pending.shift();
        if (sent === undefined) return undefined;
        const ms = performance.now() - sent;
        rtts.push(ms);
        if (rtts.length > 1000) rtts.shift();
        const sorted = [...rtts].sort((a, b) => a - b);
        const median = sorted[Math.floor(sorted.length / 2)];
        summary.textContent = "last " + ms.toFixed(2) + " ms · median " + median.toFixed(2) + " ms of " + rtts.length;
        return ms;
      },
    };
  }
  // A lab push (`{"type":"push","seq":…,"sent_at_ms":…}`) in words; `id` is its SSE event id.
  const pushText = (push, id) => "push #" + push.seq + (id ? " (id " + id + ")" : "") + ", sent " +
    clock(new Date(push.sent_at_ms)) + ", here " + (Date.now() - push.sent_at_ms) + " ms later";
  globalThis.protolabPage = Object.freeze({ clock, logger, echoTimer, pushText });
})();
