// agentkeep dashboard: the live run view. A running run's page listens to
// /ui/runs/{id}/live (server-sent events from the persisted events) and swaps
// in the re-rendered timeline on every change.
(function () {
  "use strict";
  var body = document.getElementById("run-body");
  if (!body || body.dataset.live !== "yes" || !window.EventSource) return;
  var run = encodeURIComponent(body.dataset.run);
  var indicator = document.getElementById("live-indicator");
  var source = new EventSource("/ui/runs/" + run + "/live?after=" + body.dataset.after);
  var pending = null;
  function refresh() {
    if (pending) return pending;
    pending = fetch("/ui/runs/" + run + "/timeline", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) { body.innerHTML = html; body.dataset.updates = String(Number(body.dataset.updates || 0) + 1); })
      .catch(function () {})
      .then(function () { pending = null; });
    return pending;
  }
  source.addEventListener("change", refresh);
  source.addEventListener("end", function () {
    source.close();
    Promise.resolve(pending).then(refresh).then(function () {
      body.dataset.live = "no";
      if (indicator) { indicator.textContent = "finished"; indicator.className = "live off"; }
    });
  });
})();
