// The playground page polls each unfinished answer until a worker has written it.
"use strict";

function describe(answer) {
  const s = answer.settings || {};
  const decoding = s.decoding === "sampling"
    ? `sampling (temperature ${s.temperature}, top-p ${s.top_p}, seed ${s.seed})`
    : (s.decoding || "…");
  return `template ${s.template || "…"}, ${decoding}, at most ${s.max_new_tokens || "…"} new tokens`;
}

function show(box, answer) {
  const status = box.querySelector(".status");
  status.textContent = answer.status;
  status.className = `status status-${answer.status}`;
  box.querySelector(".meta").textContent = describe(answer);
  box.querySelector(".text").textContent = answer.text || "…";
  box.querySelector(".prompt-text").textContent = answer.prompt_text || "…";
  if (answer.finished && !answer.error) {
    box.querySelector(".stats").textContent =
      `— ${answer.completion_tokens} tokens in ${answer.seconds} s, finish reason ${answer.finish_reason}`;
  }
  const error = box.querySelector(".error");
  error.textContent = answer.error;
  error.style.display = answer.error ? "" : "none";
}

function poll(box) {
  fetch(box.dataset.answerUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" })
    .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
    .then((answer) => {
      show(box, answer);
      if (!answer.finished) setTimeout(() => poll(box), 1500);
    })
    .catch(() => setTimeout(() => poll(box), 5000));
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-answer-url]").forEach((box) => {
    if (box.dataset.finished !== "1") poll(box);
  });
});
