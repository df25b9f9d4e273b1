"""Typed settings: environment variables, an optional TOML file, defaults that run on one machine.

Precedence (highest first): explicit arguments, environment variables, the TOML file, defaults.
The three contract variables are unprefixed (`DISCORD_TOKEN`, `OLLAMA_HOST`, `DATABASE_URL`);
every other setting can be given as `BOT_<NAME>` (for example `BOT_CHAT_MODEL=qwen3`) or as
`<name> = ...` in the TOML file named by `BOT_CONFIG` (default `bot.toml` when it exists).
"""

from __future__ import annotations

import os
import re
import zoneinfo
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_CONFIG_FILE = "bot.toml"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///data/bot.db"
DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"
_GO_DURATION = re.compile(r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|ms|s|m|h))+")


def keep_alive_value(text: str) -> str | float:
    """Ollama's keep_alive from what a person wrote: a number is seconds (negative: forever),
    anything else must be a Go duration ("10m", "1h30m", "-1m"). Ollama refuses a unitless
    string such as "10" with a 400, so numbers are sent as numbers. ValueError otherwise."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    if not _GO_DURATION.fullmatch(text):
        raise ValueError(
            f"keep_alive {text[:40]!r} is neither seconds nor a duration like 10m, 1h or 1h30m"
        )
    return text


class McpServerSettings(BaseModel):
    """One MCP server whose tools the models may call (`[[mcp_servers]]` in the TOML)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,23}$")
    """Its tools are offered to the model as `<name>__<tool>`."""
    command: str | None = None
    """Start the server as this program and speak to it over stdin/stdout (stdio)..."""
    args: list[str] = Field(default_factory=list)
    url: str | None = None
    """...or reach it at this streamable HTTP URL."""
    guild_ids: list[int] = Field(default_factory=list)
    """The guilds whose channels may use it; empty: every guild (never DMs)."""

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSettings:
        if (self.command is None) == (self.url is None):
            raise ValueError(f"MCP server {self.name!r}: give either `command` or `url`")
        return self


class Settings(BaseSettings):
    """Everything the bot can be told. Field names are also the TOML keys."""

    model_config = SettingsConfigDict(
        env_prefix="BOT_",
        extra="forbid",
        populate_by_name=True,
        frozen=True,
    )

    discord_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DISCORD_TOKEN", "discord_token")
    )
    ollama_host: str = Field(
        default=DEFAULT_OLLAMA_HOST, validation_alias=AliasChoices("OLLAMA_HOST", "ollama_host")
    )
    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        validation_alias=AliasChoices("DATABASE_URL", "database_url"),
    )

    chat_model: str = "llama3.2"
    """Model used when neither the command nor the channel names one."""

    edit_interval: float = Field(default=1.0, gt=0)
    """Seconds between edits of one streaming message (the final edit is never held back)."""

    edits_per_second: float = Field(default=25.0, gt=0)
    """Streaming edits of all replies together per second (Discord allows a bot about 50
    requests a second in all); with many replies at once each is updated less often."""

    reply_reserve_tokens: int = Field(default=1024, ge=64)
    """Room kept free in the context window for the model's reply."""

    context_tokens_max: int = Field(default=8192, ge=256)
    """Upper bound for the context window, whatever the model could take. The window (this, the
    model's context length and a persona's num_ctx, whichever is least) is sent to Ollama as
    num_ctx with every request, so that Ollama runs the model with the window the bot plans."""

    summarise_history: bool = True
    """Turns that no longer fit the window are summarised by the channel's model (in the
    background, after a reply) and the summary stands in for them; false: they are left out,
    and the reply's footer says how many."""

    speaker_names: bool = True
    """In guild channels where several people talk to the bot, each user turn sent to the model
    starts with its speaker's display name ("Alice: ..."), never an id or a mention."""

    model_info_ttl: float = Field(default=300.0, ge=0)
    """Seconds that a model's /api/show answer (context length, capabilities) is cached."""

    first_token_timeout: float = Field(default=120.0, gt=0)
    between_tokens_timeout: float = Field(default=60.0, gt=0)
    total_timeout: float = Field(default=600.0, gt=0)

    message_content_intent: bool = False
    """Ask Discord for the privileged Message Content intent (switch it on in the developer portal
    too). Needed only to answer without a mention: auto-reply channels and the bot's threads."""

    # --- Access -------------------------------------------------------------------------
    allow_dms: bool = False
    """Answer direct messages (and slash commands in DMs)."""
    allowed_user_ids: list[int] = Field(default_factory=list)
    """If set, only these users (or members of allowed_role_ids) may use the bot."""
    denied_user_ids: list[int] = Field(default_factory=list)
    allowed_role_ids: list[int] = Field(default_factory=list)
    denied_role_ids: list[int] = Field(default_factory=list)
    allowed_channel_ids: list[int] = Field(default_factory=list)
    """If set, the bot answers only in these channels (and their threads)."""
    denied_channel_ids: list[int] = Field(default_factory=list)

    admin_role_ids: list[int] = Field(default_factory=list)
    """Members with one of these roles count as bot admins, besides those with Manage Server."""
    owner_ids: list[int] = Field(default_factory=list)
    """Users who count as the bot's owners, besides the application's owner (or its team's
    admins and developers). Owners alone change the Ollama server that every guild shares
    (`/model pull`, `/model delete`)."""
    admin_guild_ids: list[int] = Field(default_factory=list)
    """Guilds whose members with Manage Server count as bot owners too (your own server)."""

    # --- Fairness -------------------------------------------------------------------------
    user_requests_per_minute: int = Field(default=10, ge=0)
    """Requests one user may make per minute (0: no limit)."""
    ollama_num_parallel: int = Field(default=1, ge=1)
    """OLLAMA_NUM_PARALLEL of the Ollama servers: generations each runs at once (Ollama's
    default is 1). Raise it together with Ollama's."""
    max_parallel_generations: int | None = Field(default=None, ge=1)
    """Generations at once in all; unset: ollama_num_parallel times the number of Ollama hosts.
    More than Ollama runs would wait inside Ollama, unseen, with the first-token timeout
    counting the wait; here they wait in the bot's line, where people see their place."""
    max_queue: int = Field(default=50, ge=0)
    """Requests that may wait for a free slot; one more is refused at once (0: none wait)."""
    refusal_notice_interval: float = Field(default=60.0, ge=0)
    """Seconds between two public refusal notices (rate limit, full line, empty mention) for
    one member; a message cannot be answered privately, so the rest are silent."""
    max_reply_tokens: int = Field(default=4096, ge=0)
    """The most tokens one reply may have (sent to Ollama as num_predict; 0: no limit)."""
    max_reply_messages: int = Field(default=10, ge=1)
    """The most Discord messages one reply may fill; past it the reply ends with a note."""
    shutdown_grace: float = Field(default=20.0, ge=0)
    """Seconds replies in progress get to finish when the bot is asked to stop."""

    interaction_token_ttl: float = Field(default=900.0, gt=0)
    """Seconds a slash command's token works (Discord: 15 minutes); after that a reply carries
    on through the channel. Only tests change it."""

    # --- Retention ------------------------------------------------------------------------
    retention_days: float | None = Field(default=None, gt=0)
    """Delete turns older than this many days (unset: keep them)."""
    retention_max_turns: int | None = Field(default=None, ge=1)
    """Keep at most this many turns per channel, the newest (unset: no limit)."""
    retention_interval: float = Field(default=3600.0, gt=0)
    """Seconds between two retention runs in the background."""

    history_show_turns: int = Field(default=10, ge=1, le=50)

    # ---- model management (/model) ----
    model_list_page_size: int = Field(default=10, ge=1, le=10)
    """Models per page of /model list (one line each; ten always fit in one message)."""
    model_names_ttl: float = Field(default=30.0, ge=0)
    """Seconds that the installed models' names are cached for autocomplete."""
    pull_progress_interval: float = Field(default=1.0, gt=0)
    """Seconds between edits of a pull's progress message (the final edit is never held back)."""
    pull_stall_timeout: float = Field(default=300.0, gt=0)
    """A pull that reports no progress for this many seconds is given up."""
    model_delete_confirm_timeout: float = Field(default=60.0, gt=0)
    """Seconds the Confirm/Cancel buttons of /model delete wait for an answer."""

    dev_guild_id: int | None = None
    """Commands are synced to this guild instantly (development); others get global sync."""

    sync_commands_on_start: bool = True
    """Sync slash commands at start when the command tree changed since the last sync."""

    auto_migrate: bool = True
    """Apply pending database migrations at start; when false, refuse to start on an old schema."""

    log_level: str = "INFO"

    # --- Images, captions and sentiment (issue 4) -------------------------------------------
    vision_model: str | None = "llava"
    """Answers image turns (and /caption) when the chat model has no `vision` capability in
    /api/show. Empty: none; image turns on a text-only model are then refused."""
    sentiment_model: str | None = None
    """Model for /sentiment; empty means the chat model (`chat_model`)."""
    caption_prompt: str = Field(default="Describe this image.", min_length=1)
    """What /caption (and an image sent with no text) asks the vision model."""
    image_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    """Largest image file accepted, in bytes."""
    image_max_pixels: int = Field(default=50_000_000, ge=10_000)
    """Images with more pixels are refused unread (decompression bombs)."""
    image_max_side: int = Field(default=1024, ge=64, le=4096)
    """Images are downscaled to this longest side (pixels) before they are sent and stored."""
    images_per_turn: int = Field(default=4, ge=1, le=10)
    """Most images per message, and per context sent to the model."""
    image_followup_turns: int = Field(default=3, ge=0, le=20)
    """How many of the channel's latest questions keep their images in the context, so that a
    follow-up about a picture lets the model see it again (0: never re-sent)."""

    # --- Scaling and observability (issue 7) ----------------------------------------------
    shard_count: int | None = Field(default=None, ge=1)
    """Discord shards in all; unset: the number Discord recommends (GET /gateway/bot)."""
    shard_ids: list[int] | None = None
    """The shards this process runs (needs shard_count); unset: all of them."""
    ollama_hosts: list[str] = Field(default_factory=list)
    """Several Ollama servers: each generation goes to the least busy one that has the model.
    Empty: OLLAMA_HOST alone."""
    ollama_host_retry: float = Field(default=5.0, gt=0)
    """Seconds before a host that failed is tried again (doubling while it stays down, at most
    a minute)."""
    ollama_tags_ttl: float = Field(default=10.0, ge=0)
    """Seconds that each host's list of models (/api/tags) is cached for routing."""
    ollama_ps_ttl: float = Field(default=2.0, ge=0)
    """Seconds that each host's loaded models (/api/ps) are cached for routing and the
    loading notice (read again after each generation)."""

    # --- Capacity (issue 19) -----------------------------------------------------------------
    keep_alive: str | None = None
    """How long Ollama keeps a model loaded after a request, sent with every generation: a
    duration ("10m", "1h"), seconds, -1 (forever) or 0 (unload at once). Unset: Ollama's own
    (OLLAMA_KEEP_ALIVE, 5 minutes)."""
    keep_alive_per_model: dict[str, str] = Field(default_factory=dict)
    """keep_alive for particular models (model name -> value), over `keep_alive`; a persona's
    own keep_alive comes first."""
    fallback_models: list[str] = Field(default_factory=list)
    """Models that answer instead when every host with the asked model is down, or when
    `fallback_after_queue` requests wait ahead: the first one a host that answers has."""
    fallback_after_queue: int = Field(default=0, ge=0)
    """With fallback_models: a request that finds this many or more waiting ahead of it goes to
    a fallback (0: never because of the line)."""
    daily_token_quota: int = Field(default=0, ge=0)
    """Tokens (read and written) one member may use a day, counted per UTC day (0: no quota)."""
    role_token_quotas: dict[int, int] = Field(default_factory=dict)
    """Role id -> daily token quota, over daily_token_quota for members with the role (the
    highest of their roles applies; 0: no quota)."""

    @field_validator("keep_alive", mode="before")
    @classmethod
    def _check_keep_alive(cls, value: Any) -> str | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        text = str(value).strip()
        keep_alive_value(text)
        return text

    @field_validator("keep_alive_per_model", mode="before")
    @classmethod
    def _check_keep_alive_per_model(cls, value: Any) -> Any:
        if isinstance(value, dict):
            value = {str(k): str(v).strip() for k, v in value.items()}
            for text in value.values():
                keep_alive_value(text)
        return value

    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """Serve Prometheus metrics at http://metrics_host:metrics_port/metrics; unset: off."""
    metrics_host: str = "127.0.0.1"
    """Address the metrics endpoint binds (0.0.0.0 exposes it on every interface)."""
    log_format: Literal["text", "json"] = "text"
    """`json`: one JSON object per log line (time, level, logger, message and extra fields)."""

    # --- Diagnostics (issue 8) -------------------------------------------------------------
    loop_lag_log_interval: float = Field(default=0.0, ge=0)
    """Seconds between INFO log lines with the event loop's lag (p50/p99/max); 0: off. For
    benchmarks and for finding what slows a busy bot down."""

    # --- Tools (issue 16) ---------------------------------------------------------------------
    tools_default: bool = False
    """Whether models may call tools in channels that have not chosen (`/tools enabled:`)."""
    tool_rounds_max: int = Field(default=6, ge=1, le=20)
    """Rounds of tool calls one reply may make; a model still asking after that is stopped."""
    tool_timeout: float = Field(default=20.0, gt=0)
    """Seconds one tool call may take (a web page, an MCP server); then the model is told it
    timed out."""
    tool_output_tokens: int = Field(default=1000, ge=50)
    """The most tokens of one tool's result sent to the model (the rest is cut)."""
    timezone: str = "UTC"
    """The time zone `current_time` answers in (an IANA name, e.g. Europe/Paris)."""
    web_tools: bool = False
    """Offer `fetch_url` and `web_search`: the bot then fetches public web pages the model
    asks for, and sends search queries to the search backend. Off by default."""
    search_backend_url: str | None = None
    """A SearxNG instance for `web_search` (its JSON format must be enabled)."""
    ollama_web_search_key: SecretStr | None = None
    """Or an ollama.com API key, for Ollama's web search API (used when no SearxNG is set)."""
    fetch_max_bytes: int = Field(default=1_000_000, ge=1024)
    """The most bytes `fetch_url` reads of one page."""
    mcp_servers: list[McpServerSettings] = Field(default_factory=list)
    """MCP servers whose tools the models may call, each limited to some guilds."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from exc
        return value

    @field_validator("search_backend_url")
    @classmethod
    def _empty_url_is_none(cls, value: str | None) -> str | None:
        return (value or "").strip().rstrip("/") or None

    @field_validator("mcp_servers")
    @classmethod
    def _unique_servers(cls, value: list[McpServerSettings]) -> list[McpServerSettings]:
        names = [server.name for server in value]
        if len(set(names)) != len(names):
            raise ValueError("mcp_servers names a server twice")
        return value

    @field_validator("vision_model", "sentiment_model")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return (value or "").strip() or None

    # ---- Personas (/persona) ----------------------------------------------------------------
    persona_create_permission: Literal["everyone", "manage_channels", "admins"] = "manage_channels"
    """Who may create personas (admins: Manage Server or an admin role)."""
    persona_use_permission: Literal["everyone", "manage_channels", "admins"] = "manage_channels"
    """Who may set or clear a channel's persona (`/persona use`, `/persona reset`)."""
    persona_delete_permission: Literal["author", "admins"] = "author"
    """Who may delete a persona: its author or an admin (`author`), or only admins."""
    max_personas_per_guild: int = Field(default=25, ge=0)
    """Most personas one guild may create (built-in ones do not count; 0: none)."""

    # --- Thinking models ------------------------------------------------------------------
    default_think: Literal["default", "off", "on", "low", "medium", "high"] = "default"
    """Thinking level when neither the message, the channel (`/think`) nor the persona sets
    one; `default` sends no `think` at all (Ollama decides: thinking models think)."""
    sentiment_think: bool = False
    """Let the model think before a /sentiment answer (slower; the label is the same JSON)."""

    # --- Privacy ---------------------------------------------------------------------------
    guild_data_grace_days: float = Field(default=0.0, ge=0)
    """Days a guild's history, personas and channel settings are kept after the bot is removed
    from it (0: deleted at once). Added back in time, nothing is lost."""

    # ---- Knowledge (/kb, files in chat) -------------------------------------------------------
    embedding_model: str = "nomic-embed-text"
    """The Ollama model that embeds knowledge and questions. Changing it re-embeds every chunk
    in the background (the old vectors serve until a guild's new ones are complete)."""
    knowledge_chunk_tokens: int = Field(default=300, ge=32, le=4096)
    """Most tokens (estimated) in one chunk of a document."""
    knowledge_chunk_overlap: int = Field(default=40, ge=0)
    """Tokens of a chunk's last paragraphs repeated at the start of the next."""
    knowledge_top_k: int = Field(default=5, ge=1, le=50)
    """Most chunks retrieved for one chat turn (and shown by `/kb search`)."""
    knowledge_share: float = Field(default=0.25, gt=0, le=0.5)
    """Share of the context window that knowledge and attached files may fill in one turn."""
    knowledge_min_score: float = Field(default=0.5, ge=-1, le=1)
    """Relevance floor: chunks less similar to the question (cosine) are never used."""
    knowledge_max_file_bytes: int = Field(default=8 * 1024 * 1024, ge=1)
    """Largest file read (in chat or `/kb add`), checked before download."""
    knowledge_max_pdf_pages: int = Field(default=200, ge=1)
    """Most pages of a PDF read."""
    knowledge_max_chars: int = Field(default=500_000, ge=1)
    """Most characters of text taken from one file."""
    knowledge_permission: Literal["everyone", "manage_channels", "admins"] = "manage_channels"
    """Who may add to and remove from the knowledge base (everyone may search it)."""

    @field_validator("ollama_host")
    @classmethod
    def _normalise_host(cls, value: str) -> str:
        return _host_url(value)

    @field_validator("ollama_hosts")
    @classmethod
    def _normalise_hosts(cls, value: list[str]) -> list[str]:
        hosts = [_host_url(host) for host in value if host.strip()]
        if len(set(hosts)) != len(hosts):
            raise ValueError("ollama_hosts names a host twice")
        return hosts

    @model_validator(mode="after")
    def _check_chunks(self) -> Settings:
        if self.knowledge_chunk_overlap >= self.knowledge_chunk_tokens:
            raise ValueError("knowledge_chunk_overlap must be smaller than knowledge_chunk_tokens")
        return self

    @model_validator(mode="after")
    def _check_shards(self) -> Settings:
        if self.shard_ids is None:
            return self
        if self.shard_count is None:
            raise ValueError("shard_ids needs shard_count (the number of shards in all)")
        if not self.shard_ids:
            raise ValueError("shard_ids is empty; leave it unset to run every shard")
        wrong = [i for i in self.shard_ids if not 0 <= i < self.shard_count]
        if wrong:
            raise ValueError(f"shard ids {wrong} are outside 0..{self.shard_count - 1}")
        if len(set(self.shard_ids)) != len(self.shard_ids):
            raise ValueError("shard_ids names a shard twice")
        return self

    @property
    def parallel_generations(self) -> int:
        """`max_parallel_generations`, or by default what the Ollama hosts run at once."""
        return self.max_parallel_generations or self.ollama_num_parallel * len(self.ollama_urls)

    @property
    def ollama_urls(self) -> list[str]:
        """The Ollama servers to use: `ollama_hosts`, or else OLLAMA_HOST alone."""
        return list(self.ollama_hosts) or [self.ollama_host]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    def redacted(self) -> dict[str, Any]:
        """The settings as shown by `check` and in logs: the token never appears, nor the
        password (or user-info) of any URL."""
        from bot.logs import mask_secrets  # a leaf module; imported here to keep settings light

        shown = self.model_dump()
        shown["discord_token"] = "set (hidden)" if self.discord_token else "not set"
        for key in ("database_url", "ollama_host"):
            shown[key] = mask_secrets(shown[key])
        shown["ollama_hosts"] = [mask_secrets(url) for url in self.ollama_hosts]
        if self.search_backend_url:
            shown["search_backend_url"] = mask_secrets(self.search_backend_url)
        for server in shown["mcp_servers"]:
            if server.get("url"):
                server["url"] = mask_secrets(server["url"])
        return shown


def _host_url(value: str) -> str:
    value = value.strip().rstrip("/")
    if "://" not in value:
        # Like the ollama client: "0.0.0.0:11434" and "myhost" mean http.
        value = f"http://{value}"
    return value


class ConfigFileError(Exception):
    """The file named by BOT_CONFIG does not exist."""


def _config_file() -> Path | None:
    named = os.environ.get("BOT_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigFileError(f"BOT_CONFIG names {path}, which is not a file.")
        return path
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment and the TOML file; `overrides` win (used by tests)."""
    return Settings(**overrides)
