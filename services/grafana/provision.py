"""Upload the dashboards to a Grafana server (``radwatch grafana push``).

Grafana sits behind a small role interface (:class:`GrafanaPort`) with one real adapter
(:class:`GrafanaHttp`, on ``grafana-client``), which is also the one place where the client's
exceptions become :class:`GrafanaError` with a message a person can act on: a bad URL, an
unreachable server, a refused token, a missing permission.

Pushing is idempotent:

- the folder is found by title or uid and created only when neither matches, with a uid derived
  from its title, so two pushes (even racing ones) cannot create two folders;
- dashboards keep their fixed uids and are saved with ``overwrite: true``, so a second push
  updates the same dashboards (Grafana bumps their version) instead of adding copies;
- ``--datasource`` is looked up by uid, then by name, and must be a Prometheus data source; it
  becomes the current value of each dashboard's ``datasource`` variable, which every panel reads.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlparse

from services.core.errors import RadwatchError
from services.grafana.dashboards import Rendered

JSON = dict[str, Any]


class GrafanaError(RadwatchError):
    """Grafana could not be reached, refused the request, or lacks what was asked for."""

    status_code = 502
    code = "grafana_error"


class GrafanaPort(Protocol):
    def health(self) -> JSON: ...
    def folders(self) -> list[JSON]: ...
    def create_folder(self, title: str, uid: str) -> JSON: ...
    def datasource_by_uid(self, uid: str) -> JSON | None: ...
    def datasource_by_name(self, name: str) -> JSON | None: ...
    def datasources(self) -> list[JSON]: ...
    def dashboard(self, uid: str) -> JSON | None: ...
    def save_dashboard(self, payload: JSON) -> JSON: ...


def check_url(url: str) -> str:
    """``url`` without a trailing slash, or a :class:`GrafanaError` saying what is wrong."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise GrafanaError(
            f"--url {url!r} is not a Grafana address; give one like https://grafana.example.org "
            "or http://127.0.0.1:3000 (scheme and host)."
        )
    try:
        parsed.port  # noqa: B018 - raises ValueError on a non-numeric or out-of-range port
    except ValueError:
        raise GrafanaError(f"--url {url!r} has an invalid port.") from None
    return url.rstrip("/")


class GrafanaHttp:
    """The real adapter: Grafana's HTTP API through ``grafana_client.GrafanaApi``."""

    def __init__(self, url: str, token: str, *, timeout_s: float = 10.0) -> None:
        from grafana_client.api import GrafanaApi

        self.url = check_url(url)
        if not token.strip():
            raise GrafanaError("--token is empty; create a service-account token in Grafana.")
        # grafana-client is untyped; keep the Any at this boundary.
        self._api: Any = GrafanaApi.from_url(self.url, credential=token, timeout=timeout_s)
        self._timeout_s = timeout_s

    def _call(self, action: str, fn: Any, *args: Any, missing_ok: bool = False) -> Any:
        from grafana_client.client import (
            GrafanaClientError,
            GrafanaException,
            GrafanaServerError,
            GrafanaTimeoutError,
            GrafanaUnauthorizedError,
        )
        from niquests.exceptions import RequestException

        try:
            return fn(*args)
        except GrafanaUnauthorizedError:
            raise GrafanaError(
                f"Grafana at {self.url} refused the token (401) while trying to {action}. Check "
                "--token (a service-account token, or GRAFANA_TOKEN)."
            ) from None
        except GrafanaClientError as exc:
            if exc.status_code == 404 and missing_ok:
                return None
            if exc.status_code == 403:
                raise GrafanaError(
                    f"The token may not {action} on {self.url} (403). Give its service account "
                    "the Editor role (or folder write permission)."
                ) from None
            raise GrafanaError(
                f"Grafana at {self.url} rejected the request to {action} "
                f"({exc.status_code}): {_short(exc.message)}"
            ) from None
        except GrafanaTimeoutError:
            raise GrafanaError(
                f"Grafana at {self.url} did not answer within {self._timeout_s:g} s while trying "
                f"to {action}."
            ) from None
        except GrafanaServerError as exc:
            raise GrafanaError(
                f"Grafana at {self.url} failed to {action} ({exc.status_code}): "
                f"{_short(exc.message)}"
            ) from None
        except GrafanaException as exc:
            raise GrafanaError(
                f"Cannot reach Grafana at {self.url} ({_short(exc.message)})."
            ) from None
        except ValueError:  # niquests' JSONDecodeError too, so before RequestException
            raise GrafanaError(
                f"{self.url} did not answer like Grafana (no JSON) while trying to {action}; "
                "is --url the Grafana root URL?"
            ) from None
        except RequestException as exc:
            raise GrafanaError(
                f"Cannot reach Grafana at {self.url}: {type(exc).__name__}. Check the URL and "
                "that the server is up."
            ) from None

    def health(self) -> JSON:
        """Grafana's build info (``GET /api/frontend/settings``, the call ``grafana-client``'s
        own health check makes). It needs the token, so a bad token fails here, first."""
        out = self._call(
            "read its build info", self._api.client.GET, "/frontend/settings", missing_ok=True
        )
        info = out.get("buildInfo") if isinstance(out, dict) else None
        if not isinstance(info, dict) or "version" not in info:
            raise GrafanaError(
                f"{self.url} did not answer like Grafana (GET /api/frontend/settings has no "
                "buildInfo); is --url the Grafana root URL?"
            )
        return info

    def folders(self) -> list[JSON]:
        return list(self._call("list folders", self._api.folder.get_all_folders) or [])

    def create_folder(self, title: str, uid: str) -> JSON:
        return dict(self._call("create a folder", self._api.folder.create_folder, title, uid))

    def datasource_by_uid(self, uid: str) -> JSON | None:
        return self._call(  # type: ignore[no-any-return]
            "look up a data source",
            self._api.datasource.get_datasource_by_uid,
            uid,
            missing_ok=True,
        )

    def datasource_by_name(self, name: str) -> JSON | None:
        return self._call(  # type: ignore[no-any-return]
            "look up a data source",
            self._api.datasource.get_datasource_by_name,
            name,
            missing_ok=True,
        )

    def datasources(self) -> list[JSON]:
        return list(self._call("list data sources", self._api.datasource.list_datasources) or [])

    def dashboard(self, uid: str) -> JSON | None:
        return self._call(  # type: ignore[no-any-return]
            "read a dashboard", self._api.dashboard.get_dashboard, uid, missing_ok=True
        )

    def save_dashboard(self, payload: JSON) -> JSON:
        return dict(self._call("save a dashboard", self._api.dashboard.update_dashboard, payload))


def _short(text: object, limit: int = 200) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def folder_uid_for(title: str) -> str:
    """A stable folder uid from its title (Grafana uids: at most 40 of ``[A-Za-z0-9_-]``)."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", title.lower()).strip("-") or "radwatch"
    return slug[:40]


@dataclass
class PushedDashboard:
    uid: str
    title: str
    action: str  # "created" or "updated"
    version: int | None
    url: str


@dataclass
class PushReport:
    grafana_version: str
    folder_uid: str
    folder_title: str
    folder_created: bool
    datasource: JSON | None
    dashboards: list[PushedDashboard] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"Grafana {self.grafana_version}"]
        verb = "created" if self.folder_created else "found"
        out.append(f"folder {self.folder_title!r} (uid {self.folder_uid}): {verb}")
        if self.datasource is not None:
            out.append(
                f"data source {self.datasource['name']!r} (uid {self.datasource['uid']}) set as "
                "each dashboard's default"
            )
        for d in self.dashboards:
            version = f" (version {d.version})" if d.version is not None else ""
            out.append(f"dashboard {d.uid} {d.title!r}: {d.action}{version} {d.url}")
        return out


def find_folder(grafana: GrafanaPort, title: str) -> JSON | None:
    uid = folder_uid_for(title)
    for f in grafana.folders():
        if f.get("title") == title or f.get("uid") in (title, uid):
            return f
    return None


def ensure_folder(grafana: GrafanaPort, title: str) -> tuple[JSON, bool]:
    """The folder titled ``title`` (or with that uid), created if absent; True if created."""
    found = find_folder(grafana, title)
    if found is not None:
        return found, False
    try:
        return grafana.create_folder(title, folder_uid_for(title)), True
    except GrafanaError:
        # Another push may have created it in the meantime (409/412): look again once.
        again = find_folder(grafana, title)
        if again is None:
            raise
        return again, False


def resolve_datasource(grafana: GrafanaPort, name_or_uid: str) -> JSON:
    """The Prometheus data source with this uid or name, or a :class:`GrafanaError` that lists
    the Prometheus data sources there are."""
    ds = grafana.datasource_by_uid(name_or_uid) or grafana.datasource_by_name(name_or_uid)
    if ds is None:
        known = [
            f"{d.get('name')} (uid {d.get('uid')})"
            for d in grafana.datasources()
            if d.get("type") == "prometheus"
        ]
        listed = ", ".join(known) if known else "none"
        raise GrafanaError(
            f"No data source with uid or name {name_or_uid!r} in Grafana. Prometheus data "
            f"sources there: {listed}."
        )
    if ds.get("type") != "prometheus":
        raise GrafanaError(
            f"Data source {ds.get('name')!r} is of type {ds.get('type')!r}; the dashboards "
            "query PromQL and need a Prometheus data source."
        )
    return ds


def with_datasource(model: JSON, ds: JSON) -> JSON:
    """A copy of ``model`` whose ``datasource`` variable currently selects ``ds``."""
    out = copy.deepcopy(model)
    for var in out.get("templating", {}).get("list", []):
        if var.get("type") == "datasource" and var.get("name") == "datasource":
            var["current"] = {"selected": True, "text": ds["name"], "value": ds["uid"]}
    return out


def push(
    grafana: GrafanaPort,
    dashboards: list[Rendered],
    *,
    folder: str = "radwatch",
    datasource: str | None = None,
    message: str = "radwatch grafana push",
) -> PushReport:
    """Create or update every dashboard in ``folder``; see the module docstring."""
    health = grafana.health()
    ds = resolve_datasource(grafana, datasource) if datasource else None
    found, created = ensure_folder(grafana, folder)
    report = PushReport(
        grafana_version=str(health.get("version", "unknown")),
        folder_uid=str(found["uid"]),
        folder_title=str(found.get("title", folder)),
        folder_created=created,
        datasource=ds,
    )
    for rendered in dashboards:
        model = with_datasource(rendered.model, ds) if ds else copy.deepcopy(rendered.model)
        model.pop("id", None)  # Grafana matches on uid; an id would refer to another instance.
        existing = grafana.dashboard(rendered.uid)
        answer = grafana.save_dashboard(
            {
                "dashboard": model,
                "folderUid": report.folder_uid,
                "overwrite": True,
                "message": message,
            }
        )
        if answer.get("uid") not in (None, rendered.uid):
            raise GrafanaError(
                f"Grafana saved dashboard {rendered.uid} under uid {answer.get('uid')}; "
                "refusing to continue."
            )
        report.dashboards.append(
            PushedDashboard(
                uid=rendered.uid,
                title=str(model.get("title", rendered.uid)),
                action="created" if existing is None else "updated",
                version=answer.get("version"),
                url=str(answer.get("url", "")),
            )
        )
    return report
