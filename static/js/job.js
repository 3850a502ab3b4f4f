// Poll a job's JSON and keep its page current until it ends: the bar, the status line (stage,
// images/s, time left) and the log; once it ends, reload so the server writes the result.
(function () {
  const root = document.getElementById("job");
  if (!root) return;
  async function poll() {
    const response = await fetch(root.dataset.url, { headers: { Accept: "application/json" } });
    if (!response.ok) { setTimeout(poll, 3000); return; }
    const job = await response.json();
    const view = job.view;
    const state = document.getElementById("job-state");
    state.textContent = job.state;
    state.className = `badge state-${job.state}`;
    const bar = document.getElementById("job-progress");
    if (bar && view.fraction !== null) bar.value = view.fraction;
    document.getElementById("job-status").textContent = view.status;
    document.getElementById("job-log").textContent = job.log;
    if (view.finished) { location.reload(); return; }
    setTimeout(poll, 1000);
  }
  if (root.dataset.finished !== "yes") poll();
})();
