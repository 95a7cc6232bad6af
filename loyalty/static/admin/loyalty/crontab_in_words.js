/*
 * A scheduled job's page: shows the crontab chosen in the "Crontab" field in words, and follows
 * the field as it changes. The texts are the page's #readable-crontabs JSON (crontab id: text).
 */
(function () {
  "use strict";
  var data = document.getElementById("readable-crontabs");
  var field = document.getElementById("id_crontab");
  if (!data || !field) {
    return;
  }
  var texts = JSON.parse(data.textContent);
  var note = document.createElement("div");
  note.className = "help";
  note.id = "crontab-in-words";
  var row = field.closest(".form-row");
  var help = row && row.querySelector(".help");
  (help || field).insertAdjacentElement("afterend", note);
  var show = function () {
    note.textContent = texts[field.value] ? "In words: " + texts[field.value] : "";
  };
  field.addEventListener("change", show);
  show();
})();
