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
})();
