"""The report of one import: counts, rejections with reasons, leakage and conflict warnings."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

EXAMPLES = 5


@dataclass
class ImportReport:
    """What an import did. ``imported`` new images, ``duplicates`` files whose content was
    already stored (before or earlier in the same import), ``rejected`` files with reasons."""

    dataset: str
    evaluation_only: bool
    source: str
    import_id: int | None = None
    files: int = 0
    imported: int = 0
    duplicates: int = 0
    linked: int = 0
    skipped: int = 0
    rejected: list[dict[str, str]] = field(default_factory=list)
    # Every file not imported is named: duplicates (content already stored) and skipped files
    # (documents, system files: never meant to be images) with their reason.
    duplicate_files: list[str] = field(default_factory=list)
    skipped_files: list[dict[str, str]] = field(default_factory=list)
    # Set when the import failed as a whole (nothing readable): a plain sentence for people.
    error: str = ""
    by_label: Counter = field(default_factory=Counter)
    by_split: Counter = field(default_factory=Counter)
    conflicts: dict[int, str] = field(default_factory=dict)
    leakage: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    leakage_examples: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def reject(self, path: str, reason: str) -> None:
        """Record a file that was not imported, and why."""
        self.rejected.append({"path": path, "reason": reason})

    def skip(self, path: str, reason: str) -> None:
        """Record a file that was skipped as not meant to be an image, and why."""
        self.skipped_files.append({"path": path, "reason": reason})
        self.skipped = len(self.skipped_files)

    def failure_message(self) -> str:
        """Why an import that read no image failed, in a sentence that names the files."""
        if self.files + self.skipped == 0:
            return "no image was imported: the upload holds no files (an empty archive or folder)"
        refused = [f"{r['path']} ({r['reason']})" for r in self.rejected]
        refused += [f"{s['path']} (skipped: {s['reason']})" for s in self.skipped_files]
        shown = "; ".join(refused[:EXAMPLES])
        more = f"; and {len(refused) - EXAMPLES} more" if len(refused) > EXAMPLES else ""
        return f"no image was imported: {shown}{more}"

    @property
    def nothing_read(self) -> bool:
        """True when not one file could be imported or recognised as a duplicate."""
        return self.imported + self.duplicates == 0

    def warnings(self) -> list[str]:
        """Human-readable warnings: leakage between training and evaluation data, label
        conflicts."""
        messages = []
        if self.leakage:
            count = len(set().union(*self.leakage.values()))
            names = ", ".join(
                f"{name!r} ({len(ids)})" for name, ids in sorted(self.leakage.items())
            )
            if self.evaluation_only:
                what = f"{count} image(s) of this evaluation-only import are also in trainable"
            else:
                what = f"{count} image(s) of this import are also in evaluation-only"
            messages.append(
                f"leakage: {what} dataset(s) {names}; a model trained on them would be "
                f"evaluated on images it has seen. Examples: {', '.join(self.leakage_examples)}"
            )
        if self.conflicts:
            examples = ", ".join(list(self.conflicts.values())[:EXAMPLES])
            messages.append(
                f"label conflict: {len(self.conflicts)} image(s) arrived with a label other than "
                f"the one already stored; they are marked for review. Examples: {examples}"
            )
        return messages

    def as_json(self) -> dict[str, Any]:
        """The report as plain JSON (the CLI's ``--json`` output and the ImportRun record)."""
        rate = (self.imported + self.duplicates) / self.elapsed_s if self.elapsed_s else None
        return {
            "imported": self.imported,
            "duplicates": self.duplicates,
            "rejected": list(self.rejected),
            "by_label": dict(sorted(self.by_label.items())),
            "by_split": dict(sorted(self.by_split.items())),
            "warnings": self.warnings(),
            "linked": self.linked,
            "skipped": self.skipped,
            "skipped_files": list(self.skipped_files),
            "duplicate_files": list(self.duplicate_files),
            "error": self.error,
            "files": self.files,
            "label_conflicts": len(self.conflicts),
            "leakage": {name: len(ids) for name, ids in sorted(self.leakage.items())},
            "dataset": self.dataset,
            "evaluation_only": self.evaluation_only,
            "source": self.source,
            "import_id": self.import_id,
            "elapsed_s": round(self.elapsed_s, 3),
            "images_per_s": round(rate, 1) if rate else None,
        }
