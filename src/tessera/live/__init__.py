"""The live bot: signal queue, shared rate limiting and the trading loop."""
