"""Secret fields are recorded as changed, never with their values (not even half of one)."""

from __future__ import annotations

import json

from joulepoint.audit.masking import MASK, mask_secret


def test_a_plain_secret_keeps_nothing_of_its_value():
    secret = "0123456789abcdef" * 4
    assert mask_secret(secret) == MASK
    assert "cdef" not in mask_secret(secret)


def test_an_empty_value_stays_empty_so_a_set_secret_reads_as_set():
    assert mask_secret("") == "" and mask_secret("None") == "None"


def test_a_config_keeps_its_shape_and_loses_its_secrets():
    config = {"url": "https://hooks.example.com/x", "secret": "whsec_AAAA", "headers": {"Authorization": "Bearer t"}}
    for text in (json.dumps(config), str(config)):  # auditlog hands JSON fields over either way
        masked = json.loads(mask_secret(text))
        assert masked["url"] == "https://hooks.example.com/x"
        assert masked["secret"] == MASK and masked["headers"]["Authorization"] == MASK
        assert "whsec_AAAA" not in mask_secret(text) and "Bearer t" not in mask_secret(text)
