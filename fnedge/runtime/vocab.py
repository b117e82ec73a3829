"""The tokenizer as the runtime needs it, from `tokenizer.json` with the `tokenizers` library only.

`transformers` (and torch behind it) would add a quarter of a gigabyte to the assistant's
memory on a device that has a few hundred MB; encoding, decoding, the special ids and each
token's bytes need none of it.
"""

from __future__ import annotations

from pathlib import Path

from fnedge.chat_format import IM_END, TOOL_CALL_CLOSE, TOOL_CALL_OPEN
from fnedge.errors import FnedgeError


class RuntimeVocab:
    def __init__(self, tokenizer_dir: str | Path) -> None:
        from tokenizers import Tokenizer

        path = Path(tokenizer_dir) / "tokenizer.json"
        if not path.is_file():
            raise FnedgeError(f"{tokenizer_dir}: no tokenizer.json")
        self.json = path.read_text(encoding="utf-8")
        self.tokenizer = Tokenizer.from_str(self.json)
        self.size = self.tokenizer.get_vocab_size(with_added_tokens=True)
        self.special = {t.content: i for i, t in self.tokenizer.get_added_tokens_decoder().items() if t.special}
        for marker in (IM_END, TOOL_CALL_OPEN, TOOL_CALL_CLOSE):
            if marker not in self.special:
                raise FnedgeError(f"{path}: the tokenizer lacks the special token {marker}")
        self.eos_id = self.special[IM_END]
        self.call_open_id = self.special[TOOL_CALL_OPEN]
        self.call_close_id = self.special[TOOL_CALL_CLOSE]
        self._bytes = self._token_bytes()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, tokens: list[int]) -> str:
        """Text of the tokens; an incomplete UTF-8 tail (cut by a token limit) is dropped."""
        return b"".join(self._bytes[t] for t in tokens).decode("utf-8", errors="ignore")

    def token_bytes(self, token: int) -> bytes:
        return self._bytes[token]

    def _token_bytes(self) -> list[bytes]:
        """Bytes of every id: byte-level BPE shows a byte b as itself when printable Latin-1,
        else as chr(256 + its rank among the other bytes); special tokens are their text."""
        printable = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255]
        others = [b for b in range(256) if b not in set(printable)]
        alphabet = {chr(b): b for b in printable} | {chr(256 + rank): b for rank, b in enumerate(others)}
        by_id = {i: piece for piece, i in self.tokenizer.get_vocab(with_added_tokens=True).items()}
        special_ids = set(self.special.values())
        return [by_id[i].encode("utf-8") if i in special_ids else bytes(alphabet[ch] for ch in by_id[i])
                for i in range(self.size)]
