import time
import uuid
from datetime import timedelta

import pytest

from staybook.kernel import security
from staybook.kernel.errors import Unauthorized
from staybook.kernel.settings import Settings


def test_a_remembered_token_still_expires(monkeypatch):
    signer = security.TokenSigner(Settings())
    token = signer.issue(uuid.uuid4(), "guest", ttl=timedelta(seconds=60))
    assert signer.verify(token).role == "guest"
    assert token in signer._verified
    real_time = time.time
    monkeypatch.setattr(security.time, "time", lambda: real_time() + 120)

    def expired(token, token_type):
        raise Unauthorized("Access token expired")

    # Past its exp the remembered answer is not used: the token goes through full verification again.
    monkeypatch.setattr(signer, "decode", expired)
    with pytest.raises(Unauthorized):
        signer.verify(token)
    assert token not in signer._verified


def test_a_tampered_token_is_not_served_from_memory():
    signer = security.TokenSigner(Settings())
    token = signer.issue(uuid.uuid4(), "guest")
    signer.verify(token)
    header, payload, signature = token.split(".")
    with pytest.raises(Unauthorized):
        signer.verify(f"{header}.{payload}.{signature[:-2]}AA")
