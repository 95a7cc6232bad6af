/*
 * Small behaviours of the project's admin pages, declared with data attributes instead of
 * inline event handlers, which the staff pages' Content-Security-Policy refuses
 * (config/security.py). Loaded by templates/admin/base_site.html on every admin page.
 *
 *   <form data-confirm="Discard this batch?">          asks before the form is sent
 *   <form data-disable-on-submit>                        disables its submit button once sent
 *   <input type="submit" data-confirm-click="Sure?">    asks before this button sends its form
 *   <a href="#" data-submit-form="form-id">             sends the form with that id
 */
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var asking = event.target.closest("[data-confirm-click]");
    if (asking && !window.confirm(asking.getAttribute("data-confirm-click"))) {
      event.preventDefault();
      return;
    }
    var trigger = event.target.closest("[data-submit-form]");
    if (trigger) {
      event.preventDefault();
      var form = document.getElementById(trigger.getAttribute("data-submit-form"));
      if (form) {
        form.requestSubmit();
      }
    }
  });
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (event.defaultPrevented) {
      return;
    }
    if (form.hasAttribute("data-confirm") && !window.confirm(form.getAttribute("data-confirm"))) {
      event.preventDefault();
      return;
    }
    if (form.hasAttribute("data-disable-on-submit")) {
      var button = form.querySelector("[type=submit]");
      if (button) {
        button.disabled = true;
      }
    }
  });
})();
