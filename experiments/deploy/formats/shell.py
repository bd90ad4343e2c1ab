"""``shell``: ``novatune-apply.sh apply|rollback|check|status``. ``apply`` saves the current value of every
file it writes to a synced state file, then writes the new values; ``rollback`` restores them. The files
are the families' (``KnobExport.file``), written in the families' apply order (a block scheduler before
the queue sizes it resets)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from actuators.family import fill
from actuators.registry import REGISTRY
from actuators.sysctl import sysctl_file
from experiments.deploy.formats.common import ExportFormat, export_of, header, knob_text, note, sysctl_key, value_text
from experiments.study.results import StudyView

__all__ = ["FORMAT", "SHELL_BODY"]

INSTALL = "bash novatune-apply.sh apply   (undo: bash novatune-apply.sh rollback)"


@dataclass(frozen=True)
class _Write:
    """One file the script writes: a path, or a glob over CPUs (cpufreq)."""

    name: str
    path: str
    value: str
    glob: bool = False


def _sysctl_path(key: str) -> str | None:
    """The file the script writes for a sysctl key: the family's, else where ``sysctl`` writes it."""
    found = export_of(key)
    if found is not None and found[1].sysctl and found[1].file is not None:
        return found[1].file
    return sysctl_file(key)


def _writes(view: StudyView, doc: dict[str, Any]) -> tuple[list[_Write], list[str]]:
    """The files the script writes, in the families' apply order, and the knobs it cannot write."""
    writes: list[tuple[int, _Write]] = []
    others: list[str] = []
    for name, value in doc["knobs"].items():
        key, why = sysctl_key(view, name, value)
        found = export_of(name)
        if key:
            path = _sysctl_path(key)
            if path is None:
                others.append(knob_text(name, value))
                continue
            writes.append((REGISTRY.rank(name), _Write(name, path, value_text(value))))
        elif found is not None and found[1].file is not None and not found[1].sysctl:
            m, exp = found
            try:
                v = exp.file_value(value) if exp.file_value is not None else value_text(value)
            except ValueError:
                others.append(knob_text(name, value))
                continue
            writes.append((REGISTRY.rank(name), _Write(name, fill(exp.file or "", m.fields), v, glob=exp.glob)))
        else:
            others.append(knob_text(name, value) + why)
    return [w for _, w in sorted(writes, key=lambda p: p[0])], others


def _settings(writes: list[_Write]) -> list[str]:
    """The body of the script's ``settings`` function: ``emit FILE VALUE`` per write."""
    body = []
    for w in writes:
        q = shlex.quote(w.value)
        if w.glob:
            body += [
                "  found=0",
                f"  for f in {w.path}; do",
                f'    if [ -e "$f" ]; then emit "$f" {q}; found=1; fi',
                "  done",
                f'  [ "$found" = 1 ] || echo "novatune-apply: no CPU has {w.path.rsplit("/", 1)[1]}: '
                f'{w.name} skipped" >&2',
            ]
        else:
            body.append(f"  emit {shlex.quote(w.path)} {q}  # {w.name}")
    if not writes:
        body.append("  :  # no host setting in this export")
    return body


def render(view: StudyView, doc: dict[str, Any], include: str | None) -> str:
    writes, others = _writes(view, doc)
    lines = ["#!/bin/bash", *header("shell", INSTALL, doc)]
    lines += [
        "# apply: saves the current value of every file below to $NOVATUNE_STATE_FILE",
        "#   (default /var/lib/novatune/novatune-apply.state), syncs it, then writes the new values;",
        "#   refuses while a state file exists. rollback: restores the saved values, removes the state file.",
        "# check: exit 1 when a setting differs from the export. status: shows the saved state.",
    ]
    lines += note(others, "shell")
    return "\n".join(lines) + SHELL_BODY.replace("__SETTINGS__", "\n".join(_settings(writes)))


#: the script after its header: ``settings`` (``emit FILE VALUE`` lines, in place of ``__SETTINGS__``),
#: then apply / rollback / check / status
SHELL_BODY = r"""
set -eu

STATE_FILE=${NOVATUNE_STATE_FILE:-/var/lib/novatune/novatune-apply.state}
TAB=$(printf '\t')

die() { echo "novatune-apply: $*" >&2; exit 1; }

PLAN=$(mktemp)
REV=$(mktemp)
trap 'rm -f "$PLAN" "$REV"' EXIT

# The current value of a kernel file: the [selected] word of a choice list, tabs as spaces.
current() {
  v=$(cat -- "$1") || return 1
  case $v in
    *'['*']'*) v=${v#*\[}; v=${v%%]*} ;;
  esac
  printf '%s' "$v" | tr '\t\n' '  ' | sed 's/ *$//'
}

put() { printf '%s\n' "$2" > "$1"; }

# Every setting as FILE<TAB>VALUE, in apply order.
settings() {
  emit() { printf '%s\t%s\n' "$1" "$2"; }
__SETTINGS__
}

do_apply() {
  [ ! -e "$STATE_FILE" ] || die "$STATE_FILE exists: an earlier apply was not rolled back (run: $0 rollback)"
  settings > "$PLAN"
  while IFS=$TAB read -r path _; do
    [ -e "$path" ] || die "$path does not exist on this host; nothing changed"
  done < "$PLAN"
  mkdir -p "$(dirname "$STATE_FILE")"
  tmp="$STATE_FILE.tmp"
  : > "$tmp"
  while IFS=$TAB read -r path _; do
    printf '%s\t%s\n' "$path" "$(current "$path")" >> "$tmp"
  done < "$PLAN"
  sync
  mv -f "$tmp" "$STATE_FILE"
  sync
  while IFS=$TAB read -r path value; do
    [ "$(current "$path")" = "$value" ] && continue
    if ! put "$path" "$value"; then
      echo "novatune-apply: cannot write $value to $path; rolling back" >&2
      do_rollback || true
      exit 1
    fi
  done < "$PLAN"
  echo "applied $(wc -l < "$STATE_FILE") setting(s); previous values saved in $STATE_FILE"
}

do_rollback() {
  if [ ! -e "$STATE_FILE" ]; then
    echo "nothing to roll back: $STATE_FILE does not exist"
    return 0
  fi
  tac "$STATE_FILE" > "$REV"
  # two passes: a later write can reset an earlier one (a block scheduler resets nr_requests)
  failed=0
  for pass in 1 2; do
    failed=0
    while IFS=$TAB read -r path value; do
      if [ "$(current "$path" 2>/dev/null || echo '<unreadable>')" != "$value" ]; then
        if ! put "$path" "$value" 2>/dev/null; then
          failed=1
          [ "$pass" = 1 ] || echo "novatune-apply: could not restore $path to $value" >&2
        fi
      fi
    done < "$REV"
    [ "$failed" = 1 ] || break
  done
  [ "$failed" = 0 ] || die "rollback incomplete; $STATE_FILE kept"
  rm -f "$STATE_FILE"
  sync
  echo "rolled back; removed $STATE_FILE"
}

do_check() {
  drift=0
  settings > "$PLAN"
  while IFS=$TAB read -r path value; do
    now=$(current "$path" 2>/dev/null || echo '<unreadable>')
    if [ "$now" != "$value" ]; then
      echo "differs: $path is $now, export says $value"
      drift=1
    fi
  done < "$PLAN"
  [ "$drift" = 0 ] && echo "every setting matches the export"
  return "$drift"
}

do_status() {
  if [ -e "$STATE_FILE" ]; then
    echo "applied; saved previous values ($STATE_FILE):"
    cat -- "$STATE_FILE"
  else
    echo "not applied (no $STATE_FILE)"
  fi
}

case "${1:-}" in
  apply) do_apply ;;
  rollback) do_rollback ;;
  check) do_check ;;
  status) do_status ;;
  *) echo "usage: $0 apply|rollback|check|status  (state file: \$NOVATUNE_STATE_FILE, default $STATE_FILE)" >&2; exit 2 ;;
esac
"""  # noqa: E501 - the script's own lines


FORMAT = ExportFormat("shell", "novatune-apply.sh", INSTALL, render, mode=0o755)
