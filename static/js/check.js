// The Check page: send dropped, pasted or chosen images to POST /api/v1/checks and show each
// verdict with its evidence rows; a check's own page reloads until its scoring has finished.
(function () {
  const csrfToken = document.querySelector('meta[name="csrf-token"]').content;
  const ORDER = ["model", "similar", "credentials", "metadata", "watermark", "phash"];
  const TITLES = {
    model: "The model", similar: "Near duplicates", credentials: "Content Credentials (C2PA)",
    metadata: "Metadata", watermark: "Invisible watermark", phash: "Perceptual hash",
  };

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function evidenceTable(check) {
    const table = element("table", "evidence");
    table.dataset.check = check.id;
    const body = element("tbody");
    for (const kind of ORDER) {
      const item = check.evidence[kind];
      if (!item) continue;
      const row = element("tr", `evidence-row weight-${item.weight}`);
      row.dataset.kind = kind;
      const head = element("th", "", TITLES[kind]);
      head.scope = "row";
      const status = element("td");
      status.append(element("span", `badge status-${item.status.replace(" ", "-")}`, item.status));
      row.append(head, status, element("td", "", item.weight), element("td", "", item.summary));
      body.append(row);
    }
    table.append(body);
    return table;
  }

  function card(check) {
    const box = element("div", "check-card");
    box.dataset.state = check.state;
    const title = element("h2");
    const link = element("a", "", check.file_name || `Check ${check.id}`);
    link.href = `/check/${check.id}`;
    title.append(link);
    const verdict = check.state === "pending" ? "Scoring…" : check.verdict.toUpperCase();
    box.append(title, element("p", `verdict verdict-${check.state === "pending" ? "pending" : check.verdict}`, verdict));
    if (check.p_fake !== null) {
      box.append(element("p", "muted", `p(fake) = ${check.p_fake.toFixed(2)} at threshold ${check.threshold.toFixed(2)} (${check.version})`));
    }
    if (check.out_of_distribution) {
      box.append(element("p", "warning", "Out of distribution: unlike the training data: the verdict is unreliable."));
    }
    box.append(evidenceTable(check));
    return box;
  }

  async function poll(url, slot) {
    for (let attempt = 0; attempt < 120; attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      const check = await response.json();
      slot.replaceChildren(card(check));
      if (check.state !== "pending") return;
    }
  }

  async function send(file, results) {
    const slot = element("div", "check-slot", `Checking ${file.name || "pasted image"}…`);
    results.prepend(slot);
    const form = new FormData();
    form.append("file", file, file.name || "pasted.png");
    const endpoint = document.getElementById("drop-zone").dataset.endpoint;
    const response = await fetch(endpoint, {
      method: "POST", body: form, headers: { Accept: "application/json", "X-CSRFToken": csrfToken },
    });
    const body = await response.json();
    if (!response.ok) {
      slot.replaceChildren(element("p", "error", `${file.name}: ${body.message}`));
      return;
    }
    slot.replaceChildren(card(body));
    if (body.state === "pending") poll(body.url, slot);
  }

  function sendAll(files) {
    const results = document.getElementById("check-results");
    for (const file of files) send(file, results);
  }

  const zone = document.getElementById("drop-zone");
  if (zone) {
    zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      sendAll(event.dataTransfer.files);
    });
    document.getElementById("check-files").addEventListener("change", (event) => sendAll(event.target.files));
    document.addEventListener("paste", (event) => {
      const files = [...event.clipboardData.items].filter((i) => i.kind === "file").map((i) => i.getAsFile());
      if (files.length) sendAll(files);
    });
  }

  const result = document.querySelector(".check-result[data-state='pending']");
  if (result) setTimeout(() => window.location.reload(), 1500);
})();
