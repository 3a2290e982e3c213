// smartbench: small progressive enhancements. Pages work without this file.
(function () {
  "use strict";
  // Confirm destructive forms: <form data-confirm="...">.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var message = form.getAttribute && form.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      event.preventDefault();
    }
  });
  // Put the cursor on the first field with an error.
  var invalid = document.querySelector('[aria-invalid="true"]');
  if (invalid) { invalid.focus(); }
})();

// Selects marked data-autosubmit submit their form on change.
document.addEventListener("change", function (event) {
  var el = event.target;
  if (el.hasAttribute && el.hasAttribute("data-autosubmit") && el.form) { el.form.submit(); }
});

// Live partials: fetch the partial again every second until it is final, then reload once
// so that the finished page (tables and charts) appears.
(function () {
  "use strict";
  function poll() {
    var box = document.querySelector("[data-refresh-url]");
    if (!box) { return; }
    fetch(box.getAttribute("data-refresh-url"), { credentials: "same-origin" })
      .then(function (response) { return response.text(); })
      .then(function (html) {
        var holder = document.createElement("div");
        holder.innerHTML = html;
        var fresh = holder.firstElementChild;
        if (!fresh) { return; }
        box.replaceWith(fresh);
        if (fresh.hasAttribute("data-refresh-url")) { setTimeout(poll, 1000); } else { window.location.reload(); }
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  if (document.querySelector("[data-refresh-url]")) { setTimeout(poll, 1000); }
})();
