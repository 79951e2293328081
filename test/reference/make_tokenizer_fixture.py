"""Builds the tokenizer fixture for sfc's UMT5 tokenizer tests (test/fixtures/tokenizer/): a
SentencePiece unigram model trained on test/reference/prompts.txt (our own prompts, Unicode
included), converted with the tokenizers library into the same fast-tokenizer layout as google/umt5-xxl's
tokenizer.json (Precompiled normalizer, Metaspace, Unigram, an appended </s>), and the ids the
Python tokenizer gives for every prompt with the reference's call (padding to max_length,
truncation, max_length 512; also max_length 16 to exercise truncation). It also counts prompts
where the converted tokenizer and SentencePiece disagree (expected 0).

Run where sentencepiece and tokenizers are installed (the GPU machine):
  python3 test/reference/make_tokenizer_fixture.py OUT_DIR
"""
import json
import os
import struct
import sys
import tempfile

import sentencepiece as spm
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors


def fields(buf):
    """Minimal protobuf wire-format reader: yields (field number, wire type, value)."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(buf, i)
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 2:
            n, i = varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("unsupported wire type %d" % wt)
        yield num, wt, v


def varint(buf, i):
    shift = v = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return v, i


out = sys.argv[1] if len(sys.argv) > 1 else "test/fixtures/tokenizer"
os.makedirs(out, exist_ok=True)
here = os.path.dirname(os.path.abspath(__file__))
prompts = [l for l in open(os.path.join(here, "prompts.txt"), encoding="utf-8").read().split("\n") if l.strip()]
# a few prompts with more structure than one line: tabs, several spaces, newlines inside
prompts += ["Tabs\tand\nnewlines\ninside a prompt about a lighthouse keeper.", "  leading and trailing spaces  "]

with tempfile.TemporaryDirectory() as d:
    corpus = os.path.join(d, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        for _ in range(5):
            f.write("\n".join(prompts) + "\n")
    spm.SentencePieceTrainer.train(
        input=corpus,
        model_prefix=os.path.join(d, "sp"),
        vocab_size=800,
        model_type="unigram",
        character_coverage=1.0,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        byte_fallback=True,
        normalization_rule_name="nmt_nfkc",
    )
    model_bytes = open(os.path.join(d, "sp.model"), "rb").read()
    sp = spm.SentencePieceProcessor(model_file=os.path.join(d, "sp.model"))

# ModelProto: 1 = repeated SentencePiece {1 piece, 2 score, 3 type}, 3 = NormalizerSpec {2 precompiled_charsmap}
vocab, charsmap = [], b""
for num, _, v in fields(model_bytes):
    if num == 1:
        piece, score = "", 0.0
        for n2, _, v2 in fields(v):
            if n2 == 1:
                piece = v2.decode("utf-8")
            elif n2 == 2:
                score = struct.unpack("<f", v2)[0]
        vocab.append((piece, score))
    elif num == 3:
        for n2, _, v2 in fields(v):
            if n2 == 2:
                charsmap = v2
assert charsmap, "the SentencePiece model has no precompiled charsmap"

# the layout of google/umt5-xxl's tokenizer.json, built with the tokenizers library itself
tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=True))
tok.normalizer = normalizers.Sequence([normalizers.Precompiled(charsmap), normalizers.Replace(Regex(" {2,}"), " ")])
tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
tok.add_special_tokens(["<pad>", "</s>", "<unk>"])
tok.save(os.path.join(out, "tokenizer.json"))

# the converted tokenizer must agree with SentencePiece itself (before padding)
disagree = sum(1 for p in prompts if tok.encode(p).ids != sp.encode(p) + [1])
cases = []
for max_length in (512, 16):
    tok.enable_truncation(max_length)
    tok.enable_padding(length=max_length, pad_id=0, pad_token="<pad>")
    for p in prompts:
        e = tok.encode(p)
        cases.append({"prompt": p, "max_length": max_length, "ids": e.ids, "length": int(sum(e.attention_mask))})
with open(os.path.join(out, "expected.json"), "w", encoding="utf-8") as f:
    json.dump({"pad_id": 0, "eos_id": 1, "spm_disagreements": disagree, "cases": cases}, f, ensure_ascii=False)
print("vocab", len(vocab), "charsmap bytes", len(charsmap), "cases", len(cases), "spm disagreements", disagree)
