"""Every stream the feeds and the ingest read has a kind the metrics know: a kind outside
`metrics.STREAM_TYPES` is counted under "other", where a dashboard cannot tell it apart."""

from __future__ import annotations

import pytest

from tessera import metrics
from tessera.venues.binance.streams import stream_kind


@pytest.mark.parametrize(
    ("stream", "kind"),
    [
        ("btcusdt@trade", "trade"),
        ("btcusdt@aggTrade", "aggTrade"),
        ("btcusdt@kline_1m", "kline"),
        ("btcusdt@depth@100ms", "depth"),
        ("btcusdt@depth@0ms", "depth"),
        ("btcusdt@bookTicker", "bookTicker"),
        ("btcusdt@markPrice", "markPrice"),
        ("btcusdt@markPrice@1s", "markPrice"),
        ("btcusdt@forceOrder", "forceOrder"),
    ],
)
def test_each_spot_and_usdm_stream_has_a_kind_the_metrics_label(stream: str, kind: str) -> None:
    assert stream_kind(stream) == kind
    assert metrics.bounded(kind, metrics.STREAM_TYPES) == kind


def test_the_usdm_datasets_are_metric_labels_not_other() -> None:
    from tessera.data.schemas import PERP_DATASETS

    assert PERP_DATASETS <= metrics.DATASETS
