"""Running totals a training stage reports: loss per logging window and per epoch, corrupt images, images
seen, wall time. Saved in checkpoints so that a resumed run reports what an uninterrupted one would.

Each rank adds to its own pending sums; :meth:`RunningTotals.sync` all-reduces them into ``values``, which are
then identical on every rank. Call ``sync`` at the same points on every rank (logging, checkpoints, epoch end).
The losses stay on the device until ``sync`` reads them all at once (one host read, none per step); the host
then sums them in order, as it would have summed one ``loss.item()`` per micro-batch.
"""

from __future__ import annotations

import time

import torch

from mixmim.engine.distributed import all_reduce_sums

KEYS = (
    "loss_sum",  # this epoch
    "loss_count",
    "window_loss_sum",  # since the last metrics record
    "window_count",
    "last_epoch_loss",
    "corrupt_epoch",  # unreadable images substituted this epoch (all ranks)
    "corrupt_images",  # the most in one epoch: about the number of distinct unreadable files
    "corrupt_reads",  # all substitutions (a bad file counts once per epoch)
    "images",  # images seen by all ranks
    "wall_time_s",  # of the work kept in checkpoints (time lost to a crash is not counted)
    "nonfinite_events",
)


class RunningTotals:
    """Rank-identical totals in :attr:`values`, fed by per-rank :meth:`add_batch` calls."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.values: dict[str, float] = dict.fromkeys(KEYS, 0.0)
        self._pending = {"count": 0.0, "corrupt": 0.0}
        self._losses: list[torch.Tensor] = []  # this rank's micro-batch losses since the last sync, on the device
        self._wall_base, self._session_start = 0.0, time.monotonic()

    def add_batch(self, loss: torch.Tensor | float, corrupt: int = 0) -> None:
        """One micro-batch of this rank: its loss (a scalar tensor, kept on its device until :meth:`sync`, or a
        float) and how many of its images were substituted."""
        if not isinstance(loss, torch.Tensor):
            loss = torch.tensor(float(loss), device=self.device)
        self._losses.append(loss.detach().float())
        self._pending["count"] += 1
        self._pending["corrupt"] += corrupt

    def sync(self) -> None:
        """Add every rank's pending sums to :attr:`values` and update the wall time.

        Reads the pending losses (one host read) and all-reduces the sums (one collective) when a micro-batch was
        added since the last call; every rank adds the same number of micro-batches, so all take the same branch.
        """
        v = self.values
        if self._pending["count"]:
            self._add_pending()
        v["wall_time_s"] = self._wall_base + time.monotonic() - self._session_start  # after the read: work done

    def _add_pending(self) -> None:
        v = self.values
        local_loss = 0.0
        for value in torch.stack(self._losses).tolist():  # the one host read of the interval's losses
            local_loss += value
        loss, count, corrupt = all_reduce_sums([local_loss, self._pending["count"], self._pending["corrupt"]],
                                               self.device)  # fmt: skip
        self._pending, self._losses = dict.fromkeys(self._pending, 0.0), []
        v["loss_sum"], v["window_loss_sum"] = v["loss_sum"] + loss, v["window_loss_sum"] + loss
        v["loss_count"], v["window_count"] = v["loss_count"] + count, v["window_count"] + count
        v["corrupt_epoch"], v["corrupt_reads"] = v["corrupt_epoch"] + corrupt, v["corrupt_reads"] + corrupt

    def take_window_loss(self) -> float:
        """Mean loss since the previous call (after :meth:`sync`); starts a new window."""
        v = self.values
        loss = v["window_loss_sum"] / max(v["window_count"], 1)
        v["window_loss_sum"] = v["window_count"] = 0.0
        return loss

    def close_epoch(self) -> float:
        """End the epoch (after :meth:`sync`): return its mean loss and reset the per-epoch sums."""
        v = self.values
        v["last_epoch_loss"] = v["loss_sum"] / max(v["loss_count"], 1)
        v["corrupt_images"] = max(v["corrupt_images"], v["corrupt_epoch"])
        v["loss_sum"] = v["loss_count"] = v["corrupt_epoch"] = 0.0
        return v["last_epoch_loss"]

    def final_loss(self) -> float:
        """Mean loss of the last (possibly partial) epoch."""
        v = self.values
        v["corrupt_images"] = max(v["corrupt_images"], v["corrupt_epoch"])
        return v["loss_sum"] / v["loss_count"] if v["loss_count"] else v["last_epoch_loss"]

    def images_per_s(self) -> float:
        return self.values["images"] / max(self.values["wall_time_s"], 1e-9)

    def state_dict(self) -> dict[str, float]:
        return dict(self.values)

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restore saved totals; the wall clock continues from the saved wall time."""
        self.values.update(state)
        self._pending, self._losses = dict.fromkeys(self._pending, 0.0), []
        self._wall_base, self._session_start = self.values["wall_time_s"], time.monotonic()
