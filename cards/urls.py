"""Staff-only images of one card (the portal will serve its own to the card's owner).

Batch pages, progress and downloads are under the CardBatch admin (`batch_admin.get_urls`).
"""

from django.urls import path

from . import views

app_name = "cards"

urlpatterns = [
    path("<str:number>/qr.svg", views.card_qr_view, name="card_qr"),
    path("<str:number>/barcode.svg", views.card_barcode_view, name="card_barcode"),
]
