"""Golden evaluation sharded over a Dask LocalCluster (2 worker processes): the result equals a
serial run bit for bit, a worker killed mid-run costs nothing, a shard that fails is reported
(never dropped), and ``neuroloom eval --workers 2`` prints the serial report."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from neuroloom.contract.config import FabricConfig
from neuroloom.firmware import distributed as dist
from neuroloom.firmware.compiler import compile_model, from_compiled, random_qmodel
from neuroloom.firmware.evaluate import golden_driver
from neuroloom.firmware.qmodel import qforward

MODEL = random_qmodel(8, 4, 2, d_in=2, classes=3, seed=3)
IMAGE = from_compiled(compile_model(MODEL, FabricConfig(mesh_w=2, mesh_h=2)))


def payloads(n: int, k: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-3000, 3000, (n, k, 2))


def serial(xq, mode="pipelined"):
    drv = golden_driver(4)
    drv.load(IMAGE)
    return drv.run(xq, mode=mode)


@pytest.fixture(scope="module")
def client():
    c = dist.open_client(workers=2)
    c.wait_for_workers(2, timeout=120)
    yield c
    dist.close_client(c)


@pytest.mark.parametrize("mode", ["pipelined", "fall-through"])
def test_two_workers_equal_serial_bit_for_bit(client, mode):
    xq = payloads(10, 12)
    ref = serial(xq, mode)
    done = []
    got = dist.golden_run(IMAGE, xq, mode, client=client, batch=4, progress=done.append)
    assert got.failed == []
    np.testing.assert_array_equal(got.running, ref.running)
    np.testing.assert_array_equal(got.running, qforward(MODEL, xq, IMAGE.cfg))
    np.testing.assert_array_equal(got.counters, ref.counters)
    assert got.steps == ref.steps and sum(done) == len(xq)
    assert len(set(client.run(os.getpid).values())) == 2


def test_worker_killed_mid_run_still_full_correct_result(client):
    xq = payloads(16, 200, seed=1)
    ref = serial(xq)
    done, result = [], {}
    run = threading.Thread(target=lambda: result.setdefault("r", dist.golden_run(
        IMAGE, xq, "pipelined", client=client, batch=1, shard=1, progress=done.append)))
    run.start()
    t0 = time.monotonic()
    while not done and time.monotonic() - t0 < 120:
        time.sleep(0.01)
    assert done and sum(done) < len(xq), "the kill should land mid-run"
    pids = client.run(os.getpid)                           # worker address -> process id
    victim = next(iter(pids.values()))
    os.kill(victim, signal.SIGKILL)
    run.join(timeout=300)
    got = result["r"]
    assert got.failed == []
    np.testing.assert_array_equal(got.running, ref.running)
    np.testing.assert_array_equal(got.counters, ref.counters)
    assert sum(done) == len(xq)
    client.wait_for_workers(2, timeout=120)                # the nanny restarts the worker
    assert victim not in client.run(os.getpid).values()


def test_failed_shard_is_reported_not_dropped(client):
    xq = payloads(6, 5)
    xq[3, 2, 0] = 1 << 30                                  # outside the payload range: raises
    got = dist.golden_run(IMAGE, xq, "pipelined", client=client, batch=2, shard=2, retries=1)
    assert [(a, b) for a, b, _ in got.failed] == [(2, 4)]
    assert "range" in got.failed[0][2]
    ok = np.r_[0:2, 4:6]
    np.testing.assert_array_equal(got.running[ok], serial(xq[ok]).running)


def test_cli_eval_workers_prints_the_serial_report(tmp_path, capsys):
    import re

    from neuroloom.cli import main
    from neuroloom.firmware.importer import save_qmodel

    save_qmodel(random_qmodel(6, 2, 1, d_in=1, classes=10, seed=4), tmp_path / "m")
    img = str(tmp_path / "m.nlimg")
    assert main(["compile", str(tmp_path / "m"), "-o", img, "--mesh", "1x1"]) == 0
    capsys.readouterr()
    reports = []
    for extra in ([], ["--workers", "2"]):
        assert main(["eval", img, "--limit", "10", "--mode", "fall-through", *extra]) == 0
        out = capsys.readouterr().out
        assert "golden accuracy" in out
        reports.append(re.sub(r"\[fall-through, [^]]*\]", "[...]", out))
    assert reports[0] == reports[1]
    assert main(["eval", img, "--workers", "2", "--backend", "verilator"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--workers" in err[0]
    assert main(["eval", img, "--limit", "2", "--scheduler", "tcp://127.0.0.1:9"]) != 0
    out = capsys.readouterr()
    err = out.err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in out.err and "tcp://127.0.0.1:9" in err[0], err
