"""web_search against Ollama's web search API (a local stand-in speaking its shape): the key
goes in the Authorization header, the query in the body, and nothing else is sent."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.tools.registry import ToolContext
from bot.tools.web import AddressGuard, WebClient, WebSearch


async def test_web_search_through_ollamas_api_sends_the_key_and_the_query() -> None:
    seen: list[tuple[str | None, Any]] = []

    async def search(request: web.Request) -> web.Response:
        seen.append((request.headers.get("Authorization"), await request.json()))
        results = [{"title": "Ollama", "url": "https://ollama.com", "content": "run models"}]
        return web.json_response({"results": results})

    app = web.Application()
    app.router.add_post("/api/web_search", search)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = WebClient(AddressGuard())
    try:
        tool = WebSearch(
            client, ollama_key="secret-key", ollama_url=f"http://127.0.0.1:{port}/api/web_search"
        )
        output = await tool.run({"query": "local  models"}, ToolContext(1, 2, 3))
    finally:
        await client.close()
        await runner.cleanup()
    assert seen == [("Bearer secret-key", {"query": "local models", "max_results": 5})]
    assert "run models" in output.text and "<untrusted_web_content" in output.text
