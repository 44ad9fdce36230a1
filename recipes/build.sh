#!/usr/bin/env bash
# Build a WASI wheel (cp314, wasm32-wasip2, for componentize-py 0.25.1) from a PyPI sdist
# by the recipe in recipes/NAME/recipe.toml.
#
#   recipes/build.sh NAME [OUT_DIR]      (OUT_DIR defaults to /tmp/wasi-wheels)
#   recipes/build.sh --check NAME        only check for the toolchain NAME's recipe needs
#
# Env: WORK (default /tmp/taipan-recipes), CARGO_TARGET_DIR (default $WORK/target/NAME),
#      NICE (default "nice -n 19": builds yield to everything else on the machine),
#      JOBS (flow c-meson: ninja -j, default 2),
#      WASI_WHEELS (default ../wheels: the WASI wheels a recipe's wasi-requires names).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
check_only=; [ "${1:-}" != --check ] || { check_only=1; shift; }
name=${1:?usage: recipes/build.sh [--check] NAME [OUT_DIR]}
out=${2:-/tmp/wasi-wheels}
recipe="$here/$name/recipe.toml"
[ -f "$recipe" ] || { echo "no recipe: $recipe" >&2; exit 2; }
WORK=${WORK:-/tmp/taipan-recipes}
NICE=${NICE:-nice -n 19}
cargo_home=${CARGO_HOME:-$HOME/.cargo}
[ -n "$check_only" ] || mkdir -p "$WORK" "$out"

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$1: $2"); }
need python3 "apt-get install python3 (3.11+, for tomllib)"
need curl "apt-get install curl"
need zstd "apt-get install zstd"
python3 -c 'import tomllib' 2>/dev/null || missing+=("python3 3.11 or newer (tomllib): apt-get install python3")
# the recipe is read with python3: without it, stop here
python3 -c 'import tomllib' 2>/dev/null || { printf 'missing: %s\n' "${missing[@]}" >&2; exit 3; }

# Recipe fields as shell variables (r_package_version, r_build_rustflags as a \x1f list, ...).
eval "$(python3 - "$recipe" <<'PY'
import shlex, sys, tomllib
r = tomllib.load(open(sys.argv[1], "rb"))
def emit(prefix, d):
    for k, v in d.items():
        key = f"{prefix}_{k}".replace("-", "_")
        if isinstance(v, dict):
            emit(key, v)
        elif isinstance(v, list):
            print(f"{key}={shlex.quote(chr(31).join(map(str, v)))}")
        else:
            print(f"{key}={shlex.quote(str(v))}")
emit("r", r)
env = r.get("build", {}).get("env", {})
print("r_env_keys=" + shlex.quote(" ".join(env)))
PY
)"
ver=$r_package_version

# --- toolchain -------------------------------------------------------------------------
if [ "$r_build_flow" = rust-pyo3 ]; then
  if command -v rustup >/dev/null; then
    export RUSTUP_TOOLCHAIN=$r_toolchain_rust
    rustup run "$RUSTUP_TOOLCHAIN" rustc --version >/dev/null 2>&1 \
      || missing+=("rust $r_toolchain_rust: rustup toolchain install $r_toolchain_rust --target wasm32-wasip2")
  fi
  need cargo "install Rust $r_toolchain_rust (rustup) with target wasm32-wasip2"
  if command -v rustc >/dev/null && ! [ -d "$(rustc --print sysroot 2>/dev/null)/lib/rustlib/wasm32-wasip2" ]; then
    missing+=("rust target wasm32-wasip2: rustup target add --toolchain $r_toolchain_rust wasm32-wasip2")
  fi
  need "$r_build_env_CARGO_TARGET_WASM32_WASIP2_LINKER" "apt-get install lld-22 (Debian; gives wasm-ld-22)"
fi
if [ "$r_build_flow" = c ]; then
  need "$r_build_cc" "apt-get install clang-22 (Debian)"
  need "$r_build_ld" "apt-get install lld-22 (Debian; gives wasm-ld-22)"
  need dpkg-deb "apt-get install dpkg"
fi
if [ "$r_build_flow" = c-meson ]; then
  need clang-22 "apt-get install clang-22 (Debian)"
  need clang++-22 "apt-get install clang-22 (Debian)"
  need wasm-ld-22 "apt-get install lld-22 (Debian; gives wasm-ld-22)"
  need llvm-ar-22 "apt-get install llvm-22 (Debian; gives llvm-ar-22)"
  [ -f /usr/lib/llvm-22/lib/clang/22/lib/wasi/libclang_rt.builtins-wasm32.a ] \
    || missing+=("compiler-rt for wasm32: apt-get install libclang-rt-22-dev-wasm32 (Debian)")
  need dpkg-deb "apt-get install dpkg"
  need patch "apt-get install patch"
  python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=("python3 venv: apt-get install python3-venv")
fi
[ ${#missing[@]} -eq 0 ] || { printf 'missing: %s\n' "${missing[@]}" >&2; exit 3; }
if [ -n "$check_only" ]; then echo "toolchain for $name: complete"; exit 0; fi

# --- sources ---------------------------------------------------------------------------
fetch() {  # url sha256 dest
  if ! { [ -f "$3" ] && echo "$2  $3" | sha256sum -c --status; }; then
    curl -fsSL --retry 3 -o "$3.part" "$1"
    echo "$2  $3.part" | sha256sum -c --status || { echo "sha256 mismatch: $1" >&2; exit 4; }
    mv "$3.part" "$3"
  fi
}
mkdir -p "$WORK/downloads"
if [ -n "${r_source_url:-}" ]; then   # no url: a local source ([source] files, flow c)
  sdist="$WORK/downloads/$(basename "$r_source_url")"
  fetch "$r_source_url" "$r_source_sha256" "$sdist"
fi

# componentize-py's libpython3.14.so and libc.so: the libraries the extension links against
cpy=componentize-py-$r_toolchain_componentize_py
libdir="$WORK/$cpy/lib"
if [ ! -f "$libdir/libpython3.14.so" ]; then
  crate="$WORK/downloads/$cpy.crate"
  fetch "https://static.crates.io/crates/componentize-py/$r_toolchain_componentize_py/download" \
        "$r_toolchain_componentize_py_sha256" "$crate"
  mkdir -p "$libdir"
  tar -xzf "$crate" -C "$WORK" "$cpy/libpython3.14.so.zst" "$cpy/libc.so.zst"
  for f in libpython3.14.so libc.so; do zstd -q -d -f "$WORK/$cpy/$f.zst" -o "$libdir/$f"; done
fi

src="$WORK/src/$name-$ver"
rm -rf "$src" && mkdir -p "$src"
if [ -n "${r_source_url:-}" ]; then
  tar -xzf "$sdist" -C "$src" --strip-components=1
else   # the recipe folder's [source] files; PKG-INFO (-> METADATA) from [package]
  IFS=$'\x1f' read -r -a files <<< "$r_source_files"
  for f in "${files[@]}"; do install -D -m 644 "$here/$name/$f" "$src/$f"; done
  printf 'Metadata-Version: 2.1\nName: %s\nVersion: %s\nSummary: %s\n' \
    "$r_package_name" "$ver" "$r_package_summary" > "$src/PKG-INFO"
fi

# --- build -----------------------------------------------------------------------------
subst() { local s=${1//\{libdir\}/$libdir}; s=${s//\{src\}/$src}; printf '%s' "${s//\{cargo_home\}/$cargo_home}"; }
for k in $r_env_keys; do v="r_build_env_$k"; export "$k=$(subst "${!v}")"; done
r_package_module=${r_package_module:-}   # flow c-meson: no one module
so_name="${r_package_module##*.}.cpython-314-wasm32-wasi.so"
so_dir="${r_package_module%.*}"; so_dir="${so_dir//.//}"
[ "$r_package_module" = "${r_package_module#*.}" ] && so_dir=.   # a top-level module

# Flow "c": clang -c each [build] sources, wasm-ld -shared against componentize-py's libs.
# Headers, unpacked (not installed) from the Debian .debs in [headers]: CPython's from
# libpython3.14-dev, with a pyconfig.h made for WASI (below); libc's from wasi-libc.
c_headers() {  # sets pyinc and sysroot
  local h="$WORK/c-headers" d f url sha
  rm -rf "$h" && mkdir -p "$h"
  for d in python wasi_libc; do
    url="r_headers_${d}_deb"; sha="r_headers_${d}_deb_sha256"; f="$WORK/downloads/$(basename "${!url}")"
    [ -f "$f" ] || echo "fetching ${!url} (gone from the pool? put that .deb in $WORK/downloads, or bump [headers])" >&2
    fetch "${!url}" "${!sha}" "$f"
    dpkg-deb -x "$f" "$h/$d"
  done
  sysroot="$h/wasi_libc/usr"
  pyinc="$h/python3.14"
  cp -r "$h/python/usr/include/python3.14" "$pyinc"
  local crate="$WORK/downloads/$cpy.crate"
  fetch "https://static.crates.io/crates/componentize-py/$r_toolchain_componentize_py/download" \
        "$r_toolchain_componentize_py_sha256" "$crate"
  tar -xzf "$crate" -O "$cpy/python-lib.tar.zst" | zstd -q -d | tar -x -C "$h" _sysconfigdata__wasi_wasm32-wasi.py
  # pyconfig.h: Debian's (x86_64) as the template; every "#define K V" / "/* #undef K */"
  # takes K's value from componentize-py's sysconfigdata (which parsed its own pyconfig.h,
  # keys starting A-Z; 0 = undefined). Keys starting "_" are not there: Debian's value,
  # except those below (CPython's configure defines the three _WASI_EMULATED_* on WASI:
  # libpython3.14.so needs the three libwasi-emulated-*.so).
  python3 - "$h/_sysconfigdata__wasi_wasm32-wasi.py" "$h"/python/usr/include/x86_64-linux-gnu/python3.14/pyconfig.h \
    "$pyinc/pyconfig.h" <<'PY'
import importlib.util, re, sys
data, template, out = sys.argv[1:]
spec = importlib.util.spec_from_file_location("sysconfigdata", data)
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
conf = mod.build_time_vars
wasi = {"_WASI_EMULATED_SIGNAL": 1, "_WASI_EMULATED_GETPID": 1, "_WASI_EMULATED_PROCESS_CLOCKS": 1,
        "_REENTRANT": 0, "_PYTHREAD_NAME_MAXLEN": 0, "_Py_FFI_SUPPORT_C_COMPLEX": 0,
        "_Py_HACL_CAN_COMPILE_VEC128": 0, "_Py_HACL_CAN_COMPILE_VEC256": 0}
rx = re.compile(r"^(?:#define ([A-Za-z_]\w*) (.*)|/\* #undef ([A-Za-z_]\w*) \*/)$")
lines = ["/* pyconfig.h for componentize-py's CPython (wasm32-wasip2), made by recipes/build.sh */"]
for line in open(template).read().splitlines():
    m = rx.match(line)
    if m:
        key = m.group(1) or m.group(3)
        val = wasi[key] if key in wasi else conf.get(key, 0) if key[0].isupper() else (m.group(2) or 0)
        line = f"#define {key} {val}" if val != 0 else f"/* #undef {key} */"
    lines.append(line)
open(out, "w").write("\n".join(lines) + "\n")
PY
}
build_c() {  # sets built
  c_headers
  local s cflags ldflags sources objs=() obj="$WORK/obj/$name"
  csubst() { local v; v=$(subst "$1"); v=${v//\{pyinc\}/$pyinc}; printf '%s' "${v//\{sysroot\}/$sysroot}"; }
  IFS=$'\x1f' read -r -a cflags <<< "$(csubst "$r_build_cflags")"
  IFS=$'\x1f' read -r -a ldflags <<< "$(csubst "$r_build_ldflags")"
  IFS=$'\x1f' read -r -a sources <<< "$r_build_sources"
  rm -rf "$obj" && mkdir -p "$obj"
  for s in "${sources[@]}"; do
    objs+=("$obj/${s%.*}.o")
    (cd "$src" && $NICE "$r_build_cc" "${cflags[@]}" -c "$s" -o "$obj/${s%.*}.o")
  done
  $NICE "$r_build_ld" "${ldflags[@]}" -o "$obj/$so_name" "${objs[@]}"
  built="$obj/$so_name"
}

# Flow "c-meson": the sdist's own meson build (numpy), cross-compiled for wasm32-wasip2.
# The toolchain, in $WORK/meson-toolchain (made anew each build):
# - the "c" flow's headers (c_headers), plus libc++'s headers ([headers] libcxx-deb: ABI
#   v2 and no threads, like componentize-py's libc++.so) in the sysroot, and
#   componentize-py's libc.so, libc++.so, libc++abi.so, libpython3.14.so and
#   libwasi-emulated-*.so beside wasi-libc's libc.a: a -shared link (an extension module)
#   takes the .so files, meson's link checks (executables) take libc.a;
# - bin/wasi-clang, bin/wasi-clang++ (clang-22 for the sysroot, linking with wasm-ld-22):
#   a -shared link gets the flags of a componentize-py dylib (see the script);
# - build-details.json (PEP 739) for meson's -Dpython.build_config: CPython 3.14 with its
#   extension suffix, headers and libpython3.14.so; the host python3 only runs numpy's
#   code generators and Cython on the build machine;
# - a venv of the host python3 with [build] requires, and the meson cross file.
build_meson() {  # sets tree (the installed site-packages tree)
  c_headers
  local tc="$WORK/meson-toolchain" f lib
  rm -rf "$tc" && mkdir -p "$tc/bin"
  f="$WORK/downloads/$(basename "$r_headers_libcxx_deb")"
  fetch "$r_headers_libcxx_deb" "$r_headers_libcxx_deb_sha256" "$f"
  dpkg-deb -x "$f" "$tc/libcxx"
  mkdir -p "$sysroot/include/wasm32-wasip2/c++"
  cp -r "$tc/libcxx/usr/lib/llvm-22/include/wasm32-wasi/c++/v1" "$sysroot/include/wasm32-wasip2/c++/"
  for lib in libc.so libc++.so libc++abi.so libpython3.14.so libwasi-emulated-signal.so \
             libwasi-emulated-getpid.so libwasi-emulated-process-clocks.so; do
    tar -xzf "$WORK/downloads/$cpy.crate" -O "$cpy/$lib.zst" | zstd -q -d > "$sysroot/lib/wasm32-wasip2/$lib"
  done
  cat > "$tc/bin/wasi-clang" <<'SH'
#!/usr/bin/env bash
# clang-22 (wasi-clang++: clang++-22) for wasm32-wasip2 and $WASI_SYSROOT (the cross file
# adds -fuse-ld=lld to links: wasm-ld-22). Meson links a Python extension module with -shared: that link gets the flags
# of a componentize-py dylib: no crt1/entry, exports PyInit_<module> (from -o) and the C++
# ctors only (--no-export-dynamic), no debug info. Meson takes wasm-ld for ELF ld.lld and
# passes ELF-only flags: those are dropped.
set -e
clang=clang-22; [ "${0##*/}" = wasi-clang++ ] && clang=clang++-22
args=() shared= out= prev=
for a in "$@"; do
  case "$a" in
    -Wl,--as-needed|-Wl,--no-as-needed|-Wl,--allow-shlib-undefined|-Wl,--start-group|-Wl,--end-group) ;;
    *) args+=("$a") ;;
  esac
  [ "$a" = -shared ] && shared=1
  [ "$prev" = -o ] && out=$a
  prev=$a
done
cc=("$clang" --target=wasm32-wasip2 "--sysroot=$WASI_SYSROOT"
    "-ffile-prefix-map=$WASI_SYSROOT=/wasi-sysroot" "-ffile-prefix-map=$WASI_PYINC=/python3.14")
if [ -n "$shared" ]; then
  mod=${out##*/}; mod=${mod%%.*}
  exec "${cc[@]}" "${args[@]}" -nostartfiles -Wl,--no-entry -Wl,--no-export-dynamic \
    "-Wl,--export=PyInit_$mod" -Wl,--export-if-defined=__wasm_call_ctors -Wl,--strip-debug -lcxa_abort
fi
exec "${cc[@]}" "${args[@]}"
SH
  chmod +x "$tc/bin/wasi-clang" && ln -s wasi-clang "$tc/bin/wasi-clang++"
  export WASI_SYSROOT=$sysroot WASI_PYINC=$pyinc
  # __cxa_throw for C++ built with -fexceptions (cxa_abort.c): an archive, so a module
  # that throws nothing links nothing of it
  "$tc/bin/wasi-clang" -O2 -fPIC -c "$here/cxa_abort.c" -o "$tc/cxa_abort.o"
  llvm-ar-22 rcs "$sysroot/lib/wasm32-wasip2/libcxa_abort.a" "$tc/cxa_abort.o"
  cat > "$tc/build-details.json" <<JSON
{"schema_version": "1.0", "base_prefix": "$tc", "platform": "wasi-0.0.0-wasm32",
 "language": {"version": "3.14", "version_info": {"major": 3, "minor": 14, "micro": 0, "releaselevel": "final", "serial": 0}},
 "implementation": {"name": "cpython", "cache_tag": "cpython-314", "hexversion": 51249392,
   "version": {"major": 3, "minor": 14, "micro": 0, "releaselevel": "final", "serial": 0}},
 "abi": {"flags": [], "extension_suffix": ".cpython-314-wasm32-wasi.so", "stable_abi_suffix": ".abi3.so"},
 "suffixes": {"source": [".py"], "bytecode": [".pyc"], "extensions": [".cpython-314-wasm32-wasi.so", ".abi3.so", ".so"]},
 "libpython": {"dynamic": "$sysroot/lib/wasm32-wasip2/libpython3.14.so", "link_extensions": true},
 "c_api": {"headers": "$pyinc"}}
JSON
  python3 -m venv "$tc/venv"
  IFS=$'\x1f' read -r -a reqs <<< "$r_build_requires"
  "$tc/venv/bin/pip" install -q --disable-pip-version-check "${reqs[@]}"
  # [build] wasi-requires: WASI wheels from ../wheels, unpacked in $tc/wasi-site. The
  # host python cannot import them (wasm .so files): numpy is offered to it as a
  # stand-in package with numpy's .pxd files (for Cython's `cimport numpy`) and a
  # get_include() naming the WASI numpy's headers (its _numpyconfig.h is wasm32's).
  local dep whl; IFS=$'\x1f' read -r -a wdeps <<< "${r_build_wasi_requires:-}"
  for dep in "${wdeps[@]}"; do
    [ -n "$dep" ] || continue
    whl=$(ls "${WASI_WHEELS:-$here/../wheels}/$dep"-*-cp314-cp314-wasi_0_0_0_wasm32.whl 2>/dev/null | head -1)
    [ -n "$whl" ] || { echo "wasi-requires: no $dep WASI wheel in ${WASI_WHEELS:-$here/../wheels} (build it first: recipes/build.sh $dep)" >&2; exit 3; }
    python3 -m zipfile -e "$whl" "$tc/wasi-site"
    case "$dep" in
      numpy)
        mkdir -p "$tc/shim/numpy"
        cp "$tc/wasi-site/numpy/"*.pxd "$tc/shim/numpy/"
        printf 'def get_include():\n    return %s\n' "'$tc/wasi-site/numpy/_core/include'" > "$tc/shim/numpy/__init__.py"
        ;;
      *) echo "wasi-requires: build.sh knows no stand-in for $dep" >&2; exit 2 ;;
    esac
  done
  [ ! -d "$tc/shim" ] || export PYTHONPATH="$tc/shim${PYTHONPATH:+:$PYTHONPATH}"
  export PATH="$tc/bin:$tc/venv/bin:$PATH"
  local props; props=$(printf '%s\n' "${r_build_cross_properties//$'\x1f'/$'\n'}")
  # [build] cpp-args, as a meson list (default: no exceptions, like componentize-py's libc++)
  local cpp_args; cpp_args=$(python3 -c 'import sys; print(repr(sys.argv[1].split("\x1f")))' \
    "${r_build_cpp_args:-$(printf '%s\x1f%s' -fPIC -fno-exceptions)}")
  cat > "$tc/cross.ini" <<INI
[binaries]
c = 'wasi-clang'
cpp = 'wasi-clang++'
ar = 'llvm-ar-22'
strip = 'llvm-strip-22'
python = 'python3'
cython = 'cython'
pkg-config = 'false'

[host_machine]
system = 'wasi'
cpu_family = 'wasm32'
cpu = 'wasm32'
endian = 'little'

[properties]
needs_exe_wrapper = true
# meson's sanity checks link and (Cython's) compile against the build machine's Python
skip_sanity_check = true
$props

[built-in options]
c_args = ['-fPIC']
cpp_args = $cpp_args
c_link_args = ['-fuse-ld=lld']
cpp_link_args = ['-fuse-ld=lld']
INI
  local p; IFS=$'\x1f' read -r -a patches <<< "${r_build_patches:-}"
  for p in "${patches[@]}"; do [ -z "$p" ] || patch -d "$src" -p1 --quiet < "$here/$name/$p"; done
  local meson=(meson); [ -z "${r_build_meson:-}" ] || meson=(python3 "$src/$r_build_meson")
  IFS=$'\x1f' read -r -a margs <<< "$r_build_meson_args"
  local bld="$WORK/build/$name"
  rm -rf "$bld" "$tc/install"
  $NICE "${meson[@]}" setup "$bld" "$src" --cross-file "$tc/cross.ini" \
    "-Dpython.build_config=$tc/build-details.json" --prefix=/ \
    -Dpython.platlibdir=/site-packages -Dpython.purelibdir=/site-packages "${margs[@]}"
  $NICE ninja -C "$bld" -j "${JOBS:-2}"
  local tags=(); [ -z "${r_build_install_tags:-}" ] || tags=(--tags "$r_build_install_tags")
  "${meson[@]}" install -C "$bld" --no-rebuild --quiet --destdir "$tc/install" "${tags[@]}"
  tree="$tc/install/site-packages"
  built="$bld"
}
# Checks every extension module (wasmcheck.py; every import is exported by a
# componentize-py library or by another module of the wheel), then packs the tree.
pack_meson() {
  local so mod dist stage="$WORK/stage/$name-$ver"
  rm -rf "$stage" && mkdir -p "$WORK/stage" && cp -r "$tree" "$stage"
  local x; IFS=$'\x1f' read -r -a excl <<< "${r_build_exclude:-}"
  for x in "${excl[@]}"; do [ -z "$x" ] || rm -rf "${stage:?}/$x"; done
  for f in $(grep -rlF "$WORK" "$stage" || true); do sed -i "s|$WORK|/work|g" "$f"; done   # __config__.py
  for so in $(find "$stage" -name '*.cpython-314-wasm32-wasi.so' | sort); do
    mod=${so##*/}; mod=${mod%%.*}
    python3 "$here/wasmcheck.py" "$so" --expect-export "PyInit_$mod" > "$WORK/wasmcheck.txt" \
      || { cat "$WORK/wasmcheck.txt"; exit 5; }
    sed -n 1p "$WORK/wasmcheck.txt"
  done
  python3 - "$sysroot/lib/wasm32-wasip2" "$stage" <<'PY'
import glob, os, sys
sys.path.insert(0, os.environ["RECIPES"])
from wasmcheck import parse
libs, stage = sys.argv[1:]
mods = sorted(glob.glob(f"{stage}/**/*.cpython-314-wasm32-wasi.so", recursive=True))
have = set()
for f in glob.glob(f"{libs}/*.so") + mods:
    have |= {n for n, _ in parse(open(f, "rb").read())["exports"]}
linker = {"memory", "__indirect_function_table", "__stack_pointer", "__memory_base", "__table_base"}
bad = 0
for f in mods:
    m = parse(open(f, "rb").read())
    miss = sorted({n for mod, n, _ in m["imports"] if mod in ("env", "GOT.mem", "GOT.func")} - have - linker)
    if miss:
        bad = 1; print(f"ERROR: {os.path.relpath(f, stage)} imports what nothing exports: {miss}")
print(f"{len(mods)} extension modules, {sum(os.path.getsize(f) for f in mods):,} bytes")
sys.exit(bad)
PY
  dist="$(echo "$r_package_name" | sed -E 's/[-_.]+/_/g' | tr A-Z a-z)-$ver.dist-info"
  sed -n 's/^License-File: //p' "$src/PKG-INFO" | while read -r f; do
    install -D -m 644 "$src/$f" "$stage/$dist/licenses/$f"
  done
  python3 "$here/wheel.py" "$stage" "$src/PKG-INFO" "$r_wheel_tag" "$out"
}

start=$(date +%s)
case "$r_build_flow" in
  rust-pyo3)
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$WORK/target/$name}
    export PYO3_CONFIG_FILE="$WORK/$name-pyo3.cfg"
    printf '%s\n' implementation=CPython version=3.14 shared=true abi3=false \
      lib_name=python3.14 "lib_dir=$libdir" pointer_width=32 build_flags= \
      suppress_build_script_link_lines=false > "$PYO3_CONFIG_FILE"
    export CARGO_ENCODED_RUSTFLAGS="$(subst "$r_build_rustflags")"
    IFS=$'\x1f' read -r -a cargo_args <<< "$r_build_cargo_args"
    (cd "$src" && $NICE cargo build "${cargo_args[@]}")
    built="$CARGO_TARGET_DIR/wasm32-wasip2/release/$r_build_cargo_lib.wasm"
    ;;
  c) build_c ;;
  c-meson) build_meson ;;
  *) echo "unknown flow: $r_build_flow" >&2; exit 2 ;;
esac
echo "built in $(( $(date +%s) - start ))s: $built"

if [ "$r_build_flow" = c-meson ]; then export RECIPES=$here; pack_meson; exit; fi

# --- check and pack --------------------------------------------------------------------
python3 "$here/wasmcheck.py" "$built" --expect-export "PyInit_${r_package_module##*.}"
stage="$WORK/stage/$name-$ver"
rm -rf "$stage" && mkdir -p "$stage"
[ -z "${r_package_python_source:-}" ] || cp -r "$src/$r_package_python_source/." "$stage/"
mkdir -p "$stage/$so_dir" && cp "$built" "$stage/$so_dir/$so_name"
IFS=$'\x1f' read -r -a lics <<< "${r_package_licenses:-}"
python3 "$here/wheel.py" "$stage" "$src/PKG-INFO" "$r_wheel_tag" "$out" "${lics[@]/#/$src/}"
