"""The customer portal, per program under /p/<program slug>/ (docs/portal.md)."""

from django.urls import path

from . import views

app_name = "portal"

urlpatterns = [
    path("<slug:slug>/", views.home, name="home"),
    path("<slug:slug>/login", views.login, name="login"),
    path("<slug:slug>/login/sent", views.login_sent, name="login_sent"),
    path("<slug:slug>/login/link", views.login_link, name="login_link"),
    path("<slug:slug>/logout", views.logout, name="logout"),
    path("<slug:slug>/join", views.join, name="join"),
    path("<slug:slug>/join/sent", views.join_sent, name="join_sent"),
    path("<slug:slug>/language", views.language, name="language"),
]
