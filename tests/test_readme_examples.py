"""Every line of the README's CLI examples runs as written (from a copy of the repository root) and
succeeds: the documented vocabulary is the real one."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def readme_examples() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- ci:examples -->\s*```(?:bash)?\n(.*?)```", text, re.S)
    assert block, "README.md has no <!-- ci:examples --> block"
    lines = []
    for line in block.group(1).splitlines():
        cmd = line.split("  #", 1)[0].strip()  # trailing comments are two spaces and a hash away
        if cmd and not cmd.startswith("#"):
            lines.append(cmd)
    return lines


def test_the_readme_examples_use_only_the_two_clis():
    cmds = readme_examples()
    assert len(cmds) >= 10
    assert {shlex.split(c)[0] for c in cmds} == {"indexer", "retriever"}


def test_every_readme_example_runs(tmp_path):
    (tmp_path / "register_data").symlink_to(REPO / "register_data")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    for cmd in readme_examples():
        proc = subprocess.run(cmd, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"README example failed ({proc.returncode}): {cmd}\n{proc.stdout[-2000:]}\n" \
                                     f"{proc.stderr[-2000:]}"
    assert (tmp_path / "results.parquet").is_file() and (tmp_path / "results.jsonl").is_file()
    assert (tmp_path / "imported" / "manifest.json").is_file()
