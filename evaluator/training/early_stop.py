"""Early stopping on the validation slice: when to validate (every `eval_every` steps, default once per epoch, and at
the last step), the validation loss and accuracy curves, the best step with a copy of its adapter weights, the
patience count that ends training, and restoring the best weights at the end (so the adapter kept is the best one
validated, not the last one trained)."""

from __future__ import annotations

import math


class EarlyStopping:
    """Validation bookkeeping for one run; with no validation items it is never due and keeps nothing."""

    def __init__(self, n_val: int, *, every: int, total_steps: int, patience: int) -> None:
        self.n_val, self.every, self.total, self.patience = n_val, every, total_steps, patience
        self.curve: list[list[float]] = []  # [step, mean loss on the answers' own tokens]
        self.accuracy_curve: list[list[float]] = []  # [step, share of answers all argmax-correct]
        self.best, self.best_step, self.best_accuracy = math.inf, None, None
        self._best_state: dict | None = None
        self._bad_evals = 0
        self.stopped = False  # patience ran out before the last step

    def due(self, step: int) -> bool:
        """Validate after this step?"""
        return bool(self.n_val) and (step % self.every == 0 or step == self.total)

    def update(self, step: int, loss: float, accuracy: float, peft_model) -> bool:
        """Record a validation; keep the weights if it is the best so far (by more than 1e-6). True: patience is
        used up, training ends here (an early stop unless this is the last step anyway)."""
        self.curve.append([step, loss])
        self.accuracy_curve.append([step, accuracy])
        if loss < self.best - 1e-6:
            self.best, self.best_step, self._bad_evals, self.best_accuracy = loss, step, 0, accuracy
            self._best_state = {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}
            return False
        self._bad_evals += 1
        if self._bad_evals < self.patience:
            return False
        self.stopped = step < self.total
        return True

    def restore_best(self, peft_model, step: int) -> None:
        """Put the best validated adapter weights back, unless they are the current ones (best at the last step)."""
        import torch

        if self._best_state is None or self.best_step == step:
            return
        with torch.no_grad():
            for n, p in peft_model.named_parameters():
                if n in self._best_state:
                    p.copy_(self._best_state[n])

    def record(self) -> dict:
        """The TrainResult fields of validation and early stopping."""
        found = self.best_step is not None
        return {
            "val_curve": self.curve,
            "val_accuracy_curve": self.accuracy_curve,
            "best_step": self.best_step,
            "best_val_loss": self.best if found else None,
            "best_val_accuracy": self.best_accuracy if found else None,
            "stopped_early": self.stopped,
        }
