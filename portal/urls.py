"""The customer portal, per program under /p/<program slug>/ (docs/portal.md)."""

from django.urls import path

from . import views, views_card, views_prefs, views_rewards, views_widget

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
    # prefs
    path("<slug:slug>/preferences", views_prefs.preferences, name="preferences"),
    path("<slug:slug>/preferences/unsubscribe", views_prefs.unsubscribe_marketing, name="unsubscribe_marketing"),
    path("<slug:slug>/my-data", views_prefs.my_data, name="my_data"),
    path("<slug:slug>/my-data/export.json", views_prefs.my_data_json, name="my_data_json"),
    path("<slug:slug>/my-data/export.zip", views_prefs.my_data_csv, name="my_data_csv"),
    path("<slug:slug>/my-data/delete", views_prefs.deletion_request, name="deletion_request"),
    # rewards
    path("<slug:slug>/rewards", views_rewards.rewards, name="rewards"),
    path("<slug:slug>/rewards/<int:reward_id>/redeem", views_rewards.reward_redeem, name="reward_redeem"),
    path("<slug:slug>/coupons", views_rewards.coupons, name="coupons"),
    path("<slug:slug>/coupons/<int:coupon_id>", views_rewards.coupon, name="coupon"),
    path("<slug:slug>/refer", views_rewards.refer, name="refer"),
    # card
    path("<slug:slug>/card", views_card.card, name="card"),
    path("<slug:slug>/card/claim", views_card.claim, name="card_claim"),
    path("<slug:slug>/card/<int:card_id>/wallet.pkpass", views_card.card_pkpass, name="card_pkpass"),
    path("<slug:slug>/card/<int:card_id>/google-wallet", views_card.card_google, name="card_google"),
    path("<slug:slug>/wallet/logo.png", views_card.wallet_logo, name="wallet_logo"),
    path("<slug:slug>/earn", views_card.earn, name="earn"),
    path("<slug:slug>/terms", views_card.terms, name="terms"),
    # the shop widget
    path("widget.js", views_widget.widget_asset, {"name": "widget.js"}, name="widget_js"),
    path("widget.css", views_widget.widget_asset, {"name": "widget.css"}, name="widget_css"),
    path("<slug:slug>/widget/data", views_widget.widget_data, name="widget_data"),
    path("<slug:slug>/widget/frame", views_widget.widget_frame, name="widget_frame"),
    path("<slug:slug>/widget/demo", views_widget.widget_demo, name="widget_demo"),
]
