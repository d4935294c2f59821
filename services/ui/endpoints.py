"""``/ui``: the clinical safety officer's pages, rendered on the server (no JavaScript needed).

Thin: each route reads the session and the form, calls :mod:`services.ui.service` or
:mod:`services.approvals.service`, and renders a template. Domain errors are shown on the page
they came from (the form re-rendered with the message and a 4xx status), never as JSON or a
stack trace. The request's database session commits at the edge (``SessionDep``); a refused
decision is rolled back before the page is drawn, so it writes nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy.exc import IntegrityError

from services.approvals import rules
from services.approvals import service as approvals
from services.core.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    RadwatchError,
    UnauthenticatedError,
    ValidationFailedError,
)
from services.core.models import ApprovalState
from services.core.settings import Settings
from services.http.deps import SessionDep, StateDep
from services.ui import cookies, service
from services.ui import history as history_page
from services.ui.service import Viewer

router = APIRouter(prefix="/ui", include_in_schema=False)

#: Longest reason accepted; it is stored and signed verbatim.
MAX_REASON = 5000
#: Pages may load their own stylesheet and data-URI images, nothing else; no scripts at all.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


@lru_cache(maxsize=1)
def _templates() -> Jinja2Templates:
    env = Environment(
        loader=PackageLoader("services.ui", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "j2"), default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return Jinja2Templates(env=env)


@lru_cache(maxsize=1)
def _stylesheet() -> tuple[bytes, str]:
    css = resources.files("services.ui").joinpath("static/ui.css").read_bytes()
    return css, hashlib.sha256(css).hexdigest()[:12]


@dataclass(frozen=True)
class Page:
    """What every page needs: settings, who is signed in, and this browser's CSRF nonce."""

    settings: Settings
    viewer: Viewer | None
    nonce: str
    nonce_is_new: bool
    base: str

    def csrf(self) -> str:
        subject = self.viewer.name if self.viewer else ""
        return cookies.csrf_token(self.settings.session_secret, self.nonce, subject)


def get_page(request: Request, state: StateDep, session: SessionDep) -> Page:
    settings = state.settings
    web = cookies.read_session(
        settings.session_secret,
        request.cookies.get(cookies.SESSION_COOKIE),
        max_age_s=settings.session_max_age_s,
    )
    viewer = service.signed_in(session, web) if web is not None else None
    nonce = request.cookies.get(cookies.CSRF_COOKIE) or ""
    is_new = not (16 <= len(nonce) <= 64)
    return Page(
        settings=settings,
        viewer=viewer,
        nonce=cookies.new_nonce() if is_new else nonce,
        nonce_is_new=is_new,
        base=request.scope.get("root_path", "") + "/ui",
    )


PageDep = Annotated[Page, Depends(get_page)]
FormText = Annotated[str, Form()]


def _secure(request: Request, settings: Settings) -> bool:
    return request.url.scheme == "https" or settings.environment == "production"


def _set_cookie(
    request: Request, response: Response, settings: Settings, name: str, value: str
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=settings.session_max_age_s,
        path=cookies.COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=_secure(request, settings),
    )


def _finish(request: Request, page: Page, response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    # Dossiers and decisions must not linger in shared caches or the back/forward cache.
    response.headers["Cache-Control"] = "no-store"
    if page.nonce_is_new:
        _set_cookie(request, response, page.settings, cookies.CSRF_COOKIE, page.nonce)
    return response


def _render(
    request: Request, page: Page, template: str, context: dict[str, Any], status: int = 200
) -> Response:
    context = {
        "viewer": page.viewer,
        "csrf": page.csrf(),
        "base": page.base,
        "css_version": _stylesheet()[1],
        **context,
    }
    response = _templates().TemplateResponse(request, template, context, status_code=status)
    return _finish(request, page, response)


def _error(request: Request, page: Page, exc: RadwatchError) -> Response:
    return _render(
        request,
        page,
        "error.html.j2",
        {"message": exc.message, "status": exc.status_code},
        exc.status_code,
    )


def _redirect(request: Request, page: Page, url: str) -> Response:
    return _finish(request, page, RedirectResponse(url, status_code=303))


def _to_login(request: Request, page: Page) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        target = request.url.path.rsplit("/decision", 1)[0]
    return _redirect(request, page, f"{page.base}/login?next={quote(target, safe='')}")


def _safe_next(page: Page, target: str) -> str:
    """Only a path on these pages: never another site (an open redirect helps phishing)."""
    ui = page.base
    if (
        (target == ui or target.startswith(ui + "/"))
        and "//" not in target
        and "\\" not in target
        and not target.startswith(f"{ui}/log")
    ):
        return target
    return f"{ui}/approvals"


def _now() -> datetime:
    return datetime.now(UTC)


# --- static --------------------------------------------------------------------------------------


@router.get("/static/ui.css")
def stylesheet() -> Response:
    css, _ = _stylesheet()
    return Response(css, media_type="text/css", headers={"Cache-Control": "public, max-age=86400"})


# --- sign-in -------------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
def home(request: Request, page: PageDep) -> Response:
    return _redirect(request, page, f"{page.base}/approvals")


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, page: PageDep, next: str = "", signed_out: str = "") -> Response:
    if page.viewer is not None:
        return _redirect(request, page, _safe_next(page, next))
    return _render(
        request,
        page,
        "login.html.j2",
        {"next": _safe_next(page, next), "name": "", "signed_out": bool(signed_out)},
    )


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    page: PageDep,
    session: SessionDep,
    name: FormText = "",
    password: FormText = "",
    csrf: FormText = "",
    next: FormText = "",
) -> Response:
    target = _safe_next(page, next)
    anonymous = Page(page.settings, None, page.nonce, page.nonce_is_new, page.base)
    try:
        cookies.check_csrf(page.settings.session_secret, page.nonce, "", csrf)
        if not name.strip() or not password:
            raise UnauthenticatedError("Enter your user name and your password.")
        viewer = service.sign_in(session, name, password)
    except RadwatchError as exc:
        context = {"next": target, "name": name.strip()[:128], "error": exc.message}
        return _render(request, anonymous, "login.html.j2", context, exc.status_code)
    settings = page.settings
    response = RedirectResponse(target, status_code=303)
    token = cookies.issue_session(settings.session_secret, viewer.name, viewer.role)
    _set_cookie(request, response, settings, cookies.SESSION_COOKIE, token)
    # A fresh CSRF nonce at sign-in: a nonce planted before sign-in is worth nothing after it.
    _set_cookie(request, response, settings, cookies.CSRF_COOKIE, cookies.new_nonce())
    return _finish(request, Page(settings, viewer, page.nonce, False, page.base), response)


@router.get("/logout", response_class=HTMLResponse)
def logout_form(request: Request, page: PageDep) -> Response:
    if page.viewer is None:
        return _redirect(request, page, f"{page.base}/login")
    return _render(request, page, "logout.html.j2", {})


@router.post("/logout", response_class=HTMLResponse)
def logout(request: Request, page: PageDep, csrf: FormText = "") -> Response:
    if page.viewer is not None:
        try:
            cookies.check_csrf(page.settings.session_secret, page.nonce, page.viewer.name, csrf)
        except ForbiddenError as exc:
            return _error(request, page, exc)
    response = RedirectResponse(f"{page.base}/login?signed_out=1", status_code=303)
    for name in (cookies.SESSION_COOKIE, cookies.CSRF_COOKIE):
        response.delete_cookie(name, path=cookies.COOKIE_PATH, httponly=True, samesite="lax")
    return _finish(request, Page(page.settings, None, page.nonce, False, page.base), response)


# --- approvals -----------------------------------------------------------------------------------


@router.get("/approvals", response_class=HTMLResponse)
def approval_list(
    request: Request, page: PageDep, session: SessionDep, state: str = ApprovalState.PENDING
) -> Response:
    if page.viewer is None:
        return _to_login(request, page)
    approvals.expire_due(session)
    error = None
    if state not in (*service.STATES, "all"):
        error = f"There is no state '{state[:32]}'; showing all requests."
        state = "all"
    rows = service.approval_rows(session, state=None if state == "all" else state, now=_now())
    context = {"nav": "approvals", "rows": rows, "state": state, "states": service.STATES}
    return _render(
        request, page, "approvals.html.j2", {**context, "error": error}, 422 if error else 200
    )


def _dossier(
    request: Request,
    page: PageDep,
    session: SessionDep,
    request_id: int,
    *,
    form: dict[str, Any] | None = None,
    error: RadwatchError | None = None,
    error_field: str = "",
    signed: str = "",
) -> Response:
    assert page.viewer is not None
    try:
        view = service.dossier_page(session, request_id=request_id, viewer=page.viewer, now=_now())
    except NotFoundError as exc:
        return _error(request, page, exc)
    context = {
        "nav": "approvals",
        "p": view,
        "form": form or {},
        "error": error.message if error else "",
        "error_field": error_field,
        "signed": signed if signed in ("approve", "reject") else "",
    }
    return _render(request, page, "dossier.html.j2", context, error.status_code if error else 200)


@router.get("/approvals/{request_id}", response_class=HTMLResponse)
def dossier_view(
    request: Request, request_id: int, page: PageDep, session: SessionDep, signed: str = ""
) -> Response:
    if page.viewer is None:
        return _to_login(request, page)
    approvals.expire_due(session)
    return _dossier(request, page, session, request_id, signed=signed)


@router.get("/approvals/{request_id}/dossier.json")
def dossier_json(request: Request, request_id: int, page: PageDep, session: SessionDep) -> Response:
    """The dossier document as the generator wrote it, for the record."""
    if page.viewer is None:
        return _to_login(request, page)
    try:
        document = service.dossier_document(session, request_id)
    except NotFoundError as exc:
        return _error(request, page, exc)
    disposition = f'attachment; filename="dossier-request-{request_id}.json"'
    response = JSONResponse(document, headers={"Content-Disposition": disposition})
    return _finish(request, page, response)


@router.post("/approvals/{request_id}/decision", response_class=HTMLResponse)
def decide(
    request: Request,
    request_id: int,
    page: PageDep,
    session: SessionDep,
    csrf: FormText = "",
    decision: FormText = "",
    reason: FormText = "",
    password: FormText = "",
    override: FormText = "",
) -> Response:
    viewer = page.viewer
    if viewer is None:
        return _to_login(request, page)
    try:
        cookies.check_csrf(page.settings.session_secret, page.nonce, viewer.name, csrf)
    except ForbiddenError as exc:
        return _error(request, page, exc)
    wants_override = override in ("yes", "on", "true", "1")
    form = {"decision": decision, "reason": reason[:MAX_REASON], "override": wants_override}
    error: RadwatchError | None = None
    field = ""
    try:
        refused = service.refusals(
            session,
            request_id=request_id,
            viewer=viewer,
            now=_now(),
            decision="approve" if decision == "approve" else "reject",
            override=wants_override,
            reason=reason,
        )
    except NotFoundError as exc:
        return _error(request, page, exc)
    if decision not in ("approve", "reject"):
        error, field = ValidationFailedError("Choose whether to approve or reject."), "decision"
    elif len(reason) > MAX_REASON:
        error = ValidationFailedError(f"The reason is longer than {MAX_REASON} characters.")
        field = "reason"
    elif refused:
        # The first refusal of the sign-off rules: what approvals.decide would raise, word for
        # word (the page asks the same function before it asks for the password).
        error, field = refused[0].exception(), refused[0].field
    elif not password:
        error = ValidationFailedError(
            "Enter your password to sign: every decision is an electronic signature and "
            "needs it again. Nothing was signed."
        )
        field = "password"
    else:
        try:
            approvals.decide(
                session,
                page.settings,
                request_id=request_id,
                signer=rules.Signer(name=viewer.name, role=viewer.role),
                decision="approve" if decision == "approve" else "reject",
                reason=reason,
                password=password,
                override=wants_override and decision == "approve",
            )
            session.flush()
        except UnauthenticatedError:
            error = UnauthenticatedError(
                "That password is not right. Nothing was signed; enter your password again."
            )
            field = "password"
        except RadwatchError as exc:
            error = exc
        except IntegrityError:
            error = ConflictError(f"'{viewer.name}' has already signed request {request_id}.")
    if error is None:
        return _redirect(
            request, page, f"{page.base}/approvals/{request_id}?signed={decision}#decisions"
        )
    # Nothing of a refused decision may reach the database, whatever decide() got to.
    session.rollback()
    return _dossier(request, page, session, request_id, form=form, error=error, error_field=field)


# --- history -------------------------------------------------------------------------------------


@router.get("/history", response_class=HTMLResponse)
def history(request: Request, page: PageDep, session: SessionDep, model: str = "") -> Response:
    if page.viewer is None:
        return _to_login(request, page)
    entries = history_page.history(session, model_name=model or None)
    context = {
        "nav": "history",
        "entries": entries,
        "model": model,
        "models": history_page.history_models(session),
    }
    return _render(request, page, "history.html.j2", context)
