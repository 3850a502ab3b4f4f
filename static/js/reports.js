// Poll unfinished report jobs and fill in their state, size and download link when done.
(function () {
  const finished = new Set(["succeeded", "failed", "cancelled"]);
  function formatBytes(n) {
    const units = ["Bytes", "kB", "MB", "GB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
    return i === 0 ? `${n} Bytes` : `${n.toFixed(1)} ${units[i]}`;
  }
  function render(row, job) {
    row.dataset.state = job.state;
    const badge = row.querySelector(".state .badge");
    badge.textContent = job.state;
    badge.className = `badge state-${job.state}`;
    const fraction = job.progress && job.progress.fraction;
    row.querySelector(".fraction").textContent =
      !finished.has(job.state) && fraction !== undefined ? `${Math.round(fraction * 100)}%` : "";
    const result = job.result || {};
    if (result.rows !== undefined) row.querySelector(".rows").textContent = result.rows;
    if (result.bytes !== undefined) row.querySelector(".size").textContent = formatBytes(result.bytes);
    const cell = row.querySelector(".download");
    if (job.download_url) {
      const link = document.createElement("a");
      link.href = job.download_url;
      link.textContent = `Download ${result.file}`;
      cell.replaceChildren(link);
      if (job.view_url) {
        const open = document.createElement("a");
        open.href = job.view_url;
        open.textContent = "Open";
        cell.prepend(open, " · ");
      }
    } else if (job.state === "failed") {
      cell.textContent = "failed";
      cell.title = job.error;
    }
  }
  async function poll(row) {
    const response = await fetch(row.dataset.url, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const job = await response.json();
    render(row, job);
    if (!finished.has(job.state)) setTimeout(() => poll(row), 1000);
  }
  document.querySelectorAll("#report-jobs tr[data-job]").forEach((row) => {
    if (!finished.has(row.dataset.state)) poll(row);
  });
})();
