// The datasets pages: follow each import job until it finishes, and switch the audit page's
// dataset as soon as one is chosen. A file of its own (not inline) so the pages run under the
// Content-Security-Policy, which allows scripts from this site only.
(function () {
  // Follow each import job until it finishes, by polling its small JSON view.
  document.querySelectorAll(".import-job").forEach(function (box) {
    var bar = box.querySelector("progress"), state = box.querySelector(".job-state"),
        text = box.querySelector(".job-text");
    function poll() {
      fetch(box.dataset.url, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
        .then(function (response) { return response.json(); })
        .then(function (job) {
          var p = job.progress || {};
          state.textContent = job.state;
          if (p.total) { bar.value = p.done / p.total; text.textContent = p.done + " / " + p.total + " files"; }
          if (!job.finished) { setTimeout(poll, 1000); return; }
          bar.value = 1;
          if (job.state === "succeeded") {
            text.textContent = job.imported + " imported, " + job.duplicates + " duplicates, " +
              job.rejected + " rejected, " + job.skipped + " skipped" + (job.warnings.length ? ", " + job.warnings.length + " warning(s)" : "");
            if (job.import_url) {
              var link = document.createElement("a");
              link.href = job.import_url; link.textContent = " Every file of this import.";
              text.appendChild(link);
            }
          } else {
            text.textContent = job.error || job.state;
          }
        })
        .catch(function () { setTimeout(poll, 3000); });
    }
    poll();
  });
})();

(function () {
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
})();
