"""deploy/: the Kubernetes Indexed Job is valid batch/v1 and its command (like the Slurm array's)
runs locally, one process per index, against the simulator."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import yaml
from conftest import BIN, CLI, read_metadata, run_cli, sim_env, write_manifest
from kubernetes.client import ApiClient

ROOT = Path(__file__).parent.parent
K8S = ROOT / "deploy" / "kubernetes" / "indexed-job.yaml"
SLURM = ROOT / "deploy" / "slurm" / "batch-runner.sbatch"
FAST = ("--latency", "0.02:0.1", "--image-scale", "0.02")


def _documents() -> dict[str, dict]:
    with open(K8S) as fh:
        return {doc["kind"]: doc for doc in yaml.safe_load_all(fh)}


def _roundtrip(doc: dict, kind: str) -> dict:
    """The document read by the Kubernetes client's own (typed) models and written back: a
    misspelled field is dropped, a wrongly typed one refused."""
    api = ApiClient()
    return api.sanitize_for_serialization(
        api.deserialize(json.dumps(doc), kind, "application/json")
    )


def _shards_of(command: list[str]) -> int:
    return int(command[command.index("--shards") + 1])


def test_the_indexed_job_is_valid_kubernetes():
    docs = _documents()
    job, claim = docs["Job"], docs["PersistentVolumeClaim"]
    assert _roundtrip(job, "V1Job") == job
    assert _roundtrip(claim, "V1PersistentVolumeClaim") == claim
    assert job["apiVersion"] == "batch/v1"
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    n = _shards_of(container["command"])
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == n
    assert spec["backoffLimitPerIndex"] >= 1 and pod["restartPolicy"] == "Never"
    (token,) = [e for e in container["env"] if e["name"] == "RUNCOMFY_API_TOKEN"]
    assert set(token["valueFrom"]["secretKeyRef"]) == {"name", "key"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert set(mounts) == set(volumes)
    (data,) = [name for name, v in volumes.items() if "persistentVolumeClaim" in v]
    assert volumes[data]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    out = container["command"][container["command"].index("--out") + 1]
    assert out.startswith(mounts[data] + "/")  # the run directory is on the shared volume
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim$", dockerfile, re.M)
    assert "pip install ." in dockerfile
    user = re.findall(r"^USER (\d+)", dockerfile, re.M)
    assert user and user[-1] == str(pod["securityContext"]["runAsUser"]) != "0"


def _local(command: list[str], mounts: dict[str, Path]) -> list[str]:
    """The container's command with each volume's mount point mapped to a local folder."""
    assert command[0] == "batch-runner"

    def local(arg: str) -> str:
        for mount, folder in mounts.items():
            if arg.startswith(mount + "/"):
                return str(folder) + arg[len(mount) :]
        return arg

    return [CLI, *map(local, command[1:])]


def _run_all(commands: list[tuple[list[str], dict[str, str]]]) -> None:
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for cmd, env in commands
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err


def _check_merged(sim, run_dir: Path, jobs: int, n: int) -> None:
    assert sorted(p.name for p in run_dir.iterdir()) == [f"shard-{k}-of-{n}" for k in range(n)]
    assert run_cli("merge", run_dir).returncode == 0
    assert len(read_metadata(run_dir)) == jobs
    assert sim.stats()["submitted"] == jobs


def test_the_indexed_jobs_command_runs_every_index_locally(make_sim, tmp_path):
    sim = make_sim(*FAST)
    (container,) = _documents()["Job"]["spec"]["template"]["spec"]["containers"]
    mounts = {m["mountPath"]: tmp_path / m["name"] for m in container["volumeMounts"]}
    for folder in mounts.values():
        folder.mkdir()
    command = _local(container["command"], mounts)
    manifest = next(Path(arg) for arg in command if arg.endswith((".yaml", ".yml")))
    write_manifest(manifest, [f"indexed job {i}" for i in range(12)])
    n = _shards_of(command)
    _run_all([(command, sim_env(sim, JOB_COMPLETION_INDEX=str(k))) for k in range(n)])
    _check_merged(sim, Path(command[command.index("--out") + 1]), 12, n)


def test_the_slurm_array_runs_every_task_locally(make_sim, tmp_path):
    sim = make_sim(*FAST)
    script = SLURM.read_text()
    first, last = map(int, re.search(r"^#SBATCH --array=(\d+)-(\d+)$", script, re.M).groups())
    assert first == 0 and f"SHARDS={last + 1}" in script
    assert 'batch-runner run "$MANIFEST" --out "$RUN_DIR" --shards "$SHARDS"' in script
    manifest = write_manifest(tmp_path / "m.yaml", [f"array job {i}" for i in range(10)])
    run_dir = tmp_path / "run"
    path = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    tasks = [
        sim_env(
            sim,
            PATH=path,
            MANIFEST=str(manifest),
            RUN_DIR=str(run_dir),
            SLURM_ARRAY_TASK_ID=str(first + k),
            SLURM_ARRAY_TASK_MIN=str(first),
            SLURM_ARRAY_TASK_COUNT=str(last + 1),
        )
        for k in range(last + 1)
    ]
    _run_all([(["bash", str(SLURM)], env) for env in tasks])
    _check_merged(sim, run_dir, 10, last + 1)
