"""The tracking server's accounts, created once the server answers (idempotent: existing users are kept).

- the platform's service account (ML_PLATFORM_MLFLOW_USER / ML_PLATFORM_MLFLOW_PASSWORD): creates the
  experiments and registered models it writes to, and so manages them;
- read-only people (ML_PLATFORM_MLFLOW_READERS, "name:password" pairs separated by commas): the server's
  default permission (READ) lets them browse runs and versions, never move an alias.
"""

import os
import sys
import time

import requests

BASE = f"http://{os.environ['ML_PLATFORM_BIND']}:{os.environ['ML_PLATFORM_MLFLOW_PORT']}"
ADMIN = (os.environ.get("MLFLOW_AUTH_ADMIN_USERNAME", "admin"), os.environ["MLFLOW_AUTH_ADMIN_PASSWORD"])


def wait_for_server(timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{BASE}/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    sys.exit(f"accounts: the tracking server at {BASE} did not answer within {timeout_s:.0f} s")


def ensure_user(name: str, password: str) -> None:
    found = requests.get(f"{BASE}/api/2.0/mlflow/users/get", params={"username": name}, auth=ADMIN, timeout=10)
    if found.status_code == 200:
        return
    created = requests.post(
        f"{BASE}/api/2.0/mlflow/users/create", json={"username": name, "password": password}, auth=ADMIN, timeout=10
    )
    if created.status_code != 200:
        sys.exit(f"accounts: could not create {name!r}: {created.status_code} {created.text[:200]}")
    print(f"accounts: created {name!r}", flush=True)


def main() -> None:
    wait_for_server()
    ensure_user(os.environ["ML_PLATFORM_MLFLOW_USER"], os.environ["ML_PLATFORM_MLFLOW_PASSWORD"])
    for pair in filter(None, (os.environ.get("ML_PLATFORM_MLFLOW_READERS") or "").split(",")):
        name, _, password = pair.partition(":")
        ensure_user(name.strip(), password)


if __name__ == "__main__":
    main()
