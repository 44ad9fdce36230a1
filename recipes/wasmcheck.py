#!/usr/bin/env python3
"""Inspect a WebAssembly shared library (dylink.0) built as a CPython extension.

usage: wasmcheck.py FILE.so [--expect-export PyInit_x]
Prints needed libs, import modules and exports; exits 1 when the module would not
link into a componentize-py 0.25.1 component (see recipes/README.md).
"""
import sys

def leb(b, i):
    r = s = 0
    while True:
        x = b[i]; i += 1
        r |= (x & 0x7F) << s; s += 7
        if x < 0x80:
            return r, i

def name(b, i):
    n, i = leb(b, i)
    return b[i:i + n].decode(), i + n

def limits(b, i):
    flags = b[i]; i += 1
    _, i = leb(b, i)
    if flags & 1:
        _, i = leb(b, i)
    return i

def parse(b):
    assert b[:4] == b"\0asm" and b[4:8] == b"\1\0\0\0", "not a core wasm module"
    i, out = 8, {"imports": [], "exports": [], "custom": [], "needed": []}
    while i < len(b):
        sid = b[i]; size, i = leb(b, i + 1); end = i + size
        if sid == 0:
            n, j = name(b, i); out["custom"].append((n, size))
            if n == "dylink.0":
                while j < end:
                    sub = b[j]; ln, j = leb(b, j + 1); sub_end = j + ln
                    if sub == 2:  # WASM_DYLINK_NEEDED
                        cnt, j = leb(b, j)
                        for _ in range(cnt):
                            lib, j = name(b, j); out["needed"].append(lib)
                    j = sub_end
        elif sid == 2:
            cnt, j = leb(b, i)
            for _ in range(cnt):
                mod, j = name(b, j); fld, j = name(b, j); kind = b[j]; j += 1
                if kind == 0: _, j = leb(b, j)           # func: type idx
                elif kind == 1: j = limits(b, j + 1)      # table: reftype + limits
                elif kind == 2: j = limits(b, j)          # memory
                elif kind == 3: j += 2                    # global: valtype + mut
                elif kind == 4: j += 1; _, j = leb(b, j)  # tag
                out["imports"].append((mod, fld, kind))
        elif sid == 7:
            cnt, j = leb(b, i)
            for _ in range(cnt):
                n, j = name(b, j); kind = b[j]; _, j = leb(b, j + 1)
                out["exports"].append((n, kind))
        i = end
    return out

def main(argv):
    path = argv[1]
    expect = [argv[k + 1] for k, a in enumerate(argv) if a == "--expect-export"]
    m = parse(open(path, "rb").read())
    mods = {}
    for mod, fld, _ in m["imports"]:
        mods.setdefault(mod, []).append(fld)
    print(f"{path}: needed={m['needed']}")
    for mod, flds in sorted(mods.items()):
        print(f"  import {mod}: {len(flds)}")
    inits = [n for n, _ in m["exports"] if n.startswith("PyInit_")]
    print(f"  exports: {len(m['exports'])}, PyInit_*: {inits}")
    print(f"  custom sections: {', '.join(f'{n}({s})' for n, s in m['custom'])}")
    ok_mods = {"env", "GOT.mem", "GOT.func"}
    bad = [mod for mod in mods if mod not in ok_mods and not mod.startswith("wasi")]
    errs = []
    if "dylink.0" not in [n for n, _ in m["custom"]]:
        errs.append("no dylink.0 section: not a shared library (link with -shared)")
    if bad:
        errs.append(f"unexpected import modules: {bad}")
    if any(mod.startswith("wasi:http") or mod.startswith("wasi:sockets") for mod in mods):
        errs.append("imports wasi:http/wasi:sockets: link with --no-export-dynamic")
    for e in expect:
        if e not in [n for n, _ in m["exports"]]:
            errs.append(f"missing export {e}")
    if len(m["exports"]) > 1000:  # PyInit_* plus GOT-referenced symbols is a few hundred
        errs.append(f"{len(m['exports'])} exports: link with --no-export-dynamic")
    for e in errs:
        print("ERROR:", e)
    return 1 if errs else 0

if __name__ == "__main__":
    sys.exit(main(sys.argv))
