"""Memory bank: round trip on disk, torn tail, corruption, balanced eviction, matching, sampling, codecs."""
from __future__ import annotations

import random

import numpy as np
import pytest

from common.errors import WorkspaceError
from memory.bank import BankItem, MemoryBank, items_of_repository
from memory.bank_format import dequantize_int8, quantize_int8


def _items(repo: str, n: int, start: int = 0) -> list[BankItem]:
    return [BankItem("step", repo, f"{repo}.thm{i}", f"x y : Nat\n⊢ x + {i} = {i} + x  -- {repo}",
                     f"omega  -- {i}", "no goals", premises=("Nat.add_comm",)) for i in range(start, start + n)]


def test_round_trip_and_dedup(tmp_path, encoder) -> None:
    bank = MemoryBank(tmp_path / "bank", encoder)
    items = _items("A", 5) + _items("B", 3)
    assert bank.add(items) == 8
    assert bank.add(items[:2]) == 0  # same content is stored once
    reopened = MemoryBank(tmp_path / "bank", encoder)
    assert len(reopened) == 8
    assert sorted(reopened.get(i).theorem for i in reopened.ids()) == sorted(it.theorem for it in items)
    _, a = bank.vectors()
    _, b = reopened.vectors()
    assert np.array_equal(a, b)
    assert reopened.get(reopened.ids()[0]).premises == ("Nat.add_comm",)
    assert reopened.stats()["A"]["items"] == 5 and reopened.stats()["B"]["compression_ratio"] > 1


def test_match(tmp_path, encoder) -> None:
    bank = MemoryBank(tmp_path / "bank", encoder)
    bank.add([
        BankItem("step", "A", "t1", "h : a ∈ s ∩ t\n⊢ a ∈ s", "exact h.1", "no goals"),
        BankItem("step", "A", "t2", "h : a ∈ s ∩ t\n⊢ a ∈ s", "exact  h.1", "no goals"),
        BankItem("step", "B", "t3", "n : Nat\n⊢ n + 0 = n", "simp", "no goals"),
        BankItem("proof", "B", "t3", "n : Nat\n⊢ n + 0 = n", "simp", "no goals", proof=("simp",)),
    ])
    matches = bank.match("h : a ∈ s ∩ t\n⊢ a ∈ s", k=3)
    assert [m.item.theorem for m in matches[:2]] == ["t1", "t2"] or [m.item.theorem for m in matches[:2]] == ["t2", "t1"]
    assert all(m.item.kind == "step" for m in matches)
    assert matches[0].score >= matches[1].score >= matches[2].score
    assert [m.item.repo for m in bank.match("n + 0 = n", k=5, repos=["B"], kind=None)] == ["B", "B"]
    assert [m.item.kind for m in bank.match("n + 0 = n", k=5, repos=["B"], kind="proof")] == ["proof"]


def test_torn_tail_is_ignored_and_overwritten(tmp_path, encoder) -> None:
    bank = MemoryBank(tmp_path / "bank", encoder)
    bank.add(_items("A", 4))
    seg = tmp_path / "bank" / "seg-000001.bin"
    committed = seg.stat().st_size
    with open(seg, "ab") as f:      # a crash in the middle of the next write
        f.write(b"LLBK\x01\x00\x00\x00" + b"\xff" * 40)
    reopened = MemoryBank(tmp_path / "bank", encoder)
    assert len(reopened) == 4
    reopened.add(_items("A", 2, start=10))
    assert len(MemoryBank(tmp_path / "bank", encoder)) == 6
    assert seg.stat().st_size > committed


def test_corruption_names_the_file(tmp_path, encoder) -> None:
    bank = MemoryBank(tmp_path / "bank", encoder)
    bank.add(_items("A", 4))
    seg = tmp_path / "bank" / "seg-000001.bin"
    data = bytearray(seg.read_bytes())
    data[40] ^= 0xFF
    seg.write_bytes(bytes(data))
    with pytest.raises(WorkspaceError, match="seg-000001.bin.*corrupted"):
        MemoryBank(tmp_path / "bank", encoder)


def test_balanced_eviction_keeps_every_repository(tmp_path, encoder) -> None:
    probe = MemoryBank(tmp_path / "probe", encoder)
    probe.add(_items("A", 10))
    per_item = probe.stats()["A"]["bytes"] / 10
    budget = int(per_item * 30)
    bank = MemoryBank(tmp_path / "bank", encoder, budget_bytes=budget)
    bank.add(_items("A", 60))                 # A alone fills the budget
    assert sum(s["bytes"] for s in bank.stats().values()) <= budget
    bank.add(_items("B", 10))
    bank.add(_items("C", 10))
    stats = bank.stats()
    assert sum(s["bytes"] for s in stats.values()) <= budget
    assert stats["B"]["items"] == 10 and stats["C"]["items"] == 10  # small repositories are not crowded out
    assert 5 <= stats["A"]["items"] <= 12                             # the heavy one gave way
    reopened = MemoryBank(tmp_path / "bank", encoder, budget_bytes=budget)
    assert reopened.stats() == stats                                   # tombstones survive a reopen


def test_forget_and_compaction(tmp_path, encoder) -> None:
    bank = MemoryBank(tmp_path / "bank", encoder)
    bank.add(_items("A", 20) + _items("B", 5))
    assert bank.forget_repo("A") == 20
    assert {bank.get(i).repo for i in bank.ids()} == {"B"}
    bank.compact()
    assert len(list((tmp_path / "bank").glob("seg-*.bin"))) == 1
    reopened = MemoryBank(tmp_path / "bank", encoder)
    assert len(reopened) == 5 and reopened.stats().keys() == {"B"}
    assert reopened.match(_items("A", 1)[0].state, k=10, kind=None)[0].item.repo == "B"


def test_sample_is_repository_balanced(tmp_path, encoder) -> None:
    bank = MemoryBank(tmp_path / "bank", encoder)
    bank.add(_items("A", 30) + _items("B", 3) + _items("C", 3))
    sample = bank.sample(9, random.Random(0))
    counts = {r: sum(1 for it in sample if it.repo == r) for r in "ABC"}
    assert counts == {"A": 3, "B": 3, "C": 3}
    assert all(it.repo != "A" for it in bank.sample(10, random.Random(0), exclude_repo="A"))


def test_int8_quantization_error_is_small() -> None:
    v = np.random.default_rng(0).standard_normal((50, 384)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    codes, scales = quantize_int8(v)
    assert codes.dtype == np.int8
    assert np.abs(dequantize_int8(codes, scales) - v).max() <= scales.max() / 2 + 1e-7


def test_traced_proofs_of_a_repository(b4_sample, tmp_path, encoder) -> None:
    from curriculum.lean_data import load_dataset, to_repositories

    repo = next(r for r in to_repositories(load_dataset(b4_sample), split_by_dir=2) if r.name == "Mathlib/Topology")
    items = items_of_repository(repo)
    train = [t for t in repo.theorems_in("train") if t.tactics]
    assert sum(1 for it in items if it.kind == "proof") == len(train)
    assert sum(1 for it in items if it.kind == "step") == sum(len(t.tactics) for t in train)
    bank = MemoryBank(tmp_path / "bank", encoder)
    n = bank.add_repository(repo)
    assert n == len(set(it.digest for it in items)) and bank.add_repository(repo) == 0


def test_int4_bank_round_trip(tmp_path, encoder) -> None:
    from memory.bank_format import dequantize_int4, quantize_int4

    v = np.random.default_rng(1).standard_normal((7, 383)).astype(np.float32)
    codes, scales = quantize_int4(v)
    assert codes.shape == (7, 192)
    assert np.abs(dequantize_int4(codes, scales, 383) - v).max() <= scales.max() / 2 + 1e-6
    small = MemoryBank(tmp_path / "b4", encoder, quantization="int4")
    big = MemoryBank(tmp_path / "b8", encoder)
    items = _items("A", 6)
    small.add(items)
    big.add(items)
    assert small.stats()["A"]["bytes"] < big.stats()["A"]["bytes"]
    reopened = MemoryBank(tmp_path / "b4", encoder, quantization="int4")
    assert len(reopened) == 6 and reopened.match(items[3].state, k=1)[0].item == items[3]


def test_dedup_survives_forget_readd_reopen(tmp_path, encoder) -> None:
    """Issue 13 item 5: forget (or evict), re-add, reopen, add again → still one copy of each item."""
    items = _items("A", 3)
    bank = MemoryBank(tmp_path / "bank", encoder)
    bank.add(items)
    bank.forget_repo("A")
    assert bank.add(items) == 3
    reopened = MemoryBank(tmp_path / "bank", encoder)
    assert reopened.add(items) == 0
    assert len(MemoryBank(tmp_path / "bank", encoder)) == 3


def test_dedup_survives_evict_readd_reopen(tmp_path, encoder) -> None:
    probe = MemoryBank(tmp_path / "probe", encoder)
    probe.add(_items("A", 10))
    budget = int(probe.stats()["A"]["bytes"] / 10 * 6)
    bank = MemoryBank(tmp_path / "bank", encoder, budget_bytes=budget)
    items = _items("A", 10)
    bank.add(items)                                # some are evicted
    kept = {bank.get(i).digest for i in bank.ids()}
    evicted = [it for it in items if it.digest not in kept]
    assert evicted
    bank.add(evicted)                              # evicted items come back (others may go)
    live = {bank.get(i).digest for i in bank.ids()}
    assert live & {it.digest for it in evicted}
    reopened = MemoryBank(tmp_path / "bank", encoder, budget_bytes=1 << 30)
    assert reopened.add(items) == len(items) - len(live)   # only what is not live is added again
    digests = [it.digest for it in map(MemoryBank(tmp_path / "bank", encoder).get, reopened.ids())]
    assert len(digests) == len(set(digests)) == len(items)


def test_sample_from_allowed_repositories_at_the_source(tmp_path, encoder) -> None:
    """Issue 13 item 6: with allowed {A, B} among banked A..D, `sample(n)` gives n items, all of A or B, balanced."""
    bank = MemoryBank(tmp_path / "bank", encoder)
    bank.add(_items("A", 20) + _items("B", 20) + _items("C", 40) + _items("D", 40))
    got = bank.sample(16, random.Random(1), repos=["A", "B"])
    assert len(got) == 16 and {it.repo for it in got} == {"A", "B"}
    assert sum(it.repo == "A" for it in got) == 8
    assert len({it.digest for it in got}) == 16
    assert bank.sample(8, random.Random(1), repos=["A", "B"], exclude_repo="A") == \
        bank.sample(8, random.Random(1), repos=["B"])
    assert bank.sample(5, random.Random(1), repos=[]) == []


def test_sample_need_premises_and_match_repos_mask(tmp_path, encoder) -> None:
    bank = MemoryBank(tmp_path / "bank", encoder)
    bare = [BankItem("step", "A", f"A.b{i}", f"⊢ bare {i}", "rfl", "no goals") for i in range(10)]
    bank.add(bare + _items("A", 3) + _items("B", 3))
    got = bank.sample(6, random.Random(0), need_premises=True)
    assert len(got) == 6 and all(it.premises and it.kind == "step" for it in got)
    q = _items("B", 1)[0].state
    assert {m.item.repo for m in bank.match(q, k=20, repos=["A"])} == {"A"}
    assert bank.match(q, k=20, repos=["nope"]) == []
    assert len(bank.match(q, k=20, repos=["A", "B"])) == 16
    assert bank.match(q, k=1, repos=("B",))[0].item == _items("B", 1)[0]


def _distinct(repo: str, n: int) -> list[BankItem]:
    words = ["add", "mul", "sub", "le", "lt", "mem", "union", "inter", "map", "filter", "card", "sum"]
    return [BankItem("step", repo, f"{repo}.d{i}", f"a b : ℕ\n⊢ {words[i % 12]} a {i} = {words[(i // 12) % 12]} b {i % 7}",
                     "simp", "no goals", premises=(f"Nat.{words[i % 12]}_comm",)) for i in range(n)]


@pytest.mark.parametrize("quantization", ["sq6"])  # PQ is measured by `bench/memory.py --pq` only (slow here)
def test_codec_is_trained_once_deterministically_and_recodes(tmp_path, encoder, quantization) -> None:
    from memory.bank import CODEC_MIN_TRAIN

    items = _distinct("A", CODEC_MIN_TRAIN[quantization] + 20)
    bank = MemoryBank(tmp_path / "one", encoder, quantization=quantization)
    bank.add(items[:10])                                   # too few states to train: stored int8 for now
    assert not list((tmp_path / "one").glob("codec-*")) and len(bank) == 10
    bank.add(items[10:])
    codecs = list((tmp_path / "one").glob("codec-*.faiss"))
    assert len(codecs) == 1
    other = MemoryBank(tmp_path / "two", encoder, quantization=quantization)
    other.add(items[::-1])                                 # same content, another insertion order
    assert [p.read_bytes() for p in (tmp_path / "two").glob("codec-*.faiss")] == [codecs[0].read_bytes()]
    _, a = bank.vectors()
    _, b = MemoryBank(tmp_path / "one", encoder, quantization=quantization).vectors()
    assert np.array_equal(a, b)                            # every item was re-coded, and reads back the same
    assert bank.match(items[5].state, k=1)[0].item == items[5]
    bank.add(_distinct("B", 5))                            # more items never re-train the codec
    assert list((tmp_path / "one").glob("codec-*.faiss")) == codecs
    assert MemoryBank(tmp_path / "one", encoder, quantization=quantization).stats()["B"]["items"] == 5
    codecs[0].write_bytes(codecs[0].read_bytes()[:-7])
    with pytest.raises(WorkspaceError, match=r"codec-.*\.faiss.*corrupted"):
        MemoryBank(tmp_path / "one", encoder, quantization=quantization)


def test_proof_and_first_step_share_one_vector_code(tmp_path, encoder) -> None:
    state = "n : ℕ\n⊢ n + 0 = n"
    items = [BankItem("step", "A", "t", state, "simp", "no goals"),
             BankItem("proof", "A", "t", state, "simp", "no goals", proof=("simp",))]
    shared = MemoryBank(tmp_path / "shared", encoder)
    shared.add(items)
    single = MemoryBank(tmp_path / "single", encoder)
    single.add(items[:1])
    assert shared.disk_bytes() - single.disk_bytes() < 200        # the second item adds no 384-byte code
    _, mat = MemoryBank(tmp_path / "shared", encoder).vectors()
    assert np.array_equal(mat[0], mat[1])


def _hashes(root) -> dict[str, str]:
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_read_only_bank_writes_nothing(tmp_path, encoder) -> None:
    bank = MemoryBank(tmp_path / "bank", encoder)
    bank.add(_items("A", 30) + _items("B", 5))
    bank.forget_repo("A")                                   # dead records: a writer would compact these
    seg = tmp_path / "bank" / "seg-000001.bin"
    with open(seg, "ab") as f:
        f.write(b"torn tail")                               # a writer would truncate this
    before = _hashes(tmp_path / "bank")
    ro = MemoryBank(tmp_path / "bank", encoder, budget_bytes=1024, read_only=True)
    assert len(ro) == 5 and ro.match(_items("B", 1)[0].state, k=3)
    assert ro.sample(3, random.Random(0)) and ro.stats()["B"]["items"] == 5
    with pytest.raises(WorkspaceError, match="read-only"):
        ro.add(_items("C", 1))
    with pytest.raises(WorkspaceError, match="read-only"):
        ro.forget_repo("B")
    assert _hashes(tmp_path / "bank") == before


def test_readers_see_a_snapshot_while_a_writer_compacts(tmp_path, encoder) -> None:
    import threading

    bank = MemoryBank(tmp_path / "bank", encoder)
    pool = _items("A", 40)
    bank.add(pool)
    errors: list[BaseException] = []
    done = threading.Event()

    def write() -> None:
        try:
            for r in range(6):
                bank.forget_repo("A")
                bank.add(pool)
                bank.compact()                              # deletes the segments a reader may be reading
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=write)
    thread.start()
    opened = 0
    while not done.is_set() or opened == 0:
        ro = MemoryBank(tmp_path / "bank", encoder, read_only=True)
        assert len(ro) in (0, 40)                           # never a half-written state
        opened += 1
    thread.join()
    assert not errors and opened > 0


@pytest.mark.parametrize("damage", ["truncate-manifest", "manifest-types", "truncate-segment", "missing-segment"])
def test_malformed_bank_files_give_one_line_naming_the_file(tmp_path, encoder, damage) -> None:
    bank = MemoryBank(tmp_path / "bank", encoder)
    bank.add(_items("A", 4))
    manifest, seg = tmp_path / "bank" / "index.json", tmp_path / "bank" / "seg-000001.bin"
    if damage == "truncate-manifest":
        manifest.write_bytes(manifest.read_bytes()[:20])
        where = "index.json"
    elif damage == "manifest-types":
        manifest.write_text('{"schema": 1, "encoder": "%s", "segments": [{"file": 3}]}' % encoder.version)
        where = "index.json"
    elif damage == "truncate-segment":
        seg.write_bytes(seg.read_bytes()[:100])
        where = "seg-000001.bin"
    else:
        seg.unlink()
        where = "seg-000001.bin"
    with pytest.raises(WorkspaceError) as exc:
        MemoryBank(tmp_path / "bank", encoder)
    assert where in str(exc.value) and "\n" not in str(exc.value)
