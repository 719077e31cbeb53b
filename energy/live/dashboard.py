"""The browser dashboard at /dashboard/: log in, pick a site, watch it live.

Server side it only renders pages and one JSON snapshot; the live part is /ws/live/ with the
session (energy.live.consumers.LiveConsumer). Tenancy: a user sees the sites of the organizations
they are a member of; any other site is a 404.
"""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import re_path, reverse_lazy
from django.views.decorators.http import require_POST

from energy.live import selectors
from energy.live.site_alerts import site_alert_acknowledge
from joulepoint.tenancy.selectors import user_organization_ids

LOGIN_URL = reverse_lazy("dashboard-login")


def _site_or_404(request, site_id: int):
    org_ids = user_organization_ids(user=request.user)
    site = selectors.dashboard_sites(organization_ids=org_ids).filter(pk=site_id).first()
    if site is None:
        raise Http404("No such site.")
    return site


@login_required(login_url=LOGIN_URL)
def site_list(request):
    org_ids = user_organization_ids(user=request.user)
    sites = list(selectors.dashboard_sites(organization_ids=org_ids))
    if len(sites) == 1 and "all" not in request.GET:
        return redirect("dashboard-site", site_id=sites[0].pk)
    return render(request, "dashboard/sites.html", {"sites": sites, "has_orgs": bool(org_ids)})


@login_required(login_url=LOGIN_URL)
def site_detail(request, site_id: int):
    site = _site_or_404(request, site_id)
    org_ids = user_organization_ids(user=request.user)
    sites = list(selectors.dashboard_sites(organization_ids=org_ids))
    return render(request, "dashboard/site.html", {"site": site, "sites": sites})


@login_required(login_url=LOGIN_URL)
def site_topology(request, site_id: int):
    """The site's energy graph in 3D (2D fallback); data arrives over /ws/live/ (docs/topology.md)."""
    site = _site_or_404(request, site_id)
    return render(request, "dashboard/topology.html", {"site": site})


@login_required(login_url=LOGIN_URL)
def site_snapshot(request, site_id: int):
    site = _site_or_404(request, site_id)
    return JsonResponse(selectors.dashboard_snapshot(site=site))


@require_POST
def alert_acknowledge(request, site_id: int, alert_id: int):
    """The dashboard's Acknowledge button (session and CSRF token, like the page). A member with
    a write role acknowledges an open alert of a site of their organizations; anything else is a
    JSON 4xx: 401 logged out, 404 another tenant's or unknown site or alert, 403 read-only role."""
    if not request.user.is_authenticated:
        return JsonResponse({"detail": "Log in first."}, status=401)
    org_ids = user_organization_ids(user=request.user)
    site = selectors.dashboard_sites(organization_ids=org_ids).filter(pk=site_id).first()
    if site is None:
        return JsonResponse({"detail": "No such site."}, status=404)
    if site.organization_id not in user_organization_ids(user=request.user, write=True):
        return JsonResponse({"detail": "Your role may look but not acknowledge."}, status=403)
    by = f"user:{request.user.get_username()}"
    alert = site_alert_acknowledge(organization_id=site.organization_id, site_id=site.pk, alert_id=alert_id, by=by)
    if alert is None:
        return JsonResponse({"detail": "No such open alert on this site."}, status=404)
    return JsonResponse({**alert, "created_at": alert["created_at"].isoformat()})


class DashboardLoginView(auth_views.LoginView):
    template_name = "dashboard/login.html"
    redirect_authenticated_user = True
    next_page = reverse_lazy("dashboard")


urlpatterns = [
    re_path(r"^$", site_list, name="dashboard"),
    re_path(r"^login/?$", DashboardLoginView.as_view(), name="dashboard-login"),
    re_path(r"^logout/?$", auth_views.LogoutView.as_view(next_page=LOGIN_URL), name="dashboard-logout"),
    re_path(r"^sites/(?P<site_id>[0-9]{1,18})/?$", site_detail, name="dashboard-site"),
    re_path(r"^sites/(?P<site_id>[0-9]{1,18})/snapshot\.json$", site_snapshot, name="dashboard-snapshot"),
    re_path(
        r"^sites/(?P<site_id>[0-9]{1,18})/alerts/(?P<alert_id>[0-9]{1,18})/acknowledge/?$",
        alert_acknowledge,
        name="dashboard-alert-acknowledge",
    ),
    re_path(r"^sites/(?P<site_id>[0-9]{1,18})/topology/?$", site_topology, name="dashboard-topology"),
]
