"""How the simulator names itself, in a module with no imports.

Every answer of the simulator (REST and websocket handshake) carries `SIMULATOR_HEADER` with
its version, so that `tessera run --mode dev` can prove it talks to a simulator before sending
signed requests with the configured keys (a real exchange never sends this header). The bot
checks it on every dev start: importing the header from `tessera.sim.server` would load the
whole simulator (aiohttp's server, pyarrow, NumPy) into a bot that only needs the name.
"""

from __future__ import annotations

SIMULATOR_HEADER = "X-Tessera-Simulator"
