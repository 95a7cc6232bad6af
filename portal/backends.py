"""The authentication backend of the portal's emailed links (django-sesame tokens).

It authenticates only the login users of members (`Member.user`, created on demand by
`portal.services.login_link_send`), never staff: a token, even one minted by mistake for a
staff user, opens nothing. It takes no username and password, so the staff login (Django's
ModelBackend) is untouched. The portal never calls `django.contrib.auth.login` with this user:
the session keeps one member per program (portal/access.py), beside any staff login.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import BaseBackend
from sesame.backends import SesameBackendMixin


class MemberLinkBackend(SesameBackendMixin, BaseBackend):
    def get_user(self, user_id: Any) -> Any:
        """The active, non-staff user `user_id` that is a member's login user, else None. 1 query."""
        return (
            get_user_model()
            ._default_manager.filter(
                pk=user_id, is_active=True, is_staff=False, is_superuser=False, loyalty_member__isnull=False
            )
            .first()
        )
