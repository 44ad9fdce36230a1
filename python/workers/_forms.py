"""`FormData`, `Blob` and `File`: form bodies as Workers code reads and sends
them (`await request.form_data()`, `Response(form)`, `fetch(url, body=form)`).

Incoming bodies are `application/x-www-form-urlencoded` or
`multipart/form-data` (parsed with the standard library's `email` parser);
a `FormData` sent as a body is encoded as `multipart/form-data`.
"""

import email.parser
import email.policy
import os
import time
from urllib.parse import parse_qsl


class Blob:
    """Immutable bytes with a content type."""

    def __init__(self, parts=(), content_type: str | None = None):
        if isinstance(parts, (str, bytes, bytearray, memoryview, Blob)):
            parts = [parts]
        chunks = []
        for part in parts:
            if isinstance(part, Blob):
                chunks.append(part._data)
            elif isinstance(part, str):
                chunks.append(part.encode("utf-8"))
            elif isinstance(part, (bytes, bytearray, memoryview)):
                chunks.append(bytes(part))
            else:
                raise TypeError(f"a Blob is made of str, bytes or Blob parts, not {type(part).__name__}")
        self._data = b"".join(chunks)
        self._type = (content_type or "").lower()

    @property
    def size(self) -> int:
        return len(self._data)

    @property
    def type(self) -> str:
        return self._type

    content_type = type

    async def bytes(self) -> bytes:
        return self._data

    async def arrayBuffer(self) -> bytes:
        return self._data

    async def text(self) -> str:
        return self._data.decode("utf-8", errors="replace")

    def slice(self, start: int = 0, end: int | None = None, content_type: str = "") -> "Blob":
        return Blob(self._data[start:end], content_type)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.size} bytes {self._type!r}>"


class File(Blob):
    """A `Blob` with a file name (a form's file field)."""

    def __init__(self, parts, filename: str, content_type: str | None = None, last_modified: int | None = None):
        super().__init__(parts, content_type)
        self._name = filename
        self._last_modified = last_modified if last_modified is not None else int(time.time() * 1000)

    @property
    def name(self) -> str:
        return self._name

    @property
    def last_modified(self) -> int:
        return self._last_modified

    lastModified = last_modified


class FormData:
    """Ordered name/value pairs; a name may repeat. Values are `str` or `File`.
    `form["name"]` / `get` give the first value, `get_all` every one."""

    def __init__(self, entries=None):
        self._entries = []
        if isinstance(entries, FormData):
            self._entries = list(entries._entries)
        elif isinstance(entries, dict):
            for key, value in entries.items():
                self.append(key, value)
        elif entries is not None:
            for key, value in entries:
                self.append(key, value)

    @staticmethod
    def _value(value, filename=None):
        if isinstance(value, Blob):
            if isinstance(value, File) and filename is None:
                return value
            return File([value], filename or "blob", value.type)
        return value if isinstance(value, str) else str(value)

    def append(self, key: str, value, filename: str | None = None) -> None:
        self._entries.append((key, self._value(value, filename)))

    def set(self, key: str, value, filename: str | None = None) -> None:
        self.delete(key)
        self.append(key, value, filename)

    def delete(self, key: str) -> None:
        self._entries = [(k, v) for k, v in self._entries if k != key]

    def get(self, key: str, default=None):
        for k, v in self._entries:
            if k == key:
                return v
        return default

    def get_all(self, key: str) -> list:
        return [v for k, v in self._entries if k == key]

    getAll = get_all

    def has(self, key: str) -> bool:
        return any(k == key for k, _ in self._entries)

    def __getitem__(self, key: str):
        for k, v in self._entries:
            if k == key:
                return v
        raise KeyError(key)

    def __setitem__(self, key: str, value) -> None:
        self.set(key, value)

    def __delitem__(self, key: str) -> None:
        if not self.has(key):
            raise KeyError(key)
        self.delete(key)

    def __contains__(self, key) -> bool:
        return self.has(key)

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list:
        return [k for k, _ in self._entries]

    def values(self) -> list:
        return [v for _, v in self._entries]

    def items(self) -> list:
        return list(self._entries)

    entries = items

    def __repr__(self) -> str:
        return f"FormData({self._entries!r})"


def parse(content_type: str, body: bytes) -> FormData:
    """A request or response body as `FormData`, by its content type."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        return FormData(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
    if kind == "multipart/form-data":
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        if not message.is_multipart():
            raise TypeError("the multipart/form-data body could not be parsed (is the boundary right?)")
        form = FormData()
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name is None:
                continue
            data = part.get_payload(decode=True) or b""
            filename = part.get_filename()
            if filename is None:
                charset = part.get_content_charset() or "utf-8"
                form.append(name, data.decode(charset, errors="replace"))
            else:
                explicit = part.get("content-type")
                form.append(name, File([data], filename, part.get_content_type() if explicit else ""))
        return form
    raise TypeError(
        f'cannot read a form from a body of type "{content_type}"; '
        "expected multipart/form-data or application/x-www-form-urlencoded"
    )


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def encode(form: FormData) -> tuple:
    """`form` as a `multipart/form-data` body: (bytes, content type)."""
    boundary = "----TaipanFormBoundary" + os.urandom(12).hex()
    out = []
    for name, value in form.items():
        out.append(f"--{boundary}\r\n".encode("ascii"))
        if isinstance(value, File):
            out.append(
                f'Content-Disposition: form-data; name="{_quote(name)}"; filename="{_quote(value.name)}"\r\n'
                f"Content-Type: {value.type or 'application/octet-stream'}\r\n\r\n".encode("utf-8")
            )
            out.append(value._data)
        else:
            out.append(f'Content-Disposition: form-data; name="{_quote(name)}"\r\n\r\n'.encode("utf-8"))
            out.append(value.encode("utf-8"))
        out.append(b"\r\n")
    out.append(f"--{boundary}--\r\n".encode("ascii"))
    return b"".join(out), f"multipart/form-data; boundary={boundary}"
