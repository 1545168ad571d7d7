"""What Binance spot and Binance USDⓈ-M futures share on the wire.

Both APIs come from one house and keep one dialect: the same one-letter stream keys for trades,
klines, depth diffs and book tops, the same kline array layout over REST, the same order
status names and the same ``{"code", "msg"}`` error bodies with mostly the same codes. What
both venues read the same way lives here once (`ccxt_errors`: a ccxt exception and its
Binance body -> ours, for both order adapters); `tessera.venues.binance_spot` and
`tessera.venues.binance_usdm` hold what differs (user data, venue-only codes and streams, the
order adapters).
"""
