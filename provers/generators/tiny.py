"""Tiny tactic models built from a config, offline: for tests, benchmarks and smoke runs, never for results.

The tokenizer is byte-level (every UTF-8 byte is a token, like ReProver's ByT5), built with `tokenizers`, so
nothing is downloaded; it saves as a fast tokenizer that transformers and vLLM load with `AutoTokenizer`.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Literal, Sequence

SPECIALS = ["<pad>", "</s>", "<unk>", "<s>"]  # ids 0..3; T5 uses pad as decoder start


def byte_tokenizer(kind: Literal["t5", "llama"] = "t5"):
    """A byte-level fast tokenizer: 4 specials + 256 byte tokens. T5 appends `</s>`; LLaMA prepends `<s>`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(SPECIALS + alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    if kind == "t5":
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    else:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   bos_token="<s>")


def build_tiny_model(out_dir: str | Path, kind: Literal["t5", "llama"] = "t5", d_model: int = 64,
                     layers: int = 2, heads: int = 4, seed: int = 0) -> Path:
    """Save a randomly initialised tiny T5 (seq2seq) or LLaMA (decoder-only) plus its tokenizer to `out_dir`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    out = Path(out_dir)
    tokenizer = byte_tokenizer(kind)
    vocab = len(tokenizer)
    if kind == "t5":
        config = T5Config(vocab_size=vocab, d_model=d_model, d_kv=d_model // heads, d_ff=2 * d_model,
                          num_layers=layers, num_decoder_layers=layers, num_heads=heads, pad_token_id=0,
                          eos_token_id=1, decoder_start_token_id=0, dropout_rate=0.0)
        model = T5ForConditionalGeneration(config)
    else:
        config = LlamaConfig(vocab_size=vocab, hidden_size=d_model, intermediate_size=2 * d_model,
                             num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                             max_position_embeddings=2048, pad_token_id=0, eos_token_id=1, bos_token_id=3,
                             tie_word_embeddings=False)
        model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def fit(model, tokenizer, pairs: Sequence[tuple[str, str]], seq2seq: bool, epochs: int = 3, lr: float = 3e-3,
        batch_size: int = 16, max_input_tokens: int = 512, max_target_tokens: int = 64, seed: int = 0) -> list[float]:
    """Teacher-forced cross-entropy on (input text, tactic) pairs; returns the mean loss of each epoch.

    A decoder-only model sees `[GOAL] input [PROOFSTEP] tactic</s>` with the loss on the tactic only.
    """
    import torch

    from provers.generators.base import CAUSAL_TEMPLATE

    rng = random.Random(seed)
    torch.manual_seed(seed)
    tokenizer.truncation_side = "left"
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    data = list(pairs)
    for _ in range(epochs):
        rng.shuffle(data)
        total, count = 0.0, 0
        for i in range(0, len(data), batch_size):
            batch = data[i:i + batch_size]
            if seq2seq:
                enc = tokenizer([b[0] for b in batch], return_tensors="pt", padding=True, truncation=True,
                                max_length=max_input_tokens)
                tgt = tokenizer([b[1] for b in batch], return_tensors="pt", padding=True, truncation=True,
                                max_length=max_target_tokens)
                labels = tgt["input_ids"].masked_fill(tgt["attention_mask"] == 0, -100)
                loss = model(**enc, labels=labels).loss
            else:
                ids, labels = [], []
                for src, tactic in batch:
                    p = tokenizer(CAUSAL_TEMPLATE.format(context=src), truncation=True,
                                  max_length=max_input_tokens)["input_ids"]
                    t = tokenizer(tactic, add_special_tokens=False)["input_ids"][:max_target_tokens]
                    t = t + [tokenizer.eos_token_id]
                    ids.append(p + t)
                    labels.append([-100] * len(p) + t)
                width = max(len(x) for x in ids)
                pad = tokenizer.pad_token_id
                input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
                mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
                lab = torch.tensor([x + [-100] * (width - len(x)) for x in labels])
                loss = model(input_ids=input_ids, attention_mask=mask, labels=lab).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(batch)
            count += len(batch)
        losses.append(total / max(count, 1))
    model.eval()
    return losses
