// Progressive enhancement only: every page works without this file.
(function () {
  "use strict";
  // Show/hide toggles for secret fields: <button data-toggle-secret="input-id">.
  document.querySelectorAll("[data-toggle-secret]").forEach(function (button) {
    var input = document.getElementById(button.getAttribute("data-toggle-secret"));
    if (!input) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      var show = input.type === "password";
      input.type = show ? "text" : "password";
      button.textContent = show ? "Hide" : "Show";
      button.setAttribute("aria-pressed", show ? "true" : "false");
    });
  });
  // A chosen CSR file is read into the paste box, so one field carries it either way.
  document.querySelectorAll("input[type=file][data-fill]").forEach(function (input) {
    var target = document.getElementById(input.getAttribute("data-fill"));
    if (!target || !window.FileReader) { return; }
    input.hidden = false;
    input.addEventListener("change", function () {
      var file = input.files && input.files[0];
      if (!file) { return; }
      var reader = new FileReader();
      reader.onload = function () { target.value = String(reader.result); };
      reader.readAsText(file);
    });
  });
  // A second click while the first submit is on its way sends nothing more. The server
  // refuses a second submit of one form anyway; this spares the person its error page.
  document.querySelectorAll("form[data-submit-once]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (form.getAttribute("data-submitted")) {
        event.preventDefault();
        return;
      }
      form.setAttribute("data-submitted", "yes");
      form.querySelectorAll("button[type=submit]").forEach(function (b) {
        b.setAttribute("aria-disabled", "true");
      });
    });
  });
  // The issued file starts downloading by itself; the button stays for a second try.
  var auto = document.querySelector("a[data-autodownload]");
  if (auto) { auto.click(); }
})();
