"""``authsvc serve --workers 2``: a scrape of either worker reports what both served.

prometheus-client's multiprocess mode keeps each worker's values in files under
``PROMETHEUS_MULTIPROC_DIR``; ``authsvc serve`` empties an operator's directory of a previous
run's files, or makes a private one when none is set.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from authsvc import cli
from authsvc.observability.metrics import MULTIPROCESS_DIR_ENV
from tests.live_server import ServerFactory, server_factory

MAX_REQUESTS = 400


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[ServerFactory]:
    with server_factory(tmp_path / "work", {}) as factory:
        yield factory


def _healthz_count(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "authsvc_http_requests_total" and sample.labels == {
                "route": "/healthz",
                "method": "GET",
                "status": "200",
            }:
                return sample.value
    return 0.0


def _healthz_by_worker(metrics_dir: Path) -> dict[str, float]:
    """What each worker's own file holds (prometheus-client's storage format)."""
    served: dict[str, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            name, _sample, labels, *_rest = json.loads(key)
            if name == "authsvc_http_requests" and labels.get("route") == "/healthz":
                served[path.stem] = served.get(path.stem, 0.0) + value
    return served


def _both_served(metrics_dir: Path) -> bool:
    served = _healthz_by_worker(metrics_dir)
    return len(served) == 2 and all(count > 0 for count in served.values())


def test_every_scrape_of_two_workers_counts_the_requests_both_served(
    servers: ServerFactory, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"left over from an earlier run")
    server = servers.start(args=("--workers", "2"), **{MULTIPROCESS_DIR_ENV: str(metrics_dir)})

    sent = 0
    # A new connection each time, so the kernel spreads them over the workers; on until
    # each worker has served some (it takes a few dozen here).
    while sent < MAX_REQUESTS and not _both_served(metrics_dir):
        for _ in range(10):
            assert httpx.get(f"{server.base_url}/healthz", timeout=5).status_code == 200
        sent += 10
    scrapes = [httpx.get(f"{server.base_url}/metrics", timeout=5) for _ in range(6)]

    assert _both_served(metrics_dir)
    assert all(scrape.status_code == 200 for scrape in scrapes)
    assert [_healthz_count(scrape.text) for scrape in scrapes] == [sent] * 6
    assert not (metrics_dir / "counter_999999.db").exists()


def test_serve_with_workers_and_no_directory_makes_a_private_one() -> None:
    environ: dict[str, str] = {}

    created = cli._shared_metrics_dir(2, environ)

    assert created is not None
    assert environ == {MULTIPROCESS_DIR_ENV: created.name}
    assert Path(created.name).is_dir()
    created.cleanup()


def test_serve_empties_an_operators_directory_whatever_the_worker_count(tmp_path: Path) -> None:
    (tmp_path / "counter_4242.db").write_bytes(b"from an earlier run")
    (tmp_path / "keep.txt").write_text("not ours")

    assert cli._shared_metrics_dir(1, {MULTIPROCESS_DIR_ENV: str(tmp_path)}) is None
    assert sorted(path.name for path in tmp_path.iterdir()) == ["keep.txt"]


def test_serve_with_one_worker_keeps_metrics_in_memory() -> None:
    environ: dict[str, str] = {}

    assert cli._shared_metrics_dir(1, environ) is None
    assert environ == {}
