"""``--json`` output is strict JSON: a missing number is null, never NaN."""

from __future__ import annotations

import json
import math

import numpy as np

from micromarketing.cli._common import print_json


def test_missing_numbers_print_as_null(capsys):
    payload = {"se": math.nan, "inf": np.float64("inf"), "rows": [np.float32("nan"), np.int64(3)], "ok": 1.5}
    print_json(payload)
    out = capsys.readouterr().out
    assert json.loads(out) == {"se": None, "inf": None, "rows": [None, 3], "ok": 1.5}
    assert "NaN" not in out
