"""What a training run reports: a CSV of every step (always, in the run folder), optionally TensorBoard or Weights &
Biases (`report_to`), and a loss-curve PNG at the end. Only rank 0 reports."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hooked_bilinear import atomic
from hooked_bilinear.errors import HookedBilinearError

REPORTERS = ("tensorboard", "wandb")
CSV_FILE = "metrics.csv"
PNG_FILE = "loss_curve.png"


def check_reporters(report_to: tuple[str, ...] | list[str]) -> None:
    """HookedBilinearError for an unknown reporter, or one whose package is not installed (named, with the fix)."""
    for name in report_to:
        if name not in REPORTERS:
            raise HookedBilinearError(f"--report-to {name!r} is not one of {REPORTERS}.")
        package = "tensorboard" if name == "tensorboard" else "wandb"
        if importlib.util.find_spec(package) is None:
            raise HookedBilinearError(
                f"--report-to {name} needs the {package} package, which is not installed: "
                f"pip install {package} (or leave out --report-to {name})."
            )


class RunLog:
    """Rows of per-step figures, written as they come: `metrics.csv` (rewritten from `history` on resume, so rows after
    the last checkpoint of an interrupted run are dropped), and TensorBoard / wandb when asked."""

    def __init__(
        self,
        folder: Path | None,
        history: list[dict[str, float]],
        report_to: tuple[str, ...],
        settings: dict[str, Any],
        enabled: bool,
    ) -> None:
        self.folder, self.rows, self.enabled = folder, list(history), enabled
        self._writers: list[Any] = []
        self._file: Any = None
        if not enabled:
            return
        check_reporters(report_to)
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            with self._writing():
                self._file = open(folder / CSV_FILE, "w", newline="")
                if self.rows:
                    self._csv_header(self.rows[0])
                    for row in self.rows:
                        self._csv.writerow(row)
                    self._file.flush()
        if "tensorboard" in report_to:
            from torch.utils.tensorboard import SummaryWriter

            self._writers.append(("tensorboard", SummaryWriter(str((folder or Path("runs")) / "tensorboard"))))
        if "wandb" in report_to:
            import wandb

            self._writers.append(
                (
                    "wandb",
                    wandb.init(
                        project=os.environ.get("WANDB_PROJECT", "hooked-bilinear"),
                        config=settings,
                        dir=str(folder) if folder else None,
                    ),
                )
            )

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """metrics.csv is a log, rewritten from the checkpoint on resume; a full disk still gives one clear error."""
        try:
            yield
        except OSError as error:
            raise atomic.write_error(Path(self.folder or ".") / CSV_FILE, error) from error

    def _csv_header(self, row: dict[str, float]) -> None:
        self._csv = csv.DictWriter(self._file, fieldnames=list(row))
        self._csv.writeheader()

    def log(self, row: dict[str, float]) -> None:
        self.rows.append(row)
        if not self.enabled:
            return
        if self._file is not None:
            with self._writing():
                if len(self.rows) == 1:
                    self._csv_header(row)
                self._csv.writerow(row)
                self._file.flush()
        step = int(row["step"])
        for kind, writer in self._writers:
            if kind == "tensorboard":
                for key, value in row.items():
                    if key != "step":
                        writer.add_scalar(f"train/{key}", value, step)
            else:
                writer.log({f"train/{k}": v for k, v in row.items() if k != "step"}, step=step)

    def close(self, title: str) -> Path | None:
        """Close the writers; draw the loss curve (and beta, when logged) to loss_curve.png in the run folder."""
        if not self.enabled:
            return None
        for kind, writer in self._writers:
            writer.close() if kind == "tensorboard" else writer.finish()
        if self._file is not None:
            self._file.close()
        if self.folder is None or not self.rows:
            return None
        return plot_loss_curve(self.rows, self.folder / PNG_FILE, title)


def plot_loss_curve(rows: list[dict[str, float]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [row["step"] for row in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [row["loss"] for row in rows], lw=1, color="C0", label="train loss (global batch)")
    ax.set_xlabel("step")
    ax.set_ylabel("train loss (nats/token)", color="C0")
    losses = [row["loss"] for row in rows]
    if min(losses) > 0 and max(losses) > 3 * min(losses):  # log scale only where the loss spans a range
        ax.set_yscale("log")
    if "beta" in rows[0]:
        twin = ax.twinx()
        twin.plot(steps, [row["beta"] for row in rows], color="C3", lw=1.5, label="beta")
        twin.set_ylabel("beta (1 = SiLU, 0 = bilinear)", color="C3")
        twin.set_ylim(-0.05, 1.05)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    try:
        atomic.remove_leftovers(path)  # of a run killed while drawing (the caller holds the run's lock)
        atomic.write_file(path, lambda temporary: fig.savefig(temporary, dpi=120, format="png"))
    finally:
        plt.close(fig)
    return path
