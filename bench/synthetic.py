"""A synthetic LeanDojo export shaped like the real sample, at any corpus size (for bench/scale.py).

    .venv/bin/python bench/synthetic.py OUT_DIR [--scale 10] [--repos 24] [--seed 0]

Writes `OUT_DIR/random/{train,val,test}.json` and `OUT_DIR/corpus.jsonl` in the layout and record schema of
`../shared/data/leandojo_b4_sample` (so `curriculum.lean_data.load_dataset` reads it and `--split-by-dir 2` cuts it
into repositories), plus `OUT_DIR/synthetic.json` (what was generated; the loaders ignore it).

How it follows the real sample (every size and text is resampled from it, nothing is invented from scratch):
- Premises: about `1000 * scale`. Each is a *variant* of a real premise (its template): the template's name with
  one word of the sample's vocabulary inserted into its last component, in a file that mirrors the template's
  file (same premises per file, same positions) under the owning repository's directory. Variants are made
  generation by generation (every real file once per generation), so the corpus grows evenly over templates.
- Theorems: `630/823` per premise (the sample's ratio), each a resampled real theorem record: its tactic count
  (term-mode share included), its states, tactics and premises per tactic. Its tokens are perturbed by one
  consistent substitution per theorem (so `state_after` of a step still equals `state_before` of the next and the
  replay environment still works), its name gets a vocabulary word, its file moves under the repository.
- Premises per tactic are the real tactic's: each real annotation becomes a variant of the same template (from the
  tactic's own repository with probability 1/2, else any repository's), the premise span in the tactic is renamed
  to it, and the variant's word replaces one identifier of the state before the tactic: states carry text
  correlated with their premises, as real goals mention the symbols of the lemmas that rewrite them. Every
  annotated premise is in the corpus.
- Splits: the sample's rule per repository (traced theorems by sha1 of the name: ~10% test, ~10% val, at least one
  test from five traced theorems on); term-mode theorems are train.
- Repositories: `repos - 1` of them sized like the sample's pseudo-repositories (largest first), directories
  `LibNN/Area`; every one has a one-tactic theorem, so it has an Easy theorem under the curriculum.
- The probe repository `Probe/Fixed` is generated from its own seed only and is byte-identical at every scale:
  30 traced theorems of two or more tactics (so it has no Easy theorem and LeanAgent's easy-first curriculum always
  puts it last: the same stream position at every scale), premises of its own, and four open (`sorry`) theorems,
  three of which restate a train theorem's goal (the `knn` prover can close them from the bank, so its prove and
  bank steps do real work) and one a goal nothing recorded closes.

Deterministic: the same arguments give the same bytes (seeded `random.Random`, no set iteration).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SAMPLE = ROOT.parent / "shared" / "data" / "leandojo_b4_sample"
PROBE_DIR = "Probe/Fixed"
PROBE_THEOREMS = 30
PROBE_OPEN_PROVABLE = 3
PROBE_OPEN_UNPROVABLE = 1
PREMISES_PER_SCALE = 1000
COMMIT = hashlib.sha1(b"lifelean synthetic stream v1").hexdigest()
SPLIT_SEED = "split"

_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9_']*")
_SPAN = re.compile(r"<a>(.*?)</a>", re.S)
# Tokens never substituted: Lean keywords, tactic names and the words of "no goals" / "case" that the replay
# environment and the curriculum read.
_KEEP = frozenset("""no goals case Type Prop Sort fun let have show from with then else match True False
    true false inst by at only using simp exact intro intros apply rw rwa refine use rfl cases induction omega
    linarith ring norm_num aesop constructor ext congr calc obtain rcases rintro unfold dsimp simpa field_simp
    positivity gcongr tauto decide trivial exfalso contradiction assumption left right split sorry admit fin""".split())


@dataclass(frozen=True)
class Template:
    full_name: str
    path: str
    start: list[int]
    end: list[int]


@dataclass(frozen=True)
class Variant:
    full_name: str
    path: str
    start: list[int]
    end: list[int]
    template: int
    word: str
    owner: str


@dataclass
class Sample:
    """The real sample, read as plain JSON (records keep their exact text)."""

    records: list[dict[str, Any]]
    templates: list[Template]
    template_of: dict[tuple[str, str], int]
    files: dict[str, list[int]]          # real corpus path -> template ids, in corpus order
    vocab: list[str]
    group_sizes: list[int]               # theorems per pseudo-repository (--split-by-dir 2), largest first
    url: str
    areas: list[str]                     # second path components of the pseudo-repositories, largest first


def load_sample(path: Path = DEFAULT_SAMPLE) -> Sample:
    records = []
    for split in ("train", "val", "test"):
        f = path / "random" / f"{split}.json"
        if f.exists():
            records.extend(json.loads(f.read_text(encoding="utf-8")))
    templates: list[Template] = []
    template_of: dict[tuple[str, str], int] = {}
    files: dict[str, list[int]] = {}
    for line in (path / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        for p in rec["premises"]:
            template_of.setdefault((p["full_name"], rec["path"]), len(templates))
            files.setdefault(rec["path"], []).append(len(templates))
            templates.append(Template(p["full_name"], rec["path"], list(p["start"]), list(p["end"])))
    words: dict[str, None] = {}
    for name in [r["full_name"] for r in records] + [t.full_name for t in templates]:
        for w in re.split(r"[._']", name):
            if w.isascii() and w.isalpha() and len(w) >= 3 and w not in _KEEP:
                words.setdefault(w, None)
    groups: dict[str, int] = {}
    for r in records:
        parts = r["file_path"].split("/")
        groups["/".join(parts[:2])] = groups.get("/".join(parts[:2]), 0) + 1
    ranked = sorted(groups.items(), key=lambda kv: (-kv[1], kv[0]))
    areas = [g.split("/")[1] for g, _ in ranked if g.startswith("Mathlib/")]
    return Sample(records, templates, template_of, files, sorted(words), [n for _, n in ranked],
                  records[0]["url"], areas)


# ----------------------------------------------------------------------------------------------
# Small text transformations.


def _with_word(name: str, word: str) -> str:
    """`Set.mem_preimage` + `tsum` -> `Set.mem_preimage_tsum` (before a trailing `'`, `?`, `!` or subscript)."""
    head, _, last = name.rpartition(".")
    m = re.match(r"^(.*?)(['?!\u2080-\u2089]*)$", last, re.S)
    base, tail = (m.group(1), m.group(2)) if m and m.group(1) else (last, "")
    new_last = f"{base}_{word}{tail}"
    return f"{head}.{new_last}" if head else new_last


def _rename_span(span: str, old_full: str, new_full: str) -> str:
    """The text a tactic names a premise by (a suffix of its full name) after the premise was renamed."""
    old_last, new_last = old_full.rpartition(".")[2], new_full.rpartition(".")[2]
    if span.endswith(old_last):
        return span[: len(span) - len(old_last)] + new_last
    return span  # notation (`Bool.true` written as `true`): the text does not name the premise


def _substitute(text: str, mapping: dict[str, str]) -> str:
    if not mapping:
        return text
    return _TOKEN.sub(lambda m: mapping.get(m.group(0), m.group(0)), text)


def _candidates(text: str, taken: dict[str, str]) -> list[str]:
    values = set(taken.values())
    return list(dict.fromkeys(t for t in _TOKEN.findall(text)
                              if len(t) >= 3 and t not in _KEEP and t not in taken and t not in values))


def _move(path: str, repo_dir: str, generation: int = 0) -> str:
    """A real file path under `repo_dir` (its first two components replaced); generation g > 0 numbers the file."""
    parts = path.split("/")
    rest = parts[2:] if len(parts) > 2 else parts[-1:]
    if generation:
        stem, dot, ext = rest[-1].rpartition(".")
        rest = rest[:-1] + [f"{stem}{generation}.{ext}" if dot else f"{rest[-1]}{generation}"]
    return "/".join([repo_dir, *rest])


def _split_rule(records: list[dict[str, Any]]) -> dict[int, str]:
    """The sample's split rule over one repository's records: index -> split."""
    traced = [i for i, r in enumerate(records) if r["traced_tactics"] and not _is_open(r)]
    traced.sort(key=lambda i: hashlib.sha1(records[i]["full_name"].encode()).hexdigest())
    n = len(traced)
    n_test = max(1 if n >= 5 else 0, round(0.1 * n))
    n_val = round(0.1 * n)
    out = {i: "train" for i in range(len(records))}
    for k, i in enumerate(traced):
        if k < n_test:
            out[i] = "test"
        elif k < n_test + n_val:
            out[i] = "val"
    return out


def _is_open(rec: dict[str, Any]) -> bool:
    return any("sorry" in t["tactic"] for t in rec["traced_tactics"])


# ----------------------------------------------------------------------------------------------
# The generator.


@dataclass
class _Names:
    """Every full name handed out so far (theorems and premises share Lean's one namespace)."""

    used: dict[str, None] = field(default_factory=dict)

    def fresh(self, make, rng: random.Random, vocab: list[str]) -> tuple[str, str]:
        """`make(word)` for a vocabulary word giving an unused name (two-word compounds when one word cannot)."""
        for attempt in range(40):
            word = rng.choice(vocab)
            if attempt >= 20:
                word = word + rng.choice(vocab).capitalize()
            name = make(word)
            if name not in self.used:
                self.used[name] = None
                return name, word
        k = len(self.used)
        name = make(f"v{k}")
        self.used[name] = None
        return name, f"v{k}"


class _Builder:
    def __init__(self, sample: Sample, seed: int, names: _Names):
        self.s = sample
        self.seed = seed
        self.names = names
        self.variants: list[Variant] = []
        self.by_template: dict[int, list[int]] = {}
        self.by_owner: dict[tuple[int, str], list[int]] = {}

    def add_variant(self, template: int, owner: str, path: str, rng: random.Random) -> int:
        t = self.s.templates[template]
        name, word = self.names.fresh(lambda w: _with_word(t.full_name, w), rng, self.s.vocab)
        self.variants.append(Variant(name, path, t.start, t.end, template, word, owner))
        vid = len(self.variants) - 1
        self.by_template.setdefault(template, []).append(vid)
        self.by_owner.setdefault((template, owner), []).append(vid)
        return vid

    def theorem(self, real: dict[str, Any], repo_dir: str, rng: random.Random, pick) -> dict[str, Any]:
        """One synthetic theorem record from a real one (see the module docstring)."""
        tactics = real["traced_tactics"]
        mapping: dict[str, str] = {}
        chosen: dict[int, int] = {}      # template -> variant, one per theorem (a lemma used twice is one lemma)
        new_annotations: list[list[tuple[dict[str, Any], Variant]]] = []
        for tac in tactics:
            anns = []
            for a in tac["annotated_tactic"][1]:
                tid = self.s.template_of.get((a["full_name"], a["def_path"]))
                if tid not in chosen:
                    chosen[tid] = pick(tid, repo_dir, rng)  # type: ignore[index]
                v = self.variants[chosen[tid]]  # type: ignore[index]
                anns.append((a, v))
                cands = _candidates(tac["state_before"], mapping)
                if cands and v.word not in mapping.values():
                    mapping[rng.choice(cands)] = v.word
            new_annotations.append(anns)
        states = " ".join(t["state_before"] for t in tactics)
        for _ in range(2):  # distinct copies of one real theorem: two more identifiers renamed
            cands = _candidates(states, mapping)
            if cands:
                mapping[rng.choice(cands)] = rng.choice(self.s.vocab)
        out_tactics = []
        for tac, anns in zip(tactics, new_annotations):
            annotated = tac["annotated_tactic"][0]
            pieces = _SPAN.split(annotated)     # text, span, text, span, ...
            spans_old, spans_new = pieces[1::2], []
            for j, span in enumerate(spans_old):
                if j < len(anns):
                    a, v = anns[j]
                    spans_new.append(_rename_span(span, a["full_name"], v.full_name))
                else:
                    spans_new.append(span)
            rebuilt = []
            for j, piece in enumerate(pieces):
                rebuilt.append(_substitute(piece, mapping) if j % 2 == 0 else f"<a>{spans_new[j // 2]}</a>")
            tactic = self._tactic_text(tac["tactic"], spans_old, spans_new, mapping)
            out_tactics.append({
                "tactic": tactic,
                "annotated_tactic": ["".join(rebuilt), [
                    {"full_name": v.full_name, "def_path": v.path, "def_pos": list(v.start),
                     "def_end_pos": list(v.end)} for _, v in anns]],
                "state_before": _substitute(tac["state_before"], mapping),
                "state_after": _substitute(tac["state_after"], mapping),
            })
        name, _ = self.names.fresh(lambda w: _with_word(real["full_name"], w), rng, self.s.vocab)
        return {"url": self.s.url, "commit": COMMIT, "file_path": _move(real["file_path"], repo_dir),
                "full_name": name, "start": list(real["start"]), "end": list(real["end"]),
                "traced_tactics": out_tactics}

    @staticmethod
    def _tactic_text(tactic: str, spans_old: list[str], spans_new: list[str], mapping: dict[str, str]) -> str:
        """The real tactic with its premise spans renamed in order and the other tokens substituted; the real
        text's whitespace is kept (the annotated text may differ from it in whitespace)."""
        out, cursor = [], 0
        for old, new in zip(spans_old, spans_new):
            at = tactic.find(old, cursor)
            if at < 0:
                continue
            out.append(_substitute(tactic[cursor:at], mapping))
            out.append(new)
            cursor = at + len(old)
        out.append(_substitute(tactic[cursor:], mapping))
        return "".join(out)


def _open_record(base: dict[str, Any], name: str, state: str) -> dict[str, Any]:
    """An open theorem: its goal, then `sorry` (LeanAgent: a theorem is open if a tactic contains sorry)."""
    return {"url": base["url"], "commit": COMMIT, "file_path": base["file_path"], "full_name": name,
            "start": list(base["start"]), "end": list(base["end"]),
            "traced_tactics": [{"tactic": "sorry", "annotated_tactic": ["sorry", []], "state_before": state,
                                "state_after": "no goals"}]}


def _linear(rec: dict[str, Any]) -> bool:
    tactics = rec["traced_tactics"]
    return (bool(tactics) and tactics[-1]["state_after"].strip() == "no goals"
            and all(a["state_after"] == b["state_before"] for a, b in zip(tactics, tactics[1:])))


def _single_goal(state: str) -> bool:
    return state.count("\u22a2") == 1 and not state.lstrip().startswith("case ")


def _probe(sample: Sample, seed: int, names: _Names) -> tuple[list[dict[str, Any]], dict[int, str], _Builder]:
    """The fixed-size repository: depends on the sample and the seed only, never on the scale."""
    rng = random.Random(f"{seed}:probe")
    b = _Builder(sample, seed, names)
    pool = [r for r in sample.records if len(r["traced_tactics"]) >= 2 and _single_goal(r["traced_tactics"][0]["state_before"])]
    reals = [rng.choice(pool) for _ in range(PROBE_THEOREMS)]
    # the probe's premises: one variant per template it uses, in order of first use
    for real in reals:
        for tac in real["traced_tactics"]:
            for a in tac["annotated_tactic"][1]:
                tid = sample.template_of.get((a["full_name"], a["def_path"]))
                if tid is not None and (tid, PROBE_DIR) not in b.by_owner:
                    b.add_variant(tid, PROBE_DIR, _move(sample.templates[tid].path, PROBE_DIR), rng)

    def pick(tid: int | None, repo_dir: str, r: random.Random) -> int:
        return b.by_owner[(tid, PROBE_DIR)][0]  # type: ignore[index]

    records = [b.theorem(real, PROBE_DIR, rng, pick) for real in reals]
    splits = _split_rule(records)
    # sources of the closable open theorems: train proofs whose trace is one chain ending in `no goals`, so
    # the recorded steps (in the bank and the replay table) close the restated goal one after the other
    train = [i for i in range(len(records)) if splits[i] == "train" and _linear(records[i])]
    for i in rng.sample(train, PROBE_OPEN_PROVABLE):
        base = records[i]
        name, _ = names.fresh(lambda w, n=base["full_name"]: _with_word(n, "open_" + w), rng, sample.vocab)
        records.append(_open_record(base, name, base["traced_tactics"][0]["state_before"]))
        splits[len(records) - 1] = "train"
    for _ in range(PROBE_OPEN_UNPROVABLE):  # a goal no recorded step of the repository closes
        other = rng.choice([r for r in sample.records if r["traced_tactics"]])
        goal = other["traced_tactics"][0]["state_before"]
        state = _substitute(goal, {t: rng.choice(sample.vocab) for t in _candidates(goal, {})[:3]})
        name, _ = names.fresh(lambda w, n=other["full_name"]: _with_word(n, "open_" + w), rng, sample.vocab)
        records.append(_open_record({**other, "file_path": _move(other["file_path"], PROBE_DIR)}, name, state))
        splits[len(records) - 1] = "train"
    return records, splits, b


def generate(out: str | Path, scale: float = 1.0, repos: int = 24, seed: int = 0,
             sample: Sample | str | Path | None = None, theorem_ratio: float | None = None) -> dict[str, Any]:
    """Write a synthetic export of about `1000 * scale` premises over `repos` repositories (the probe included)
    to `out`; returns its summary (also written to `out/synthetic.json`). `theorem_ratio`: theorems per premise
    outside the probe (default: the sample's, 630/823)."""
    if repos < 2:
        raise ValueError("repos must be at least 2 (the probe and one more)")
    if not isinstance(sample, Sample):
        sample = load_sample(Path(sample) if sample is not None else DEFAULT_SAMPLE)
    s = sample
    names = _Names()
    probe_records, probe_splits, probe_builder = _probe(s, seed, names)
    probe_premises = list(probe_builder.variants)

    rng = random.Random(f"{seed}:{scale}:{repos}")
    n_other = repos - 1
    areas = s.areas or ["Data"]
    dirs = [f"Lib{i:02d}/{areas[i % len(areas)]}" for i in range(n_other)]
    weights = [s.group_sizes[i % len(s.group_sizes)] for i in range(n_other)]
    target_premises = max(n_other, round(PREMISES_PER_SCALE * scale) - len(probe_premises))

    b = _Builder(s, seed, names)
    file_paths = list(s.files)
    generation = 0
    while len(b.variants) < target_premises:
        order = file_paths[:]
        rng.shuffle(order)
        for path in order:
            owner = rng.choices(dirs, weights=weights)[0]
            new_path = _move(path, owner, generation)
            for tid in s.files[path]:
                if len(b.variants) >= target_premises:
                    break
                b.add_variant(tid, owner, new_path, rng)
            if len(b.variants) >= target_premises:
                break
        generation += 1

    def pick(tid: int | None, repo_dir: str, r: random.Random) -> int:
        own = b.by_owner.get((tid, repo_dir)) if tid is not None else None
        if own and r.random() < 0.5:
            return r.choice(own)
        anywhere = b.by_template.get(tid) if tid is not None else None
        return r.choice(anywhere) if anywhere else r.randrange(len(b.variants))

    ratio = len(s.records) / max(1, len(s.templates)) if theorem_ratio is None else theorem_ratio
    target_theorems = max(2 * n_other, round(ratio * len(b.variants)))
    total_w = sum(weights)
    sizes = [max(2, round(target_theorems * w / total_w)) for w in weights]
    one_tactic = [r for r in s.records if len(r["traced_tactics"]) == 1 and not _is_open(r)]
    repo_records: list[tuple[list[dict[str, Any]], dict[int, str]]] = []
    for d, n in zip(dirs, sizes):
        recs = []
        for k in range(n):
            real = rng.choice(one_tactic) if k == 0 else rng.choice(s.records)
            recs.append(b.theorem(real, d, rng, pick))
        repo_records.append((recs, _split_rule(recs)))
    repo_records.append((probe_records, probe_splits))

    out = Path(out)
    (out / "random").mkdir(parents=True, exist_ok=True)
    by_split: dict[str, list[dict[str, Any]]] = {"train": [], "val": [], "test": []}
    for recs, splits in repo_records:
        for i, rec in enumerate(recs):
            by_split[splits[i]].append(rec)
    for split, recs in by_split.items():
        (out / "random" / f"{split}.json").write_text(json.dumps(recs, ensure_ascii=False, indent=1), encoding="utf-8")
    files: dict[str, list[Variant]] = {}
    for v in b.variants + probe_premises:
        files.setdefault(v.path, []).append(v)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for path, vs in files.items():
            fh.write(json.dumps({"path": path, "premises": [
                {"full_name": v.full_name, "code": "", "start": list(v.start), "end": list(v.end), "kind": "unknown"}
                for v in vs]}, ensure_ascii=False) + "\n")
    tactics = sum(len(r["traced_tactics"]) for recs, _ in repo_records for r in recs)
    summary = {
        "scale": scale, "seed": seed, "theorem_ratio": ratio, "repos": [*dirs, PROBE_DIR], "probe": PROBE_DIR,
        "premises": len(b.variants) + len(probe_premises), "premise_files": len(files),
        "theorems": sum(len(recs) for recs, _ in repo_records), "tactics": tactics,
        "probe_theorems": len(probe_records), "probe_premises": len(probe_premises),
        "probe_digest": probe_digest(probe_records, probe_splits, probe_premises), "commit": COMMIT,
    }
    (out / "synthetic.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def probe_digest(records: list[dict[str, Any]], splits: dict[int, str], premises: list[Variant]) -> str:
    h = hashlib.sha1()
    h.update(json.dumps([[splits[i], r] for i, r in enumerate(records)], sort_keys=True).encode())
    h.update(json.dumps([[v.full_name, v.path, v.start, v.end] for v in premises]).encode())
    return h.hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--scale", type=float, default=1.0, help="corpus size in thousands of premises")
    parser.add_argument("--repos", type=int, default=24, help="repositories, the probe included")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--theorem-ratio", type=float, default=None, help="theorems per premise (default: the sample's)")
    parser.add_argument("--sample", type=Path, default=DEFAULT_SAMPLE)
    args = parser.parse_args()
    summary = generate(args.out, args.scale, args.repos, args.seed, args.sample, args.theorem_ratio)
    json.dump(summary, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
