"""A logged model is portable: in a fresh virtualenv that has never seen `ml_platform`, with nothing installed but
the model's own requirements.txt, `mlflow.pyfunc.load_model` and `mlflow models serve --env-manager local`
answer exactly what the platform's endpoint answers for the same rows.

One virtualenv for the module (pip is most of the cost: see `clean_env`)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from ml_platform.core.model import Model
from ml_platform_tests.serving.conftest import endpoint_answers, records
from ml_platform_tests.waiting import free_port

SCRIPT = """
import json, sys
import mlflow, pandas as pd
path, rows = sys.argv[1], json.load(open(sys.argv[2]))
model = mlflow.pyfunc.load_model(path)
schema = model.metadata.get_input_schema()
numbers = {c.name: "float64" for c in schema.inputs if c.type.name == "double"}
frame = pd.DataFrame.from_records(rows, columns=schema.input_names()).astype(numbers)
answer = model.predict(frame)
print(json.dumps({
    "answer": answer.to_dict("list"),
    "platform": sorted(name for name in sys.modules if name.split(".")[0] == "ml_platform"),
    "code": sys.modules["platform_scorer.model"].__file__,
}))
"""


@pytest.fixture(scope="module")
def clean_env(logged, tmp_path_factory) -> dict:
    """A virtualenv from the base interpreter (no site-packages of this one) with only the model's
    requirements.txt installed: {"python", "bin", "env", "cwd"}. Creating it is timed (printed with -s)."""
    folder, _ = logged
    root = tmp_path_factory.mktemp("clean_env")
    started = time.perf_counter()
    # uv (in the test extras; `make` installs with it) resolves and installs what pip would, in seconds
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    base = sys._base_executable  # type: ignore[attr-defined]
    subprocess.run([base, "-m", "venv", *(["--without-pip"] if uv else []), str(root / "venv")], check=True)
    bin_dir = root / "venv" / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "MLFLOW_TRACKING_URI")}
    env |= {"PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    installer = (
        [uv, "pip", "install", "--python", str(bin_dir / "python")]
        if uv
        else [str(bin_dir / "python"), "-m", "pip", "install"]
    )
    installed = subprocess.run(
        [*installer, "-q", "-r", str(folder / "requirements.txt")],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    print(f"\nclean virtualenv with the model's requirements: {time.perf_counter() - started:.1f} s")
    python = str(bin_dir / "python")
    unknown = subprocess.run([python, "-c", "import ml_platform"], env=env, cwd=root, capture_output=True)
    assert unknown.returncode != 0, "the clean environment must not see ml_platform"
    return {"python": python, "bin": bin_dir, "env": env, "cwd": root}


def test_pyfunc_loaded_in_a_clean_env_answers_what_the_endpoint_answers(logged, clean_env, start_server, tmp_path):
    folder, frame = logged
    rows = records(frame)
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    (tmp_path / "score.py").write_text(SCRIPT)
    scored = subprocess.run(
        [clean_env["python"], str(tmp_path / "score.py"), str(folder), str(tmp_path / "rows.json")],
        env=clean_env["env"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert scored.returncode == 0, scored.stderr[-3000:]
    out = json.loads(scored.stdout.strip().splitlines()[-1])
    assert out["platform"] == [] and Path(out["code"]).is_relative_to(folder / "code")
    endpoint = endpoint_answers(start_server, folder, rows)
    assert out["answer"]["prediction"] == endpoint["predictions"]
    assert out["answer"]["label"] == endpoint["labels"]
    ours = Model.load(folder / "artifacts" / "model_files")
    assert np.array_equal(np.asarray(out["answer"]["prediction"]), ours.predict(frame))


def test_mlflow_models_serve_from_a_clean_env_answers_what_the_endpoint_answers(logged, clean_env, start_server):
    folder, frame = logged
    rows = records(frame)
    port = free_port()
    log = clean_env["cwd"] / f"serve-{port}.log"
    serve = ["models", "serve", "-m", str(folder), "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(
        [str(clean_env["bin"] / "mlflow"), *serve],
        env=clean_env["env"],
        cwd=clean_env["cwd"],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow models serve not ready in 120 s:\n" + log.read_text()[-3000:]
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/ping", timeout=1).status_code == 200:
                    break
            time.sleep(0.5)
        body = {"dataframe_split": {"columns": list(frame.columns), "data": [list(row.values()) for row in rows]}}
        response = requests.post(f"{url}/invocations", json=body, timeout=60)
        assert response.status_code == 200, response.text
        answered = response.json()["predictions"]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)
    endpoint = endpoint_answers(start_server, folder, rows)
    assert [row["prediction"] for row in answered] == endpoint["predictions"]
    assert [row["label"] for row in answered] == endpoint["labels"]
