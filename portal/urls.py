"""The customer portal, per program under /p/<program slug>/ (docs/portal.md)."""

from django.urls import path

from . import views, views_card

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
    # card
    path("<slug:slug>/card", views_card.card, name="card"),
    path("<slug:slug>/card/claim", views_card.claim, name="card_claim"),
    path("<slug:slug>/card/<int:card_id>/wallet.pkpass", views_card.card_pkpass, name="card_pkpass"),
    path("<slug:slug>/card/<int:card_id>/google-wallet", views_card.card_google, name="card_google"),
    path("<slug:slug>/wallet/logo.png", views_card.wallet_logo, name="wallet_logo"),
    path("<slug:slug>/earn", views_card.earn, name="earn"),
    path("<slug:slug>/terms", views_card.terms, name="terms"),
]
