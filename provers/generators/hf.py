"""Transformers tactic generator: a seq2seq (ReProver's ByT5) or decoder-only model, by name or local path.

Input = retrieved premises + state (:class:`PremiseContext`); a decoder-only model reads it inside ReProver's
`[GOAL] … [PROOFSTEP]` template. Candidates come from one batched call: beam search (ReProver: `num_beams =
num_return_sequences = n`, `length_penalty = 0`, so a beam's score is its summed token log-probability) or
sampling (score = summed log-probability of the sampled tokens). Duplicates are merged keeping the best score.
Inputs are truncated from the left so the goal, which ends the state, is kept.

Model-dependent, because ReProver's checkpoints differ: a byte-level tokenizer (ByT5) counts lengths in bytes
(`byte_lengths`: 64 new *tokens* would cut a quarter of the sample's tactics), and the prompt shape follows the
checkpoint (:func:`prompt_shape_for`: `kaiyuy/leandojo-lean4-tacgen-byt5-small` was trained on the state alone,
`…-retriever-tacgen-byt5-small` on retrieved premises + state). The model runs on CUDA when there is one.
Nothing here touches the process environment: a Hugging Face id downloads unless the user set HF_HUB_OFFLINE.
"""
from __future__ import annotations

from typing import Literal

from common.errors import InputError
from curriculum.lean_data import Theorem
from provers.generators.base import CAUSAL_TEMPLATE, dedup_best, first_line
from provers.generators.context import PremiseContext


def default_device() -> str:
    """"cuda" when a CUDA GPU is visible to torch, else "cpu"."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def is_byte_level(tokenizer) -> bool:
    """Whether the tokenizer reads bytes (ByT5, and lifelean's tiny test models): lengths are then bytes."""
    return "byt5" in type(tokenizer).__name__.lower() or len(tokenizer) <= 512


def prompt_shape_for(name: str, configured: str = "auto") -> Literal["state", "premises"]:
    """The input a checkpoint was trained on: ReProver's plain `tacgen` models read the state alone,
    `retriever-tacgen` (and every other model lifelean trains) retrieved premises followed by the state."""
    if configured in ("state", "premises"):
        return configured  # type: ignore[return-value]
    lowered = name.lower()
    return "state" if "tacgen" in lowered and "retriever" not in lowered else "premises"


def load_model(name: str, device: str = "cpu"):
    """(model, tokenizer, is_seq2seq) of a Hugging Face id or local directory, in eval mode."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(name)
        seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        cls = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
        model = cls.from_pretrained(name).to(device)
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise InputError(f"generator model '{name}': cannot load it ({str(exc).splitlines()[0]}); give a local "
                         "directory or a Hugging Face id (downloads need network; HF_HUB_OFFLINE=1 forbids them), "
                         "e.g. kaiyuy/leandojo-lean4-tacgen-byt5-small") from None
    model.eval()
    return model, tokenizer, seq2seq


class HFGenerator:
    name = "hf"

    def __init__(self, model, tokenizer, seq2seq: bool, context: PremiseContext | None = None,
                 decoding: Literal["beam", "sample"] = "beam", max_input_tokens: int = 1024,
                 max_new_tokens: int = 64, temperature: float = 1.0,
                 prompt_shape: Literal["state", "premises"] = "premises"):
        self.model = model
        self.prompt_shape = prompt_shape
        self.tokenizer = tokenizer
        self.seq2seq = seq2seq
        self.context = context or PremiseContext()
        self.decoding = decoding
        self.max_input_tokens = max_input_tokens
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.tokenizer.truncation_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    @classmethod
    def from_pretrained(cls, name: str, context: PremiseContext | None = None, device: str | None = None,
                        byte_lengths: tuple[int, int] | None = None, prompt: str = "auto",
                        **kwargs) -> "HFGenerator":
        """Load `name` (on CUDA when available). `byte_lengths` = (input bytes, new bytes) replace the token
        lengths when the tokenizer is byte-level; `prompt` = "auto" | "state" | "premises"."""
        model, tokenizer, seq2seq = load_model(name, device or default_device())
        if byte_lengths is not None and is_byte_level(tokenizer):
            kwargs["max_input_tokens"], kwargs["max_new_tokens"] = byte_lengths[0] + 1, byte_lengths[1] + 1  # + </s>
        return cls(model, tokenizer, seq2seq, context=context, prompt_shape=prompt_shape_for(name, prompt), **kwargs)

    def reset(self, seed: int) -> None:
        import torch

        torch.manual_seed(seed)

    def prompt(self, state: str, theorem: Theorem | None = None) -> str:
        text = self.context.build(state, theorem) if self.prompt_shape == "premises" else state
        return text if self.seq2seq else CAUSAL_TEMPLATE.format(context=text)

    def generate(self, state: str, n: int, theorem: Theorem | None = None) -> list[tuple[str, float]]:
        import torch

        enc = self.tokenizer([self.prompt(state, theorem)], return_tensors="pt", truncation=True,
                             max_length=self.max_input_tokens).to(self.model.device)
        common = dict(max_new_tokens=self.max_new_tokens, num_return_sequences=n, output_scores=True,
                      return_dict_in_generate=True, pad_token_id=self.tokenizer.pad_token_id,
                      eos_token_id=self.tokenizer.eos_token_id)
        with torch.no_grad():
            if self.decoding == "beam":
                out = self.model.generate(**enc, num_beams=n, do_sample=False, length_penalty=0.0,
                                          early_stopping=True, **common)
                scores = out.sequences_scores.tolist()
            else:
                out = self.model.generate(**enc, do_sample=True, temperature=self.temperature, top_k=0, **common)
                scores = self._sampled_logprobs(out)
        seqs = out.sequences if self.seq2seq else out.sequences[:, enc["input_ids"].shape[1]:]
        texts = self.tokenizer.batch_decode(seqs, skip_special_tokens=True)
        if not self.seq2seq:
            texts = [first_line(t) for t in texts]
        return dedup_best(zip(texts, scores), n)

    def _sampled_logprobs(self, out) -> list[float]:
        """Σ log p of each sampled token up to and including its first EOS (later positions are padding)."""
        import torch

        trans = self.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        gen = out.sequences[:, -trans.shape[1]:]
        eos = self.tokenizer.eos_token_id
        is_eos = (gen == eos).int()
        after_eos = (torch.cumsum(is_eos, dim=1) - is_eos) > 0
        trans = trans.masked_fill(after_eos | torch.isinf(trans) & after_eos, 0.0)
        return trans.sum(dim=1).tolist()
