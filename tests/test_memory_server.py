"""The premise store against a real chroma server on loopback (`chroma run`), as a team would use it."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curriculum.lean_data import load_dataset, to_repositories


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def chroma_server(tmp_path):
    exe = Path(sys.executable).with_name("chroma")
    if not exe.exists() and shutil.which("chroma") is None:
        pytest.skip("the chroma CLI is not installed")
    port = _free_port()
    proc = subprocess.Popen([str(exe if exe.exists() else "chroma"), "run", "--path", str(tmp_path / "server"),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("chroma server did not start")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.slow
def test_add_retrieve_and_forget_through_a_chroma_server(chroma_server, encoder, tiny_theorems):
    from memory.premise_store import PremiseStore

    (repo,) = to_repositories(load_dataset(tiny_theorems), name="tiny")
    store = PremiseStore(None, encoder, chroma_url=chroma_server)
    report = store.add_repo(repo)
    assert report.embedded == len({p.full_name for p in repo.premises}) and report.embedded > 0
    assert store.add_repo(repo).embedded == 0          # a second client call embeds nothing again
    again = PremiseStore(None, encoder, chroma_url=chroma_server)  # a new client sees the same collection
    assert again.count("tiny") == report.embedded
    first = next(p for p in repo.premises)
    hits = again.retrieve(first.full_name.replace(".", " "), k=5)
    assert hits and all(h.repo == "tiny" for h in hits)
    assert again.forget_repo("tiny") == report.embedded and again.count("tiny") == 0
