#!/usr/bin/env python3
"""Pack a staged tree into a wheel, byte-for-byte reproducibly.

usage: wheel.py STAGE_DIR PKG-INFO TAG OUT_DIR [LICENSE_FILE ...]

STAGE_DIR holds the files that go to site-packages (package dirs, the .so).
METADATA is the sdist's PKG-INFO as is; WHEEL says Root-Is-Purelib: false and
the one TAG; RECORD lists every file with its sha256 (urlsafe base64, no padding).
Entries are sorted, dated 1980-01-01 and stored deflated, so the same inputs give
the same bytes.
"""
import base64, email.parser, hashlib, os, re, sys, zipfile

def main(stage, pkg_info, tag, out_dir, *licenses):
    raw = open(pkg_info, "rb").read()
    meta = email.parser.BytesParser().parsebytes(raw, headersonly=True)
    name = re.sub(r"[-_.]+", "_", meta["Name"]).lower()
    version = meta["Version"]
    dist_info = f"{name}-{version}.dist-info"
    files = []  # (arcname, bytes)
    for root, dirs, names in os.walk(stage):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for n in names:
            p = os.path.join(root, n)
            files.append((os.path.relpath(p, stage).replace(os.sep, "/"), open(p, "rb").read()))
    files.sort()
    files.append((f"{dist_info}/METADATA", raw))
    files.append((f"{dist_info}/WHEEL", (
        "Wheel-Version: 1.0\nGenerator: taipan-recipes\nRoot-Is-Purelib: false\n"
        f"Tag: {tag}\n").encode()))
    for lic in licenses:
        files.append((f"{dist_info}/licenses/{os.path.basename(lic)}", open(lic, "rb").read()))
    record = []
    for arc, data in files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{arc},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, f"{name}-{version}-{tag}.whl")
    with zipfile.ZipFile(out, "w") as z:
        for arc, data in files:
            info = zipfile.ZipInfo(arc, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data, compresslevel=9)
    print(out)

if __name__ == "__main__":
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
