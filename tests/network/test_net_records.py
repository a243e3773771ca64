"""Records convert to CSV rows; the summary reports key and latency figures."""

from __future__ import annotations

import csv

import pytest

from network import LinkCut, OneTimePad, QKDNetwork, schedule_faults, to_rows, write_csv


def test_records_rows_and_summary(env, line, tmp_path) -> None:
    net = QKDNetwork(env, line("ABC", rate=1000.0, capacity=2000.0), OneTimePad(auth_bits=0))
    procs = [net.transfer("A", "C", 100, tag=f"t{i}") for i in range(3)]
    schedule_faults(env, net, [LinkCut("A", "B", 50.0, 60.0)])
    env.run(until=100.0)
    recs = [p.value for p in procs]
    rows = to_rows(net.records)
    assert [r["tag"] for r in rows] == ["t0", "t1", "t2"]
    assert rows[0]["path"] == "A>B>C" and rows[0]["key_bits"] == "A-B:800;B-C:800"
    assert rows[2]["total_s"] == pytest.approx(recs[2].t_end)
    n = write_csv(tmp_path / "transfers.csv", net.records)
    with open(tmp_path / "transfers.csv") as fh:
        back = list(csv.DictReader(fh))
    assert n == 3 and back[1]["src"] == "A" and float(back[1]["t_end"]) == recs[1].t_end

    pool_rows = to_rows(net.pool_log)
    takes = [r for r in pool_rows if r["kind"] == "take"]
    assert len(takes) == 6 and {r["link"] for r in takes} == {"A-B", "B-C"}
    rate_rows = [r for r in pool_rows if r["kind"] == "rate"]
    assert [(r["time"], r["bits"]) for r in rate_rows] == [(50.0, 0.0), (60.0, 1000.0)]
    assert len(write_csv(tmp_path / "faults.csv", net.fault_log) and "x") == 1

    s = net.summary()
    assert s.delivered == 3 and s.failed == 0 and s.in_progress == 0
    ends = sorted(r.total_s for r in recs)
    assert s.latency_max_s == pytest.approx(ends[-1])
    assert s.latency_p50_s == pytest.approx(ends[1])
    assert s.key_consumed_bits == 4800
    # capacity 2000 b, 1000 b/s: after the transfers the pools fill and waste the rest
    a_b = next(x for x in s.links if x.link == "A-B")
    assert a_b.level_bits == 2000.0 and a_b.wasted_bits > 0
    assert a_b.generated_bits == pytest.approx(1000.0 * (100.0 - 10.0))
    row = s.as_row()
    assert "links" not in row and row["delivered"] == 3
    assert len(to_rows(s.links)) == 2
