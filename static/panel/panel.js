// The service menu's only script: forms that must not be sent twice, confirmations, "mark everything".
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form[data-once]")) return;
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) { event.preventDefault(); return; }
    if (form.dataset.sent) { event.preventDefault(); return; }  // a second click never sends it again
    // htmx forms are disabled by hx-disabled-elt while their request runs; plain forms stay disabled.
    if (!form.hasAttribute("hx-post")) {
      form.dataset.sent = "1";
      setTimeout(function () {  // after the browser has taken the form's data (and the clicked button's)
        form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
      }, 0);
    }
  }, true);
  // A refusal the panel explains (429: too many jobs) is shown where the job would have appeared; htmx
  // swaps no 4xx answer by itself.
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.xhr && event.detail.xhr.status === 429) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-fill-all]");
    if (!button) return;
    button.form.querySelectorAll("input.qty:not([disabled])").forEach(function (input) {
      input.value = input.dataset.max.replace(",", ".");
      tickLastUnits(input);
    });
  });
  // Marked goods go back by the unit: typing a quantity ticks the line's last units, ticking units sets the
  // quantity (the server refuses a count that does not match, and ticks the last units when none are).
  function tickLastUnits(input) {
    var box = input.form && input.form.querySelector('fieldset[data-marks-for="' + input.name + '"]');
    if (!box) return;
    var units = box.querySelectorAll("input[type=checkbox]");
    var count = Math.max(0, Math.min(units.length, parseInt(input.value, 10) || 0));
    units.forEach(function (unit, index) { unit.checked = index >= units.length - count; });
  }
  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("input.qty")) tickLastUnits(event.target);
  });
  document.addEventListener("change", function (event) {
    var box = event.target.closest && event.target.closest("fieldset[data-marks-for]");
    if (!box || event.target.type !== "checkbox") return;
    var input = box.form.querySelector('input[name="' + box.dataset.marksFor + '"]');
    if (input) input.value = box.querySelectorAll("input[type=checkbox]:checked").length || "";
  });
})();
