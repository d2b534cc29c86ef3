"""`make bench`'s crowd system: a tiny crowd against a real `python -m devstack`, every server
process of the stack sampled, and its line in the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import run


@pytest.mark.timeout(300)
def test_bench_crowd_runs_against_the_devstack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    code = run.main(["--systems", "crowd", "--quick", "--crowd", "40", "--crowd-hold", "1", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    result = json.loads(out.read_text())["results"]["crowd"]
    assert [stage["connected"] for stage in result["stages"]] == [2 + 19, 2 + 38]
    assert result["lost"] == 0 and result["duplicated"] == 0 and result["errors"] == {}
    assert result["delivered"] == result["sent"]
    for stage in result["stages"]:
        # Gateways and services of a real stack: far more than the load generator's own.
        assert stage["servers_rss_bytes"] > 100 * 2**20
        assert stage["rss_per_user_bytes"] != 0
    assert "crowd: 40 connected" in printed and "ramp to 40 connected" in printed
