// The Ranvier console's one script: keeps a page current without a reload.
// Every few seconds it fetches the page again and swaps in its parts
// marked data-live, except one the reader is working in: one holding the
// focus, or a form whose fields were changed and not yet sent. When the
// node stops answering, a banner says so until it answers again; when it
// sends the page elsewhere (to sign in again), the page follows. Without
// this script, pages reload themselves instead.
"use strict";
(function () {
  var period = Number(document.body.getAttribute("data-refresh") || "5") * 1000;
  var lost = document.getElementById("lost");
  function swap(fresh) {
    var parts = document.querySelectorAll("[data-live]");
    for (var i = 0; i < parts.length; i++) {
      var part = parts[i];
      if (!part.id || part.contains(document.activeElement) || part.hasAttribute("data-edited")) continue;
      var next = fresh.getElementById(part.id);
      if (next) part.replaceWith(document.importNode(next, true));
    }
  }
  function refresh() {
    fetch(location.href, { credentials: "same-origin", cache: "no-store", redirect: "manual" })
      .then(function (answer) {
        // Sent elsewhere (signed out, say): the page goes there too.
        if (answer.type === "opaqueredirect") {
          location.reload();
          return null;
        }
        if (!answer.ok) throw new Error("status " + answer.status);
        return answer.text();
      })
      .then(function (html) {
        if (html === null) return;
        swap(new DOMParser().parseFromString(html, "text/html"));
        if (lost) lost.hidden = true;
      })
      .catch(function () {
        if (lost) lost.hidden = false;
      })
      .then(function () {
        setTimeout(refresh, period);
      });
  }
  document.addEventListener("change", function (event) {
    var part = event.target.closest && event.target.closest("[data-live]");
    if (part) part.setAttribute("data-edited", "");
  });
  setTimeout(refresh, period);
})();
