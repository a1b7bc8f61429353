"""The operator dashboard: static HTML, CSS and vanilla JS over the JSON API, plus a few read endpoints.

No build step: the files in ``static/`` ship as package data and are served as they are. The page
logs in with an API key (kept in sessionStorage) and calls the tenant-scoped ``/v1`` API with it;
the endpoints added here (release timeline, tier ladder, campaign days) follow the same rules:
Bearer authentication, the caller's tenant only, 404 for anyone else's ids.

No ``from __future__ import annotations`` here: FastAPI must see the local ``Who`` dependency type.
"""

from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from tiergate.service.auth import Principal
from tiergate.service.operator_views import campaign_days, release_timeline, tier_ladder

if TYPE_CHECKING:
    from tiergate.service.gateway import Gateway

__all__ = ["mount"]

PACKAGE = "tiergate.api.dashboard"

# The page talks to this origin only; nothing inline, nothing from elsewhere (the key lives in this tab).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _index() -> str:
    return resources.files(PACKAGE).joinpath("static", "index.html").read_text(encoding="utf-8")


def mount(app: FastAPI, gateway: "Gateway") -> None:
    """Add ``/`` (the page), ``/dashboard/*`` (its files) and the dashboard's read endpoints to ``app``."""
    from tiergate.api.app import owned

    principal = app.state.principal
    Who = Annotated[Principal, Depends(principal)]
    page = _index()

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    async def dashboard() -> Response:
        return HTMLResponse(page, headers=SECURITY_HEADERS)

    app.mount("/dashboard", StaticFiles(packages=[(PACKAGE, "static")]), name="dashboard")

    async def own_scope(who: Principal, sender_id: str) -> Any:
        sender = await owned(gateway.store.get_sender, "sender", sender_id, who.tenant.id)
        return await gateway.store.get_scope(sender.scope_id)

    @app.get("/v1/senders/{sender_id}/timeline", tags=["dashboard"])
    async def sender_timeline(sender_id: str, who: Who) -> Any:
        """Capacity freeing over the next 24 h, hour by hour, from the scope's window ledger."""
        return await release_timeline(gateway.store, await own_scope(who, sender_id), gateway.clock.now())

    @app.get("/v1/senders/{sender_id}/ladder", tags=["dashboard"])
    async def sender_ladder(sender_id: str, who: Who) -> Any:
        """The tier policy's ladder, the scope's current step and what each step needs to climb."""
        return tier_ladder(await own_scope(who, sender_id))

    @app.get("/v1/campaigns/{campaign_id}/days", tags=["dashboard"])
    async def campaign_by_day(campaign_id: str, who: Who) -> Any:
        """Planned against actual sends and tiers, day by day, and when what waits should be done."""
        campaign = await owned(gateway.store.get_campaign, "campaign", campaign_id, who.tenant.id)
        sender = await gateway.store.get_sender(campaign.sender_id)
        scope = await gateway.store.get_scope(sender.scope_id)
        return await campaign_days(gateway.store, campaign, scope, gateway.clock.now())
