"""Scale hot spots of Mathlib-sized streams, each checked by counting work (never by timing it).

Opening the memory bank decodes no item text; a match scores only the steps' rows, screens large parts in
float16 and returns the exact top-k, each row's score the same bits wherever it falls; `add` encodes each new
state once and trains the same codec bytes as before; the lifelong metrics are vectorised with results identical
to their loops; importing the CLI leaves networkx unloaded; a step's premise store opens in a thread while
the step loads the rest, and threads share one base encoder.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.evaluation import lifelong as L
from memory import bank_format
import memory.bank as bank_module
from memory.bank import BankItem, MemoryBank

ROOT = Path(__file__).resolve().parents[1]


class HashEncoder:
    """A fast deterministic stand-in for the base encoder: a unit vector seeded by the text's hash."""

    version = "hash-encoder-1"
    dim = 32

    def __init__(self) -> None:
        self.texts = 0

    def encode(self, texts, progress: bool = False, desc: str = "", memo: bool = True) -> np.ndarray:
        texts = list(texts)
        self.texts += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for j, t in enumerate(texts):
            seed = int(hashlib.sha1(t.encode("utf-8")).hexdigest()[:8], 16)
            out[j] = np.random.default_rng(seed).standard_normal(self.dim)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


class CountingEncoder:
    """Wraps a real encoder and counts the texts passed to `encode`."""

    def __init__(self, inner) -> None:
        self.inner, self.texts = inner, 0

    version = property(lambda self: self.inner.version)
    dim = property(lambda self: self.inner.dim)

    def encode(self, texts, *args, **kwargs) -> np.ndarray:
        texts = list(texts)
        self.texts += len(texts)
        return self.inner.encode(texts, *args, **kwargs)


def _stream(n: int, repos: int = 5) -> list[BankItem]:
    """Steps and proofs of `repos` repositories; proofs share their first step's state, some steps repeat one."""
    out = []
    for i in range(n):
        repo = f"R{i % repos}"
        state = f"x y : ℕ\nh : x ≤ y\n⊢ f x {i // 2} = g y {i % 9}  -- {repo}"
        out.append(BankItem("step", repo, f"{repo}.t{i // 3}", state, f"simp [lemma_{i % 13}]", "no goals",
                            premises=(f"Nat.p{i % 4}",) if i % 3 else ()))
        if i % 5 == 0:
            out.append(BankItem("proof", repo, f"{repo}.t{i // 3}", state, "simp", "no goals", proof=("simp",)))
    return out


@pytest.fixture
def decompressions(monkeypatch) -> list[int]:
    """How many zstd frames are decompressed (through any code path of the bank)."""
    import zstandard

    calls: list[int] = []
    real = zstandard.ZstdDecompressor

    class Counting:
        def __init__(self, *args, **kwargs) -> None:
            self.inner = real(*args, **kwargs)

        def decompress(self, data, *args, **kwargs):
            calls.append(len(data))
            return self.inner.decompress(data, *args, **kwargs)

    monkeypatch.setattr(zstandard, "ZstdDecompressor", Counting)
    return calls


# -- reference implementations: the bank's algorithms as they were, over eagerly known items ----------------

def _expected_items(items: list[BankItem]) -> dict[int, BankItem]:
    """Ids the bank gives a first `add` of `items`: duplicates dropped, sorted by repository (stable)."""
    seen, fresh = set(), []
    for it in items:
        if it.digest not in seen:
            seen.add(it.digest)
            fresh.append(it)
    fresh.sort(key=lambda it: it.repo)
    return dict(enumerate(fresh))


def _reference_match(known: dict[int, BankItem], ids: np.ndarray, mat: np.ndarray, q: np.ndarray, k: int,
                     repos=None, kind="step") -> list[tuple[int, float]]:
    scores = np.einsum("ij,j->i", mat, q)   # each row's own float32 dot product (`exact_scores`)
    mask = np.ones(len(ids), dtype=bool)
    if repos is not None:
        mask &= np.asarray([known[int(i)].repo in set(repos) for i in ids])
    if kind is not None:
        step = np.asarray([known[int(i)].kind == "step" for i in ids])
        mask &= step if kind == "step" else ~step
    ranked = sorted((-float(scores[j]), int(ids[j])) for j in np.flatnonzero(mask))   # best first, ties by id
    return [(i, -neg) for neg, i in ranked[:k]]


def _reference_sample(known: dict[int, BankItem], n: int, rng: random.Random, exclude_repo=None, repos=None,
                      kind=None, need_premises=False) -> list[BankItem]:
    ids = sorted(known)
    pools: dict[str, list[int]] = {}
    for name in sorted({it.repo for it in known.values()}):
        if name == exclude_repo:
            continue
        mine = [i for i in ids if known[i].repo == name and (repos is None or name in repos)
                and (kind is None or (known[i].kind == "step") == (kind == "step"))
                and (not need_premises or known[i].premises)]
        if mine:
            pools[name] = rng.sample(mine, min(n, len(mine)))
    order = sorted(pools)
    rng.shuffle(order)
    out: list[BankItem] = []
    while len(out) < n and any(pools.values()):
        for r in order:
            if pools[r] and len(out) < n:
                out.append(known[pools[r].pop()])
    return out


# -- 1. opening the bank decodes no text ---------------------------------------------------------------------

def test_opening_a_bank_decodes_no_item_text(tmp_path, decompressions) -> None:
    encoder = HashEncoder()
    items = _stream(700)
    writer = MemoryBank(tmp_path / "bank", encoder, budget_bytes=1 << 40)
    writer.add(items)
    known = _expected_items(items)
    blocks = math.ceil(len(known) / 256)
    assert len(writer) == len(known) and blocks >= 3

    decompressions.clear()
    bank = MemoryBank(tmp_path / "bank", encoder, read_only=True)
    assert len(bank) == len(known) and bank.ids() == sorted(known)
    ids, mat = bank.vectors()
    assert decompressions == []                                   # was one frame per block, every open

    q = encoder.encode(["x y : ℕ\nh : x ≤ y\n⊢ f x 3 = g y 3  -- R1"])[0]
    for repos, kind in [(None, "step"), (["R1", "R3"], "step"), (["R2"], "proof"), (None, None)]:
        got = [(m.id, m.score) for m in bank.match(q, k=7, repos=repos, kind=kind)]
        assert got == _reference_match(known, ids, mat, q, 7, repos, kind)
    assert 0 < len(decompressions) <= blocks   # only blocks of the results
    for m in bank.match(q, k=5, kind=None):
        assert m.item == known[m.id]

    for args in [dict(n=9), dict(n=30, exclude_repo="R0"), dict(n=12, repos=["R1", "R4"], kind="step",
                                                                  need_premises=True), dict(n=4, kind="proof")]:
        fresh = MemoryBank(tmp_path / "bank", encoder, read_only=True)
        decompressions.clear()
        got = fresh.sample(rng=random.Random(5), **args)
        assert got == _reference_sample(known, rng=random.Random(5), **args)
        assert len(decompressions) <= min(blocks, len(got))
    assert bank.get(300) == known[300]
    assert list(bank.items()) == sorted(known.items())
    assert list(bank.items(repo="R2", kind="proof")) == [(i, it) for i, it in sorted(known.items())
                                                         if it.repo == "R2" and it.kind == "proof"]


def test_a_match_parses_only_the_items_it_returns(tmp_path, monkeypatch) -> None:
    """Each returned item's own JSON is parsed, not its whole block's: in a large bank the top k come from
    k different blocks, and parsing 256 items of each cost more than the match."""
    encoder = HashEncoder()
    items = _stream(1500)
    MemoryBank(tmp_path / "bank", encoder, budget_bytes=1 << 40).add(items)
    known = _expected_items(items)
    parsed: list[int] = []
    real = bank_format.json

    class Counting:
        def __getattr__(self, name):
            return getattr(real, name)

        def loads(self, data, *args, **kwargs):
            parsed.append(len(data))
            return real.loads(data, *args, **kwargs)

    bank = MemoryBank(tmp_path / "bank", encoder, read_only=True)
    monkeypatch.setattr(bank_format, "json", Counting())
    q = encoder.encode(["x y : ℕ\nh : x ≤ y\n⊢ f x 11 = g y 2  -- R3"])[0]
    got = bank.match(q, k=8, kind=None)
    assert len({bank._entries[m.id].stored for m in got}) >= 4          # results from several blocks
    assert [m.item for m in got] == [known[m.id] for m in got]
    returned = sum(len(json.dumps(m.item.to_json(), ensure_ascii=False, separators=(",", ":")).encode()) for m in got)
    assert len(parsed) == len(got) and sum(parsed) == returned           # was every item of those blocks
    assert list(bank.items()) == sorted(known.items())                   # the rest still parse, whole or one by one


def test_writes_after_a_lazy_open_keep_dedup_eviction_and_forget(tmp_path, decompressions) -> None:
    encoder = HashEncoder()
    items = _stream(600)
    MemoryBank(tmp_path / "bank", encoder, budget_bytes=1 << 40).add(items)
    decompressions.clear()
    bank = MemoryBank(tmp_path / "bank", encoder, budget_bytes=1 << 40)
    assert bank.add(items) == 0 and decompressions == []            # dedup from the item index alone
    removed = bank.forget_repo("R3")                                  # all commits: no text needed either
    assert removed == sum(1 for it in _expected_items(items).values() if it.repo == "R3")
    assert decompressions == []
    reopened = MemoryBank(tmp_path / "bank", encoder, budget_bytes=1 << 40)
    assert {it.repo for _, it in reopened.items()} == {"R0", "R1", "R2", "R4"}
    assert reopened.add(items) == removed                              # R3 comes back, nothing else
    small = MemoryBank(tmp_path / "bank", encoder, budget_bytes=20_000)
    small.add([BankItem("step", "R9", "R9.new", "⊢ True", "trivial", "no goals")])
    per_repo = {r: s["bytes"] for r, s in small.stats().items()}
    assert sum(per_repo.values()) <= 20_000 and len(per_repo) == 6   # balanced eviction kept every repository
    again = MemoryBank(tmp_path / "bank", encoder, budget_bytes=20_000)
    assert [(i, it) for i, it in again.items()] == [(i, it) for i, it in small.items()]
    _, a = again.vectors()
    _, b = small.vectors()
    assert np.array_equal(a, b)


def _as_block2(record: bytes) -> bytes:
    """The BLOCK2 record (no item index) that stored the same block before BLOCK3 existed."""
    import zlib

    F = bank_format
    magic, kind, length, _ = F.HEADER.unpack_from(record, 0)
    assert kind == F.BLOCK3 and magic == F.MAGIC
    payload = record[F.HEADER.size:F.HEADER.size + length]
    n, u, dim, quant, meta_len = F.BLOCK3_HEAD.unpack_from(payload, 0)
    frame = F._decode_block(payload, len(record), F.BLOCK3).frame
    arrays = payload[F.BLOCK3_HEAD.size:len(payload) - meta_len - len(frame)]
    new = F.BLOCK2_HEAD.pack(n, u, dim, quant) + arrays + frame
    return F.HEADER.pack(F.MAGIC, F.BLOCK2, len(new), zlib.crc32(new)) + new


def test_banks_written_before_the_item_index_read_the_same(tmp_path) -> None:
    import json

    encoder = HashEncoder()
    items = _stream(300)
    bank = MemoryBank(tmp_path / "bank", encoder, budget_bytes=1 << 40)
    bank.add(items)
    seg = tmp_path / "bank" / "seg-000001.bin"
    data, out, pos = seg.read_bytes(), b"", 0
    while pos < len(data):
        _, kind, length, _ = bank_format.HEADER.unpack_from(data, pos)
        rec = data[pos:pos + bank_format.HEADER.size + length]
        out += _as_block2(rec) if kind == bank_format.BLOCK3 else rec
        pos += len(rec)
    seg.write_bytes(out)
    manifest = json.loads((tmp_path / "bank" / "index.json").read_text())
    manifest["segments"][0]["committed"] = len(out)
    (tmp_path / "bank" / "index.json").write_text(json.dumps(manifest))
    old = MemoryBank(tmp_path / "bank", encoder, budget_bytes=1 << 40)
    assert list(old.items()) == list(bank.items())
    assert np.array_equal(old.vectors()[1], bank.vectors()[1])
    assert {r: s["bytes"] for r, s in old.stats().items()} == {r: s["bytes"] for r, s in bank.stats().items()}
    q = encoder.encode(["⊢ f x 4 = g y 2"])[0]
    assert [(m.id, m.score) for m in old.match(q, k=9, repos=["R2"])] == \
        [(m.id, m.score) for m in bank.match(q, k=9, repos=["R2"])]
    assert old.add(items) == 0 and old.forget_repo("R1") > 0 and len(MemoryBank(tmp_path / "bank", encoder)) == len(old)


# -- 2. matching scores on one BLAS thread, with today's results ----------------------------------------------

def test_a_rows_score_does_not_depend_on_the_rows_around_it() -> None:
    """`exact_scores` gives a row the same bits in the whole matrix, in a part of it and among a few
    screened candidates, so the part split and the screen cannot change a match (a BLAS sgemv can: its
    kernels sum a row differently depending on where the row falls); equal rows score exactly equal."""
    rng = np.random.default_rng(0)
    mat = rng.standard_normal((3000, 384)).astype(np.float32)
    mat[2000:2010] = mat[5]
    for q in rng.standard_normal((20, 384)).astype(np.float32):
        whole = bank_module.exact_scores(mat, q)
        for at in (np.sort(rng.choice(3000, 37, replace=False)), np.arange(1001, 2999), np.asarray([2003])):
            assert np.array_equal(bank_module.exact_scores(mat[at], q), whole[at])
        assert len(set(whole[[5, *range(2000, 2010)]].tolist())) == 1
        assert np.allclose(whole, mat.astype(np.float64) @ q.astype(np.float64), rtol=0, atol=1e-4)


def test_a_bank_that_grows_extends_its_match_and_sample_caches_with_the_same_results(tmp_path) -> None:
    """A repository's new items are appended to the per-row caches (columns, the scoring matrix, masks)
    instead of rebuilding them from every item; results stay those of a bank opened afresh from disk."""
    encoder = HashEncoder()
    bank = MemoryBank(tmp_path / "bank", encoder, budget_bytes=1 << 40)
    bank.add(_stream(600))
    q = encoder.encode(["x y : ℕ\nh : x ≤ y\n⊢ f x 7 = g y 3  -- R1"])[0]
    bank.match(q, k=10, kind=None)                         # both matrices built: steps and proofs
    bank.sample(5, random.Random(1))
    rebuilt: list[int] = []
    decoded: list[int] = []
    columns, vectors_of = MemoryBank._columns, bank_module._Stored.vectors_of

    def spy_columns(self):
        if not self._cols:
            rebuilt.append(len(self._entries))
        return columns(self)

    def spy_vectors_of(self, rows):
        decoded.append(len(rows))
        return vectors_of(self, rows)

    later = [BankItem("step", f"N{i % 3}", f"N.t{i}", f"⊢ new goal {i}", "simp", "no goals",
                      premises=("Nat.p1",) if i % 2 else ()) for i in range(700)]
    for batch in (later[:300], later[300:]):
        bank.add(batch)
        decoded.clear()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(MemoryBank, "_columns", spy_columns)
            mp.setattr(bank_module._Stored, "vectors_of", spy_vectors_of)
            got = [(m.id, m.score) for m in bank.match(q, k=10, repos=["R1", "N2"], kind=None)]
            sampled = bank.sample(40, random.Random(3), exclude_repo="R0", need_premises=True)
        assert sum(decoded) == len(batch)                 # only the new rows entered the matrices
        fresh = MemoryBank(tmp_path / "bank", encoder, read_only=True)
        assert got == [(m.id, m.score) for m in fresh.match(q, k=10, repos=["R1", "N2"], kind=None)]
        assert sampled == fresh.sample(40, random.Random(3), exclude_repo="R0", need_premises=True)
        assert [(m.id, m.score) for m in bank.match(q, k=50)] == [(m.id, m.score) for m in fresh.match(q, k=50)]
        assert np.array_equal(bank.vectors()[1], fresh.vectors()[1])
    assert rebuilt == []
    bank.forget_repo("N1")                                 # rows dropped: the caches are built afresh
    fresh = MemoryBank(tmp_path / "bank", encoder, read_only=True)
    assert [(m.id, m.score) for m in bank.match(q, k=30, kind=None)] == \
        [(m.id, m.score) for m in fresh.match(q, k=30, kind=None)]
    assert bank.sample(40, random.Random(4)) == fresh.sample(40, random.Random(4))


def test_a_step_match_reads_only_the_steps_rows_and_keeps_one_float_copy(tmp_path, monkeypatch) -> None:
    """The prover's kNN asks for steps only: it multiplies the steps' matrix, not every item's, and a bank
    opened afresh holds each vector once (in that matrix), not again in a per-block float cache."""
    encoder = HashEncoder()
    items = _stream(900)
    MemoryBank(tmp_path / "bank", encoder, budget_bytes=1 << 40).add(items)
    known = _expected_items(items)
    steps = sum(it.kind == "step" for it in known.values())
    assert 0 < steps < len(known)
    bank = MemoryBank(tmp_path / "bank", encoder, read_only=True)
    ids, mat = bank.vectors()
    bank = MemoryBank(tmp_path / "bank", encoder, read_only=True)
    scored: list[int] = []
    exact = bank_module.exact_scores

    def spy(rows, q):
        scored.append(rows.shape[0])
        return exact(rows, q)

    q = encoder.encode(["x y : ℕ\nh : x ≤ y\n⊢ f x 3 = g y 3  -- R1"])[0]
    first = [(m.id, m.score) for m in bank.match(q, k=12, repos=["R1", "R4"])]
    assert first == _reference_match(known, ids, mat, q, 12, ["R1", "R4"], "step")
    assert all(s._vectors is None for s in {e.stored for e in bank._entries.values()})   # no second copy
    monkeypatch.setattr(bank_module, "exact_scores", spy)
    again = [(m.id, m.score) for m in bank.match(q, k=12, repos=["R1", "R4"])]
    assert again == first and scored == [steps]                # was one product over all rows
    empty = MemoryBank(tmp_path / "empty", encoder)
    assert empty.vectors()[1].shape == (0, encoder.dim) and empty.match(q, k=3) == []


def test_a_screened_match_returns_the_exact_top_k_and_scores_few_rows_exactly(tmp_path, monkeypatch) -> None:
    """A large part is screened with its float16 copy and only rows within the screen's error bound of the
    k-th best are scored in float32: the result (ids, scores, order, ties by id) is the exact one."""
    encoder = HashEncoder()
    items = _stream(3000)
    bank = MemoryBank(tmp_path / "bank", encoder, budget_bytes=1 << 40)
    bank.add(items)
    known = _expected_items(items)
    ids, mat = bank.vectors()
    monkeypatch.setattr(bank_module, "SCREEN_MIN_ROWS", 64)
    exact_rows: list[int] = []
    scored = MemoryBank._scored

    def spy(self, step, part, q, k, allowed):
        at, scores = scored(self, step, part, q, k, allowed)
        exact_rows.append(len(at) / len(part))
        return at, scores

    monkeypatch.setattr(MemoryBank, "_scored", spy)
    states = [it.state for it in list(known.values())[::97]]
    queries = list(encoder.encode(states + ["⊢ unrelated"]))
    queries += [0.5 * queries[0] + 0.5 * queries[1], np.zeros(encoder.dim, dtype=np.float32), 7.0 * queries[2]]
    for q in queries:
        for k, repos, kind in [(1, None, "step"), (10, ["R1", "R3"], "step"), (32, None, "step"),
                               (5, ["R2"], "proof"), (40, None, None), (3, ["R4"], None)]:
            got = [(m.id, m.score) for m in bank.match(q, k=k, repos=repos, kind=kind)]
            assert got == _reference_match(known, ids, mat, q, k, repos, kind), (k, repos, kind)
    assert exact_rows and np.median(exact_rows) < 0.5          # most rows were never scored in float32


# -- 3. add encodes each new state once; the codec is the one trained on states in state-hash order -----------

def test_add_encodes_each_new_state_once_and_trains_the_same_codec(tmp_path, encoder) -> None:
    from memory.bank import CODEC_MAX_TRAIN, CODEC_MIN_TRAIN
    from memory.bank_format import FaissCodec

    items = _stream(2 * CODEC_MIN_TRAIN["sq6"] + 30)
    states = list(dict.fromkeys(it.state for it in items))
    assert len(states) < len(items) and len(states) >= CODEC_MIN_TRAIN["sq6"]
    order = sorted(states, key=lambda st: hashlib.sha1(st.encode("utf-8")).hexdigest())[:CODEC_MAX_TRAIN]
    reference = FaissCodec.train("sq6", encoder.encode(order, memo=False)).to_bytes()  # today's training

    counting = CountingEncoder(encoder)
    bank = MemoryBank(tmp_path / "one", counting, quantization="sq6")
    bank.add(items)
    assert [p.read_bytes() for p in (tmp_path / "one").glob("codec-*.faiss")] == [reference]
    assert counting.texts == len(states)                             # was every item's state, then all again

    counting.texts = 0
    resumed = MemoryBank(tmp_path / "two", counting, quantization="sq6")
    resumed.add(items[::-1][:10])                                    # too few states: int8 for now
    MemoryBank(tmp_path / "two", counting, quantization="sq6").add(items[::-1])   # a resume adds the rest
    assert [p.read_bytes() for p in (tmp_path / "two").glob("codec-*.faiss")] == [reference]
    assert counting.texts <= len(states) + 10                        # the 10 stored int8 states join training
    again = MemoryBank(tmp_path / "two", counting, quantization="sq6")
    assert again.match(items[7].state, k=1, kind=None)[0].item.state == items[7].state


# -- 4. lifelong metrics: vectorised, identical to the loops they replace --------------------------------------

def _ref_mean(terms):
    vals = [float(t) for t in terms if t is not None and not math.isnan(t)]
    return sum(vals) / len(vals) if vals else None


def _ref_nanmax(values):
    vals = [v for v in values if not math.isnan(v)]
    return max(vals) if vals else math.nan


def _ref_forgetting(A, seen_only=False):
    T = len(A)
    terms = []
    for j in range(T - 1):
        rows = range(j, T - 1) if seen_only else range(T - 1)
        terms.append(_ref_nanmax(A[i, j] for i in rows) - A[T - 1, j])
    return _ref_mean(terms)


def _ref_average_curve(A):
    out = []
    for t in range(len(A)):
        m = _ref_mean(A[t, : t + 1])
        out.append(math.nan if m is None else m)
    return out


REFERENCE = {
    "bwt": lambda A, b: _ref_mean(A[len(A) - 1, j] - A[j, j] for j in range(len(A) - 1)),
    "fwt": lambda A, b: _ref_mean(A[j - 1, j] - b[j] for j in range(1, len(A))),
    "forgetting": lambda A, b: _ref_forgetting(A),
    "forgetting_seen": lambda A, b: _ref_forgetting(A, seen_only=True),
    "dr_acc": lambda A, b: _ref_mean(A[i, j] for i in range(len(A)) for j in range(i + 1)),
    "expanded_bwt": lambda A, b: _ref_mean(A[i, j] - A[j, j] for i in range(len(A)) for j in range(i)),
    "dr_fwt": lambda A, b: _ref_mean(A[i, j] for i in range(len(A)) for j in range(i + 1, len(A))),
    "fm": lambda A, b: _ref_mean(_ref_nanmax(A[t, : t + 1]) - A[len(A) - 1, t] for t in range(1, len(A))),
}


def _random_matrix(T: int, rng: np.random.Generator, nan_share: float) -> np.ndarray:
    A = rng.random((T, T))
    A[rng.random((T, T)) < nan_share] = np.nan                 # cells nobody evaluated
    if T > 3:
        A[:, 1] = np.nan                                        # a repository with no test theorems
        A[2, :] = np.nan                                        # a row still in flight
    return A


@pytest.mark.parametrize("T", [1, 2, 3, 7, 31])
@pytest.mark.parametrize("nan_share", [0.0, 0.3, 0.9])
def test_lifelong_metrics_equal_their_loop_implementation(T, nan_share) -> None:
    rng = np.random.default_rng(T * 100 + int(nan_share * 10))
    A = _random_matrix(T, rng, nan_share)
    b = rng.random(T)
    b[rng.random(T) < nan_share] = np.nan
    got = L.suite(A, list(b))
    for name, ref in REFERENCE.items():
        assert got[name] == ref(A, b), name                    # exactly: same terms, same order, same sum
    curve = L.average_curve(A)
    expected = _ref_average_curve(A)
    assert len(curve) == T and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(curve, expected))
    assert got["incremental_acc"] == _ref_mean(expected)
    assert L.forgetting(np.full((T, T), np.nan)) is None and L.expanded_bwt(np.full((T, T), np.nan)) is None


def test_lifelong_metrics_read_the_matrix_a_bounded_number_of_times() -> None:
    """The loops indexed the matrix once per cell (T² Python steps per metric); now a few array operations."""
    reads = [0]

    class Counted(np.ndarray):
        def __getitem__(self, key):
            reads[0] += 1
            return super().__getitem__(key)

    T = 60
    A = _random_matrix(T, np.random.default_rng(0), 0.2).view(Counted)
    for name in ("bwt", "forgetting", "dr_acc", "expanded_bwt", "dr_fwt", "leanagent_fm"):
        reads[0] = 0
        getattr(L, name)(A)
        assert reads[0] < 20, (name, reads[0])


# -- 5. the CLI does not import networkx ----------------------------------------------------------------------

def test_importing_the_cli_leaves_networkx_unloaded() -> None:
    code = ("import sys, curriculum, agent.cli; print('networkx' in sys.modules); "
            "import curriculum.ordering; print('networkx' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]   # loaded where the stream is ordered, not before


def test_a_step_opens_its_premise_store_in_a_thread_and_waits_for_it_there(tmp_path, monkeypatch, encoder) -> None:
    """chroma reads a collection's HNSW index from disk on a client's first read (0.65 s at 100k premises,
    0.11 s at 10k, bench/scale.py) and releases the GIL while it does. The prove and evaluate steps start
    opening and warming their store in a thread, so that load runs beside the step's other loading; `store()`
    hands over that very store, and raises what opening raised."""
    import threading

    import agent.workspace.memory as memory_ops
    from agent.config import RunConfig
    from agent.loop.context import LoopContext
    from agent.workspace import Workspace
    from common.errors import WorkspaceError
    from curriculum.lean_data import Pos, Premise, PremiseFile, Repository
    from memory.premise_store import PremiseStore

    monkeypatch.setattr(memory_ops, "base_encoder", lambda config: encoder)
    ws = Workspace.open(tmp_path / "ws", create=True)
    premises = tuple(Premise(f"Nat.lemma{i}", f"theorem Nat.lemma{i} : {i} + 0 = {i}", "A.lean", Pos(i + 1, 1),
                             Pos(i + 1, 30)) for i in range(5))
    PremiseStore(ws.chroma_dir, encoder).add_repo(Repository("u", "c1", "lib", None, (),
                                                             (PremiseFile("A.lean", (), premises),)))
    warmed: list[tuple[str, int]] = []
    real_warm = PremiseStore.warm

    def warm(store: PremiseStore) -> None:
        real_warm(store)
        warmed.append((threading.current_thread().name, store.collection.count()))

    monkeypatch.setattr(PremiseStore, "warm", warm)
    ctx = LoopContext(ws, RunConfig(), ws.load_state())
    ctx.prepare_prover_memory()
    store = ctx.store()
    assert len(warmed) == 1 and warmed[0][0].startswith("lifelean-store") and warmed[0][1] == 5
    assert ctx.store() is store and ctx.prover_memory()["store"] is store
    assert [p.full_name for p in store.retrieve("⊢ 3 + 0 = 3", 1)] == ["Nat.lemma3"]

    config = RunConfig()
    config.memory.chroma_url = "http://127.0.0.1:9"   # nothing listens there
    failing = LoopContext(ws, config, ws.load_state())
    failing.prepare_prover_memory()                     # opening fails in the thread ...
    with pytest.raises(WorkspaceError, match="cannot connect"):
        failing.store()                                 # ... and is raised where the store is wanted


def test_threads_asking_for_the_base_encoder_together_load_it_once(monkeypatch) -> None:
    """The store opened in a thread asks for the base encoder while the step loads its query tower from it:
    one instance per process still (a second copy of the model is 90 MB resident)."""
    import functools
    import threading
    import time

    import agent.workspace.memory as memory_ops
    from agent.config import RunConfig

    loads: list[str] = []

    @functools.lru_cache(maxsize=4)
    def slow_load(name: str, max_length: int, batch_size: int) -> object:
        loads.append(name)
        time.sleep(0.3)
        return object()

    monkeypatch.setattr(memory_ops, "_load_encoder", slow_load)
    start, got = threading.Barrier(2), []

    def ask() -> None:
        start.wait()
        got.append(memory_ops.base_encoder(RunConfig()))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and got[0] is got[1]


def test_a_run_with_steps_to_do_starts_opening_its_store_before_the_first_step(tmp_path, monkeypatch,
                                                                               encoder) -> None:
    """Every run proves, so a fresh process (`run`, `resume`) starts loading its premise store before its first
    step, and the store is ready when the first prove step asks; a run with nothing to do opens nothing."""
    import threading

    import agent.workspace.memory as memory_ops
    from agent.loop import driver
    from agent.loop.context import LoopContext
    from agent.workspace import StreamEntry, Workspace
    from curriculum.lean_data import Repository

    monkeypatch.setattr(memory_ops, "base_encoder", lambda config: encoder)
    real_open = memory_ops.open_store
    opened: list[str] = []

    def open_store(*args, **kwargs):
        opened.append(threading.current_thread().name)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(memory_ops, "open_store", open_store)
    monkeypatch.setattr(LoopContext, "repository", lambda self, key: Repository("u", "1", "A", None, (), ()))
    asked: list[str] = []

    def first_step(ctx, entry, repo):
        ctx.store()
        asked.append(opened[0])
        return {}

    monkeypatch.setattr(driver, "STEP_FUNCTIONS", {name: first_step for name in driver.STEP_FUNCTIONS})
    monkeypatch.setattr(driver, "run_baseline", lambda ctx: {})
    ws = Workspace.open(tmp_path / "ws", create=True)
    state = ws.load_state()
    state.entries.append(StreamEntry(key="A@1", name="A", url="u", commit="1", source="s"))
    ws.save_state(state)
    driver.run_stream(ws)
    assert opened == ["lifelean-store_0"] and asked[0] == "lifelean-store_0"   # once, in the thread
    opened.clear()
    assert driver.run_stream(ws)["nothing_to_do"] and opened == []
