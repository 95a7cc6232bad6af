/* The program admin's branding preview: follows the colour, logo and name fields as they change
   and applies the colour rules of loyalty/branding.py (text on the colour: white or dark,
   whichever reads better; the colour on white only where it reads; WCAG contrast). */
(function () {
  "use strict";
  var WHITE = "#ffffff";
  var DARK = "#1f2328";

  function luminance(hex) {
    var value = [1, 3, 5].map(function (i) { return parseInt(hex.substr(i, 2), 16) / 255; });
    var linear = value.map(function (c) { return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); });
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2];
  }

  function contrast(a, b) {
    var la = luminance(a), lb = luminance(b);
    return (Math.max(la, lb) + 0.05) / (Math.min(la, lb) + 0.05);
  }

  function colours(color) {
    if (!/^#[0-9a-fA-F]{6}$/.test(color || "")) { color = "#1F6FEB"; }
    var onWhite = contrast(color, WHITE);
    return {
      color: color,
      onColor: contrast(color, WHITE) >= contrast(color, DARK) ? WHITE : DARK,
      link: onWhite >= 4.5 ? color : DARK,
      accent: onWhite >= 3 ? color : DARK,
      onWhite: onWhite
    };
  }

  function ratio(value) { return (Math.floor(value * 100) / 100).toFixed(2); }

  function update(preview, fields) {
    var c = colours(fields.color ? fields.color.value : preview.dataset.color);
    var page = preview.querySelector(".bp-page");
    page.style.setProperty("--bp-brand", c.color);
    page.style.setProperty("--bp-on-brand", c.onColor);
    page.style.setProperty("--bp-link", c.link);
    page.style.setProperty("--bp-accent", c.accent);

    var onButton = contrast(c.color, c.onColor);
    var warning = preview.querySelector("[data-bp-warning]");
    warning.hidden = onButton >= 4.5;
    warning.textContent = onButton >= 4.5 ? "" :
      "Hard to read: text on this colour reaches " + ratio(onButton) + ":1 (4.5:1 needed). " +
      "Pick a darker or a lighter colour for the buttons and the emails' header.";
    var note = preview.querySelector("[data-bp-note]");
    note.hidden = c.onWhite >= 4.5;
    note.textContent = c.onWhite >= 4.5 ? "" :
      "Too light for text on white (" + ratio(c.onWhite) + ":1, 4.5:1 needed): " +
      (c.onWhite >= 3 ? "links" : "links, big figures and the menu's underline") + " use dark text instead.";
    preview.querySelector("[data-bp-facts]").textContent =
      "Colour " + c.color.toUpperCase() + ": button text " + ratio(onButton) + ":1, on white " + ratio(c.onWhite) + ":1.";

    var name = fields.name && fields.name.value.trim() ? fields.name.value.trim() : preview.dataset.name;
    var logoUrl = fields.logo ? fields.logo.value.trim() : preview.dataset.logo;
    var logo = preview.querySelector(".bp-logo");
    var label = preview.querySelector(".bp-name");
    label.textContent = name;
    logo.alt = name;
    if (/^https:\/\//.test(logoUrl)) {
      if (logo.getAttribute("src") !== logoUrl) { logo.src = logoUrl; }
      logo.hidden = false;
      label.hidden = true;
    } else {
      logo.hidden = true;
      label.hidden = false;
    }
  }

  function start() {
    var preview = document.querySelector("[data-brand-preview]");
    if (!preview) { return; }
    var fields = {
      color: document.getElementById("id_brand_color"),
      logo: document.getElementById("id_logo_url"),
      name: document.getElementById("id_name")
    };
    var logo = preview.querySelector(".bp-logo");
    logo.addEventListener("error", function () { logo.hidden = true; preview.querySelector(".bp-name").hidden = false; });
    Object.keys(fields).forEach(function (key) {
      if (fields[key]) {
        fields[key].addEventListener("input", function () { update(preview, fields); });
        fields[key].addEventListener("change", function () { update(preview, fields); });
      }
    });
    preview.querySelector("[data-bp-live]").hidden = false;
    update(preview, fields);
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
