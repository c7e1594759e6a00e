/* The rater page: vote through the JSON API and show the next pair without a reload. A vote's answer
 * carries the next pair ("next"), so a vote is one request; skips and refused votes ask for it.
 * Keyboard: 1/A, 2/T, 3/B, 4/X vote; S skips. Shortcuts are ignored while typing in a field.
 * Without JavaScript the same form posts to the server and the page reloads. */
(function () {
  "use strict";

  var root = document.getElementById("rater");
  if (!root) { return; }
  var form = document.getElementById("vote-form");
  var tokenInput = document.getElementById("assignment");
  var rationale = document.getElementById("rationale");
  var revealsIdentity = document.getElementById("reveals-identity");
  var reportBoxes = form.querySelectorAll("input[name=content_report]");
  var statusLine = document.getElementById("status");
  var csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  var buttons = form.querySelectorAll("button");
  var KEYS = { "1": "A", "a": "A", "2": "tie", "t": "tie", "3": "B", "b": "B", "4": "both_bad", "x": "both_bad" };
  var busy = false;

  function say(text) { statusLine.textContent = text; }

  function setBusy(value) {
    busy = value;
    root.setAttribute("aria-busy", value ? "true" : "false");
    for (var i = 0; i < buttons.length; i++) { buttons[i].disabled = value; }
  }

  function setProgress(progress) {
    var bar = document.getElementById("progress");
    var total = Math.max(progress.total, 1);
    bar.setAttribute("aria-valuenow", String(progress.done));
    bar.setAttribute("aria-valuemax", String(progress.total));
    document.getElementById("progress-done").textContent = String(progress.done);
    document.getElementById("progress-total").textContent = String(progress.total);
    document.getElementById("progress-fill").style.width = (100 * Math.min(progress.done, total) / total) + "%";
  }

  function showPair(data) {
    // The HTML was rendered from Markdown and sanitized on the server.
    tokenInput.value = data.assignment;
    document.getElementById("instruction").innerHTML = data.html.instruction;
    document.getElementById("input").innerHTML = data.html.input;
    document.getElementById("input-block").hidden = !data.input;
    document.getElementById("response-a").innerHTML = data.html.A;
    document.getElementById("response-b").innerHTML = data.html.B;
    // The raw text is the canonical served text, shown as text (never parsed as HTML).
    document.getElementById("raw-a").textContent = data.responses.A;
    document.getElementById("raw-b").textContent = data.responses.B;
    document.getElementById("raw-toggle-a").open = false;
    document.getElementById("raw-toggle-b").open = false;
    document.getElementById("response-a").scrollTop = 0;
    document.getElementById("response-b").scrollTop = 0;
    rationale.value = "";
    revealsIdentity.checked = false;
    for (var r = 0; r < reportBoxes.length; r++) { reportBoxes[r].checked = false; }
    document.getElementById("content-reports").open = false;
    setProgress(data.progress);
    window.scrollTo(0, 0);
    document.getElementById("instruction-heading").focus({ preventScroll: true });
  }

  function contentReports() {
    // Checkbox values are "A:harmful" etc.: the side on this screen and the kind of problem.
    var reports = [];
    for (var r = 0; r < reportBoxes.length; r++) {
      if (reportBoxes[r].checked) {
        var parts = reportBoxes[r].value.split(":");
        reports.push({ side: parts[0], kind: parts[1] });
      }
    }
    return reports;
  }

  function post(template, body) {
    var url = template.replace("TOKEN", encodeURIComponent(tokenInput.value));
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify(body)
    });
  }

  function showNext(pair) {
    // null: nothing is left for this rater.
    if (pair === null) { window.location.assign(root.dataset.doneUrl); return; }
    showPair(pair);
  }

  function loadNext() {
    return fetch(root.dataset.nextUrl, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (response.status === 204) { showNext(null); return null; }
        if (!response.ok) { throw new Error("next " + response.status); }
        return response.json().then(showNext);
      });
  }

  function act(kind, choice) {
    if (busy) { return; }
    setBusy(true);
    say(kind === "skip" ? "Skipping…" : "Saving your vote…");
    var request = kind === "skip"
      ? post(root.dataset.skipUrl, {})
      : post(root.dataset.voteUrl, { choice: choice, rationale: rationale.value, reveals_identity: revealsIdentity.checked,
                                          content_reports: contentReports() });
    request
      .then(function (response) {
        if (response.status === 400) {
          return response.json().then(function (body) { say(body.error || "That vote was not accepted."); });
        }
        if (response.status === 403) { window.location.reload(); return null; }
        if (response.status === 429) {
          var wait = Number(response.headers.get("Retry-After")) || 0;
          say("Slow down: you are going faster than this study allows. Nothing was saved; wait " +
              wait + " second" + (wait === 1 ? "" : "s") + ", then press the button again.");
          return null;
        }
        var message = kind === "skip" ? "Skipped. Next pair loaded." : "Vote saved. Next pair loaded.";
        if (response.status === 409 || response.status === 410 || response.status === 404) {
          message = "That pair could not take your vote any more; here is the next one.";
        } else if (!response.ok) {
          throw new Error("vote " + response.status);
        } else if (kind === "vote") {
          // 201 or 200: the answer carries the next pair.
          return response.json().then(function (body) {
            if (body.next === undefined) { return loadNext().then(function () { say(message); }); }
            showNext(body.next);
            say(message);
            return null;
          });
        }
        return loadNext().then(function () { say(message); });
      })
      .catch(function () {
        say("Could not reach the server. Your choice is safe to send again: press the button once more.");
      })
      .then(function () { setBusy(false); });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var submitter = event.submitter;
    if (submitter && submitter.name === "skip") { act("skip"); return; }
    if (submitter && submitter.value) { act("vote", submitter.value); }
  });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) { return; }
    var target = event.target;
    if (target && target.closest && target.closest("textarea, input:not([type=checkbox]), select, [contenteditable]")) { return; }
    var key = (event.key || "").toLowerCase();
    if (key === "s") { event.preventDefault(); act("skip"); return; }
    var choice = KEYS[key];
    if (choice) { event.preventDefault(); act("vote", choice); }
  });

  setProgress({
    done: Number(document.getElementById("progress").getAttribute("aria-valuenow")),
    total: Number(document.getElementById("progress").getAttribute("aria-valuemax"))
  });
})();
