"""The body of the shell export's script: ``novatune-apply.sh apply|rollback|check|status``.

:func:`experiments.export.render` puts the header and the ``settings`` lines
(``emit FILE VALUE`` in apply order, from the knob families' files) in front
of it, in place of ``__SETTINGS__``. ``apply`` saves the current value of
every file to a synced state file before writing; ``rollback`` restores them.
"""

from __future__ import annotations

__all__ = ["SHELL_BODY"]

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
