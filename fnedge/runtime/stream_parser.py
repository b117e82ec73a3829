"""Streaming parse of model replies with Hermes-style `<tool_call>` blocks (see chat_format).

Chunks (token texts, or token bytes that may split a UTF-8 character) go in; events come out:
prose as `TextDelta`s, and for each block `CallStart` → `ArgumentValue`* → `CallEnd`, or
`CallError` when the block is malformed, after which parsing goes on behind `</tool_call>`.
`<|im_end|>` ends the stream. The JSON inside a block is read by `IncrementalJSONParser`, a
state machine that never goes back over earlier input (only a possible tag, at most 11 chars, is
held back), so a whole reply costs O(n) however it is cut.

We write this ourselves: no library gives call-level events for this block format, incrementally,
with our error contract (only `StreamParseError` from the JSON parser, nothing from the stream one).

Decisions that mirror `parse_assistant`, so that both read a reply the same way:
- the first `</tool_call>` closes a block even inside a JSON string, and `<|im_end|>` ends the
  stream even inside a block;
- a block with no `</tool_call>` before the end still counts if its JSON is complete;
- "arguments" may be left out (it is then {}), and keys other than "name"/"arguments" are ignored.
Differences, on purpose: a second "name" or "arguments" key is a CallError (an event for the first
already went out), and NaN/Infinity are rejected as RFC 8259 says (json.loads accepts them).
`{{text}}` references are left as they are: the runtime resolves them once it has the text.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fnedge.chat_format import IM_END, TOOL_CALL_CLOSE, TOOL_CALL_OPEN

Chunk = str | bytes
JSONPath = tuple[str | int, ...]


class StreamParseError(Exception):
    """Input that is not what it should be; the only exception the JSON parser raises."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message if position is None else f"{message} at char {position}")
        self.position = position


class _Utf8Input:
    """Turns str or bytes chunks into str; bytes may split a multi-byte character anywhere."""

    def __init__(self, errors: str) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors)
        self._partial = False  # bytes of an unfinished character are waiting in the decoder

    def decode(self, chunk: Chunk, final: bool = False) -> str:
        try:
            if isinstance(chunk, str):
                # A str cannot finish a character that bytes began: flush (and reject) the rest.
                head = self._decoder.decode(b"", final=True) if self._partial else ""
                self._partial = False
                return head + chunk
            text = self._decoder.decode(chunk, final=final)
        except UnicodeDecodeError as error:
            raise StreamParseError(f"invalid UTF-8: {error.reason}") from None
        self._partial = bool(self._decoder.getstate()[0])
        return text


# ---------------------------------------------------------------------------------------------
# JSON

# What the JSON parser expects next.
_VALUE = 0           # a value: at the start, after ':' and after ',' in an array
_VALUE_OR_END = 1    # just after '[': a value or ']'
_KEY = 2             # after ',' in an object
_KEY_OR_END = 3      # just after '{': a key or '}'
_COLON = 4
_COMMA_OR_END = 5    # after a value inside a container
_STRING = 6          # inside a string (a key or a value)
_ESCAPE = 7          # after a backslash in a string
_UNICODE = 8         # inside the four hex digits of \uXXXX
_NUMBER = 9
_LITERAL = 10        # inside true, false or null
_DONE = 11           # the top-level value is complete: only whitespace may follow

_WHITESPACE = " \t\n\r"
_HEX_DIGITS = "0123456789abcdefABCDEF"
_NUMBER_STARTS = "-0123456789"
_STRING_STOP = re.compile(r'["\\\x00-\x1f]')  # all else in a string is taken as is
_NUMBER_CHARS = re.compile(r"[0-9eE.+\-]*")    # greedy: any of these after a number is an error anyway
_NUMBER_SYNTAX = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_LITERALS: dict[str, tuple[str, Any]] = {"t": ("true", True), "f": ("false", False), "n": ("null", None)}


@dataclass(slots=True)
class _Frame:
    """An open object or array; values are attached to it as soon as they start."""
    container: dict[str, Any] | list[Any]
    is_object: bool
    key: str = ""  # the key whose value comes next (objects only)


class IncrementalJSONParser:
    """RFC 8259 JSON from chunks: feed text or bytes, then read `value` once `done` (or `close()`).

    The result equals `json.loads` on the whole input, ints vs floats and duplicate keys
    (last wins) included; only NaN/Infinity, which RFC 8259 forbids, are refused here. `on_value(path, value)` is called as each value at depth ≤
    `report_depth` completes, e.g. `("arguments", "city")` for `{"arguments": {"city": "x"}}`;
    a StreamParseError it raises stops the parse. A top-level number is complete only at
    whitespace or `close()`, since more digits could follow.
    """

    def __init__(self, on_value: Callable[[JSONPath, Any], None] | None = None,
                 report_depth: int = 0) -> None:
        self._on_value = on_value
        self._report_depth = report_depth if on_value else -1
        self._utf8 = _Utf8Input(errors="strict")
        self._state = _VALUE
        self._stack: list[_Frame] = []
        self._root: Any = None
        self._token: list[str] = []       # pieces of the current string or number
        self._token_is_key = False
        self._token_start = 0             # where the current number began, for its error
        self._hex = ""                    # digits of the current \uXXXX
        self._high_surrogate: int | None = None  # a \uD800-\uDBFF waiting for its low half
        self._literal = ""
        self._literal_value: Any = None
        self._literal_matched = 0
        self._offset = 0                  # chars consumed by earlier feeds
        self._error: StreamParseError | None = None

    @property
    def done(self) -> bool:
        return self._state == _DONE

    @property
    def value(self) -> Any:
        if self._state != _DONE:
            raise StreamParseError("the JSON value is not complete")
        return self._root

    def feed(self, chunk: Chunk) -> None:
        self._guarded(chunk, final=False)

    def close(self) -> Any:
        """End of input: finish a top-level number, and fail unless a whole value was read."""
        self._guarded(b"", final=True)
        return self._root

    def _guarded(self, chunk: Chunk, final: bool) -> None:
        if self._error is not None:
            raise self._error
        try:
            text = self._utf8.decode(chunk, final)
            self._consume(text)
            self._offset += len(text)
            if final:
                if self._state == _NUMBER:
                    self._finish_number()
                if self._state != _DONE:
                    self._fail("unexpected end of JSON input", 0)
        except StreamParseError as error:
            self._error = error  # the parser is dead from here on; it says why each time
            raise

    def _fail(self, message: str, index: int) -> None:
        raise StreamParseError(message, self._offset + index)

    def _consume(self, text: str) -> None:
        index, end = 0, len(text)
        while index < end:
            state = self._state
            if state == _STRING:
                index = self._consume_string(text, index)
            elif state == _NUMBER:
                match = _NUMBER_CHARS.match(text, index)
                self._token.append(match.group())
                index = match.end()
                if index < end:  # text[index] ends the number; it is read on the next turn
                    self._finish_number()
            elif state == _ESCAPE:
                self._escape(text[index], index)
                index += 1
            elif state == _UNICODE:
                self._hex_digit(text[index], index)
                index += 1
            elif state == _LITERAL:
                self._literal_char(text[index], index)
                index += 1
            elif text[index] in _WHITESPACE:
                index += 1
            else:
                index = self._structural(text[index], index)

    # -- strings

    def _consume_string(self, text: str, index: int) -> int:
        stop = _STRING_STOP.search(text, index)
        end = stop.start() if stop else len(text)
        if end > index:
            self._flush_high_surrogate()
            self._token.append(text[index:end])
        if stop is None:
            return end
        char = text[end]
        if char == '"':
            self._flush_high_surrogate()
            self._finish_string()
        elif char == "\\":
            self._state = _ESCAPE
        else:
            self._fail(f"control character {char!r} in string", end)
        return end + 1

    def _escape(self, char: str, index: int) -> None:
        if char == "u":
            self._hex = ""
            self._state = _UNICODE
            return
        decoded = _ESCAPES.get(char)
        if decoded is None:
            self._fail(f"invalid escape \\{char}", index)
        self._flush_high_surrogate()
        self._token.append(decoded)
        self._state = _STRING

    def _hex_digit(self, char: str, index: int) -> None:
        if char not in _HEX_DIGITS:
            self._fail(f"invalid \\u escape digit {char!r}", index)
        self._hex += char
        if len(self._hex) < 4:
            return
        self._state = _STRING
        code = int(self._hex, 16)
        # Like json.loads: a high surrogate pairs with a directly following low one; a lone
        # half of either kind is kept as it is.
        if self._high_surrogate is not None and 0xDC00 <= code <= 0xDFFF:
            code = 0x10000 + ((self._high_surrogate - 0xD800) << 10) + (code - 0xDC00)
            self._high_surrogate = None
        else:
            self._flush_high_surrogate()
            if 0xD800 <= code <= 0xDBFF:
                self._high_surrogate = code
                return
        self._token.append(chr(code))

    def _flush_high_surrogate(self) -> None:
        if self._high_surrogate is not None:
            self._token.append(chr(self._high_surrogate))
            self._high_surrogate = None

    def _finish_string(self) -> None:
        text = "".join(self._token)
        self._token = []
        if self._token_is_key:
            self._stack[-1].key = text
            self._state = _COLON
        else:
            self._put(text)

    # -- numbers and literals

    def _finish_number(self) -> None:
        token = "".join(self._token)
        self._token = []
        match = _NUMBER_SYNTAX.fullmatch(token)
        if match is None:
            raise StreamParseError(f"invalid number {token[:40]!r}", self._token_start)
        if match.group(1) or match.group(2):
            self._put(float(token))
            return
        try:
            number = int(token)
        except ValueError:  # more digits than sys.get_int_max_str_digits(), as json.loads says
            raise StreamParseError("integer too long", self._token_start) from None
        self._put(number)

    def _literal_char(self, char: str, index: int) -> None:
        if char != self._literal[self._literal_matched]:
            self._fail(f"invalid literal, expected {self._literal!r}", index)
        self._literal_matched += 1
        if self._literal_matched == len(self._literal):
            self._put(self._literal_value)

    # -- structure

    def _structural(self, char: str, index: int) -> int:
        """Handle a non-whitespace char between tokens; return where to go on reading."""
        state = self._state
        if state == _COMMA_OR_END:
            frame = self._stack[-1]
            if char == ",":
                self._state = _KEY if frame.is_object else _VALUE
            elif char == ("}" if frame.is_object else "]"):
                self._close_container()
            else:
                self._fail(f"expected ',' or {'}' if frame.is_object else ']'}, got {char!r}", index)
        elif state == _COLON:
            if char != ":":
                self._fail(f"expected ':', got {char!r}", index)
            self._state = _VALUE
        elif state == _KEY or state == _KEY_OR_END:
            if char == '"':
                self._start_string(is_key=True)
            elif char == "}" and state == _KEY_OR_END:
                self._close_container()
            else:  # also a trailing comma: `{"a": 1,}`
                self._fail(f"expected a key string, got {char!r}", index)
        elif state == _DONE:
            self._fail(f"extra data after the JSON value: {char!r}", index)
        elif char == "]" and state == _VALUE_OR_END:
            self._close_container()
        else:
            return self._start_value(char, index)
        return index + 1

    def _start_value(self, char: str, index: int) -> int:
        if char == '"':
            self._start_string(is_key=False)
        elif char == "{":
            self._open({}, is_object=True)
            self._state = _KEY_OR_END
        elif char == "[":
            self._open([], is_object=False)
            self._state = _VALUE_OR_END
        elif char in _NUMBER_STARTS:
            self._token_start = self._offset + index
            self._state = _NUMBER
            return index  # the number's own loop reads this char
        elif char in _LITERALS:
            self._literal, self._literal_value = _LITERALS[char]
            self._literal_matched = 1
            self._state = _LITERAL
        else:  # a trailing comma `[1,]` lands here too
            self._fail(f"expected a value, got {char!r}", index)
        return index + 1

    def _start_string(self, is_key: bool) -> None:
        self._token = []
        self._token_is_key = is_key
        self._state = _STRING

    def _attach(self, value: Any) -> None:
        if not self._stack:
            self._root = value
            return
        frame = self._stack[-1]
        if frame.is_object:
            frame.container[frame.key] = value  # type: ignore[index]  # last duplicate wins
        else:
            frame.container.append(value)  # type: ignore[union-attr]

    def _open(self, container: dict[str, Any] | list[Any], is_object: bool) -> None:
        # Attached at once, so the paths reported for its children see it in place.
        self._attach(container)
        self._stack.append(_Frame(container, is_object))

    def _close_container(self) -> None:
        self._value_done(self._stack.pop().container)

    def _put(self, value: Any) -> None:
        self._attach(value)
        self._value_done(value)

    def _value_done(self, value: Any) -> None:
        self._state = _COMMA_OR_END if self._stack else _DONE
        if len(self._stack) <= self._report_depth:
            path = tuple(frame.key if frame.is_object else len(frame.container) - 1
                         for frame in self._stack)
            self._on_value(path, value)  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# Tool-call stream


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class CallStart:
    index: int  # the block's position among all `<tool_call>` blocks, malformed ones included
    name: str


@dataclass(frozen=True, slots=True)
class ArgumentValue:
    index: int
    key: str
    value: Any  # the same object that ends up in the call's arguments


@dataclass(frozen=True, slots=True)
class CallEnd:
    index: int
    call: dict[str, Any]  # {"name": ..., "arguments": {...}}


@dataclass(frozen=True, slots=True)
class CallError:
    index: int
    message: str
    raw: str  # the block's text between the tags, as parse_assistant's `malformed` has it


Event = TextDelta | CallStart | ArgumentValue | CallEnd | CallError

_PROSE_TAGS = (TOOL_CALL_OPEN, IM_END)
_BLOCK_TAGS = (TOOL_CALL_CLOSE, IM_END)
_LONGEST_TAG = max(len(tag) for tag in _PROSE_TAGS + _BLOCK_TAGS)


def _find_tag(buffer: str, start: int, tags: tuple[str, ...], final: bool) -> tuple[int, str | None]:
    """Where the first of `tags` begins in buffer[start:], with that tag; else (where a tail that
    may still grow into a tag begins, None), or (len(buffer), None) when there is no such tail.

    Every tag has its only '<' in front, so each '<' is looked at once, in constant time."""
    at = buffer.find("<", start)
    while at != -1:
        for tag in tags:
            if buffer.startswith(tag, at):
                return at, tag
        if not final and len(buffer) - at < _LONGEST_TAG:
            tail = buffer[at:]
            if any(tag.startswith(tail) for tag in tags):
                return at, None
        at = buffer.find("<", at + 1)
    return len(buffer), None


@dataclass
class _Block:
    """One `<tool_call>` block being read."""
    index: int
    json: IncrementalJSONParser
    raw: list[str] = field(default_factory=list)
    name: str | None = None
    arguments: dict[str, Any] | None = None
    early_arguments: list[ArgumentValue] = field(default_factory=list)  # seen before the name
    error: str | None = None


class ToolCallStreamParser:
    """Events from a streamed assistant reply: `feed(chunk)` as it comes, `close()` at the end.

    Never raises on any input; a malformed block becomes a CallError. Bytes that are not
    valid UTF-8 are dropped, as `Generation.text` drops them.
    """

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self._prose: list[str] = []
        self._utf8 = _Utf8Input(errors="ignore")
        self._held = ""  # a tail that may be the start of a tag, kept back until it is not
        self._block: _Block | None = None
        self._blocks_seen = 0
        self._ended = False
        self._events: list[Event] = []

    @property
    def text(self) -> str:
        """All prose so far, outside the call blocks (costs a join: stream TextDeltas instead)."""
        if len(self._prose) > 1:
            self._prose[:] = ["".join(self._prose)]
        return self._prose[0] if self._prose else ""

    def feed(self, chunk: Chunk) -> list[Event]:
        if self._ended:
            return []
        text = self._utf8.decode(chunk)
        if self._held or "<" in text:
            return self._scan(text, final=False)
        self._events = events = []  # the common case: no tag can begin in this chunk
        self._take(text)
        return events

    def close(self) -> list[Event]:
        if self._ended:
            return []
        return self._scan(self._utf8.decode(b"", final=True), final=True)

    def _scan(self, text: str, final: bool) -> list[Event]:
        self._events = events = []
        buffer = self._held + text if self._held else text
        self._held = ""
        position = 0
        while not self._ended:
            tags = _PROSE_TAGS if self._block is None else _BLOCK_TAGS
            at, tag = _find_tag(buffer, position, tags, final)
            self._take(buffer[position:at])
            if tag is None:
                self._held = buffer[at:]
                break
            position = at + len(tag)
            if tag == TOOL_CALL_OPEN:
                self._block = _Block(self._blocks_seen,
                                     IncrementalJSONParser(self._on_json_value, report_depth=2))
                self._blocks_seen += 1
            elif tag == TOOL_CALL_CLOSE:
                self._finish_block()
            else:  # IM_END: the model is done; anything after it is not part of the reply
                self._end()
        if final:
            self._end()
        return events

    def _take(self, piece: str) -> None:
        if not piece:
            return
        block = self._block
        if block is None:
            self._prose.append(piece)
            self._events.append(TextDelta(piece))
            return
        block.raw.append(piece)
        if block.error is None:
            try:
                block.json.feed(piece)
            except StreamParseError as error:
                block.error = str(error)

    def _end(self) -> None:
        if self._block is not None:
            self._finish_block()
        self._held = ""
        self._ended = True

    def _finish_block(self) -> None:
        block = self._block
        assert block is not None
        if block.error is None:
            try:
                block.json.close()  # may still report a value: a bare top-level number ends here
            except StreamParseError as error:
                block.error = str(error)
        self._block = None
        if block.error is not None:
            self._events.append(CallError(block.index, block.error, "".join(block.raw)))
            return
        call = {"name": block.name, "arguments": {} if block.arguments is None else block.arguments}
        self.calls.append(call)
        self._events.append(CallEnd(block.index, call))

    def _on_json_value(self, path: JSONPath, value: Any) -> None:
        """Turn completed parts of the call object into events; raise on a malformed call."""
        block = self._block
        assert block is not None
        if not path:
            if not isinstance(value, dict):
                raise StreamParseError("a call must be a JSON object")
            if block.name is None:
                raise StreamParseError('the call has no "name"')
        elif path == ("name",):
            if not isinstance(value, str):
                raise StreamParseError('"name" must be a string')
            if block.name is not None:
                raise StreamParseError('duplicate "name" key')
            block.name = value
            self._events.append(CallStart(block.index, value))
            self._events.extend(block.early_arguments)
            block.early_arguments.clear()
        elif path == ("arguments",):
            if not isinstance(value, dict):
                raise StreamParseError('"arguments" must be a JSON object')
            if block.arguments is not None:
                raise StreamParseError('duplicate "arguments" key')
            block.arguments = value
        elif len(path) == 2 and path[0] == "arguments" and isinstance(path[1], str):
            if block.arguments is not None:  # a second "arguments" object has begun
                raise StreamParseError('duplicate "arguments" key')
            event = ArgumentValue(block.index, path[1], value)
            if block.name is None:
                block.early_arguments.append(event)
            else:
                self._events.append(event)
