"""Rust symbol demangling, for importers that print raw linker symbols (``perf script``).

Two manglings exist:

- legacy (``_ZN...17h<16 hex digits>E``, also ``__ZN`` on macOS), which looks
  like an Itanium C++ name but ends in a hash segment; shown as its path with
  ``$LT$``-style escapes undone and the hash kept:
  ``std::fs::Metadata::created::h8df207f105c5d474``;
- v0 (``_R...``, RFC 2603); shown without crate disambiguators or hashes,
  generic arguments and trait impls included:
  ``<ppv_lite86::generic::u32x4_generic as core::convert::Into<...>>::into``.

This is how speedscope's demangler (GNU libiberty) prints them. Names that are
not Rust (C++ ``_Z`` names, plain C) are returned unchanged, and so is any
symbol this demangler cannot read. The v0 grammar nests; its reader recurses,
but never deeper than `MAX_DEPTH` levels nor past `MAX_OUTPUT` characters, so
a hostile symbol costs bounded time and stack.
"""

from __future__ import annotations

import re

MAX_DEPTH = 64
"""Nesting levels of a v0 symbol read before giving up (and keeping the raw name)."""
MAX_OUTPUT = 4096
"""Characters of demangled output before giving up."""

_HASH = re.compile(r"h[0-9a-f]{16}")
_ESCAPE_CODE = re.compile(r"u[0-9a-f]{1,6}")
_LEGACY_ESCAPES = {
    "SP": "@",
    "BP": "*",
    "RF": "&",
    "LT": "<",
    "GT": ">",
    "LP": "(",
    "RP": ")",
    "C": ",",
}
_BASIC_TYPES = {
    "a": "i8",
    "b": "bool",
    "c": "char",
    "d": "f64",
    "e": "str",
    "f": "f32",
    "h": "u8",
    "i": "isize",
    "j": "usize",
    "l": "i32",
    "m": "u32",
    "n": "i128",
    "o": "u128",
    "s": "i16",
    "t": "u16",
    "u": "()",
    "v": "...",
    "x": "i64",
    "y": "u64",
    "z": "!",
    "p": "_",
}
_SIGNED = {"a", "s", "l", "x", "n", "i"}
_UNSIGNED = {"h", "t", "m", "y", "o", "j"}


def demangle_rust(symbol: str) -> str:
    """The readable name of a Rust symbol (legacy or v0); any other symbol unchanged."""
    if symbol.startswith(("_R", "__R")):
        try:
            return _V0(symbol[symbol.index("R") + 1 :]).symbol()
        except _Invalid:
            return symbol
    if symbol.startswith(("_ZN", "__ZN")):
        return _legacy(symbol)
    return symbol


class _Invalid(ValueError):
    """The symbol is not valid v0 mangling (or is too deep or too long to show)."""


def _legacy(symbol: str) -> str:
    """A legacy symbol's path, or `symbol` unchanged when it is not a Rust one."""
    body = symbol[symbol.index("ZN") + 2 :]
    parts: list[str] = []
    position = 0
    while position < len(body) and body[position] != "E":
        digits = position
        while digits < len(body) and body[digits].isdigit():
            digits += 1
        if digits == position or digits - position > 6:
            return symbol
        length = int(body[position:digits])
        part = body[digits : digits + length]
        if len(part) != length or not part:
            return symbol
        parts.append(part)
        position = digits + length
    rest = body[position + 1 :]
    if position >= len(body) or (rest and not rest.startswith(".")):
        return symbol
    if not parts or not _HASH.fullmatch(parts[-1]):
        return symbol
    return "::".join(_unescape_legacy(part) for part in parts)


def _unescape_legacy(part: str) -> str:
    """Undo a legacy path segment's ``$LT$``/``$u7b$``/``..`` escapes."""
    if part.startswith("_$"):
        part = part[1:]
    out: list[str] = []
    index = 0
    while index < len(part):
        char = part[index]
        if char == "$":
            close = part.find("$", index + 1)
            code = part[index + 1 : close] if close > 0 else ""
            if code in _LEGACY_ESCAPES:
                out.append(_LEGACY_ESCAPES[code])
            elif _ESCAPE_CODE.fullmatch(code):
                try:
                    out.append(chr(int(code[1:], 16)))
                except ValueError:
                    return part
            else:
                return part
            index = close + 1
        elif part.startswith("..", index):
            out.append("::")
            index += 2
        else:
            out.append(char)
            index += 1
    return "".join(out)


class _V0:
    """A reader of one v0 symbol (the text after ``_R``), printing as it reads."""

    def __init__(self, text: str) -> None:
        dot = text.find(".")
        self.text = text if dot < 0 else text[:dot]  # drop ".llvm.123"-style suffixes
        self.pos = 0
        self.depth = 0
        self.bound_lifetimes = 0

    # low-level reading

    def peek(self) -> str:
        """The next character, "" at the end."""
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self, char: str) -> bool:
        """Consume `char` if it comes next."""
        if self.peek() == char:
            self.pos += 1
            return True
        return False

    def next(self) -> str:
        """Consume and return the next character."""
        char = self.peek()
        if not char:
            raise _Invalid("unexpected end")
        self.pos += 1
        return char

    def base62(self) -> int:
        """A base-62 number ended by "_" ("_" alone is 0)."""
        if self.take("_"):
            return 0
        value = 0
        while True:
            char = self.next()
            if char == "_":
                return value + 1
            if char.isdigit():
                digit = ord(char) - ord("0")
            elif "a" <= char <= "z":
                digit = ord(char) - ord("a") + 10
            elif "A" <= char <= "Z":
                digit = ord(char) - ord("A") + 36
            else:
                raise _Invalid("bad base-62 digit")
            value = value * 62 + digit
            if value > 1 << 64:
                raise _Invalid("number too large")

    def optional_base62(self, tag: str) -> int:
        """`tag` and a base-62 number plus one, or 0 when `tag` does not come next."""
        return self.base62() + 1 if self.take(tag) else 0

    def decimal(self) -> int:
        """A decimal number ("0" or digits without a leading zero)."""
        start = self.pos
        if self.take("0"):
            return 0
        while self.peek().isdigit():
            self.pos += 1
        if start == self.pos or self.pos - start > 9:
            raise _Invalid("bad decimal number")
        return int(self.text[start : self.pos])

    def identifier(self) -> str:
        """A length-prefixed identifier, Punycode undone."""
        punycode = self.take("u")
        length = self.decimal()
        self.take("_")
        name = self.text[self.pos : self.pos + length]
        if len(name) != length:
            raise _Invalid("identifier runs past the end")
        self.pos += length
        if punycode:
            head, _, tail = name.rpartition("_")
            try:
                name = (head + "-" + tail).encode("ascii").decode("punycode")
            except (UnicodeError, ValueError):
                raise _Invalid("bad punycode") from None
        return name

    def enter(self) -> None:
        """One level deeper; refuse past `MAX_DEPTH`."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Invalid("too deep")

    def backref(self) -> _V0:
        """A reader at the earlier position a "B" backreference names."""
        start = self.pos - 1
        target = self.base62()
        if target >= start:
            raise _Invalid("backref does not point backwards")
        other = _V0(self.text)
        other.pos = target
        other.depth = self.depth
        other.bound_lifetimes = self.bound_lifetimes
        return other

    # grammar

    def symbol(self) -> str:
        """The whole symbol: version, path and instantiating crate."""
        if self.peek().isdigit():
            self.decimal()  # encoding version
        out = self.path(in_value=True)
        if self.peek().isupper():
            self.path(in_value=False)  # the instantiating crate, not shown
        if self.pos != len(self.text):
            raise _Invalid("trailing characters")
        return out

    def path(self, in_value: bool) -> str:
        """A path; generic arguments get "::" in value position."""
        self.enter()
        try:
            tag = self.next()
            if tag == "C":
                self.optional_base62("s")
                return self.identifier()
            if tag == "M":
                self.optional_base62("s")
                self.path(in_value=False)  # the impl's parent path, not shown
                return self.limit(f"<{self.type()}>")
            if tag == "X":
                self.optional_base62("s")
                self.path(in_value=False)
                shown_type = self.type()
                return self.limit(f"<{shown_type} as {self.path(in_value=False)}>")
            if tag == "Y":
                shown_type = self.type()
                return self.limit(f"<{shown_type} as {self.path(in_value=False)}>")
            if tag == "N":
                namespace = self.next()
                if not namespace.isalpha():
                    raise _Invalid("bad namespace")
                parent = self.path(in_value)
                disambiguator = self.optional_base62("s")
                name = self.identifier()
                if namespace.isupper():
                    kind = {"C": "closure", "S": "shim"}.get(namespace, namespace)
                    label = f":{name}" if name else ""
                    return self.limit(f"{parent}::{{{kind}{label}#{disambiguator}}}")
                return self.limit(f"{parent}::{name}" if name else parent)
            if tag == "I":
                base = self.path(in_value)
                arguments = []
                while not self.take("E"):
                    arguments.append(self.generic_argument())
                separator = "::" if in_value else ""
                return self.limit(f"{base}{separator}<{', '.join(arguments)}>")
            if tag == "B":
                return self.backref().path(in_value)
            raise _Invalid("bad path")
        finally:
            self.depth -= 1

    def generic_argument(self) -> str:
        """A lifetime, a constant or a type."""
        if self.peek() == "L":
            self.pos += 1
            return self.lifetime(self.base62())
        if self.take("K"):
            return self.const()
        return self.type()

    def lifetime(self, index: int) -> str:
        """A lifetime by its de Bruijn index ("'_" when erased)."""
        if index == 0:
            return "'_"
        depth = self.bound_lifetimes - index
        if depth < 0:
            raise _Invalid("unbound lifetime")
        return "'" + (chr(ord("a") + depth) if depth < 26 else f"_{depth}")

    def binder(self) -> str:
        """A "for<'a, ...> " binder, or ""."""
        count = self.optional_base62("G")
        if not count:
            return ""
        names = []
        for _ in range(count):
            self.bound_lifetimes += 1
            names.append(self.lifetime(1))
        return f"for<{', '.join(names)}> "

    def type(self) -> str:
        """A type."""
        self.enter()
        try:
            tag = self.next()
            if tag in _BASIC_TYPES:
                return _BASIC_TYPES[tag]
            if tag in "RQ":
                lifetime = ""
                if self.peek() == "L":
                    self.pos += 1
                    index = self.base62()
                    lifetime = f"{self.lifetime(index)} " if index else ""
                mutable = "mut " if tag == "Q" else ""
                return self.limit(f"&{lifetime}{mutable}{self.type()}")
            if tag == "P":
                return self.limit(f"*const {self.type()}")
            if tag == "O":
                return self.limit(f"*mut {self.type()}")
            if tag == "A":
                element = self.type()
                return self.limit(f"[{element}; {self.const()}]")
            if tag == "S":
                return self.limit(f"[{self.type()}]")
            if tag == "T":
                elements = []
                while not self.take("E"):
                    elements.append(self.type())
                if len(elements) == 1:
                    return self.limit(f"({elements[0]},)")
                return self.limit(f"({', '.join(elements)})")
            if tag == "F":
                saved = self.bound_lifetimes
                prefix = self.binder()
                if self.take("U"):
                    prefix += "unsafe "
                if self.take("K"):
                    abi = "C" if self.take("C") else self.identifier().replace("_", "-")
                    prefix += f'extern "{abi}" '
                parameters = []
                while not self.take("E"):
                    parameters.append(self.type())
                result = self.type()
                self.bound_lifetimes = saved
                arrow = "" if result == "()" else f" -> {result}"
                return self.limit(f"{prefix}fn({', '.join(parameters)}){arrow}")
            if tag == "D":
                saved = self.bound_lifetimes
                prefix = self.binder()
                traits = []
                while not self.take("E"):
                    traits.append(self.dyn_trait())
                self.bound_lifetimes = saved
                if self.next() != "L":
                    raise _Invalid("dyn without lifetime")
                lifetime = self.base62()
                shown = f"dyn {prefix}{' + '.join(traits)}"
                if lifetime:
                    shown += f" + {self.lifetime(lifetime)}"
                return self.limit(shown)
            if tag == "B":
                return self.backref().type()
            self.pos -= 1
            return self.path(in_value=False)
        finally:
            self.depth -= 1

    def dyn_trait(self) -> str:
        """One trait of a ``dyn`` type, with its associated-type bindings."""
        shown = self.path(in_value=False)
        bindings = []
        while self.take("p"):
            name = self.identifier()
            bindings.append(f"{name} = {self.type()}")
        if bindings:
            if shown.endswith(">"):
                shown = f"{shown[:-1]}, {', '.join(bindings)}>"
            else:
                shown = f"{shown}<{', '.join(bindings)}>"
        return self.limit(shown)

    def const(self) -> str:
        """A constant generic argument."""
        if self.take("B"):
            return self.backref().const()
        if self.take("p"):
            return "_"
        kind = self.next()
        negative = kind in _SIGNED and self.take("n")
        start = self.pos
        while self.peek() in "0123456789abcdef" and self.peek():
            self.pos += 1
        digits = self.text[start : self.pos]
        if not self.take("_") or len(digits) > 32:
            raise _Invalid("bad constant")
        value = int(digits, 16) if digits else 0
        if kind == "b":
            return {0: "false", 1: "true"}.get(value) or _raise("bad bool")
        if kind == "c":
            return repr(chr(value)) if value < 0x110000 else _raise("bad char")
        if kind in _SIGNED or kind in _UNSIGNED:
            return f"-{value}" if negative else str(value)
        raise _Invalid("unsupported constant type")

    def limit(self, text: str) -> str:
        """`text`, refused when longer than `MAX_OUTPUT`."""
        if len(text) > MAX_OUTPUT:
            raise _Invalid("too long")
        return text


def _raise(message: str) -> str:
    raise _Invalid(message)
