"""The benchmark keeps working: every scenario at smoke size, its reports and plots.

No time is asserted: only that each variant ran, archived every message it was
given, and that the reports carry what the README quotes.
"""

import json
import os

from bench.__main__ import main

PNG = b"\x89PNG\r\n\x1a\n"


def test_every_scenario_runs_at_smoke_size(tmp_path, capsys):
    assert main(["--smoke", "--out", str(tmp_path), "--work", str(tmp_path)]) == 0

    backfill = json.loads((tmp_path / "backfill.json").read_text())
    assert backfill["machine"]["cpus"] == os.cpu_count() and backfill["smoke"]
    for mix in ("sms", "email"):
        result = backfill["mixes"][mix]
        for variant in ("pipeline", "floor", "two_floors", "naive"):
            assert result[variant]["messages"] == result[variant]["objects"] == 150
            assert result[variant]["messages_per_second"] > 0 and result[variant]["peak_rss_mb"] > 0
            assert result[variant]["steady_messages_per_second"] > 0
        assert result["prepare_us_per_message"] > 0
        assert {"pipeline_vs_floor", "pipeline_vs_floor_steady", "pipeline_vs_naive",
                "pipeline_vs_naive_steady", "two_floors_vs_floor_steady"} <= set(result["ratios"])

    store = json.loads((tmp_path / "store_latency.json").read_text())
    result = store["mixes"]["sms"]
    assert result["pipeline"]["objects"] == result["floor"]["objects"] == 200
    assert result["pipeline_fsspec"]["objects"] == result["floor_aiobotocore"]["objects"] == 200
    assert result["naive"]["objects"] == 20
    assert store["settings"]["latency_ms"] == 20

    streaming = json.loads((tmp_path / "streaming.json").read_text())
    assert streaming["published"] == 300
    assert streaming["delivered"] == 300 and streaming["lost"] == 0 and streaming["held"] == 0
    assert streaming["latency_ms"]["p99"] > 0 and streaming["rss_mb"]
    floor = streaming["floor"]
    assert floor["published"] == floor["delivered"] == 300 and floor["lost"] == 0 and floor["held"] == 0
    assert streaming["cpu_ms_per_message"] > 0 and floor["cpu_ms_per_message"] > 0
    assert {"max_sustained_rate", "floor_max_sustained_rate", "prism_max_sustained_rate"} <= set(streaming)
    prism = streaming["prism"]  # the same job on the other local runner
    assert prism["published"] == prism["delivered"] == 300 and prism["lost"] == 0 and prism["held"] == 0
    assert prism["cpu_ms_per_message"] > 0 and "Flink" in streaming["settings"]["runner"]

    retrieval = json.loads((tmp_path / "retrieval.json").read_text())
    assert retrieval["find"]["found"] == 12 and retrieval["find"]["rows"] == retrieval["settings"]["index_rows"]
    assert retrieval["find"]["cli_seconds"] > 0 and retrieval["find"]["query_seconds_warm"] > 0
    for name in ("verify", "raw_get_loop", "index_rebuild"):
        assert retrieval["store"][name]["objects_per_second"] > 0
    assert retrieval["store"]["verify_vs_raw_get_loop"] > 0

    cost = json.loads((tmp_path / "cost.json").read_text())
    modes = cost["modes"]
    assert modes["message"]["archive_objects"] == modes["message"]["archive_puts"] == 400
    assert 0 < modes["batched"]["archive_objects"] <= modes["batched"]["archive_puts"] < 400
    for name in ("message", "batched", "floor"):
        assert modes[name]["messages_per_second"] > 0
        assert modes[name]["dollars_per_million_messages"]["STANDARD"]["requests"] > 0
    assert [row["mode"] for row in cost["table"]] == ["message", "batched"]
    assert modes["prepare_ceiling"]["messages_per_second"] > 0

    for name in ("backfill", "store_latency", "streaming", "retrieval", "cost"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == PNG
        targets = json.loads((tmp_path / f"{name}.json").read_text())["targets"]
        assert targets and all({"target", "value", "limit", "met"} <= set(t) for t in targets)
    printed = capsys.readouterr().out
    assert "p99 publish-to-delivery latency" in printed and "pipeline >= 1.5 x floor" in printed
