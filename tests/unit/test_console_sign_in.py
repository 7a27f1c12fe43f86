"""The console's sign-in at the programme's OpenID provider, as the pages service configures it: offered only
on the console, only with a provider and a console client, and the page may then talk to that provider's
origin and to nothing more."""

from __future__ import annotations

import pytest

from libs.platform.settings import Settings
from services.pages.entrypoints.web import api_urls, provider_sign_in, security_headers

PROVIDER = {"auth_issuer": "https://id.example.gov.cn/realms/warmbee/", "auth_audience": "https://api.warmbee"}


def settings(**values: object) -> Settings:
    return Settings.model_validate({"env": "local", **values})


def test_the_console_gets_the_provider_and_its_client_and_other_pages_do_not() -> None:
    s = settings(**PROVIDER, console_client_id="warmbee-console", auth_role_claim="realm_access.roles")
    assert provider_sign_in(s, "operator") == {
        "issuer": "https://id.example.gov.cn/realms/warmbee",
        "client_id": "warmbee-console",
        "audience": "https://api.warmbee",
        "role_claim": "realm_access.roles",
    }
    assert provider_sign_in(s, "rider") is None
    assert provider_sign_in(s, "partner") is None


@pytest.mark.parametrize("values", [{}, PROVIDER, {"console_client_id": "warmbee-console"}])
def test_without_a_provider_and_a_console_client_only_the_pasted_token_is_offered(values: dict[str, str]) -> None:
    assert provider_sign_in(settings(**values), "operator") is None


def test_the_content_security_policy_adds_the_providers_origin_and_nothing_else() -> None:
    urls = api_urls(settings(), ("points",))
    plain = security_headers(urls)["Content-Security-Policy"]
    signed = security_headers(urls, ("https://id.example.gov.cn",))["Content-Security-Policy"]
    assert signed == plain.replace(
        f"connect-src {urls['points']};", f"connect-src {urls['points']} https://id.example.gov.cn;"
    )
    assert "form-action 'none'" in signed
    assert "script-src 'self';" in signed
