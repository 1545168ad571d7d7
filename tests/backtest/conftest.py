"""The backtest tests' bundled BTC bars (``btc_bars``, ``btc_series``) are in tests/conftest.py,
shared with the optimisation tests."""
