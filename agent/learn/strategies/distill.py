"""Learning without forgetting for a retriever (Li & Hoiem 2016; Hinton et al. 2015 for the temperature).

Before a repository, the current model is frozen as the teacher. On every batch, for each example, the teacher's
and the student's softmax over that example's candidates (its positives, in-batch and in-file negatives) at
temperature T are compared: α·T²·KL(p_teacher ‖ p_student), batch-mean. The teacher needs no extra state in the
checkpoint: it is the checkpoint the repository starts from.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F

from agent.learn.strategies.base import RepoContext, Strategy, register


def distill_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T²·KL(softmax(t/T) ‖ softmax(s/T)), mean over rows (the T² keeps gradient scale independent of T)."""
    t = F.log_softmax(teacher_logits / temperature, dim=-1)
    s = F.log_softmax(student_logits / temperature, dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="batchmean") * temperature ** 2


@register
class Distill(Strategy):
    name = "distill"

    def __init__(self, config: Any, **resources: Any):
        super().__init__(config)
        self.teacher: torch.nn.Module | None = None
        self.learner: Any = None

    def before_repo(self, ctx: RepoContext) -> None:
        self.learner = ctx.learner
        self.teacher = copy.deepcopy(ctx.learner.model).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def loss_terms(self, batch: Any) -> dict[str, torch.Tensor]:
        if self.teacher is None or batch.logits is None:
            return {}
        with torch.no_grad():
            teacher = self.learner.batch_logits(self.teacher, batch)
        return {"distill": self.config.distill_alpha *
                distill_kl(teacher, batch.logits, self.config.distill_temperature)}

    def after_repo(self, ctx: RepoContext) -> None:
        self.teacher = None  # the next repository's teacher is the model as it is now
