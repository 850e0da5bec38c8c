"""Shell completion scripts for bash and zsh, generated from the command catalogue.

Nothing here is written by hand per command: the command names, the
sub-commands of ``daemon`` and ``task``, each command's flags and its
description all come from :data:`pilotnet.cli.catalogue.COMMANDS`, so a new
command completes as soon as it is in the catalogue.
"""

from __future__ import annotations

import shlex

from pilotnet.cli import catalogue

_ALWAYS = ("--json", "--help", "--home")


def _top_level() -> list:
    return sorted({command.name.split(" ", 1)[0] for command in catalogue.COMMANDS})


def _subcommands(group: str) -> list:
    return [c.name.split(" ", 1)[1] for c in catalogue.COMMANDS if c.name.startswith(group + " ")]


def _flags(command) -> str:
    return " ".join([f"--{flag}" for flag in sorted(command.flags)] + list(_ALWAYS))


def bash() -> str:
    groups = "|".join(catalogue.GROUPS)
    lines = [
        "# bash completion for pilotctl (generated: pilotctl completion bash)",
        "_pilotctl() {",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" key flags',
        "    if [ \"$COMP_CWORD\" -eq 1 ]; then",
        f"        COMPREPLY=($(compgen -W {shlex.quote(' '.join(_top_level()))} -- \"$cur\")); return",
        "    fi",
        '    key="${COMP_WORDS[1]}"',
        '    case "$key" in',
        f"        {groups})",
        '            if [ "$COMP_CWORD" -eq 2 ]; then',
        '                case "$key" in',
    ]
    for group in catalogue.GROUPS:
        words = shlex.quote(" ".join(_subcommands(group)))
        lines.append(f'                    {group}) COMPREPLY=($(compgen -W {words} -- "$cur"));;')
    lines += [
        "                esac",
        "                return",
        "            fi",
        '            key="$key ${COMP_WORDS[2]}";;',
        "    esac",
        '    case "$key" in',
    ]
    for command in catalogue.COMMANDS:
        lines.append(f"        {shlex.quote(command.name)}) flags={shlex.quote(_flags(command))};;")
    lines += [
        f"        *) flags={shlex.quote(' '.join(_ALWAYS))};;",
        "    esac",
        '    if [[ "$cur" == -* ]]; then',
        '        COMPREPLY=($(compgen -W "$flags" -- "$cur"))',
        "    else",
        '        COMPREPLY=($(compgen -f -- "$cur"))',
        "    fi",
        "}",
        "complete -F _pilotctl pilotctl",
    ]
    return "\n".join(lines) + "\n"


def _zsh_item(name: str, description: str) -> str:
    escaped = name.replace(":", "\\:")  # zsh's _describe splits name from description at a colon
    return shlex.quote(f"{escaped}:{description}")


def zsh() -> str:
    descriptions: dict[str, str] = {}
    for command in catalogue.COMMANDS:
        top = command.name.split(" ", 1)[0]
        descriptions.setdefault(top, f"{top} commands" if top in catalogue.GROUPS else command.description)
    lines = [
        "#compdef pilotctl",
        "# zsh completion for pilotctl (generated: pilotctl completion zsh)",
        "_pilotctl() {",
        "    local -a items flags",
        "    local key",
        "    if (( CURRENT == 2 )); then",
        "        items=(" + " ".join(_zsh_item(name, descriptions[name]) for name in _top_level()) + ")",
        "        _describe command items; return",
        "    fi",
        "    key=$words[2]",
        "    case $key in",
    ]
    for group in catalogue.GROUPS:
        items = " ".join(_zsh_item(sub, catalogue.BY_NAME[f"{group} {sub}"].description)
                         for sub in _subcommands(group))
        lines += [
            f"        {group})",
            f"            if (( CURRENT == 3 )); then items=({items}); _describe command items; return; fi",
            '            key="$key $words[3]";;',
        ]
    lines += ["    esac", "    case $key in"]
    for command in catalogue.COMMANDS:
        lines.append(f"        {shlex.quote(command.name)}) flags=({_flags(command)});;")
    lines += [
        f"        *) flags=({' '.join(_ALWAYS)});;",
        "    esac",
        "    if [[ $PREFIX == -* ]]; then compadd -- $flags; else _files; fi",
        "}",
        'if [ "$funcstack[1]" = "_pilotctl" ]; then _pilotctl "$@"; else compdef _pilotctl pilotctl; fi',
    ]
    return "\n".join(lines) + "\n"


SHELLS = {"bash": bash, "zsh": zsh}
