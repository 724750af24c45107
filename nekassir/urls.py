from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from nekassir import views

urlpatterns = [
    path("health/", views.health, name="health"),
    # The kiosk JSON API (nekassir.api): /api/v1/orders, /api/v1/openapi.json. First: every kiosk polls its
    # order four times a second, and resolving past the service menu's ~60 patterns cost each poll ~0.3 ms.
    path("api/", include("nekassir.api.urls")),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # The service menu (nekassir.panel): venue page, shifts, orders, refunds, kiosk embed.
    path("", include("nekassir.panel.urls")),
    path("admin/", admin.site.urls),
]

# Russian error pages with a way back, for managers and for the kiosk embed (nekassir.views).
handler403 = "nekassir.views.permission_denied"
handler404 = "nekassir.views.page_not_found"
handler500 = "nekassir.views.server_error"
