// Poll a job's JSON and update its page until it ends.
(function () {
  const root = document.getElementById("job");
  if (!root) return;
  const finished = new Set(["succeeded", "failed", "cancelled"]);
  function describe(p) {
    const parts = [];
    if (p.stage) parts.push(p.stage);
    if (p.epoch !== undefined) parts.push(`epoch ${p.epoch}${p.epochs ? "/" + p.epochs : ""}`);
    if (p.batch !== undefined) parts.push(`batch ${p.batch}${p.batches ? "/" + p.batches : ""}`);
    if (p.images_per_s) parts.push(`${Math.round(p.images_per_s)} images/s`);
    if (p.eta_s !== undefined && p.eta_s !== null) parts.push(`ETA ${Math.round(p.eta_s)} s`);
    if (p.loss !== undefined) parts.push(`loss ${Number(p.loss).toFixed(4)}`);
    return parts.join(" · ");
  }
  async function poll() {
    const response = await fetch(root.dataset.url, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const job = await response.json();
    const state = document.getElementById("job-state");
    state.textContent = job.state;
    state.className = `badge state-${job.state}`;
    if (job.progress.fraction !== undefined) document.getElementById("job-progress").value = job.progress.fraction;
    document.getElementById("job-detail").textContent = describe(job.progress);
    document.getElementById("job-log").textContent = job.log;
    document.getElementById("job-error").textContent = job.error;
    if (finished.has(job.state)) { if (!root.dataset.reloaded) { root.dataset.reloaded = "1"; location.reload(); } return; }
    setTimeout(poll, 1000);
  }
  if (!finished.has(document.getElementById("job-state").textContent.trim())) poll();
})();
