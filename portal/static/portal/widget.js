/* The loyalty program's shop widget (docs/portal.md, "The shop widget"). A shop includes:
     <div id="loyalty-widget"></div>
     <script src="https://<loyalty host>/p/widget.js" data-program="<slug>" data-token="<token>"
             data-language="fr" data-target="loyalty-widget" defer></script>
   It reads the panel (JSON) and the stylesheet from the script's own host and draws the panel
   in a shadow root: text through textContent only, styles as a constructed stylesheet, the brand
   colours as custom properties. No inline script or style, no eval: it works under a strict
   Content-Security-Policy that allows this host in script-src and connect-src. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) { return; }
  var base = new URL(script.src, document.baseURI).origin;
  var slug = script.getAttribute("data-program") || "";
  var token = script.getAttribute("data-token") || "";
  var language = script.getAttribute("data-language") || "";
  var targetId = script.getAttribute("data-target") || "";

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text) { node.textContent = text; }
    return node;
  }

  function link(className, text, href) {
    var a = el("a", className, text);
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener";
    return a;
  }

  function section(title) {
    var box = el("section", "lw-section");
    box.appendChild(el("h3", "lw-h", title));
    return box;
  }

  function render(data) {
    var root = el("div", "lw");
    root.setAttribute("lang", data.language);
    root.setAttribute("role", "region");
    root.setAttribute("aria-label", data.title);
    var head = el("div", "lw-head");
    if (data.program.logo_url) {
      var logo = el("img", "lw-logo");
      logo.src = data.program.logo_url;
      logo.alt = data.program.name;
      head.appendChild(logo);
    } else {
      head.appendChild(el("p", "lw-title", data.program.name));
    }
    root.appendChild(head);
    var body = el("div", "lw-body");
    if (data.greeting) { body.appendChild(el("p", "lw-greeting", data.greeting)); }
    body.appendChild(el("p", "lw-label", data.balance.label));
    body.appendChild(el("p", "lw-balance", data.balance.text));
    if (data.balance.pending_text) { body.appendChild(el("p", "lw-pending", data.balance.pending_text)); }
    if (data.tier) {
      var tier = section(data.tier.label);
      tier.appendChild(el("p", "lw-tier-name", data.tier.name));
      var bar = el("progress", "lw-progress");
      bar.max = 100;
      bar.value = data.tier.percent;
      bar.setAttribute("aria-label", data.tier.text);
      tier.appendChild(bar);
      tier.appendChild(el("p", "lw-note", data.tier.text));
      body.appendChild(tier);
    }
    var rewards = section(data.rewards.title);
    if (data.rewards.items.length) {
      var list = el("ul", "lw-list");
      data.rewards.items.forEach(function (item) {
        var li = el("li");
        li.appendChild(el("span", "lw-reward", item.name));
        li.appendChild(el("span", "lw-price", item.price));
        li.appendChild(el("span", "lw-state" + (item.ready ? " lw-ready" : ""), item.text));
        list.appendChild(li);
      });
      rewards.appendChild(list);
    } else {
      rewards.appendChild(el("p", "lw-note", data.rewards.empty));
    }
    body.appendChild(rewards);
    if (data.referral) {
      var refer = section(data.referral.title);
      refer.appendChild(el("p", "lw-note", data.referral.text));
      var code = el("p", "", data.referral.code_label + ": ");
      code.appendChild(el("span", "lw-code", data.referral.code));
      refer.appendChild(code);
      var p = el("p", "", data.referral.link_label + ": ");
      p.appendChild(link("lw-link", data.referral.link, data.referral.link));
      refer.appendChild(p);
      body.appendChild(refer);
    }
    body.appendChild(link("lw-portal", data.portal.text, data.portal.url));
    root.appendChild(body);
    return root;
  }

  function host() {
    var found = targetId ? document.getElementById(targetId) : null;
    if (found) { return found; }
    var made = document.createElement("div");
    script.parentNode.insertBefore(made, script.nextSibling);
    return made;
  }

  function get(url, asJson) {
    return fetch(url, { credentials: "omit", referrerPolicy: "no-referrer" }).then(function (response) {
      if (!response.ok) {
        return response.text().then(function (text) { throw new Error(response.status + " " + text); });
      }
      return asJson ? response.json() : response.text();
    });
  }

  if (!slug || !token || !window.fetch) { return; }
  var query = "?token=" + encodeURIComponent(token) + (language ? "&lang=" + encodeURIComponent(language) : "");
  Promise.all([
    get(base + "/p/" + encodeURIComponent(slug) + "/widget/data" + query, true),
    get(base + "/p/widget.css", false)
  ]).then(function (results) {
    var data = results[0];
    var target = host();
    var shadow = target.shadowRoot || target.attachShadow({ mode: "open" });
    var sheet = new CSSStyleSheet();
    sheet.replaceSync(results[1]);
    shadow.adoptedStyleSheets = [sheet];
    // Custom properties set through the CSSOM: not inline style, allowed by a strict policy.
    target.style.setProperty("--lw-brand", data.brand.color);
    target.style.setProperty("--lw-on-brand", data.brand.on_color);
    target.style.setProperty("--lw-link", data.brand.link);
    target.style.setProperty("--lw-accent", data.brand.accent);
    shadow.replaceChildren(render(data));
    target.setAttribute("data-loyalty-widget", "ready");
  }).catch(function (error) {
    // The shop's page stays as it is; the reason is for the shop's developer.
    if (window.console) { window.console.warn("loyalty widget:", error.message); }
  });
})();
