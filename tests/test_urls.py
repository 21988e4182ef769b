"""Where the key may go: `next` links are followed as path and query on the configured root."""

from __future__ import annotations

import pytest
from cekura_sessions.api.errors import ConfigError
from cekura_sessions.api.urls import check_base_url, on_api_root

ROOT = "https://api.cekura.ai"
PAGE_2 = "/test_framework/v1/scenario-improvement-sessions/?page=2&project_id=7"


@pytest.mark.parametrize("link", [
    pytest.param(f"https://api.cekura.ai{PAGE_2}", id="as-configured"),
    pytest.param(f"http://api.cekura.ai{PAGE_2}", id="plain-http-from-behind-a-tls-proxy"),
    pytest.param(f"http://web-1.internal:8000{PAGE_2}", id="the-app-server-by-name"),
    pytest.param(f"https://elsewhere.example{PAGE_2}", id="another-host"),
    pytest.param(PAGE_2, id="relative"),
])
def test_a_next_link_is_its_path_and_query_on_the_api_root(link):
    assert on_api_root(ROOT, link) == ROOT + PAGE_2


def test_a_root_with_a_path_keeps_the_links_full_path():
    assert on_api_root("https://gateway.example/cekura", "http://web-1:8000/cekura/x/?page=2") == \
        "https://gateway.example/cekura/x/?page=2"


@pytest.mark.parametrize("url", ["http://user:pw1234@127.0.0.1:8765", "https://pw1234@api.cekura.ai"])
def test_a_base_url_with_a_user_or_password_is_refused_without_showing_it(url):
    with pytest.raises(ConfigError) as caught:
        check_base_url(url)
    assert "pw1234" not in str(caught.value) and "CEKURA_API_KEY" in str(caught.value)
