"""What a local client or an operator can do to the demo and the CLI: forged client addresses,
demo accounts in production."""

from __future__ import annotations

import subprocess

import httpx

from staybook.identity.pii import new_master_key
from tests.e2e.demo_process import STAYBOOK, clean_environment, running_demo


def test_a_local_client_cannot_escape_the_rate_limit_with_forwarded_for(tmp_path):
    """uvicorn believes X-Forwarded-For from 127.0.0.1 unless told not to; staybook trusts only
    `gateway.trusted_proxies` (none here), so every request below counts for the same client."""
    with running_demo(tmp_path, properties=0, STAYBOOK_GATEWAY__RATE_LIMIT_REQUESTS="4") as (url, _):
        with httpx.Client(base_url=url, timeout=10) as client:
            statuses = [
                client.get("/api/v1/me", headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code for n in range(5)
            ]
            assert statuses == [401, 401, 401, 401, 429]
            assert client.get("/healthz/live").status_code == 200  # probes stay exempt


def test_seed_refuses_demo_accounts_in_production_without_the_flag(tmp_path):
    env = clean_environment(
        STAYBOOK_ENVIRONMENT="production",
        STAYBOOK_DATABASE_URL=f"sqlite:///{tmp_path}/seed.db",
        STAYBOOK_SECRET_KEY="s3cr3t-" + "x" * 30,
        STAYBOOK_IDENTITY__PII_MASTER_KEY=new_master_key(),
        STAYBOOK_CATALOG__MEDIA_DIR=str(tmp_path / "media"),
    )
    subprocess.run([STAYBOOK, "migrate"], env=env, check=True, capture_output=True, timeout=120)
    refused = subprocess.run(
        [STAYBOOK, "seed", "--properties", "0"], env=env, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2
    assert "--allow-demo-accounts" in refused.stderr and "admin@staybook.demo" in refused.stderr
    check = subprocess.run([STAYBOOK, "check"], env=env, capture_output=True, text=True, timeout=120)
    assert "demo accounts" not in check.stderr

    allowed = subprocess.run(
        [STAYBOOK, "seed", "--properties", "0", "--allow-demo-accounts"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert allowed.returncode == 0, allowed.stderr
    assert "published passwords" in allowed.stderr
    check = subprocess.run([STAYBOOK, "check"], env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 1
    assert "FAILED demo accounts: admin@staybook.demo" in check.stderr
