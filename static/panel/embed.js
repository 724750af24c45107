// The kiosk's service screen (issue 14, item 4): the PIN page's on-screen keypad, for a touch screen without a
// keyboard. Loaded only by templates/panel/embed_base.html. A digit key types into the field named by the
// keypad's data-keypad-for, «Стереть» takes the last digit back, «Открыть» is the form's own submit button.
// The field keeps working with a physical keyboard; the system's on-screen keyboard is not called up.
(function () {
  "use strict";
  function fieldOf(keypad) {
    return document.getElementById(keypad.dataset.keypadFor);
  }
  document.querySelectorAll("[data-keypad-for]").forEach(function (keypad) {
    var field = fieldOf(keypad);
    if (field) field.inputMode = "none";  // the keypad is the keyboard
  });
  document.addEventListener("click", function (event) {
    var key = event.target.closest && event.target.closest("[data-key]");
    var keypad = key && key.closest("[data-keypad-for]");
    var field = keypad && fieldOf(keypad);
    if (!field) return;
    event.preventDefault();
    if (key.dataset.key === "erase") {
      field.value = field.value.slice(0, -1);
    } else if (field.maxLength < 0 || field.value.length < field.maxLength) {
      field.value += key.dataset.key;
    }
    field.dispatchEvent(new Event("input", { bubbles: true }));
  });
})();
