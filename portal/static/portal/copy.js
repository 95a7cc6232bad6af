/* Refer a friend: the "Copy" buttons (docs/portal.md). Without this script the fields stay
   plain read-only text to select by hand; the buttons are shown only when it runs. */
(function () {
  "use strict";
  function copied(button) {
    var status = document.querySelector(".copy-status");
    if (status) { status.textContent = button.getAttribute("data-done"); }
  }
  function copy(button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    if (!field) { return; }
    field.focus();
    field.select();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(function () { copied(button); }, function () {
        if (document.execCommand("copy")) { copied(button); }
      });
    } else if (document.execCommand("copy")) {
      copied(button);
    }
  }
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () { copy(button); });
  });
})();
