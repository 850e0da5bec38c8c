# Sourced by tools/start-local-network and tools/run-tests (not a command of its own).
#
# use_project_python EXTRAS: set PYTHON to an interpreter that has this checkout installed
# (editable, compat mode) with the given extras ("" or "test"), making it if needed:
#
#   - PYTHON already set to a virtual environment's interpreter: use that one as it is.
#   - otherwise: a virtual environment in the checkout, $PILOT_VENV (default .venv), made
#     with ${PYTHON:-python3}.  Nothing is ever installed into a system or shared interpreter
#     (a stock Debian/Ubuntu python3 refuses it anyway: "externally-managed-environment").
#
# The editable install must use compat mode: setuptools' default editable mode imports the
# checkout through a finder that Twisted's plugin scanner cannot see, so twistd would not
# know the pilot-* commands.  Compat mode puts the checkout itself on sys.path.

MINIMUM_PYTHON=(3 11)

python_env_fail() {
  echo "error: $*" >&2
  exit 1
}

is_virtual_environment() {
  "$1" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)' 2>/dev/null
}

check_python_version() {
  local python=$1 version
  version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) ||
    python_env_fail "cannot run $python; install Python ${MINIMUM_PYTHON[0]}.${MINIMUM_PYTHON[1]} or newer," \
      "or name one with PYTHON=/path/to/python3 $0"
  if ! "$python" -c "import sys; sys.exit(sys.version_info[:2] < (${MINIMUM_PYTHON[0]}, ${MINIMUM_PYTHON[1]}))"; then
    python_env_fail "pilotnet needs Python ${MINIMUM_PYTHON[0]}.${MINIMUM_PYTHON[1]} or newer, but $python is $version." \
      "Install a newer one (Debian/Ubuntu: apt-get install python3.11 python3.11-venv) and run" \
      "PYTHON=python3.11 $0"
  fi
}

# Debian and Ubuntu ship venv's ensurepip in a separate package (python3-venv or python3.X-venv).
ensure_venv_module() {
  local python=$1 version
  "$python" -c 'import ensurepip, venv' 2>/dev/null && return 0
  version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "installing python${version}-venv (this Python cannot make virtual environments without it)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python${version}-venv" >/dev/null ||
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null ||
      python_env_fail "could not install python${version}-venv with apt-get"
    "$python" -c 'import ensurepip, venv' 2>/dev/null && return 0
  fi
  python_env_fail "$python cannot make a virtual environment (the venv/ensurepip module is missing)." \
    "On Debian/Ubuntu: sudo apt-get install python${version}-venv, then run $0 again."
}

use_project_python() {
  local extras=$1 requirement=. stamp_file stamp installed
  [[ -n $extras ]] && requirement=".[$extras]"
  if [[ -n ${PYTHON:-} ]] && is_virtual_environment "$PYTHON"; then
    check_python_version "$PYTHON"
  else
    local base=${PYTHON:-python3} venv=${PILOT_VENV:-.venv}
    check_python_version "$base"
    if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import pip' 2>/dev/null; then
      ensure_venv_module "$base"
      echo "making a virtual environment in $venv (with $base)"
      rm -rf "$venv"
      "$base" -m venv "$venv" || python_env_fail "could not make a virtual environment in $venv"
    fi
    [[ $venv == /* ]] || venv=$(pwd)/$venv
    PYTHON=$venv/bin/python
  fi
  # Reinstall only when the packaging or the extras changed: the install is editable, so
  # code changes need nothing.
  stamp_file=$("$PYTHON" -c 'import sys; print(sys.prefix)')/.pilotnet-install
  stamp="$(pwd) $(cksum < setup.cfg) $(cksum < pyproject.toml)"
  installed=$(cat "$stamp_file" 2>/dev/null || true)
  if [[ ${installed%|*} != "$stamp" ]] || [[ $requirement != . && ${installed##*|} != "$requirement" ]] ||
      ! (cd / && "$PYTHON" -c 'import pilotnet' 2>/dev/null); then
    echo "installing pilotnet into $("$PYTHON" -c 'import sys; print(sys.prefix)')..."
    "$PYTHON" -m pip install --quiet --disable-pip-version-check \
      --config-settings editable_mode=compat -e "$requirement" ||
      python_env_fail "pip could not install pilotnet (see above)"
    # The check that matters: twistd, started from elsewhere, sees the pilot-* plugins.
    [[ $(cd / && "$PYTHON" -c "from twisted.scripts.twistd import run; run()" --help) == *pilot-daemon* ]] ||
      python_env_fail "twistd does not see the pilot-* plugins after the install"
    echo "$stamp|$requirement" > "$stamp_file"
  fi
  export PYTHON
}
