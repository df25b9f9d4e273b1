"""Discord's limits on what a bot sends that its OpenAPI document does not state: message
bodies (content, embeds, allowed mentions), components (ids, lengths, rows, selects) and
application commands (names, options, sizes)."""

from __future__ import annotations

from typing import Any

from tests.doubles.discord.constants import FLAG_COMPONENTS_V2
from tests.doubles.discord.records import _add_error


def _embed_length(embed: dict[str, Any]) -> int:
    """Characters that count toward the 6,000 per message embed limit."""
    total = len(embed.get("title") or "") + len(embed.get("description") or "")
    total += len((embed.get("footer") or {}).get("text") or "")
    total += len((embed.get("author") or {}).get("name") or "")
    for item in embed.get("fields") or []:
        total += len(item.get("name") or "") + len(item.get("value") or "")
    return total


def _message_limit_errors(body: dict[str, Any]) -> dict[str, Any]:
    """Hand-written limits the OpenAPI schemas do not state for bots."""
    errors: dict[str, Any] = {}
    content = body.get("content")
    if isinstance(content, str) and len(content) > 2000:
        _add_error(errors, ["content"], "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
    embeds = body.get("embeds")
    if (
        isinstance(embeds, list)
        and all(isinstance(e, dict) for e in embeds)
        and sum(_embed_length(e) for e in embeds) > 6000
    ):
        _add_error(
            errors, ["embeds"], "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000"
        )
    components = body.get("components")
    flags = body.get("flags") or 0
    v2 = isinstance(flags, int) and flags & FLAG_COMPONENTS_V2
    if isinstance(components, list) and not v2 and len(components) > 5:
        _add_error(errors, ["components"], "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
    if isinstance(components, list):
        _component_errors(components, errors, v2=bool(v2))
    allowed = body.get("allowed_mentions")
    if isinstance(allowed, dict):
        parse = allowed.get("parse") or []
        for kind in ("users", "roles"):
            if isinstance(parse, list) and kind in parse and allowed.get(kind):
                _add_error(
                    errors,
                    ["allowed_mentions"],
                    "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                    f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.',
                )
    return errors


# Component limits (https://discord.com/developers/docs/components/reference).
BUTTON, STRING_SELECT = 2, 3
SELECT_TYPES = (3, 5, 6, 7, 8)
ROW_WIDTH = 5  # a button takes 1 of a row's 5 places, a select all 5


def _component_errors(components: list[Any], errors: dict[str, Any], *, v2: bool) -> None:
    """Discord's component rules: custom ids unique within the message and at most 100
    characters, button labels at most 80, at most 5 buttons (or one select) a row, select
    options and values within their limits."""
    seen: set[str] = set()

    def walk(component: Any, path: list[str | int]) -> None:
        if not isinstance(component, dict):
            return
        kind = component.get("type")
        custom_id = component.get("custom_id")
        if isinstance(custom_id, str):
            if len(custom_id) > 100:
                _add_error(
                    errors,
                    [*path, "custom_id"],
                    "BASE_TYPE_MAX_LENGTH",
                    "Must be 100 or fewer in length.",
                )
            elif custom_id in seen:
                _add_error(
                    errors,
                    [*path, "custom_id"],
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                    "Component custom id cannot be duplicated",
                )
            seen.add(custom_id)
        label = component.get("label")
        if kind == BUTTON and isinstance(label, str) and len(label) > 80:
            _add_error(
                errors, [*path, "label"], "BASE_TYPE_MAX_LENGTH", "Must be 80 or fewer in length."
            )
        if kind in SELECT_TYPES:
            _select_errors(component, path, errors)
        children = component.get("components")
        if kind == 1 and isinstance(children, list):
            width = sum(
                ROW_WIDTH if isinstance(c, dict) and c.get("type") in SELECT_TYPES else 1
                for c in children
            )
            if width > ROW_WIDTH:
                _add_error(
                    errors,
                    [*path, "components"],
                    "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                    "The specified component exceeds the maximum width",
                )
        if isinstance(children, list):
            for index, child in enumerate(children):
                walk(child, [*path, "components", index])
        for key in ("component", "accessory"):
            if isinstance(component.get(key), dict):
                walk(component[key], [*path, key])

    for index, component in enumerate(components):
        walk(component, ["components", index])


def _select_errors(
    component: dict[str, Any], path: list[str | int], errors: dict[str, Any]
) -> None:
    """A select's values: 0-25 minimum, 1-25 maximum, minimum not above maximum; a string
    select has 1-25 options with distinct values and a maximum no larger than its options."""
    low, high = component.get("min_values"), component.get("max_values")
    if isinstance(low, int) and not 0 <= low <= 25:
        code = "NUMBER_TYPE_MAX" if low > 25 else "NUMBER_TYPE_MIN"
        _add_error(errors, [*path, "min_values"], code, "int value should be between 0 and 25.")
    if isinstance(high, int) and not 1 <= high <= 25:
        code = "NUMBER_TYPE_MAX" if high > 25 else "NUMBER_TYPE_MIN"
        _add_error(errors, [*path, "max_values"], code, "int value should be between 1 and 25.")
    if isinstance(low, int) and isinstance(high, int) and low > high:
        _add_error(
            errors,
            [*path, "min_values"],
            "SELECT_COMPONENT_MIN_VALUES_ABOVE_MAX",
            "min_values must be less than or equal to max_values",
        )
    if component.get("type") != STRING_SELECT:
        return
    options = component.get("options")
    if not isinstance(options, list):
        return
    if not 1 <= len(options) <= 25:
        _add_error(
            errors,
            [*path, "options"],
            "BASE_TYPE_BAD_LENGTH",
            "Must be between 1 and 25 in length.",
        )
    values: set[Any] = set()
    for index, option in enumerate(options):
        if not isinstance(option, dict):
            continue
        for key in ("label", "value", "description"):
            text = option.get(key)
            if isinstance(text, str) and len(text) > 100:
                _add_error(
                    errors,
                    [*path, "options", index, key],
                    "BASE_TYPE_MAX_LENGTH",
                    "Must be 100 or fewer in length.",
                )
        if option.get("value") in values:
            _add_error(
                errors,
                [*path, "options", index, "value"],
                "SELECT_COMPONENT_OPTION_VALUE_DUPLICATED",
                "Select component option values must be unique",
            )
        values.add(option.get("value"))
    if isinstance(high, int) and high > len(options):
        _add_error(
            errors,
            [*path, "max_values"],
            "SELECT_COMPONENT_MAX_VALUES_ABOVE_OPTIONS",
            "max_values must be less than or equal to the number of options",
        )


# --------------------------------------------------------------------------- commands

COMMAND_SIZE_LIMIT = 8000
SUBCOMMAND, SUBCOMMAND_GROUP = 1, 2


def _valid_command_name(name: str) -> bool:
    """Discord's ``^[-_'\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]{1,32}$``: letters and numbers of
    any script, Devanagari and Thai (their marks included), '-', '_' and "'"."""
    return 1 <= len(name) <= 32 and all(
        ch.isalnum() or ch in "-_'" or "\u0900" <= ch <= "\u097f" or "\u0e00" <= ch <= "\u0e7f"
        for ch in name
    )


def _command_size(command: dict[str, Any]) -> int:
    """Characters counted towards the 8,000 per command: names, descriptions and choice values
    (and names) of the command, its subcommands, groups and options."""
    total = len(str(command.get("name") or "")) + len(str(command.get("description") or ""))
    for option in command.get("options") or []:
        if isinstance(option, dict):
            total += _command_size(option)
            for choice in option.get("choices") or []:
                if isinstance(choice, dict):
                    total += len(str(choice.get("name") or "")) + len(str(choice.get("value", "")))
    return total


def _options_errors(options: Any, path: list[str | int], errors: dict[str, Any]) -> None:
    """Rules of one level of options: at most 25, names valid, lower case and unique,
    descriptions 1-100, required ones first, never autocomplete with choices."""
    if not isinstance(options, list):
        return
    if len(options) > 25:
        _add_error(errors, path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    names: set[str] = set()
    optional_seen = False
    for index, option in enumerate(options):
        if not isinstance(option, dict):
            continue
        here = [*path, index]
        name = str(option.get("name") or "")
        if not _valid_command_name(name) or name != name.lower():
            _add_error(
                errors,
                [*here, "name"],
                "APPLICATION_COMMAND_INVALID_NAME",
                "Command name is invalid",
            )
        elif name in names:
            _add_error(
                errors,
                [*here, "name"],
                "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                "Option names must be unique",
            )
        names.add(name)
        if not 1 <= len(option.get("description") or "") <= 100:
            _add_error(
                errors,
                [*here, "description"],
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 100 in length.",
            )
        kind = option.get("type")
        if kind in (SUBCOMMAND, SUBCOMMAND_GROUP):
            _options_errors(option.get("options"), [*here, "options"], errors)
            continue
        if option.get("required"):
            if optional_seen:
                _add_error(
                    errors,
                    here,
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            optional_seen = True
        if option.get("autocomplete") and option.get("choices"):
            _add_error(
                errors,
                [*here, "autocomplete"],
                "APPLICATION_COMMAND_OPTION_AUTOCOMPLETE_CHOICES",
                "Autocomplete cannot be enabled on an option with choices",
            )


def _command_errors(commands: list[Any]) -> dict[str, Any]:
    """Discord's validation of application commands (bulk overwrite: every command at once)."""
    errors: dict[str, Any] = {}
    names: set[tuple[int, str]] = set()
    for index, command in enumerate(commands):
        if not isinstance(command, dict):
            continue
        name = str(command.get("name", ""))
        command_type = int(command.get("type") or 1)
        if command_type == 1:
            if not _valid_command_name(name) or name != name.lower():
                _add_error(
                    errors,
                    [index, "name"],
                    "APPLICATION_COMMAND_INVALID_NAME",
                    "Command name is invalid",
                )
            if not 1 <= len(command.get("description") or "") <= 100:
                _add_error(
                    errors,
                    [index, "description"],
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )
            _options_errors(command.get("options"), [index, "options"], errors)
        else:  # user and message context menus: free names, no description, no options
            if not 1 <= len(name) <= 32:
                _add_error(
                    errors,
                    [index, "name"],
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 32 in length.",
                )
            if command.get("description"):
                _add_error(
                    errors,
                    [index, "description"],
                    "APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION",
                    "Context menu commands cannot have description",
                )
            if command.get("options"):
                _add_error(
                    errors,
                    [index, "options"],
                    "APPLICATION_COMMAND_CONTEXT_MENU_OPTIONS",
                    "Context menu commands cannot have options",
                )
        if (command_type, name) in names:
            _add_error(
                errors,
                [index, "name"],
                "APPLICATION_COMMANDS_DUPLICATE_NAME",
                "Application command names must be unique",
            )
        names.add((command_type, name))
        if _command_size(command) > COMMAND_SIZE_LIMIT:
            _add_error(
                errors,
                [index],
                "APPLICATION_COMMAND_TOO_LARGE",
                f"Command exceeds maximum size ({COMMAND_SIZE_LIMIT})",
            )
    return errors
