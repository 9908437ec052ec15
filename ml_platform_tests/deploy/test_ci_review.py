"""The review's CI jobs (deploy/ci/): GitHub Actions and GitLab CI run `ml-platform review` against the base
branch with a READ-only tracking account, post the Markdown on the pull/merge request, and fail the job with
the review's exit code. The GitLab job's script is run for real here, in a git repository with a target branch,
posting to a stand-in for GitLab's notes API on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs

import pytest
import yaml

from ml_platform_tests.git_repos import git

REPO = Path(__file__).resolve().parents[2]
CI = REPO / "deploy" / "ci"
READER_ENV = {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI"}


def test_the_github_workflow_reviews_posts_and_fails_with_the_verdict():
    workflow = yaml.safe_load((CI / "github-review.yml").read_text())
    assert set(workflow[True]["pull_request"]["paths"]) >= {"specs/**", "**/*.py"}  # YAML reads `on` as True
    assert workflow["permissions"] == {"contents": "read", "pull-requests": "write"}
    steps = workflow["jobs"]["review"]["steps"]
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0
    review = next(s for s in steps if s.get("id") == "review")
    assert "ml-platform review --base-ref" in review["run"] and "--markdown review.md" in review["run"]
    assert set(review["env"]) >= READER_ENV and "READER" in review["env"]["MLFLOW_TRACKING_USERNAME"]
    post = next(s for s in steps if "gh pr comment" in s.get("run", ""))
    assert post["if"].startswith("always()") and "review.md" in post["run"]
    assert steps[-1]["run"] == 'exit "${{ steps.review.outputs.code }}"'


class _Notes(BaseHTTPRequestHandler):
    posted: ClassVar[list[tuple[str, str, str]]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.posted.append((self.path, self.headers.get("PRIVATE-TOKEN", ""), parse_qs(body)["body"][0]))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def notes_api():
    _Notes.posted = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Notes)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/v4", _Notes.posted
    server.shutdown()


def test_the_gitlab_job_script_reviews_posts_the_note_and_exits_with_the_verdict(tmp_path, write_spec, notes_api):
    job = yaml.safe_load((CI / "gitlab-review.yml").read_text())["model-review"]
    assert job["rules"][0]["if"] == '$CI_PIPELINE_SOURCE == "merge_request_event"'
    assert job["variables"]["MLFLOW_TRACKING_USERNAME"] == "$ML_PLATFORM_MLFLOW_READER"
    assert job["artifacts"]["when"] == "always"

    # A merge request: the target branch `main` in `origin`, a checkout whose head changes one spec's schedule.
    origin, clone = tmp_path / "origin", tmp_path / "clone"
    write_spec(origin / "specs", name="flight_delay.yaml")
    git(origin, "init", "-q", "-b", "main")
    git(origin, "add", ".")
    git(origin, "commit", "-qm", "base")
    subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True, capture_output=True)
    write_spec(clone / "specs", {"schedule": {"minute": 7}}, name="flight_delay.yaml")

    api, posted = notes_api
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
        "CI_API_V4_URL": api,
        "CI_PROJECT_ID": "42",
        "CI_MERGE_REQUEST_IID": "7",
        "REVIEW_NOTE_TOKEN": "note-token",
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",  # production is not read when no candidate is needed
    }
    script = "\n".join(["git fetch -q origin main", *job["script"]])
    done = subprocess.run(["bash", "-c", script], cwd=clone, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    ((path, token, body),) = posted
    assert path == "/api/v4/projects/42/merge_requests/7/notes" and token == "note-token"
    assert body == (clone / "review.md").read_text() and "`schedule.minute`" in body

    # A head spec that fails check: the job fails with the review's exit code 2; no report, no note.
    write_spec(clone / "specs", {"training.window_days": "a month"}, name="flight_delay.yaml")
    (clone / "review.md").unlink()
    done = subprocess.run(["bash", "-c", script], cwd=clone, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "training.window_days" in done.stderr
    assert len(posted) == 1
