"""Memory bank: round trip on disk, torn tail, corruption, balanced eviction, matching and aggregation."""
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


def test_match_and_aggregate(tmp_path, encoder) -> None:
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
    agg = bank.aggregate(matches)
    assert agg.tactics[0][0] == "exact h.1"                  # whitespace-normalised, two votes merged
    assert all(score <= 0 for _, score in agg.tactics)
    assert np.isclose(sum(np.exp(s) for _, s in agg.tactics), 1.0)
    assert "exact h.1" in agg.context
    assert [m.item.repo for m in bank.match("n + 0 = n", k=5, repos=["B"], kind=None)] == ["B", "B"]
    assert bank.aggregate([]).tactics == []


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
