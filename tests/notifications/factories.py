import factory

from notifications.models import EventType, WebhookEndpoint
from tests.loyalty.factories import ProgramFactory


class WebhookEndpointFactory(factory.django.DjangoModelFactory):
    """Subscribed to every event; the URL is set by the tests (a loopback receiver)."""

    class Meta:
        model = WebhookEndpoint

    program = factory.SubFactory(ProgramFactory)
    url = "https://hooks.example.com/loyalty"
    description = factory.Sequence(lambda n: f"Endpoint {n}")
    events = factory.LazyFunction(lambda: list(EventType.values))
