"""The benchmark keeps working: a smoke-size run of scenario a (no time is asserted)."""

import json
import os

from bench import backfill


def test_backfill_benchmark_smoke(tmp_path):
    assert backfill.main(["--messages", "150", "--mixes", "sms,email", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "backfill.json").read_text())
    assert report["machine"]["cpus"] == os.cpu_count()
    for mix in ("sms", "email"):
        result = report["mixes"][mix]
        for variant in ("pipeline", "floor", "naive"):
            assert result[variant]["messages"] == 150
            assert result[variant]["messages_per_second"] > 0 and result[variant]["peak_rss_mb"] > 0
        assert set(result["ratios"]) == {"pipeline_vs_floor", "pipeline_vs_naive"}
    assert (tmp_path / "backfill.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
