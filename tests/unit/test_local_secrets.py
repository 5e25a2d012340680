"""Local secret files are owner-only (0600) from the moment they exist: never written first and chmod-ed after.

A child process records, through an audit hook, the mode of every file under its directory at each open, chmod,
rename and link of it, while the stack's secret writers run; any moment the file was readable by others shows."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

from tests.conftest import REPO

PROBE = r"""
import json, os, sys
from pathlib import Path

root = sys.argv[1]
seen = []


def watch(event, args):
    if event not in ("open", "os.chmod", "os.rename", "os.link"):
        return
    if event == "os.chmod":
        seen.append(["chmod", os.fsdecode(args[0]), None])
    for arg in args[:2]:
        if isinstance(arg, (str, bytes, os.PathLike)):
            path = os.fsdecode(arg)
            if path.startswith(root) and os.path.isfile(path):
                seen.append([event, path, os.stat(path).st_mode & 0o777])


os.umask(0o022)  # what most shells have: a file created without an explicit mode would be 0644
from mlplatform.devstack.distributed import Profile, write_auth_config
from mlplatform.devstack.stack import _persistent_secret

sys.addaudithook(watch)
secret = Path(root) / "airflow" / ".jwt_secret"
first = _persistent_secret(secret)
again = _persistent_secret(secret)
profile = Profile(data_dir=Path(root) / "distributed")
config = write_auth_config(profile)
config = write_auth_config(profile)  # rewritten on every start
print(json.dumps({"seen": seen, "kept": first == again and len(first) > 40, "secret": str(secret),
                  "config": str(config)}))
"""


def run_probe(root) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, str(root)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO / "include")})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_secret_files_are_never_readable_by_others(tmp_path):
    probe = run_probe(tmp_path)
    assert probe["kept"], "a persistent secret is generated once and then read back"
    assert not [s for s in probe["seen"] if s[0] == "chmod"], probe["seen"]
    modes = {(path, mode) for _, path, mode in probe["seen"]}
    assert {path for path, _ in modes} >= {probe["secret"], probe["config"]}, probe["seen"]
    assert all(mode == 0o600 for _, mode in modes), sorted(modes)
    for path in (probe["secret"], probe["config"]):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # The MLflow auth config holds the MLflow role's database password, generated owner-only too.
    assert "database_uri = postgresql+psycopg://" in open(probe["config"]).read()
    leftovers = [p.name for p in tmp_path.rglob("*.tmp")]
    assert not leftovers, leftovers
