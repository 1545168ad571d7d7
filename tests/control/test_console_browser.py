"""The console in a real browser against a paper bot trading the simulator.

A `TradingBot` runs in the test's event loop in paper mode (sma_cross fast=2 slow=3 on 1s
BTCUSDT bars of the exchange simulator, so it trades every few seconds), with the control API
and console on a free port and one console user. Playwright drives Debian's Chromium: log in,
watch a fill appear on the orders page without a reload, halt with a reason through the
confirmation step, see the page say halted while the store shows the bot places no order for
several bars, reset, see trading resume, log out (a page then sends us to the log-in). Any
console error, uncaught exception or CSP violation fails the test; screenshots are kept.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote

import pytest
from browser import PageErrors, Screens, launch, require_chromium

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "live"))
from inprocess_bot import bot_options, running_simulator, wait_until

from tessera.config.models import ControlConfig, ControlUser
from tessera.control.auth import hash_password
from tessera.execution.persistence import ExecutionStore
from tessera.live.bot import TradingBot
from tessera.live.halt import ACCOUNT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

USER, PASSWORD = "olga", "olga's console test password"
FILL_ROWS = "#fills tr.fill"
TRADE_IDS_JS = (
    "() => Array.from(document.querySelectorAll('#fills tr.fill')).map(r => r.dataset.tradeId)"
)


@pytest.fixture
async def paper_bot(tmp_path: Path) -> AsyncIterator[tuple[TradingBot, str]]:
    control = ControlConfig(
        enabled=True,
        port=0,
        users=[ControlUser(name=USER, role="operate", password_hash=hash_password(PASSWORD))],
    )
    db = f"sqlite:///{tmp_path / 'bot.db'}"
    with running_simulator(speed=5.0) as (simulator, _engine):
        bot = TradingBot(bot_options(simulator, db, mode="paper", control=control))
        task = asyncio.create_task(bot.run())
        try:
            await wait_until(lambda: bot.health.ready or task.done(), 60, "the bot ready")
            assert not task.done(), f"the bot stopped at start: {bot.problems}"
            assert bot.control_url is not None
            yield bot, db
        finally:
            bot._request_stop()
            await asyncio.wait_for(task, 60)


def orders_in(store: ExecutionStore) -> int:
    return int(store.orders_page(limit=1)[1])


async def test_an_operator_watches_a_fill_halts_resets_and_logs_out_in_a_real_browser(
    paper_bot: tuple[TradingBot, str], tmp_path: Path
) -> None:
    require_chromium()
    from playwright.async_api import async_playwright

    bot, db = paper_bot
    url = str(bot.control_url).rstrip("/")
    screens = Screens(tmp_path / "screens")
    errors = PageErrors()
    store = ExecutionStore(db)
    async with async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = await (
                await browser.new_context(viewport={"width": 1280, "height": 800})
            ).new_page()
            page.set_default_timeout(20_000)
            errors.watch(page)

            # --- log in: a page without a session goes to the log-in first ----------------
            await page.goto(f"{url}/orders")
            assert "/login" in page.url
            await screens.shot(page, "login")
            await page.fill("#username", USER)
            await page.fill("#password", PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{url}/orders")
            await page.wait_for_selector("#live[data-state=on]")  # the event stream is open

            # --- a fill appears without a reload ------------------------------------------
            navigations: list[str] = []
            page.on(
                "framenavigated",
                lambda f: navigations.append(f.url) if f == page.main_frame else None,
            )
            await page.evaluate("() => { window.__sameDocument = 'yes'; }")
            before = set(await page.evaluate(TRADE_IDS_JS))
            await page.wait_for_function(
                "(seen) => Array.from(document.querySelectorAll('#fills tr.fill'))"
                ".some(r => !seen.includes(r.dataset.tradeId))",
                arg=sorted(before),
                timeout=60_000,
            )
            after = await page.evaluate(TRADE_IDS_JS)
            new = [t for t in after if t not in before]
            assert new, after
            assert navigations == [], f"the page navigated: {navigations}"
            assert await page.evaluate("() => window.__sameDocument") == "yes"
            ours = {f.trade_id for f in store.all_fills()}
            assert set(new) <= ours, "a fill in the page that the bot did not book"
            await screens.shot(page, "orders-with-a-live-fill")

            # --- halt with a reason, through the confirmation step ------------------------
            await page.click("header nav >> text=Risk")
            await page.wait_for_url(f"{url}/risk")
            await page.fill("#halt-reason-input", "browser test: halt before the close")
            await page.click("#halt-button")
            await page.wait_for_selector("#confirm-button")
            assert await page.input_value("#reason") == "browser test: halt before the close"
            assert page.url == f"{url}/risk"  # a confirmation is no address to come back to
            assert bot.risk.halt is None, "the first step must not halt"
            await screens.shot(page, "halt-confirmation")
            await page.click("#confirm-button")
            await page.wait_for_selector("#flash.done")
            assert "Halt trading: done" in await page.inner_text("#flash")
            assert (await page.inner_text("#risk-state-text")).strip() == "halted"
            assert (await page.inner_text("#state")).strip() == "HALTED"
            # the form redrew the page; the event stream on <body> stayed open
            assert await page.get_attribute("#live", "data-state") == "on"
            assert "browser test: halt before the close" in await page.inner_text("#halt-reason")
            await screens.shot(page, "halted")

            # --- the bot places no order while halted ---------------------------------------
            halt = store.load_halt(ACCOUNT)
            assert halt is not None and bot.risk.halt is not None
            orders = orders_in(store)
            bar = bot._last_bar["BTCUSDT"]
            await wait_until(
                lambda: bot._last_bar["BTCUSDT"] >= bar + 5 * 10**9, 30, "five more bars"
            )
            # a halt lets out only a strategy's exits flagged reduce-only (the risk engine's
            # rule: a flatten must never be stuck); nothing that opens or adds goes out
            added = orders_in(store) - orders
            newest = store.orders_page(limit=max(added, 1))[0][:added]
            opened = [o.client_order_id for o in newest if not o.reduce_only]
            assert not opened, f"orders that add risk while halted: {opened}"
            rows, _ = store.list_actions(10, 0)
            assert any(
                r["action"] == "halt" and r["actor"] == USER and r["via"] == "session" for r in rows
            ), rows

            # --- reset, shown with the person's name, then trading resumes --------------------
            await page.fill("#reset-reason", "browser test: all clear")
            await page.click("#reset-button")
            await page.wait_for_selector("#confirm-button")
            assert (await page.inner_text("#acting-as")).strip() == USER
            await page.click("#confirm-button")
            await page.wait_for_selector("#flash.done")
            assert "Reset the halt: done" in await page.inner_text("#flash")
            assert (await page.inner_text("#risk-state-text")).strip() == "trading"
            assert bot.risk.halt is None and store.load_halt(ACCOUNT) is None
            halted_total = orders_in(store)
            await wait_until(
                lambda: (
                    any(not o.reduce_only for o in store.orders_page(limit=5)[0])
                    and orders_in(store) > halted_total
                ),
                60,
                "an order that opens a position after the reset",
            )
            await screens.shot(page, "trading-again")

            # every other page draws without a script error (checked below)
            for label, path, ready in (
                ("Positions", "/positions", "#positions"),
                ("Strategies", "/strategies", "#strategies td"),
                ("Logs", "/logs", "#logs"),
                ("Overview", "/", "#overview svg polyline"),
            ):
                await page.click(f"header nav >> text={label}")
                await page.wait_for_url(f"{url}{path}")
                await page.wait_for_selector(ready, state="attached", timeout=30_000)
                await screens.shot(page, label.lower())

            errors.assert_none()  # before the log-out closes the event stream

            # --- log out: the console is closed to this browser again ----------------------
            await page.click("#logout")
            # /login, or /login?next=<this page> when a fragment's poll meets the ended session
            # first (htmx's redirect; it came first on a loaded CI machine)
            back_to_login = re.compile(re.escape(url) + r"/login(\?next=[^&]*)?$")
            try:  # a loaded CI machine has taken more than the default 20 s here (once)
                await page.wait_for_url(back_to_login, timeout=60_000)
            except Exception as exc:  # say where the browser stood instead
                body = (await page.content())[:500]
                raise AssertionError(
                    f"the log-out did not reach /login: at {page.url}; bot running: "
                    f"{not bot.stopping.is_set()}; problems: {bot.problems}; page: {body}"
                ) from exc
            assert "/fragments/" not in unquote(page.url)  # never back to a bare fragment
            await page.goto(f"{url}/risk")
            assert "/login" in page.url
            await screens.shot(page, "logged-out")
            errors.assert_none()

            # the watch would have seen a violation: an inline script is refused and reported
            await page.evaluate(
                "() => { const s = document.createElement('script');"
                " s.textContent = 'window.__inline = 1'; document.body.appendChild(s); }"
            )
            await wait_until(lambda: errors.errors, 10, "the CSP violation reported")
            assert await page.evaluate("() => window.__inline") is None
            assert any("Content Security Policy" in e for e in errors.errors), errors.errors
        finally:
            await browser.close()
            store.close()
    assert len(screens.taken) == 10
