"""The operator's side of a running bot: a control API, a web console and the event hub that
feeds them and the notifier.

- `schemas` — what the API returns and accepts (pydantic models; money as decimal strings);
- `port` — `ControlPort`, what the API needs from a bot (implemented by
  `tessera.live.control_port.BotControl`), and `Actor`, who acts;
- `events` — `EventHub`, the bot's in-process event bus (SSE, console, notifier);
- `auth` — tokens (SHA-256 at rest), passwords (argon2), sessions, CSRF, login limits;
- `app` — the FastAPI application; `server` — uvicorn in the bot's event loop;
- `console` — the server-rendered web console (Jinja2 + htmx, live over SSE).
"""
