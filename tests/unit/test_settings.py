import pytest
from pydantic import ValidationError

from staybook.kernel.settings import DEMO_SECRET, Settings


def test_defaults_are_the_embedded_demo(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("STAYBOOK_"):
            monkeypatch.delenv(key)
    settings = Settings()
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.redis_url is None and settings.nats_url is None and settings.typesense_url is None
    assert settings.is_sqlite
    assert settings.jwt_keys[settings.jwt_active_key_id].get_secret_value() == DEMO_SECRET


def test_environment_variables_and_nested_sections(monkeypatch):
    monkeypatch.setenv("STAYBOOK_DATABASE_URL", "postgresql://app:pw@db:5432/staybook")
    monkeypatch.setenv("STAYBOOK_REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setenv("STAYBOOK_BOOKING__HOLD_TTL_SECONDS", "120")
    monkeypatch.setenv("STAYBOOK_LOG_LEVEL", "DEBUG")
    settings = Settings()
    assert settings.database_url == "postgresql+asyncpg://app:pw@db:5432/staybook"
    assert settings.sync_database_url == "postgresql+psycopg://app:pw@db:5432/staybook"
    assert settings.booking.hold_ttl_seconds == 120
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    "field, value",
    [
        ("database_url", "mysql://nope"),
        ("log_level", "LOUD"),
        ("outbox_batch_size", 0),
        ("bus_namespace", "Bad Namespace"),
    ],
)
def test_invalid_values_are_refused(field, value):
    with pytest.raises(ValidationError):
        Settings(**{field: value})


def test_regions_with_a_database_of_their_own_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("STAYBOOK_REGIONS__US__DATABASE_URL", "postgresql://app@pii.us.internal:5432/staybook")
    monkeypatch.setenv("STAYBOOK_REGIONS__EU__DATABASE_URL", "postgresql://app@pii.eu.internal:5432/staybook")
    settings = Settings()
    assert {region: r.database_url for region, r in settings.regions.items()} == {
        "us": "postgresql+asyncpg://app@pii.us.internal:5432/staybook",
        "eu": "postgresql+asyncpg://app@pii.eu.internal:5432/staybook",
    }
    monkeypatch.delenv("STAYBOOK_REGIONS__US__DATABASE_URL")
    monkeypatch.delenv("STAYBOOK_REGIONS__EU__DATABASE_URL")
    assert Settings().regions == {}  # one region: every user's record in database_url
    with pytest.raises(ValidationError, match="mars"):
        Settings(regions={"mars": {"database_url": "postgresql://app@pii.mars/staybook"}})
    with pytest.raises(ValidationError):
        Settings(regions={"us": {"database_url": "mysql://nope"}})


def test_active_jwt_key_must_be_one_of_the_keys():
    with pytest.raises(ValidationError):
        Settings(jwt_keys={"k1": "x" * 40}, jwt_active_key_id="k2")


def test_masked_configuration_hides_secrets_and_url_passwords():
    settings = Settings(
        database_url="postgresql://app:hunter2@db/staybook",
        secret_key="a-very-secret-value-0123456789",
        notifications={"smtp_password": "mailpass"},
    )
    shown = str(settings.masked())
    assert "hunter2" not in shown and "a-very-secret-value" not in shown and "mailpass" not in shown
    assert "app:********@db/staybook" in shown


def test_demo_secrets_are_detected():
    assert Settings().uses_demo_secrets()
    strong = "x" * 40
    assert not Settings(secret_key=strong, payments={"webhook_secret": strong}).uses_demo_secrets()


def test_photo_store_settings_choose_where_variant_urls_point():
    from staybook.catalog.media import media_url
    from staybook.kernel.settings import CatalogSettings

    local = CatalogSettings()
    assert media_url(local, "photos/p/1/thumb.jpg") == "/api/v1/media/photos/p/1/thumb.jpg"
    presigned = CatalogSettings(s3_bucket="photos", s3_endpoint_url="http://127.0.0.1:9000")
    assert media_url(presigned, "photos/p/1/thumb.jpg") == "/api/v1/media/photos/p/1/thumb.jpg"
    cdn = CatalogSettings(s3_bucket="photos", s3_public_base_url="https://cdn.example.org/")
    assert media_url(cdn, "photos/p/1/thumb.jpg") == "https://cdn.example.org/photos/p/1/thumb.jpg"
    with pytest.raises(ValueError, match="s3_bucket"):
        CatalogSettings(s3_endpoint_url="http://127.0.0.1:9000")


def test_mail_links_name_the_port_served():
    assert Settings(http_port=8501).notifications.public_base_url == "http://127.0.0.1:8501"
    assert Settings(http_host="0.0.0.0", http_port=9000).notifications.public_base_url == "http://127.0.0.1:9000"
    chosen = Settings(http_port=8501, notifications={"public_base_url": "https://book.example.org"})
    assert chosen.notifications.public_base_url == "https://book.example.org"
