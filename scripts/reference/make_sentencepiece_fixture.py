#!/usr/bin/python3
"""Writes tests/fixtures/mixtral-tiny-sentencepiece/: a Mixtral tokenizer shipped as a SentencePiece
`tokenizer.model` (no tokenizer.json), as real Mixtral / Mistral / Llama 2 checkpoints do, plus the
token ids an independent SentencePiece-BPE encoder gives for a few texts.

  /usr/bin/python3 scripts/reference/make_sentencepiece_fixture.py [--repo ROOT]

Needs nothing beyond the Python standard library: no `sentencepiece`, no `protobuf`. The model file
is a SentencePiece ModelProto serialised to protobuf wire format by hand (varints, length-delimited
fields, fixed32 floats), laid out like Llama's tokenizer.model:

  id 0 <unk> (UNKNOWN), 1 <s> (CONTROL), 2 </s> (CONTROL),
  ids 3..258 the byte pieces <0x00>..<0xFF> (BYTE) for byte_fallback,
  then the NORMAL pieces: first every merged piece of a tiny deterministic BPE trained on the
  paragraph below (score = -merge rank: earlier merge, higher score), then the single characters of
  that paragraph (most frequent first, scores continuing downwards).

TrainerSpec: model_type BPE, byte_fallback, split_digits, unk/bos/eos/pad ids 0/1/2/-1.
NormalizerSpec: "identity", add_dummy_prefix true, remove_extra_whitespaces false,
escape_whitespaces true (the Llama 2 / Mistral settings).

The expected ids (expected_tokenizer.json) come from `encode` below, which follows SentencePiece's
BPE segmentation (bpe_model.cc): dummy prefix, spaces -> U+2581, split into characters, repeatedly
merge the adjacent pair whose concatenation is a NORMAL piece with the highest score (ties: the
leftmost pair), then a symbol that is no piece becomes its UTF-8 bytes <0xNN> (byte_fallback).
It reads the pieces back from the written file with its own protobuf reader.

config.json is the sibling fixture mixtral-tiny-bf16-sharded's, with vocab_size, bos_token_id and
eos_token_id of this vocabulary; the chat template is that fixture's [INST] template. No weights:
the C# test loads only the tokenizer. Deterministic: running it twice gives byte-identical files.
"""

import argparse
import json
import os
import re
import struct

SPACE = "\u2581"  # SentencePiece's whitespace meta symbol '▁'

FIXTURE_DIR = "tests/fixtures/mixtral-tiny-sentencepiece"
SIBLING_DIR = "tests/fixtures/mixtral-tiny-bf16-sharded"

# One sentence per line, as SentencePiece's trainer reads its corpus. The indented lines give the
# whitespace-only pieces (Llama has '▁▁', '▁▁▁▁', ...). Deliberately absent, so that the test cases
# exercise byte fallback: newline, the digits 6-9, '+', and every non-ASCII character.
TRAINING_TEXT = """\
The old lighthouse keeper climbs the stairs every evening and lights the lamp for the ships.
He counts the steps as he climbs: there are 120 of them, and he has climbed them for 35 years.
The ships come in from the north and the west, and the light tells them where the rocks are.
When the weather is bad he stays awake all night and watches the waves break on the rocks.
In the morning he writes in his book: the time, the wind, the ships that passed, and the rain.
    the lamp was lit at 5 in the evening
    the wind was strong from the west
        three ships passed in the night
        one ship stopped at the harbour
He has never missed a night, and the ships that pass the light have never met the rocks.
Some nights are quiet, and then he reads old letters and listens to the sea against the wall.
Other nights the storm is so loud that he can not hear his own steps on the stairs.
The keeper is old now, and the town has asked a young woman to learn the work from him.
She climbs the stairs with him every evening, and she counts the steps, and she writes in the book.
She learns how to clean the glass, how to trim the wick, and how to read the clouds over the water.
Just before dawn they both watch the last ships pass, and then they put out the lamp together.
The fishermen say that the light has kept them safe for longer than anyone in the town can remember.
When the keeper was young, his father kept the light, and his father's mother kept it before him.
Every winter the wind tears at the windows, and every spring the keeper paints the walls white again.
The young woman asks many questions, and the old man answers them slowly, one by one, at the table.
She wants to know why the lamp turns, why the glass is shaped like a bell, and why the ships trust it.
He tells her that the light does not save the ships: it only shows them the truth about the rocks.
The sailors still have to steer, to watch, and to listen; the light just makes the dark a little smaller.
    the glass was cleaned in the afternoon
    the young keeper trimmed the wick herself
        four ships passed before midnight
        the storm ended after 4 hours
At the end of the year the old keeper gives her the key, and he moves to a small house near the harbour.
He still walks to the rocks in the evening, and he still counts the ships, but now he only watches.
The young keeper climbs the stairs alone, lights the lamp, and writes the time, the wind and the ships.
"""

NUM_MERGES = 320  # at most; training stops earlier if no pair occurs twice

# The cases of expected_tokenizer.json and what each one is there to exercise.
CASES = [
    ("The keeper climbs the stairs and lights the lamp for the ships.", "plain English"),
    ("the  old   keeper    writes in the book",
     "runs of 2, 3 and 4 spaces; equal-score '\u2581\u2581' pairs merge leftmost first"),
    ("the first night\nthe second night", "a newline (byte fallback <0x0A>)"),
    ("He climbed 120 steps, then 35 more + 789.", "digits (6-9 are not pieces) and '+'"),
    ("caf\u00e9 \u2713 d\u00e9j\u00e0 vu \U0001F642", "non-ASCII: 2-, 3- and 4-byte UTF-8 fall back to bytes"),
    (" starts with a space",
     "a leading space: '\u2581\u2581starts' (the pair '\u2581s' outranks '\u2581\u2581')"),
]

UNK, BOS, EOS = "<unk>", "<s>", "</s>"
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


# ----------------------------------------------------------------------------------------------
# protobuf wire format, by hand
# ----------------------------------------------------------------------------------------------

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5


def varint(n):
    """Base-128 varint; negative int32/int64 values are sign-extended to 64 bits (10 bytes)."""
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(field, wire_type):
    return varint((field << 3) | wire_type)


def pb_int(field, value):  # int32, enum, bool
    return tag(field, VARINT) + varint(int(value))


def pb_bytes(field, data):
    return tag(field, LENGTH_DELIMITED) + varint(len(data)) + data


def pb_string(field, text):
    return pb_bytes(field, text.encode("utf-8"))


def pb_float(field, x):
    return tag(field, FIXED32) + struct.pack("<f", x)


def read_varint(data, pos):
    shift = result = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, pos


def parse_message(data):
    """-> list of (field, wire_type, value): int for varints, bytes for length-delimited,
    float for fixed32. Enough of the format to read a ModelProto back."""
    fields, pos = [], 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == VARINT:
            value, pos = read_varint(data, pos)
        elif wire == LENGTH_DELIMITED:
            n, pos = read_varint(data, pos)
            value, pos = data[pos:pos + n], pos + n
        elif wire == FIXED32:
            value, pos = struct.unpack("<f", data[pos:pos + 4])[0], pos + 4
        elif wire == FIXED64:
            value, pos = data[pos:pos + 8], pos + 8
        else:
            raise ValueError(f"wire type {wire} at byte {pos}")
        fields.append((field, wire, value))
    assert pos == len(data), "trailing bytes"
    return fields


def as_int32(v):
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


# ----------------------------------------------------------------------------------------------
# training: a tiny deterministic SentencePiece-style BPE
# ----------------------------------------------------------------------------------------------

def normalize(text):
    """NormalizerSpec identity + add_dummy_prefix + escape_whitespaces, remove_extra_whitespaces off."""
    return SPACE + text.replace(" ", SPACE)


def char_class(c):
    if c == SPACE:
        return None
    if "0" <= c <= "9":
        return "digit"
    return "letter" if c.isalpha() else "other"


def may_merge(a, b):
    """split_digits: no piece holds a digit next to anything; split_by_unicode_script (roughly):
    no piece mixes letters and punctuation. '▁' may join either; whitespace-only pieces are allowed
    (allow_whitespace_only_pieces, as Llama's)."""
    classes = {char_class(c) for c in a + b} - {None}
    return "digit" not in classes and len(classes) <= 1


def merge_word(word, a, b):
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
            out.append(a + b)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def train(text, num_merges):
    """-> (merged pieces in merge order, single characters most frequent first).
    Words as SentencePiece splits them (split_by_whitespace with whitespace-only pieces allowed): a
    run of '▁' starts a word, which runs up to the next '▁'. Each step merges the most frequent
    adjacent pair (ties: the smallest pair as Python orders strings)."""
    counts, char_freq = {}, {}
    for line in text.splitlines():
        for word in re.findall(SPACE + "+[^" + SPACE + "]*", normalize(line)):
            counts[tuple(word)] = counts.get(tuple(word), 0) + 1
            for c in word:
                char_freq[c] = char_freq.get(c, 0) + 1
    merged, seen = [], set()
    for _ in range(num_merges):
        pairs = {}
        for word, n in counts.items():
            for a, b in zip(word, word[1:]):
                if may_merge(a, b):
                    pairs[(a, b)] = pairs.get((a, b), 0) + n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        if pairs[best] < 2:
            break
        if best[0] + best[1] not in seen:  # two pairs may spell the same piece; it keeps its first rank
            seen.add(best[0] + best[1])
            merged.append(best[0] + best[1])
        new_counts = {}
        for word, n in counts.items():
            w = merge_word(word, *best)
            new_counts[w] = new_counts.get(w, 0) + n
        counts = new_counts
    chars = sorted(char_freq, key=lambda c: (-char_freq[c], c))
    return merged, chars


def build_pieces(merged, chars):
    """-> [(piece, score, type)] in id order (Llama's layout)."""
    pieces = [(UNK, 0.0, UNKNOWN), (BOS, 0.0, CONTROL), (EOS, 0.0, CONTROL)]
    pieces += [(f"<0x{b:02X}>", 0.0, BYTE) for b in range(256)]
    pieces += [(p, float(-i), NORMAL) for i, p in enumerate(merged)]
    pieces += [(c, float(-(len(merged) + j)), NORMAL) for j, c in enumerate(chars) if c not in merged]
    assert len({p for p, _, _ in pieces}) == len(pieces), "duplicate piece"
    return pieces


def model_proto(pieces):
    """The ModelProto bytes (fields in field-number order, as protobuf serialisers write them)."""
    out = bytearray()
    for piece, score, typ in pieces:
        body = pb_string(1, piece) + pb_float(2, score)
        if typ != NORMAL:  # NORMAL is the field's default; spm's trainer leaves it unset
            body += pb_int(3, typ)
        out += pb_bytes(1, body)
    trainer = (pb_int(3, 2)                 # model_type BPE
               + pb_int(4, len(pieces))     # vocab_size
               + pb_int(22, True)           # split_by_whitespace
               + pb_int(24, False)          # treat_whitespace_as_suffix
               + pb_int(25, True)           # split_digits
               + pb_int(26, True)           # allow_whitespace_only_pieces
               + pb_int(35, True)           # byte_fallback
               + pb_int(40, 0)              # unk_id
               + pb_int(41, 1)              # bos_id
               + pb_int(42, 2)              # eos_id
               + pb_int(43, -1)             # pad_id (none): a 10-byte varint
               + pb_string(44, " \u2047 ")  # unk_surface
               + pb_string(45, UNK)         # unk_piece
               + pb_string(46, BOS)         # bos_piece
               + pb_string(47, EOS)         # eos_piece
               + pb_string(48, "<pad>"))    # pad_piece
    normalizer = (pb_string(1, "identity")
                  + pb_int(3, True)         # add_dummy_prefix
                  + pb_int(4, False)        # remove_extra_whitespaces
                  + pb_int(5, True))        # escape_whitespaces
    out += pb_bytes(2, trainer) + pb_bytes(3, normalizer)
    return bytes(out)


def read_model(data):
    """Reads a ModelProto back: (pieces, trainer fields, normalizer fields), defaults applied."""
    pieces, trainer, normalizer = [], {}, {}
    for field, wire, value in parse_message(data):
        if field == 1:
            sp = {f: v for f, _, v in parse_message(value)}
            pieces.append((sp[1].decode("utf-8"), sp.get(2, 0.0), sp.get(3, NORMAL)))
        elif field == 2:
            trainer = {f: v for f, _, v in parse_message(value)}
        elif field == 3:
            normalizer = {f: v for f, _, v in parse_message(value)}
    return pieces, trainer, normalizer


# ----------------------------------------------------------------------------------------------
# the reference encoder / decoder (SentencePiece BPE semantics)
# ----------------------------------------------------------------------------------------------

class SentencePieceBpe:
    def __init__(self, model_bytes):
        pieces, trainer, normalizer = read_model(model_bytes)
        assert trainer.get(3) == 2, "not a BPE model"
        self.byte_fallback = bool(trainer.get(35, 0))
        self.unk_id = as_int32(trainer.get(40, 0))
        self.add_dummy_prefix = bool(normalizer.get(3, 1))
        assert not normalizer.get(4, 1), "remove_extra_whitespaces is not implemented here"
        assert normalizer.get(5, 1), "escape_whitespaces is assumed"
        self.pieces = pieces
        self.id_of = {p: i for i, (p, _, _) in enumerate(pieces)}
        # Only NORMAL (and USER_DEFINED / UNUSED) pieces are merge targets: SentencePiece keeps
        # UNKNOWN, CONTROL and BYTE pieces out of the table its BPE looks pairs up in.
        self.score = {p: s for p, s, t in pieces if t in (NORMAL, USER_DEFINED, UNUSED)}
        self.byte_id = {int(p[3:5], 16): i for i, (p, _, t) in enumerate(pieces) if t == BYTE}

    def normalize(self, text):
        return (SPACE if self.add_dummy_prefix else "") + text.replace(" ", SPACE)

    def segment(self, text, leftmost=True):
        """-> the BPE symbols (strings) of normalised text. Equal-score pairs (the same piece at
        overlapping places, e.g. '▁▁' in '▁▁▁') merge leftmost first, as SentencePiece's agenda orders
        them (bpe_model.cc: score, then the smaller left index). leftmost=False is only for check()."""
        symbols = list(self.normalize(text))  # code points, as SentencePiece splits UTF-8 characters
        while True:
            best = None
            for i in range(len(symbols) - 1):
                s = self.score.get(symbols[i] + symbols[i + 1])
                if s is not None and (best is None or s > best[0] or (s == best[0] and not leftmost)):
                    best = (s, i)
            if best is None:
                return symbols
            i = best[1]
            symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]

    def encode(self, text, leftmost=True):
        ids = []
        for sym in self.segment(text, leftmost):
            if sym in self.score:
                ids.append(self.id_of[sym])
            elif self.byte_fallback:
                ids += [self.byte_id[b] for b in sym.encode("utf-8")]
            else:
                ids.append(self.unk_id)
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            piece, _, typ = self.pieces[i]
            if typ == BYTE:
                out.append(int(piece[3:5], 16))
            elif typ in (NORMAL, USER_DEFINED):
                out += piece.replace(SPACE, " ").encode("utf-8")
        text = out.decode("utf-8", errors="replace")
        return text[1:] if self.add_dummy_prefix and text.startswith(" ") else text


# ----------------------------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------------------------

def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")


def write_expected(path, header, cases):
    """One line per field of each case (the format of make_fixtures.py's expected files)."""
    lines = ["{"]
    for key, value in header.items():
        lines.append(f"  {json.dumps(key)}: {json.dumps(value)},")
    lines.append('  "cases": [')
    for ci, case in enumerate(cases):
        fields = [f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in case.items()]
        lines.append("   {\n" + ",\n".join(fields) + "\n   }" + ("," if ci + 1 < len(cases) else ""))
    lines.append("  ]")
    lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def check(tok, n_merged):
    """The cases exercise what they claim; everything round-trips; merges compress."""
    is_byte = lambda i: tok.pieces[i][2] == BYTE  # noqa: E731
    for text, _ in CASES:
        ids = tok.encode(text)
        assert tok.decode(ids) == text, text
        assert all(tok.pieces[i][2] in (NORMAL, BYTE) for i in ids), text
    for absent in ["\n", "6", "7", "8", "9", "+", "\u00e9", "\u2713", "\U0001F642"]:
        assert absent not in "".join(TRAINING_TEXT.splitlines()) and absent not in tok.id_of, repr(absent)
    enc = {text: tok.encode(text) for text, _ in CASES}
    assert not any(is_byte(i) for i in enc[CASES[0][0]]), "plain English should need no byte fallback"
    assert tok.id_of["<0x0A>"] in enc[CASES[2][0]]
    assert sum(map(is_byte, enc[CASES[4][0]])) == 2 + 3 + 2 + 2 + 4  # é ✓ é à 🙂
    # '▁▁starts': the pair '▁s' outranks '▁▁', so the second '▁' joins the word and the first stays alone
    assert [tok.pieces[i][0] for i in enc[CASES[5][0]][:2]] == [SPACE, SPACE + "st"], "leading space"
    assert any(SPACE * 2 in tok.pieces[i][0] for i in enc[CASES[1][0]]), "whitespace pieces unused"
    # The spaces case is the one whose result depends on the order of equal-score merges: in
    # '▁▁▁keeper' the two '▁▁' pairs tie; leftmost gives ▁▁ ▁keeper, rightmost ▁ ▁▁ ke eper.
    sensitive = [text for text, _ in CASES if tok.encode(text) != tok.encode(text, leftmost=False)]
    assert sensitive == [CASES[1][0]], sensitive
    assert n_merged >= 200
    for line in TRAINING_TEXT.splitlines():
        assert tok.decode(tok.encode(line)) == line
    n_chars = len(TRAINING_TEXT.replace("\n", ""))
    assert sum(len(tok.encode(line)) for line in TRAINING_TEXT.splitlines()) < 0.4 * n_chars


def build(root):
    merged, chars = train(TRAINING_TEXT, NUM_MERGES)
    pieces = build_pieces(merged, chars)
    model = model_proto(pieces)
    tok = SentencePieceBpe(model)
    assert tok.pieces == pieces, "the model file does not read back"
    check(tok, len(merged))

    out_dir = os.path.join(root, FIXTURE_DIR)
    os.makedirs(out_dir, exist_ok=True)
    for stale in ["tokenizer.json"]:  # this fixture must load tokenizer.model
        if os.path.exists(os.path.join(out_dir, stale)):
            os.remove(os.path.join(out_dir, stale))
    with open(os.path.join(out_dir, "tokenizer.model"), "wb") as f:
        f.write(model)

    with open(os.path.join(root, SIBLING_DIR, "config.json")) as f:
        config = json.load(f)
    config.update({"vocab_size": len(pieces), "bos_token_id": 1, "eos_token_id": 2})
    write_json(os.path.join(out_dir, "config.json"), config)
    write_json(os.path.join(out_dir, "generation_config.json"), {"bos_token_id": 1, "eos_token_id": 2})

    with open(os.path.join(root, SIBLING_DIR, "tokenizer_config.json")) as f:
        template = json.load(f)["chat_template"]
    assert "[INST]" in template
    special = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
    write_json(os.path.join(out_dir, "tokenizer_config.json"), {
        # what Mixtral-8x7B-Instruct's tokenizer_config.json declares (minus sp_model_kwargs etc.)
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {str(i): dict(special, content=s) for i, s in enumerate([UNK, BOS, EOS])},
        "bos_token": BOS,
        "chat_template": template,
        "clean_up_tokenization_spaces": False,
        "eos_token": EOS,
        "model_max_length": config["max_position_embeddings"],
        "pad_token": None,
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": UNK,
    })

    write_expected(os.path.join(out_dir, "expected_tokenizer.json"),
                   {"add_special_tokens": False,
                    "note": "ids of SentencePiece BPE encode(text) of tokenizer.model (add_dummy_prefix, "
                            "byte_fallback; equal-score pairs merge leftmost first), no bos added; from "
                            "make_sentencepiece_fixture.py's own encoder"},
                   [{"text": text, "ids": tok.encode(text)} for text, _ in CASES])
    return {"vocab_size": len(pieces), "merged_pieces": len(merged),
            "char_pieces": len(pieces) - 259 - len(merged), "model_bytes": len(model)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", default=os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
    ap.add_argument("--show", action="store_true", help="print each case's pieces")
    args = ap.parse_args()
    info = build(args.repo)
    print(FIXTURE_DIR, json.dumps(info), flush=True)
    if args.show:
        with open(os.path.join(args.repo, FIXTURE_DIR, "tokenizer.model"), "rb") as f:
            tok = SentencePieceBpe(f.read())
        for text, what in CASES:
            ids = tok.encode(text)
            print(f"{what}: {text!r}\n  {ids}\n  {[tok.pieces[i][0] for i in ids]}")


if __name__ == "__main__":
    main()
