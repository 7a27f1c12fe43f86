"""The database credentials in the settings: three roles, and the combinations that are refused."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from libs.platform.settings import LOCAL_PG_ADMIN_SERVER, Settings

PRODUCTION: dict[str, Any] = {
    "env": "production",
    "auth_issuer": "https://id.example",
    "auth_audience": "https://api.example",
}


def test_locally_the_services_owner_and_admin_are_three_roles() -> None:
    settings = Settings(env="local")

    assert (settings.app_role, settings.owner_role) == ("warmbee_app", "warmbee_owner")
    assert settings.pg_admin_server == LOCAL_PG_ADMIN_SERVER
    assert settings.database_url == "postgresql://warmbee_app@127.0.0.1:5432/warmbee"
    assert settings.owner_database_url == "postgresql://warmbee_owner@127.0.0.1:5432/warmbee"
    assert settings.as_owner().database_url == settings.owner_database_url


def test_role_names_and_passwords_come_from_the_urls() -> None:
    settings = Settings(
        pg_server="postgresql://svc%2Dpoints:p%40ss@db:5432", pg_owner_server="postgresql://schema_owner@db:5432"
    )

    assert (settings.app_role, settings.app_password) == ("svc-points", "p@ss")
    assert (settings.owner_role, settings.owner_password) == ("schema_owner", None)


def test_an_empty_admin_url_means_roles_and_database_are_provisioned_elsewhere() -> None:
    settings = Settings(env="local", pg_admin_server="")

    with pytest.raises(RuntimeError, match="WARMBEE_PG_ADMIN_SERVER"):
        settings.admin_url()


def test_production_has_no_admin_credential_by_default() -> None:
    settings = Settings(**PRODUCTION, pg_server="postgresql://app:x@db", pg_owner_server="postgresql://owner:y@db")

    assert settings.pg_admin_server is None


@pytest.mark.parametrize(
    ("overrides", "refusal"),
    [
        (
            {**PRODUCTION, "pg_server": "postgresql://warmbee:a@db", "pg_owner_server": "postgresql://warmbee:a@db"},
            "name the same role",
        ),
        ({**PRODUCTION, "pg_admin_server": "postgresql://postgres@db"}, "local and test only"),
        ({"pg_server": "postgresql://127.0.0.1:5432"}, "WARMBEE_PG_SERVER must name its role"),
        ({"pg_owner_server": "postgresql://db"}, "WARMBEE_PG_OWNER_SERVER must name its role"),
    ],
)
def test_nonsense_is_refused(overrides: dict[str, Any], refusal: str) -> None:
    with pytest.raises(ValidationError, match=refusal):
        Settings(**overrides)
