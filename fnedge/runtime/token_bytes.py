"""Each token id's raw bytes, for streaming: a token may end in the middle of a UTF-8 character,
so the stream parser is fed bytes, not per-token strings (which would hold U+FFFD there)."""

from __future__ import annotations


def _byte_level_alphabet() -> dict[str, int]:
    """The byte-level BPE alphabet: printable Latin-1 bytes stand for themselves, every other
    byte b is shown as chr(256 + its rank among those others). Returns char -> byte."""
    printable = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255]
    others = [b for b in range(256) if b not in set(printable)]
    alphabet = {chr(b): b for b in printable}
    alphabet.update({chr(256 + rank): b for rank, b in enumerate(others)})
    return alphabet


def token_bytes_table(tokenizer) -> list[bytes]:
    """Bytes of every id of a byte-level HF tokenizer; special tokens are their literal text."""
    alphabet = _byte_level_alphabet()
    special = {t.content for t in tokenizer.added_tokens_decoder.values()}
    table: list[bytes] = []
    for piece in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))):
        if piece in special:
            table.append(piece.encode("utf-8"))
        else:
            table.append(bytes(alphabet[ch] for ch in piece))
    return table
