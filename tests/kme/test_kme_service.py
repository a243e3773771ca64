"""KME semantics on the simulated pools: relayed takes, 503 when short, keys served once."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from qfl.kme import KeyRequest, KmeError, Limits, ManualClock, build_service, load_replay
from qfl.scenario import load_scenario


def _service(path: Path, **kw):
    clock = ManualClock()
    return build_service(load_scenario(path), clock, **kw), clock


def _level(svc, name: str) -> float:
    return next(lk.pool.level for lk in svc.net.links.values() if lk.name == name)


def test_default_saes_are_the_client_nodes(kme_scenario) -> None:
    svc, _ = _service(kme_scenario())
    assert svc.saes == {"a": "a", "b": "b", "c": "c"}  # r is a relay: no SAE


def test_relayed_key_consumes_every_hop_and_is_served_once(kme_scenario) -> None:
    svc, clock = _service(kme_scenario())
    clock.advance(1.0)  # a-r: 1000 bits, b-r: 2000 bits
    keys = svc.enc_keys("a", "b", KeyRequest(2, 256))
    assert len(keys) == 2 and all(len(k) == 32 for _, k in keys)
    assert _level(svc, "a-r") == pytest.approx(1000 - 512)
    assert _level(svc, "b-r") == pytest.approx(2000 - 512)
    assert _level(svc, "c-r") == pytest.approx(500)  # not on the route
    ids = [kid for kid, _ in keys]
    # another SAE cannot take them; the slave gets them once, with the same bytes
    with pytest.raises(KmeError) as e:
        svc.dec_keys("c", "a", ids)
    assert e.value.status == 401
    assert svc.dec_keys("b", "a", ids) == keys
    with pytest.raises(KmeError, match="already delivered") as e:
        svc.dec_keys("b", "a", ids[:1])
    assert e.value.status == 400
    acc = svc.accounting()
    assert acc["ok"] and acc["links"]["a-r"]["kme_bits"] == 512


def test_short_pool_gives_503_and_takes_nothing(kme_scenario) -> None:
    svc, clock = _service(kme_scenario())
    with pytest.raises(KmeError) as e:
        svc.enc_keys("a", "b", KeyRequest(1, 256))  # t = 0: empty pools
    assert e.value.status == 503
    clock.advance(1.0)
    with pytest.raises(KmeError, match="link a-r holds 1000 bits, 1024 needed") as e:
        svc.enc_keys("a", "b", KeyRequest(4, 256))  # b-r could, a-r cannot
    assert e.value.status == 503
    assert _level(svc, "b-r") == pytest.approx(2000)  # all or nothing
    assert svc.status("a", "b")["stored_key_count"] == 3  # floor(1000 / 256)
    clock.advance(0.1)
    assert len(svc.enc_keys("a", "b", KeyRequest(4, 256))) == 4


def test_status_has_every_field_of_the_spec(kme_scenario) -> None:
    svc, clock = _service(kme_scenario(), limits=Limits(key_size=128))
    clock.advance(2.0)
    st = svc.status("c", "a")
    assert st == {
        "source_KME_ID": "KME-c",
        "target_KME_ID": "KME-a",
        "master_SAE_ID": "c",
        "slave_SAE_ID": "a",
        "key_size": 128,
        "stored_key_count": 1000 // 128,  # c-r holds 1000, a-r 2000
        "max_key_count": 100000 // 128,
        "max_key_per_request": 128,
        "max_key_size": 8192,
        "min_key_size": 64,
        "max_SAE_ID_count": 0,
    }


def test_bad_pairs(kme_scenario) -> None:
    svc, clock = _service(kme_scenario(), saes={"a": "a", "a2": "a", "b": "b"})
    clock.advance(1.0)
    for master, slave, status, match in [
        ("a", "a2", 400, "same KME"),
        ("a", "zz", 400, "unknown SAE ID"),
        ("zz", "a", 401, "not an SAE"),
        ("a", "a", 400, "same SAE"),
    ]:
        with pytest.raises(KmeError, match=match) as e:
            svc.enc_keys(master, slave, KeyRequest(1, 64))
        assert e.value.status == status
    kid = svc.enc_keys("a", "b", KeyRequest(1, 64))[0][0]
    with pytest.raises(KmeError, match="not issued by master") as e:
        svc.dec_keys("b", "a2", [kid])
    assert e.value.status == 400


def test_link_cut_leaves_no_route(kme_scenario) -> None:
    svc, clock = _service(
        kme_scenario({"faults": [{"kind": "link-cut", "link": ["a", "r"], "at_s": 1.0}]})
    )
    clock.advance(0.5)
    svc.enc_keys("a", "b", KeyRequest(1, 256))
    clock.advance(1.0)
    with pytest.raises(KmeError, match="no route") as e:
        svc.enc_keys("a", "b", KeyRequest(1, 64))
    assert e.value.status == 503


def test_journal_restores_keys_and_pools(kme_scenario, tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    svc, clock = _service(kme_scenario(), journal=journal)
    clock.advance(1.0)
    held = svc.enc_keys("a", "b", KeyRequest(2, 256))
    served = svc.enc_keys("a", "b", KeyRequest(1, 128))
    svc.dec_keys("b", "a", [served[0][0]])
    levels = {lk.name: lk.pool.level for lk in svc.net.links.values()}
    # "killed": the object is dropped without closing; a new one resumes from the journal
    with journal.open("a") as fh:
        fh.write('{"op": "enc", "t": 1.0, "mas')  # torn by the kill: never acknowledged
    again, clock2 = _service(kme_scenario(), journal=journal)
    assert clock2.now() == pytest.approx(1.0)
    assert {lk.name: lk.pool.level for lk in again.net.links.values()} == pytest.approx(levels)
    assert again.dec_keys("b", "a", [k for k, _ in held]) == held
    with pytest.raises(KmeError, match="already delivered"):
        again.dec_keys("b", "a", [served[0][0]])


def test_replay_of_a_run_competes_for_key(kme_scenario, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "scenario.yaml").write_text(kme_scenario().read_text())
    with (run / "keypools.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sim_time_s", "link", "event", "bits", "level_bits"])
        w.writerow([0.0, "a-r", "start", 1000, 0])
        w.writerow([0.5, "a-r", "take", 400, 100])
        w.writerow([0.8, "b-r", "take", 1000, 600])
    sc, feed = load_replay(run)
    clock = ManualClock()
    svc = build_service(sc, clock, replay=feed)
    clock.advance(1.0)
    svc.status("a", "b")  # advances the pools
    assert feed.applied == 2 and feed.shortfall_bits == 0
    assert _level(svc, "a-r") == pytest.approx(1000 - 400)
    assert _level(svc, "b-r") == pytest.approx(2000 - 1000)


def test_the_service_never_loads_the_learning_side() -> None:
    import subprocess
    import sys

    code = "import sys, qfl.kme, qfl.commands.kme; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_journal_of_another_network_is_refused(kme_scenario, tmp_path: Path) -> None:
    from qkd.errors import ParameterError

    journal = tmp_path / "journal.jsonl"
    journal.write_text(
        '{"op":"enc","t":1.0,"master":"a","slave":"b","path":["a","x"],"bits":64,"keys":[]}\n'
    )
    with pytest.raises(ParameterError, match="record 1"):
        _service(kme_scenario(), journal=journal)


def test_keys_held_per_pair_are_bounded(kme_scenario) -> None:
    svc, clock = _service(kme_scenario(), limits=Limits(max_held_per_pair=128))
    clock.advance(100.0)
    held = svc.enc_keys("a", "b", KeyRequest(128, 64))
    with pytest.raises(KmeError, match="not yet fetched") as e:
        svc.enc_keys("a", "b", KeyRequest(1, 64))
    assert e.value.status == 503
    svc.enc_keys("a", "c", KeyRequest(1, 64))  # another pair is not affected
    svc.dec_keys("b", "a", [k for k, _ in held[:1]])
    svc.enc_keys("a", "b", KeyRequest(1, 64))
